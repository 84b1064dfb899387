"""Who a hub token stands for, and the custom scopes Datahavn defines (pure).

Every Datahavn service (audit, airlock, dask-gateway) asks the hub about the token it
was shown and learns the answer here, from the hub's model of that token, never
from what the caller says about itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .names import InvalidName, check_project, check_user

#: Read and verify the audit trail (administrators, auditors).
AUDIT_SCOPE = "custom:datahavn:audit"
#: Review export requests in the airlock (output checkers).
AIRLOCK_REVIEW_SCOPE = "custom:datahavn:airlock-review"
#: Open the project's dask-gateway, and nothing else: minted by the hub for each workspace, with a
#: ``!server=<user>/<project>`` filter naming it, and handed to its kernels.
DASK_SCOPE = "custom:datahavn:dask"
#: Output checkers are the members of this hub group (and the users the configuration names).
CHECKER_GROUP = "datahavn-airlock-checkers"
#: The custom scopes the hub defines, with what they allow.
CUSTOM_SCOPES = {
    AUDIT_SCOPE: {"description": "Read and verify the Datahavn audit trail."},
    AIRLOCK_REVIEW_SCOPE: {"description": "Review (approve, reject, return, release) airlock export requests."},
    DASK_SCOPE: {"description": "Start and use the Dask clusters of one Datahavn workspace (dask-gateway)."},
}

#: A single-user server's own token carries exactly one scope of this form.
SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.+)$")
#: A workspace's Dask token carries exactly one scope of this form.
DASK_SERVER_SCOPE = re.compile(rf"^{re.escape(DASK_SCOPE)}!server=([^/]+)/(.+)$")


def dask_token_scope(user: str, project: str) -> str:
    """The one scope of (user, project)'s Dask token."""
    return f"{DASK_SCOPE}!server={user}/{project}"


def server_identity(model: Mapping, scope: re.Pattern = SERVER_SCOPE) -> tuple[str, str] | None:
    """(user, project) if ``model`` (the hub's answer for a token) is a single-user server's own token.

    A server's token carries exactly one ``access:servers!server=<user>/<project>``
    scope naming its owner; tokens of people, services and administrators do not.
    Both names must be valid Datahavn names: anything else is no server of ours.
    With ``scope=DASK_SERVER_SCOPE``: the same for a workspace's Dask token.
    """
    if model.get("kind") != "user":
        return None
    found = {m.groups() for s in model.get("scopes") or () if (m := scope.match(s))}
    if len(found) != 1:
        return None
    user, project = found.pop()
    if user != model.get("name"):
        return None
    try:
        check_user(user)
        check_project(project)
    except InvalidName:
        return None
    return user, project


def dask_identity(model: Mapping) -> tuple[str, str] | None:
    """(user, project) if ``model`` is a workspace's Dask token (:data:`DASK_SERVER_SCOPE`)."""
    return server_identity(model, DASK_SERVER_SCOPE)


def has_scope(model: Mapping, scope: str) -> bool:
    return scope in (model.get("scopes") or ())
