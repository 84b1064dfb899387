"""The airlock's rules (pure): the states of a request, the transition table, and who may do what.

A request moves only along :data:`TRANSITIONS`; who may attempt an action is :data:`WHO`, by the
actor's relation to the request (:func:`roles`). Two approvals from two different checkers, neither
of them the requester, make a request ``approved``; only then may a checker release it, and only
a released request can be downloaded, by its requester or a checker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from datahavn.tokens import AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE

STATES = ("requested", "under_review", "approved", "released", "rejected", "returned", "withdrawn")
REVIEW_ACTIONS = ("approve", "reject", "return")
ACTIONS = ("view", *REVIEW_ACTIONS, "release", "download", "withdraw")
APPROVALS_NEEDED = 2

#: (state, action) -> the next state. An action missing here is refused in that state.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("requested", "approve"): "under_review",  # "approved" once APPROVALS_NEEDED checkers agree
    ("under_review", "approve"): "under_review",
    **{(s, "reject"): "rejected" for s in ("requested", "under_review", "approved")},
    **{(s, "return"): "returned" for s in ("requested", "under_review", "approved")},
    ("approved", "release"): "released",
    **{(s, "withdraw"): "withdrawn" for s in ("requested", "under_review", "approved")},
    ("released", "download"): "released",
}

#: action -> the roles that may attempt it (the state decides whether it is possible now)
WHO: dict[str, frozenset[str]] = {
    "view": frozenset({"requester", "checker", "auditor"}),
    **{a: frozenset({"checker"}) for a in (*REVIEW_ACTIONS, "release")},
    "download": frozenset({"requester", "checker"}),
    "withdraw": frozenset({"requester"}),
    # the files themselves, rendered for review before release: a requester's preview would be a download
    "preview": frozenset({"checker"}),
}

#: Actions that need a comment (a reason the requester can act on).
NEEDS_COMMENT = frozenset({"reject", "return"})


class Refused(Exception):
    """Not allowed for this actor (403), or not possible in this state (409)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Actor:
    """Who acts, as the hub reports their token: name and scopes."""

    name: str
    scopes: frozenset[str] = frozenset()

    @classmethod
    def from_model(cls, model: Mapping) -> Actor:
        return cls(str(model.get("name") or ""), frozenset(model.get("scopes") or ()))

    @property
    def checker(self) -> bool:
        return AIRLOCK_REVIEW_SCOPE in self.scopes

    @property
    def auditor(self) -> bool:
        return AUDIT_SCOPE in self.scopes


def roles(actor: Actor, requester: str) -> frozenset[str]:
    """The actor's roles toward a request. A checker is never a checker of their own request."""
    if actor.name == requester:
        out = {"requester"}
    else:
        out = {"checker"} if actor.checker else set()
    if actor.auditor:
        out.add("auditor")
    return frozenset(out)


def may(actor: Actor, requester: str, action: str) -> bool:
    return bool(WHO[action] & roles(actor, requester))


def check_role(actor: Actor, requester: str, action: str) -> None:
    """:class:`Refused` (403) unless ``actor``'s role toward the request allows ``action`` (400: no such action)."""
    if action not in WHO:
        raise Refused(400, f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if not may(actor, requester, action):
        if action in REVIEW_ACTIONS + ("release",) and actor.name == requester:
            raise Refused(403, f"you cannot {action} your own request: two other output checkers review it")
        raise Refused(403, f"{action} is not allowed for {actor.name or 'this token'} on this request")


def next_state(state: str, action: str, actor: Actor, requester: str, approvers: Iterable[str] = (),
               comment: str = "") -> str:  # fmt: skip
    """The state after ``actor`` does ``action`` to a request in ``state``, or :class:`Refused`.

    ``approvers``: who approved it so far. One checker's approvals count once.
    """
    check_role(actor, requester, action)
    if action in NEEDS_COMMENT and not comment.strip():
        raise Refused(400, f"{action} needs a comment saying why, for the requester")
    after = TRANSITIONS.get((state, action))
    if after is None:
        raise Refused(409, f"a request that is {state.replace('_', ' ')} cannot be {_past(action)}")
    if action == "approve":
        agreed = set(approvers)
        if actor.name in agreed:
            raise Refused(409, "you have already approved this request; a second checker must approve it")
        if len(agreed | {actor.name}) >= APPROVALS_NEEDED:
            return "approved"
    return after


def _past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "return": "returned", "release": "released",
            "download": "downloaded", "withdraw": "withdrawn"}[action]  # fmt: skip
