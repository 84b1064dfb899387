"""The pure rules: names, account identities, grant status and expiry parsing."""

import datetime as dt

import pytest

from datahavn import grants as g
from datahavn.names import InvalidName, account_gecos, account_name, check_project, check_user

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("bad", ["", "Brca", "a/b", "..", "a.b", "1abc", "a-b", "x" * 17, "brca\n", None, "é"])
def test_bad_project_names(bad):
    with pytest.raises(InvalidName):
        check_project(bad)


@pytest.mark.parametrize("bad", ["", "Alice", "a/b", "..", "-a", "x" * 33, "al ice", "alice\n", None])
def test_bad_user_names(bad):
    with pytest.raises(InvalidName):
        check_user(bad)


def test_account_names_are_unique_valid_and_short():
    assert account_name("alice", "brca") == "dh-brca-alice"
    long_a, long_b = "a" * 30 + "x", "a" * 30 + "y"
    assert account_name(long_a, "brca") != account_name(long_b, "brca")
    assert len(account_name(long_a, "p" * 16)) <= 32
    # no '-' in projects: ("a-b", "c") and ("a", "b-c") cannot meet
    assert account_name("b-c", "a") == "dh-a-b-c"
    with pytest.raises(InvalidName):
        account_name("c", "a-b")
    assert ":" not in account_gecos("alice", "brca")


def props(grants: dict) -> dict:
    p = g.new_project_properties("d", by="admin", now=NOW)
    p["datahavn"]["grants"] = grants
    return p


def test_grant_status_rule():
    until_future = {"until": "2026-12-01T00:00:00Z", "reason": "r", "by": "admin", "at": "x"}
    until_past = {"until": "2026-11-01T00:00:00Z"}
    revoked = {"until": None, "revoked_at": "2026-11-20T00:00:00Z", "revoked_by": "admin"}
    p = props({"a": until_future, "b": until_past, "c": revoked, "d": {"until": "garbage"}})
    status = lambda user, members: g.grant_status("brca", p, members, user, NOW).status  # noqa: E731
    assert status("a", {"a"}) == g.ACTIVE
    assert status("a", set()) == g.REVOKED  # removed on the admin page
    assert status("b", {"b"}) == g.EXPIRED
    assert status("c", set()) == g.REVOKED
    assert status("c", {"c"}) == g.ACTIVE  # re-added on the admin page
    assert status("d", {"d"}) == g.EXPIRED  # an unreadable expiry fails closed
    assert status("e", {"e"}) == g.ACTIVE  # added on the admin page, no record
    assert status("f", set()) == g.NONE
    assert g.grant_status("x", {"other": 1}, {"a"}, "a", NOW).status == g.NONE  # not a project


def test_parse_until():
    assert g.parse_until("2026-12-31", NOW) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert g.isoformat(g.parse_until("2026-11-29T14:00:00+01:00", NOW)) == "2026-11-29T13:00:00Z"
    assert g.parse_until("2026-11-29T12:00:30Z", NOW) == NOW + dt.timedelta(seconds=30)
    for bad in ["2026-11-28", "2026-13-01", "tomorrow", "2026-12-01T10:00:00", ""]:
        with pytest.raises(g.InvalidGrant):
            g.parse_until(bad, NOW)
