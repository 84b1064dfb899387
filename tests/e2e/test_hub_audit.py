"""The hub's audit cannot be skipped or forged: every change is recorded, a change it cannot record is not made.

Also: grants made at once by many administrators lose nothing, and a server flooding the audit
service is cut off at its rate cap, the refusal recorded once.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from datahavn import admin
from datahavn.names import account_name

from ..hubs import host_pids, proc_env, wait_for


def hub_api_events(hub, start: int, path_part: str) -> list[dict]:
    return [e for e in hub.events(kind="hub_api", after_seq=start) if path_part in e["detail"]["path"]]


def test_every_change_through_the_api_is_recorded_with_its_actor(hub, unique):
    user, project = hub.new_member()
    admin_token = hub.user_token("admin")  # an administrator on the admin page acts as themselves
    start = hub.events()[-1]["seq"]
    # a grant's expiry edited straight in the group's properties (not through datahavn)
    props = hub.rest("GET", f"/groups/{project}").json()["properties"]
    props["datahavn"]["grants"][user]["until"] = "2031-01-01T00:00:00Z"
    hub.rest("PUT", f"/groups/{project}/properties", token=admin_token, json=props).raise_for_status()
    # the admin flag, a token, a user deleted
    other = unique("x")
    admin.add_user(hub.api, other)
    hub.rest("PATCH", f"/users/{other}", token=admin_token, json={"admin": True}).raise_for_status()
    token = hub.rest("POST", f"/users/{other}/tokens", token=admin_token, json={"note": "script"}).json()["token"]
    hub.rest("DELETE", f"/users/{other}", token=admin_token).raise_for_status()

    (edit,) = wait_for(lambda: hub_api_events(hub, start, f"/groups/{project}/properties"), timeout=10)
    assert edit["actor"] == "admin" and edit["project"] == project
    assert edit["detail"]["grants_changed"] == {user: {"until": [None, "2031-01-01T00:00:00Z"]}}
    (flag,) = wait_for(lambda: [e for e in hub_api_events(hub, start, f"/users/{other}")
                                if e["detail"]["method"] == "PATCH"], timeout=10)  # fmt: skip
    assert flag["actor"] == "admin" and flag["detail"]["fields"] == {"admin": True}
    (minted,) = wait_for(lambda: hub_api_events(hub, start, f"/users/{other}/tokens"), timeout=10)
    assert minted["actor"] == "admin" and token not in str(minted)
    (deleted,) = wait_for(lambda: [e for e in hub_api_events(hub, start, f"/users/{other}")
                                   if e["detail"]["method"] == "DELETE"], timeout=10)  # fmt: skip
    assert deleted["actor"] == "admin" and deleted["user"] == other
    # grants made by datahavn carry their expiry and reason
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    admin.grant(hub.api, user, project, admin.g.parse_until(until), reason="study 7")
    (grant,) = wait_for(lambda: [e for e in hub.events(kind="grant", user=user, after_seq=start)], timeout=10)
    assert grant["detail"]["reason"] == "study 7" and grant["detail"]["until"].startswith(
        (dt.date.today() + dt.timedelta(days=31)).isoformat())
    assert grant["actor"] == "datahavn-admin"


def test_a_change_the_audit_cannot_record_is_not_made(hub, cli):
    user, project = hub.new_member()
    before = [g for g in admin.list_grants(hub.api, project) if g.user == user][0]
    db = sqlite3.connect(hub.layout.audit_db, timeout=30, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # the store cannot take a write while this is held
    try:
        r = cli("grant", user, project, "--until", "2030-06-30", "--reason", "changed")
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert r.returncode == 1 and "audit trail cannot record it" in r.stderr and "Nothing was changed" in r.stderr
    assert r.stderr.count("\n") == 1
    after = [g for g in admin.list_grants(hub.api, project) if g.user == user][0]
    assert (after.until, after.reason) == (before.until, before.reason)


def test_concurrent_grants_lose_nothing(hub):
    project = f"p{__import__('secrets').token_hex(3)}"
    admin.create_project(hub.api, project)
    users = [f"c{i:02d}{__import__('secrets').token_hex(2)}" for i in range(20)]
    for u in users:
        admin.add_user(hub.api, u)
    today = dt.date.today()
    expiry = {u: today + dt.timedelta(days=10 + i) for i, u in enumerate(users)}
    barrier = threading.Barrier(20)

    def grant(u):
        barrier.wait()  # all at once
        return admin.grant(hub.api, u, project, admin.g.parse_until(expiry[u].isoformat()), reason=f"r-{u}")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(grant, users))
    assert all(r.status == "active" for r in results)
    final = {g.user: g for g in admin.list_grants(hub.api, project)}
    assert sorted(final) == sorted(users)
    for u in users:
        assert final[u].status == "active" and final[u].reason == f"r-{u}", final[u]
        assert final[u].until and final[u].until.startswith((expiry[u] + dt.timedelta(days=1)).isoformat()), final[u]


def test_a_flooding_server_is_cut_off_and_recorded_once(hub, kernel):
    user, project = hub.new_member()
    hub.start(user, project)
    (pid,) = host_pids(account_name(user, project), b"jupyterhub-singleuser")
    token = proc_env(pid)["JUPYTERHUB_API_TOKEN"]  # the server's own credential, which no kernel holds
    url = f"{hub.url}/services/datahavn-audit/api/events"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    start = hub.events()[-1]["seq"]
    codes = [session.post(url, json={"kind": "execute", "code": f"flood {i}"}, timeout=30).status_code
             for i in range(1500)]  # fmt: skip
    assert codes.count(200) >= 500 and 429 in codes, {c: codes.count(c) for c in set(codes)}
    stored = len([e for e in hub.events(kind="execute", user=user, after_seq=start)])
    assert stored == codes.count(200) < 1500
    refusals = [e for e in hub.events(kind="denied", user=user, after_seq=start) if "a second" in str(e["detail"])]
    assert len(refusals) == 1, refusals
    big = session.post(url, json={"kind": "execute", "code": "x" * 3_000_000}, timeout=60)
    assert big.status_code == 400 and "at most" in big.json()["message"]
