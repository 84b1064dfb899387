"""The airlock's rules, without a hub: the transition table, who may act, two distinct approvals."""

import pytest

from datahavn.hub_config.airlock.rules import STATES, TRANSITIONS, Actor, Refused, next_state, roles
from datahavn.tokens import AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE

ALICE = Actor("alice")
CAROL = Actor("carol", frozenset({AIRLOCK_REVIEW_SCOPE}))
DAVE = Actor("dave", frozenset({AIRLOCK_REVIEW_SCOPE}))
ADMIN = Actor("admin", frozenset({AUDIT_SCOPE}))
ALICE_CHECKER = Actor("alice", frozenset({AIRLOCK_REVIEW_SCOPE}))


def test_the_table_names_only_known_states_and_final_states_lead_nowhere_but_download():
    for (before, _), after in TRANSITIONS.items():
        assert before in STATES and after in STATES
    for state in ("rejected", "returned", "withdrawn"):
        assert not [k for k in TRANSITIONS if k[0] == state]
    assert [a for s, a in TRANSITIONS if s == "released"] == ["download"]


def test_two_different_checkers_approve_and_one_checker_counts_once():
    assert next_state("requested", "approve", CAROL, "alice") == "under_review"
    with pytest.raises(Refused) as e:
        next_state("under_review", "approve", CAROL, "alice", ["carol"])
    assert e.value.status == 409
    assert next_state("under_review", "approve", DAVE, "alice", ["carol"]) == "approved"
    assert next_state("approved", "release", CAROL, "alice", ["carol", "dave"]) == "released"


def test_a_checker_never_reviews_their_own_request():
    assert roles(ALICE_CHECKER, "alice") == {"requester"}
    for action in ("approve", "reject", "return", "release"):
        with pytest.raises(Refused) as e:
            next_state("approved" if action == "release" else "requested", action, ALICE_CHECKER, "alice",
                       comment="x")  # fmt: skip
        assert e.value.status == 403 and "your own request" in str(e.value)


@pytest.mark.parametrize("actor", [ALICE, ADMIN, Actor("bob")])
def test_people_who_are_not_checkers_cannot_review(actor):
    for action in ("approve", "reject", "return"):
        with pytest.raises(Refused) as e:
            next_state("requested", action, actor, "alice", comment="x")
        assert e.value.status == 403


def test_state_decides_after_the_role():
    with pytest.raises(Refused) as e:
        next_state("requested", "release", CAROL, "alice")
    assert e.value.status == 409 and "requested" in str(e.value)
    with pytest.raises(Refused) as e:
        next_state("requested", "download", ALICE, "alice")
    assert e.value.status == 409
    assert next_state("released", "download", ALICE, "alice") == "released"
    assert next_state("under_review", "withdraw", ALICE, "alice") == "withdrawn"
    with pytest.raises(Refused):
        next_state("released", "withdraw", ALICE, "alice")


def test_reject_and_return_need_a_reason():
    for action in ("reject", "return"):
        with pytest.raises(Refused) as e:
            next_state("requested", action, CAROL, "alice", comment="  ")
        assert e.value.status == 400
        assert next_state("requested", action, CAROL, "alice", comment="too few cases") in ("rejected", "returned")


def test_unknown_actions_are_refused():
    with pytest.raises(Refused) as e:
        next_state("requested", "publish", CAROL, "alice")
    assert e.value.status == 400
