"""The audit service's door for servers' events: batches all or none, caps per server, refusals recorded once."""

from __future__ import annotations

import asyncio

import pytest

from datahavn.hub_config.audit.intake import Refused, ServerIntake
from datahavn.hub_config.audit.store import AuditStore

WHO = ("alice", "brca")


@pytest.fixture
def store(tmp_path):
    with AuditStore(f"sqlite:///{tmp_path}/audit.sqlite", b"k" * 32) as s:
        yield s


def reply(i: int) -> dict:
    return {"kind": "execute_reply", "msg_id": f"m{i}", "status": "ok", "duration_ms": 1.0}


def test_a_batch_is_stored_in_order_as_the_server(store):
    intake = ServerIntake(store)
    stored = asyncio.run(intake.record_many(WHO, [reply(i) for i in range(5)], 500))
    assert [r["msg_id"] for r in stored] == [f"m{i}" for i in range(5)]
    assert [r["seq"] for r in stored] == list(range(1, 6))
    assert {(r["user"], r["project"], r["server"]) for r in store.query()} == {("alice", "brca", "alice/brca")}
    assert store.verify().ok


def test_one_invalid_event_refuses_the_whole_batch(store):
    intake = ServerIntake(store)
    with pytest.raises(Refused, match="invalid event"):
        asyncio.run(intake.record_many(WHO, [reply(0), {"kind": "execute", "user": "bob"}], 500))
    assert store.query() == []


def test_a_batch_past_the_rate_is_refused_and_the_refusal_recorded_once(store):
    intake = ServerIntake(store, rate=1, burst=10)

    async def flood():
        outcomes = []
        for _ in range(4):
            try:
                await intake.record_many(WHO, [reply(i) for i in range(4)], 500)
                outcomes.append("stored")
            except Refused as e:
                outcomes.append(str(e))
        return outcomes

    outcomes = asyncio.run(flood())
    assert outcomes[:2] == ["stored", "stored"] and all("a second" in o for o in outcomes[2:]), outcomes
    kinds = [e["kind"] for e in store.query()]
    assert kinds.count("execute_reply") == 8 and kinds.count("denied") == 1


def test_an_oversized_frame_is_refused(store):
    intake = ServerIntake(store, max_bytes=1000)
    with pytest.raises(Refused, match="at most"):
        asyncio.run(intake.record_many(WHO, [reply(0)], 1001))
    assert [e["kind"] for e in store.query()] == ["denied"]
