"""The audit trail, end to end: every execution recorded before it runs, fail closed, tamper-evident."""

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import requests

from datahavn.hub_config.audit.store import chain_hash
from datahavn.names import account_name

from ..hubs import await_for, host_pids, login, proc_env, refused, wait_for


async def test_four_kernels_by_250_cells_give_exactly_1000_records(hub, kernel, cli):
    pairs = [("alice", "brca"), ("bob", "cardio"), ("carol", "brca"), ("carol", "cardio")]
    kernels = [await kernel(u, p) for u, p in pairs]
    start = hub.events()[-1]["seq"]

    async def run(i, k):
        for n in range(250):
            r = await k.execute(f"x = {n}  # cell {n} of {pairs[i][0]}/{pairs[i][1]}")
            assert r.status == "ok", r.error

    await asyncio.gather(*(run(i, k) for i, k in enumerate(kernels)))
    events = [e for e in hub.events(kind="execute", after_seq=start) if e["code"].startswith("x = ")]
    assert len(events) == 1000
    for user, project in pairs:
        mine = [e for e in events if e["user"] == user and e["project"] == project]
        assert sorted(e["code"] for e in mine) == sorted(f"x = {n}  # cell {n} of {user}/{project}" for n in range(250))
        assert {e["server"] for e in mine} == {f"{user}/{project}"}
        assert all(e["msg_type"] == "execute_request" and len(e["code_sha256"]) == 64 for e in mine)

    # replies are recorded in batches, within a fraction of a second of the reply
    def all_replies():
        replies = hub.events(kind="execute_reply", after_seq=start)
        return replies if len(replies) >= 1000 else []

    replies = wait_for(all_replies, timeout=10, message="1000 execute_reply events")
    assert all(r["status"] == "ok" for r in replies)
    r = cli("audit", "verify")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("audit trail sound:")


def server_token(user: str, project: str) -> str:
    """The server's own hub token, read as root from the server's environment (no kernel holds it)."""
    (pid,) = host_pids(account_name(user, project), b"jupyterhub-singleuser")
    return proc_env(pid)["JUPYTERHUB_API_TOKEN"]


async def test_a_server_cannot_claim_another_identity(hub, kernel):
    await kernel("alice", "brca")
    token = server_token("alice", "brca")
    url = f"{hub.url}/services/datahavn-audit/api/events"
    post = lambda body, tok=token: requests.post(url, json=body, headers={"Authorization": f"token {tok}"}, timeout=30)  # noqa: E731

    forged = post({"kind": "execute", "code": "forged", "user": "bob", "project": "cardio"})
    assert forged.status_code == 400 and "not allowed" in forged.json()["message"]
    hub_kind = post({"kind": "grant", "detail": "to myself"})
    assert hub_kind.status_code == 400
    ok = post({"kind": "execute", "code": "posted by hand", "msg_type": "execute_request"})
    assert ok.status_code == 200
    (event,) = hub.events(grep="posted by hand")
    assert (event["user"], event["project"], event["server"]) == ("alice", "brca", "alice/brca")
    # a personal token is not a server's: it cannot record
    personal = post({"kind": "execute", "code": "x"}, hub.user_token("alice"))
    assert personal.status_code == 403
    # and no researcher token can read the trail
    assert hub.audit("/events", token=token).status_code == 403
    assert hub.audit("/verify", token=hub.user_token("alice")).status_code == 403
    assert not hub.events(grep="forged")


async def test_the_store_and_key_are_out_of_a_kernels_reach(hub, kernel):
    k = await kernel("alice", "brca")
    lay = hub.layout
    for target in (lay.audit_db, lay.audit_key, lay.hub / "audit.sqlite-wal", lay.logs):
        for code in (f"open({str(target)!r}, 'rb').read(1)", f"open({str(target)!r}, 'ab')"):
            r = await k.execute(code)
            assert refused(r.error), f"{code}: {r.error}"
    hub_env = Path(sys.executable).parent.parent  # the hub's environment runs the service
    r = await k.execute(f"import os; os.listdir({str(hub_env)!r})")
    assert refused(r.error), r.error
    pid = hub.audit_pid()
    r = await k.execute(f"import os; os.kill({pid}, 0)")
    assert refused(r.error), r.error
    r = await k.execute(f"open('/proc/{pid}/environ').read()")
    assert refused(r.error), r.error


