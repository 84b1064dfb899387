"""The tamper-evident audit store, on SQLite and on PostgreSQL.

PostgreSQL tests run when DATAHAVN_TEST_PG_URL is set (``bash scripts/postgres.sh``
prints one); each test gets its own schema there, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from datahavn.hub_config.audit.store import GENESIS, AuditIntegrityError, AuditStore

KEY = secrets.token_bytes(32)
PG_URL = os.environ.get("DATAHAVN_TEST_PG_URL")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Backend:
    """A fresh database: open stores on it, and tamper with it through plain SQL."""

    def __init__(self, name: str, url: str):
        self.name = name
        self.url = url
        self.engine = sa.create_engine(url)
        self.stores: list[AuditStore] = []

    def open(self, key: bytes = KEY, **kwargs) -> AuditStore:
        store = AuditStore(self.url, key, **kwargs)
        self.stores.append(store)
        return store

    def sql(self, statement: str, **params) -> list:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.all() if result.returns_rows else []

    def row(self, seq: int):
        return self.sql("SELECT * FROM audit_records WHERE seq = :seq", seq=seq)[0]

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        "postgresql",
    ]
)
def backend(request, tmp_path):
    if request.param == "sqlite":
        b = Backend("sqlite", f"sqlite:///{tmp_path / 'audit.sqlite'}")
        yield b
        b.close()
        return
    if not PG_URL:
        pytest.fail("DATAHAVN_TEST_PG_URL is unset: `make test` starts PostgreSQL (scripts/postgres.sh prints one)")
    schema = f"audit_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    # search_path: the store's unqualified table names land in this test's schema.
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    b = Backend("postgresql", url.render_as_string(hide_password=False))
    try:
        yield b
    finally:
        b.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def event(i: int, **extra) -> dict:
    return {
        "kind": "execute",
        "user": "alice",
        "project": "brca",
        "code": f"print('cell {i}: héllo ✓ 漢字 🧬')\nx = {i}",
        **extra,
    }


def filled(backend: Backend, n: int, **kwargs) -> AuditStore:
    store = backend.open(**kwargs)
    store.append_many([event(i) for i in range(1, n + 1)])
    return store


def check_bad(store: AuditStore, seq: int, reason: str) -> None:
    result = store.verify()
    assert not result.ok, result
    assert result.first_bad_seq == seq, result
    assert reason in result.reason, result
    assert result.count == seq - 1, result


# -- writing and reading


def test_append_assigns_contiguous_seqs_and_a_chain_verifiable_by_hand(backend):
    store = backend.open()
    assert store.last_seq() == 0
    assert store.verify().ok and store.verify().count == 0
    out = [store.append(event(1))]
    out += store.append_many([event(2), event(3, time="2024-05-01T12:00:00+02:00")])
    out.append(store.append({"kind": "login"}))
    assert [r["seq"] for r in out] == [1, 2, 3, 4]
    assert store.last_seq() == 4
    assert out[2]["time"] == "2024-05-01T10:00:00.000000Z"
    assert TIME_RE.match(out[0]["time"]) and out[0]["time"] <= out[1]["time"]

    # Recompute everything from the documented format, independently of the module.
    prev = GENESIS
    for rec in out:
        row = backend.row(rec["seq"])
        body = json.dumps(
            {k: v for k, v in rec.items() if k not in ("prev_hash", "hash")},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert row.body == body
        assert rec["prev_hash"] == row.prev_hash == prev
        assert rec["hash"] == row.hash == hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()
        assert row.mac == hmac.new(KEY, row.hash.encode(), hashlib.sha256).hexdigest()
        assert (row.kind, row.user, row.project) == (rec["kind"], rec.get("user"), rec.get("project"))
        prev = row.hash
    (h,) = backend.sql("SELECT seq, hash, signature FROM audit_head")
    assert (h.seq, h.hash) == (4, prev)
    assert h.signature == hmac.new(KEY, f"head:4:{prev}".encode(), hashlib.sha256).hexdigest()
    assert store.query() == out
    result = store.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (True, 4, None)


def test_events_are_checked_and_not_modified(backend):
    with pytest.raises(ValueError):
        backend.open(key=b"short")
    store = backend.open()
    ev = event(1)
    store.append(ev)
    assert ev == event(1)
    for bad in ({"seq": 5}, {"hash": "x"}, {"prev_hash": "x"}, {"time": "yesterday"}):
        with pytest.raises(ValueError):
            store.append(bad)
    with pytest.raises(ValueError):
        store.append({"x": float("nan")})
    with pytest.raises(ValueError):
        store.append({"code": "\ud800"})
    # append_many is all or nothing.
    with pytest.raises(TypeError):
        store.append_many([event(2), {"x": object()}])
    assert store.last_seq() == 1 and len(store.query()) == 1
    assert store.append(event(2))["seq"] == 2
    assert store.verify().ok


def test_large_unicode_bodies(backend):
    store = backend.open()
    code = "".join(chr(c) for c in range(0x20, 0x3000) if not 0xD800 <= c < 0xE000) + "🧬\x00\t\"\\'\n"
    code = code * (3_000_000 // len(code.encode()))
    rec = store.append(event(1, code=code))
    store.append(event(2))
    assert len(backend.row(1).body.encode()) > 2_900_000
    got = store.query(grep="🧬")
    assert [r["seq"] for r in got] == [1, 2] and got[0] == rec and got[0]["code"] == code
    assert store.verify().ok


def test_query_filters(backend):
    store = backend.open()
    t0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    specs = [
        ("alice", "brca", "execute", "import numpy as np"),
        ("bob", "cardio", "execute", "df = load('ECG')"),
        ("alice", "cardio", "login", None),
        ("carol", "brca", "execute", "print('Ça va, HÉLLO')"),
        ("alice", "brca", "download", "rm -rf 50%_done"),
        ("bob", "brca", "execute", "héllo world"),
    ]
    for i, (user, project, kind, code) in enumerate(specs):
        ev = {"user": user, "project": project, "kind": kind, "time": t0 + timedelta(hours=i)}
        if code is not None:
            ev["code"] = code
        store.append(ev)
    store.append({"kind": "system", "note": "no user"})  # seq 7, now

    def seqs(**kw):
        return [r["seq"] for r in store.query(**kw)]

    assert seqs() == [1, 2, 3, 4, 5, 6, 7]
    assert seqs(user="alice") == [1, 3, 5]
    assert seqs(project="brca") == [1, 4, 5, 6]
    assert seqs(kind="execute") == [1, 2, 4, 6]
    assert seqs(user="alice", project="brca", kind="execute") == [1]
    assert seqs(user="nobody") == []
    assert seqs(since="2025-03-01T10:00:00Z") == [3, 4, 5, 6, 7]
    assert seqs(until="2025-03-01T10:00:00Z") == [1, 2]
    assert seqs(since=t0 + timedelta(hours=1), until=t0 + timedelta(hours=3)) == [2, 3]
    assert seqs(since="2025-03-01T11:00:00+02:00", until=datetime(2025, 3, 1, 11, 0)) == [2, 3]
    assert seqs(since=datetime.now(UTC) - timedelta(minutes=5)) == [7]
    assert seqs(grep="héllo") == [4, 6]
    assert seqs(grep="HÉLLO") == [4, 6]
    assert seqs(grep="ecg") == [2]
    assert seqs(grep="50%_") == [5]
    assert seqs(grep="%") == [5]
    assert seqs(grep='"user":"bob"') == [2, 6]
    assert seqs(grep="héllo", user="bob") == [6]
    assert seqs(after_seq=4) == [5, 6, 7]
    assert seqs(limit=2) == [1, 2]
    assert seqs(after_seq=2, limit=2, project="brca") == [4, 5]
    assert seqs(grep="e", limit=3, after_seq=1) == [2, 3, 4]
    assert seqs(limit=0) == []
    rec = store.query(user="carol")[0]
    assert rec["code"] == "print('Ça va, HÉLLO')" and rec["time"] == "2025-03-01T11:00:00.000000Z"


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-thread"])
def test_concurrent_appends(backend, shared):
    stores = [backend.open()] * 4 if shared else [backend.open() for _ in range(4)]
    errors = []

    def work(t: int):
        try:
            for i in range(250):
                stores[t].append(event(i, thread=t))
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = backend.sql("SELECT seq FROM audit_records ORDER BY seq")
    assert [r.seq for r in rows] == list(range(1, 1001))
    per_thread = backend.sql("SELECT body FROM audit_records")
    counts = {}
    for r in per_thread:
        t = json.loads(r.body)["thread"]
        counts[t] = counts.get(t, 0) + 1
    assert counts == {0: 250, 1: 250, 2: 250, 3: 250}
    result = stores[0].verify()
    assert (result.ok, result.count) == (True, 1000), result
    assert stores[0].last_seq() == 1000
    assert [r.seq for r in backend.sql("SELECT seq FROM audit_checkpoints ORDER BY seq")] == list(range(100, 1001, 100))


def test_verify_sees_a_consistent_snapshot_while_appending(backend):
    writer = backend.open(checkpoint_every=7)
    reader = backend.open()
    stop = threading.Event()

    def work():
        i = 0
        while not stop.is_set():
            writer.append_many([event(i), event(i + 1)])
            i += 2

    thread = threading.Thread(target=work)
    thread.start()
    try:
        results = [reader.verify() for _ in range(20)]
    finally:
        stop.set()
        thread.join()
    assert [r for r in results if not r.ok] == []
    assert all(r.count % 2 == 0 for r in results)  # never half of an append_many
    assert reader.verify().count == writer.last_seq()


def test_close_and_reopen_continue_the_chain(backend):
    store = filled(backend, 5)
    store.close()
    store = backend.open()
    assert store.last_seq() == 5
    rec = store.append(event(6))
    assert rec["seq"] == 6 and rec["prev_hash"] == backend.row(5).hash
    store.close()
    with backend.open() as again:
        again.append_many([event(7), event(8)])
        assert [r["seq"] for r in again.query()] == list(range(1, 9))
        assert again.verify().ok and again.verify().count == 8


def test_checkpoints(backend):
    store = backend.open(checkpoint_every=10)
    with pytest.raises(ValueError):
        store.checkpoint()  # empty: nothing to sign
    store.append_many([event(i) for i in range(1, 26)])
    rows = backend.sql("SELECT seq, hash, time, signature FROM audit_checkpoints ORDER BY seq")
    assert [r.seq for r in rows] == [10, 20]
    for r in rows:
        assert r.hash == backend.row(r.seq).hash and TIME_RE.match(r.time)
        assert r.signature == hmac.new(KEY, f"{r.seq}:{r.hash}".encode(), hashlib.sha256).hexdigest()
    cp = store.checkpoint()
    assert cp["seq"] == 25 and cp["hash"] == backend.row(25).hash
    assert store.checkpoint() == cp
    assert store.verify().ok


# -- tampering: each caught, at the right seq


def test_changed_byte_in_body(backend):
    store = filled(backend, 10)
    body = backend.row(4).body
    i = body.index("print") + 1
    assert body[i] == "r"
    backend.sql("UPDATE audit_records SET body = :b WHERE seq = 4", b=body[:i] + "R" + body[i + 1 :])
    check_bad(store, 4, "hash mismatch")
    store.append(event(11))  # appending after it does not hide it
    check_bad(store, 4, "hash mismatch")


def test_deleted_record(backend):
    store = filled(backend, 10)
    backend.sql("DELETE FROM audit_records WHERE seq = 6")
    check_bad(store, 6, "missing record")
    backend.sql("DELETE FROM audit_records WHERE seq = 1")
    check_bad(store, 1, "missing record")


@pytest.mark.parametrize("how", ["seq", "contents"])
def test_swapped_records(backend, how):
    store = filled(backend, 10)
    if how == "seq":
        backend.sql("UPDATE audit_records SET seq = -1 WHERE seq = 3")
        backend.sql("UPDATE audit_records SET seq = 3 WHERE seq = 7")
        backend.sql("UPDATE audit_records SET seq = 7 WHERE seq = -1")
    else:
        a, b = backend.row(3), backend.row(7)
        for seq, src in ((3, b), (7, a)):
            backend.sql(
                'UPDATE audit_records SET body = :body, time = :time, kind = :kind, "user" = :user, '
                "project = :project WHERE seq = :seq",
                seq=seq,
                **{k: src._mapping[k] for k in ("body", "time", "kind", "user", "project")},
            )
    check_bad(store, 3, "mismatch")


@pytest.mark.parametrize("every", [100, 10])
def test_truncated_tail(backend, every):
    store = filled(backend, 25, checkpoint_every=every)
    backend.sql("DELETE FROM audit_records WHERE seq > 17")
    check_bad(store, 18, "missing records")
    # Appending after it keeps the evidence: the chain goes on from the signed head.
    rec = store.append(event(26))
    assert rec["seq"] == 26
    check_bad(store, 18, "missing record")


def test_truncated_tail_and_head_rolled_back_to_a_checkpoint(backend):
    store = filled(backend, 25, checkpoint_every=10)
    backend.sql("DELETE FROM audit_records WHERE seq > 20")
    cp = backend.sql("SELECT seq, hash, signature FROM audit_checkpoints WHERE seq = 20")[0]
    backend.sql("UPDATE audit_head SET seq = :s, hash = :h, signature = :g", s=cp.seq, h=cp.hash, g=cp.signature)
    check_bad(store, 21, "head signature invalid")
    with pytest.raises(AuditIntegrityError):
        store.append(event(26))


def test_truncated_tail_and_head_deleted(backend):
    store = filled(backend, 25, checkpoint_every=10)
    backend.sql("DELETE FROM audit_records WHERE seq > 12")
    backend.sql("DELETE FROM audit_checkpoints WHERE seq > 12")
    backend.sql("DELETE FROM audit_head")
    check_bad(store, 13, "head row missing")
    store.close()
    store = backend.open()  # reopening does not make a fresh head
    check_bad(store, 13, "head row missing")
    with pytest.raises(AuditIntegrityError):
        store.append(event(26))


def test_everything_deleted(backend):
    store = filled(backend, 5)
    backend.sql("DELETE FROM audit_records")
    check_bad(store, 1, "missing records")


def test_truncated_tail_caught_by_checkpoint(backend):
    # Only the head is rolled back (with a signature the attacker saw earlier): the
    # checkpoint at 20 still names records that are gone.
    store = filled(backend, 15, checkpoint_every=10)
    old_head = backend.sql("SELECT seq, hash, signature FROM audit_head")[0]
    store.append_many([event(i) for i in range(16, 26)])
    backend.sql("DELETE FROM audit_records WHERE seq > 15")
    backend.sql(
        "UPDATE audit_head SET seq = :s, hash = :h, signature = :g",
        s=old_head.seq,
        h=old_head.hash,
        g=old_head.signature,
    )
    check_bad(store, 16, "checkpoint names seq 20")


def test_head_rolled_back_under_existing_records(backend):
    store = filled(backend, 5)
    old_head = backend.sql("SELECT seq, hash, signature FROM audit_head")[0]
    store.append_many([event(6), event(7)])
    backend.sql(
        "UPDATE audit_head SET seq = :s, hash = :h, signature = :g",
        s=old_head.seq,
        h=old_head.hash,
        g=old_head.signature,
    )
    check_bad(store, 6, "head rolled back")
    with pytest.raises(AuditIntegrityError):
        store.append(event(8))


@pytest.mark.parametrize("k", [1, 7, 12])
def test_tail_rewritten_without_the_key(backend, k):
    store = filled(backend, 12, checkpoint_every=0)
    forged_key = secrets.token_bytes(32)
    prev = GENESIS if k == 1 else backend.row(k - 1).hash
    for seq in range(k, 13):
        rec = json.loads(backend.row(seq).body)
        rec["code"] = "print('nothing to see')"
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()
        mac = hmac.new(forged_key, digest.encode(), hashlib.sha256).hexdigest()
        backend.sql(
            "UPDATE audit_records SET body = :b, prev_hash = :p, hash = :h, mac = :m WHERE seq = :s",
            b=body,
            p=prev,
            h=digest,
            m=mac,
            s=seq,
        )
        prev = digest
    backend.sql("UPDATE audit_head SET hash = :h", h=prev)
    check_bad(store, k, "mac mismatch")


def test_index_column_changed(backend):
    store = filled(backend, 5)
    backend.sql("UPDATE audit_records SET \"user\" = 'mallory' WHERE seq = 3")
    check_bad(store, 3, "index columns")


def test_checkpoint_signature_altered(backend):
    store = filled(backend, 25, checkpoint_every=10)
    sig = backend.sql("SELECT signature FROM audit_checkpoints WHERE seq = 20")[0].signature
    forged = ("0" if sig[0] != "0" else "1") + sig[1:]
    backend.sql("UPDATE audit_checkpoints SET signature = :g WHERE seq = 20", g=forged)
    check_bad(store, 20, "checkpoint signature invalid")


def test_checkpoint_hash_altered(backend):
    store = filled(backend, 25, checkpoint_every=10)
    backend.sql("UPDATE audit_checkpoints SET hash = :h WHERE seq = 10", h="f" * 64)
    check_bad(store, 10, "checkpoint signature invalid")


def test_head_signature_altered(backend):
    store = filled(backend, 8)
    backend.sql("UPDATE audit_head SET signature = :g", g="0" * 64)
    check_bad(store, 9, "head signature invalid")
    with pytest.raises(AuditIntegrityError):
        store.append(event(9))


def test_wrong_key_on_reopen(backend):
    filled(backend, 5).close()
    other = backend.open(key=secrets.token_bytes(32))
    check_bad(other, 1, "mac mismatch")
    with pytest.raises(AuditIntegrityError):
        other.append(event(6))
    assert backend.open().verify().ok


def test_wrong_key_on_empty_store(backend):
    backend.open().close()
    check_bad(backend.open(key=secrets.token_bytes(32)), 1, "head signature invalid")


def test_pages_newest_first_and_counts_per_project_and_day_over_every_match(backend):
    store = backend.open()
    store.append_many([event(i) for i in range(1, 8)] + [{**event(8), "project": "cardio"},
                                                         {"kind": "login", "user": "bob"}])  # fmt: skip
    page = store.query(newest_first=True, limit=3)
    assert [r["seq"] for r in page] == [9, 8, 7]
    older = store.query(newest_first=True, limit=3, before_seq=page[-1]["seq"])
    assert [r["seq"] for r in older] == [6, 5, 4]
    assert [r["seq"] for r in store.query(kind="execute", before_seq=3)] == [1, 2]
    day = store.query(limit=1)[0]["time"][:10]
    assert store.counts_by_day() == {("brca", day): 7, ("cardio", day): 1, (None, day): 1}
    assert store.counts_by_day(project="brca", kind="execute") == {("brca", day): 7}
    assert store.counts_by_day(grep="CELL 3") == {("brca", day): 1}  # as query's grep: folded case
    assert store.counts_by_day(until="2000-01-01") == {}