async def test_audit_service_down_means_nothing_runs_until_it_is_back(hub, kernel):
    k = await kernel("bob", "cardio")
    assert (await k.execute("print('before')")).stdout == "before\n"
    marker = hub.layout.workspace("cardio", "bob") / "ran-while-audit-down"

    pid = hub.audit_pid()
    os.kill(pid, signal.SIGSTOP)  # unresponsive: the server waits, then refuses
    try:
        t0 = time.monotonic()
        r = await k.execute(f"open({str(marker)!r}, 'w').write('x')")
        assert time.monotonic() - t0 < 30
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.status == "error" and r.error.startswith("AuditUnavailable")
    assert "audit trail is unavailable" in r.error
    assert not marker.exists()

    os.kill(pid, signal.SIGKILL)  # gone: refused at once; the hub restarts it
    r = await k.execute(f"open({str(marker)!r}, 'w').write('x')")
    assert r.error.startswith("AuditUnavailable") and not marker.exists()
    await await_for(lambda: hub.audit_pid() not in (None, pid) and hub.audit("/verify").status_code == 200,
                    timeout=90, interval=1, message="the hub did not restart the audit service")  # fmt: skip
    r = await k.execute("print('after')")
    assert r.stdout == "after\n", r.error
    seqs = [e["seq"] for e in hub.events()]
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate in the sequence"
    assert hub.audit("/verify").json()["ok"]


def test_hub_events_are_recorded_with_their_actor(hub, cli, unique):
    start = hub.events()[-1]["seq"]
    session = login(hub, "alice")
    session.get(f"{hub.url}/hub/logout", timeout=30)
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    s.post(f"{hub.url}/hub/login", data={"username": "alice", "password": "wrong-password",
                                          "_xsrf": s.cookies.get("_xsrf")}, timeout=30)  # fmt: skip
    user, project = unique("u"), unique("p")
    assert cli("user", "add", user).returncode == 0
    assert cli("project", "create", project).returncode == 0
    assert cli("grant", user, project).returncode == 0
    hub.start(user, project)
    assert hub.rest("POST", f"/users/{user}/servers/cardio").status_code == 403
    hub.stop(user, project)
    hub.wait_stopped(user, project, 30)
    assert cli("revoke", user, project).returncode == 0
    # the admin page acts with the admin's own identity
    admin_token = hub.user_token("admin")
    hub.rest("POST", f"/groups/{project}/users", token=admin_token, json={"users": [user]}).raise_for_status()

    expected = {
        ("login", "alice", None, "alice"),
        ("logout", "alice", None, "alice"),
        ("login_failed", "alice", None, None),
        ("user_add", user, None, "datahavn-admin"),
        ("project_create", None, project, "datahavn-admin"),
        ("grant", user, project, "datahavn-admin"),
        ("spawn", user, project, "datahavn-admin"),
        ("spawn_refused", user, "cardio", "datahavn-admin"),
        ("stop", user, project, "datahavn-admin"),
        ("revoke", user, project, "datahavn-admin"),
        ("grant", user, project, "admin"),
    }

    def seen():
        return {(e["kind"], e.get("user"), e.get("project"), e.get("actor")) for e in hub.events(after_seq=start)}

    # the hub records a request as it logs it, just after answering: allow it a moment
    wait_for(lambda: expected <= seen(), timeout=10, message=f"hub events missing: {expected - seen()}")


async def test_tampering_is_caught_naming_the_seq(make_hub, cli, kernel):
    h = make_hub("tamper")
    env = h.env
    for n in range(6):
        h.rest("POST", f"/users/tamper{n}").raise_for_status()
    user, project = h.new_member()
    k = await kernel(user, project, on_hub=h)
    for n in range(4):
        assert (await k.execute(f"tamper_me = {n}")).status == "ok"
    # each cell's execute_reply is recorded just after its reply reaches the client
    wait_for(lambda: len(h.events(kind="execute_reply", user=user)) == 4, message="execute_reply events")
    db = sqlite3.connect(h.layout.audit_db, isolation_level=None)
    columns = "seq, time, kind, user, project, body, prev_hash, hash, mac"
    rows = db.execute(f"SELECT {columns} FROM audit_records ORDER BY seq").fetchall()
    last = rows[-1][0]
    assert last > 10

    def verify():
        r = cli("audit", "verify", env=env)
        return r.returncode, (r.stderr or r.stdout).strip()

    def restore():
        db.execute("DELETE FROM audit_records")
        db.executemany("INSERT INTO audit_records VALUES (?,?,?,?,?,?,?,?,?)", rows)
        assert verify()[0] == 0

    assert verify() == (0, f"audit trail sound: {last} records"), h.events()[-3:]
    # one byte of a code field changed
    seq, body = next((r[0], r[5]) for r in rows if '"code":"tamper_me = 1"' in r[5])
    db.execute("UPDATE audit_records SET body=? WHERE seq=?", (body.replace("tamper_me = 1", "tamper_me = 7"), seq))
    rc, out = verify()
    assert rc != 0 and f"seq {seq}:" in out, out
    restore()
    # a record deleted
    db.execute("DELETE FROM audit_records WHERE seq=7")
    rc, out = verify()
    assert rc != 0 and "seq 7:" in out, out
    restore()
    # two records swapped
    db.execute("UPDATE audit_records SET seq=-1 WHERE seq=3")
    db.execute("UPDATE audit_records SET seq=3 WHERE seq=4")
    db.execute("UPDATE audit_records SET seq=4 WHERE seq=-1")
    rc, out = verify()
    assert rc != 0 and "seq 3:" in out, out
    restore()
    # the tail truncated
    db.execute("DELETE FROM audit_records WHERE seq > ?", (last - 3,))
    rc, out = verify()
    assert rc != 0 and f"seq {last - 2}:" in out, out
    restore()
    # the tail rewritten with a recomputed chain, but without the key
    prev = rows[7][6]
    for row in rows[7:]:
        seq, body = row[0], row[5]
        record = json.loads(body)
        record["detail"] = "rewritten"
        new_body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        new_hash = chain_hash(prev, new_body)
        db.execute("UPDATE audit_records SET body=?, prev_hash=?, hash=? WHERE seq=?", (new_body, prev, new_hash, seq))
        prev = new_hash
    rc, out = verify()
    assert rc != 0 and "seq 8:" in out, out
    restore()


async def test_every_code_carrying_message_is_recorded_in_both_protocols(hub, kernel):
    for protocol in ("json", "v1"):
        k = await kernel("carol", "brca", protocol=protocol)
        r = await k.execute(f"print('via {protocol}')")
        assert r.stdout == f"via {protocol}\n", r.error
        (event,) = hub.events(grep=f"print('via {protocol}')", kind="execute")
        assert (event["user"], event["project"], event["msg_type"]) == ("carol", "brca", "execute_request")

        # messages that run code without an execute_request
        sent = [
            k.message("comm_open", {"comm_id": f"c-{protocol}", "target_name": f"t-{protocol}", "data": {}}),
            k.message("comm_msg", {"comm_id": f"c-{protocol}", "data": {"payload": f"p-{protocol}"}}),
            k.message("input_reply", {"value": f"typed-{protocol}"}, channel="stdin"),
            k.message("debug_request", {"seq": 1, "type": "request", "command": "evaluate",
                                        "arguments": {"expression": f"'dbg-{protocol}'"}}, channel="control"),
        ]  # fmt: skip
        for msg in sent:
            await k.send(msg)
        ids = {m["header"]["msg_id"] for m in sent}

        def recorded_events(ids=ids):
            found = {e["msg_id"]: e for e in hub.events(user="carol") if e.get("msg_id") in ids}
            return found if len(found) == len(ids) else None

        events = await await_for(recorded_events, timeout=10, message="events of the sent messages")
        # the debugger is off: its request is refused, and the refusal recorded
        (denied,) = [e for e in events.values() if e["msg_type"] == "debug_request"]
        assert denied["kind"] == "denied" and "not allowed" in denied["detail"]
        recorded = {i: e for i, e in events.items() if e["kind"] == "execute"}
        assert {e["msg_type"] for e in recorded.values()} == {"comm_open", "comm_msg", "input_reply"}
        assert f"p-{protocol}" in next(e["code"] for e in recorded.values() if e["msg_type"] == "comm_msg")
        assert all(e["project"] == "brca" and e["channel"] in ("shell", "stdin", "control") for e in recorded.values())
