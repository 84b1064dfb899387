"""A tamper-evident, append-only audit store (SQLite or PostgreSQL, through SQLAlchemy Core).

One writer (the audit service) appends events; each becomes a record with the next
``seq`` (1, 2, 3, ... no gaps). Appends are serialised by the database (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` on the head row), so racing
appends from threads or processes still produce one gap-free chain.

Format (version 1), enough to verify a store by hand
-----------------------------------------------------
Text is UTF-8; hashes and MACs are lower-case hex; ``KEY`` is the store's secret key.

``audit_records`` (one row per event; ``seq`` is the primary key):

- ``body``: the record as canonical JSON, stored verbatim::

      json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

  where ``record`` is the event plus ``"seq"`` (int) and ``"time"``, but without
  ``"prev_hash"`` and ``"hash"``. ``time`` is UTC, ISO 8601 with microseconds and a
  ``Z`` (``2025-01-31T09:15:02.123456Z``): the append time, or the event's own ``time``
  normalised to that form.
- ``prev_hash``: the ``hash`` of record ``seq - 1``; for seq 1, 64 zeros.
- ``hash`` = ``sha256(prev_hash + "\\n" + body)``.
- ``mac`` = ``HMAC-SHA256(KEY, hash)``: whoever rewrites records without the key can
  recompute a consistent hash chain but not these MACs.
- ``time``, ``kind``, ``user``, ``project``: copies of the body's keys (NULL when absent;
  a non-string value as its canonical JSON) so that queries can use indexes. They are
  not covered by the hash, so ``verify()`` checks them against the body.

``audit_checkpoints`` (``seq``, ``hash``, ``time``, ``signature``): written every
``checkpoint_every`` appends and by ``checkpoint()``;
``signature`` = ``HMAC-SHA256(KEY, f"{seq}:{hash}")`` where ``hash`` is record seq's hash.
``time`` is when the checkpoint was written and is not signed. Exporting checkpoints
off the machine also guards against a rollback of the whole database to an old copy,
which nothing inside the database can reveal.

``audit_head`` (one row, ``id`` = 1: ``seq``, ``hash``, ``signature``): the last record,
updated in the same transaction as every append;
``signature`` = ``HMAC-SHA256(KEY, f"head:{seq}:{hash}")``; an empty store has seq 0 and
64 zeros. The ``head:`` prefix keeps a checkpoint's signature from being copied into
the head to hide a tail truncated back to that checkpoint.

To verify: walk the records in seq order from seq 1, check each record's seq, prev_hash,
hash, mac and index columns, each checkpoint's signature and hash against the record at
its seq, then that the head is correctly signed and names the last record. ``verify()``
does exactly this and reports the first bad seq:

- a record that fails: its seq; a missing record: the missing seq;
- a checkpoint that fails: its seq;
- the end of the store not proven (tail truncated, head missing, head signature wrong):
  the seq after the last good record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = ["GENESIS", "AuditIntegrityError", "AuditStore", "VerifyResult", "open_store"]

GENESIS = "0" * 64
MIN_KEY_BYTES = 32
_INDEXED = ("kind", "user", "project")
_RESERVED = ("seq", "prev_hash", "hash")
# Only serialises CREATE TABLE between processes opening a new PostgreSQL store at once.
_PG_CREATE_LOCK = 0x6461746168617631  # "datahav1"

_metadata = sa.MetaData()
# INTEGER (not BIGINT) on SQLite, so that seq is the rowid and needs no second index.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

records = sa.Table(
    "audit_records",
    _metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(32), nullable=False, index=True),
    sa.Column("kind", sa.Text, index=True),
    sa.Column("user", sa.Text, index=True),
    sa.Column("project", sa.Text, index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
)
checkpoints = sa.Table(
    "audit_checkpoints",
    _metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("signature", sa.String(64), nullable=False),
)
head = sa.Table(
    "audit_head",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", _Seq, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(64), nullable=False),
)


class AuditIntegrityError(RuntimeError):
    """The store was tampered with (or opened with the wrong key): refusing to append.

    Appending would sign a new head over the damage and so hide it.
    """


@dataclass(frozen=True)
class VerifyResult:
    """``count``: records verified before the first problem (all of them when ok)."""

    ok: bool
    count: int
    first_bad_seq: int | None
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def canonical_json(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON, and other verifiers could not parse them.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def format_time(value: datetime | str) -> str:
    """UTC, microseconds, ``Z``: one fixed-width form, so that text order is time order."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        raise TypeError(f"time must be an ISO 8601 string or a datetime, not {type(value).__name__}")
    # A time without an offset is taken as UTC, as every time this store writes is.
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _index_value(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value)


def _make_engine(url: str, busy_timeout: float = 60) -> sa.Engine:
    u = sa.make_url(url)
    if u.get_backend_name() != "sqlite":
        # pre_ping: the audit service is long-lived and the server may restart under it.
        return sa.create_engine(u, pool_pre_ping=True)
    engine = sa.create_engine(u, connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # pysqlite would open transactions itself with a deferred BEGIN, which lets two
        # appenders read the same head; hand BEGIN over to the "begin" hook below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL: readers (verify, query) neither block the writer nor see half an append.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock before the head is read: appends are serialised.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("audit_write") else "BEGIN")

    return engine


class _Native:
    """A statement compiled once for the engine's dialect, run with the driver's own parameter style."""

    def __init__(self, engine: sa.Engine, stmt):
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup  # positional styles (SQLite's "?"); None for named ones
        self.defaults = compiled.params  # literals in the statement (``id == 1``)

    def params(self, values: Mapping):
        values = {**self.defaults, **values}
        return tuple(values[k] for k in self.order) if self.order is not None else values

    def run(self, conn: sa.Connection, values):
        if isinstance(values, list):
            return conn.exec_driver_sql(self.sql, [self.params(v) for v in values])
        return conn.exec_driver_sql(self.sql, self.params(values))


class AuditStore:
    """Append-only audit records in one hash chain, with MACs, checkpoints and a signed head."""

    def __init__(self, url: str, key: bytes, checkpoint_every: int = 100, busy_timeout: float = 60):
        if not isinstance(key, bytes | bytearray):
            raise TypeError("key must be bytes")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        if checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0 (0: only explicit checkpoints)")
        self._key = bytes(key)
        self._every = checkpoint_every
        self._engine = _make_engine(url, busy_timeout)
        self._pg = self._engine.dialect.name == "postgresql"
        # The append path's statements, compiled once: SQLAlchemy's per-call compile and
        # cache-key work cost more than the commit's fsync (benchmarks/audit_overhead.py).
        self._sql = {
            "head": _Native(
                self._engine,
                sa.select(head.c.seq, head.c.hash, head.c.signature).where(head.c.id == 1).with_for_update(),
            ),  # fmt: skip
            "records": _Native(self._engine, records.insert()),
            "checkpoints": _Native(self._engine, checkpoints.insert()),
            "move": _Native(
                self._engine,
                head.update()
                .where(head.c.id == 1)
                .values(seq=sa.bindparam("seq"), hash=sa.bindparam("hash"), signature=sa.bindparam("signature")),
            ),
        }
        try:
            self._create()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> sa.Engine:
        """The database (for tables beside the chain, such as the egress counters)."""
        return self._engine

    # -- signing

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def _checkpoint_signature(self, seq: int, digest: str) -> str:
        return self._mac(f"{seq}:{digest}")

    def _head_signature(self, seq: int, digest: str) -> str:
        return self._mac(f"head:{seq}:{digest}")

    # -- transactions

    @contextmanager
    def _tx(self, write: bool) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(audit_write=True)
            elif self._pg:
                # One snapshot for the whole read, so verify() sees records, checkpoints
                # and head as of the same moment while appends go on.
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    def _create(self) -> None:
        with self._tx(write=True) as conn:
            if self._pg:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_CREATE_LOCK)))
            _metadata.create_all(conn)
            if conn.execute(sa.select(head.c.id)).first() is not None:
                return
            # Records without a head mean the head was deleted: a fresh head would hide
            # that, so leave it to verify() to report and to append() to refuse.
            if conn.execute(sa.select(records.c.seq).limit(1)).first() is None:
                conn.execute(
                    head.insert().values(id=1, seq=0, hash=GENESIS, signature=self._head_signature(0, GENESIS))
                )

    def _locked_head(self, conn: sa.Connection) -> tuple[int, str]:
        """The head, locked until the end of the transaction, after checking its signature."""
        # FOR UPDATE serialises appends on PostgreSQL; SQLite ignores it (BEGIN IMMEDIATE does that).
        row = self._sql["head"].run(conn, {}).first()
        if row is None:
            raise AuditIntegrityError("audit store head row is missing")
        if not hmac.compare_digest(row.signature, self._head_signature(row.seq, row.hash)):
            raise AuditIntegrityError("audit store head signature is invalid (tampered with, or wrong key)")
        return row.seq, row.hash

    # -- writing

    def check_writable(self) -> None:
        """Raise unless an append could take the write lock now (within the busy timeout)."""
        with self._tx(write=True) as conn:
            self._locked_head(conn)

    def append(self, event: dict) -> dict:
        return self.append_many([event])[0]

    @contextmanager
    def write_transaction(self) -> Iterator[sa.Connection]:
        """A write transaction holding the store's lock, for tables beside the chain whose changes
        must be recorded with them: pass it to :meth:`append_many`, and both commit or neither."""
        with self._tx(write=True) as conn:
            yield conn

    def append_many(self, events: Iterable[dict], conn: sa.Connection | None = None) -> list[dict]:
        """Append all events in one transaction (``conn``'s, if given): all are stored, or none."""
        prepared = [self._prepare(e) for e in events]
        if not prepared:
            return []
        if conn is not None:
            return self._append(conn, prepared)
        with self._tx(write=True) as conn:
            return self._append(conn, prepared)

    def _append(self, conn: sa.Connection, prepared: list[dict]) -> list[dict]:
        bodies: list[str] = []
        hashes: list[tuple[str, str]] = []
        try:
            seq, prev = self._locked_head(conn)
            # Stamped under the lock, so that assigned times never go back as seq goes up.
            now = format_time(datetime.now(UTC))
            rows, cps = [], []
            for event in prepared:
                seq += 1
                record = {**event, "seq": seq}
                record.setdefault("time", now)
                body = canonical_json(record)
                digest = chain_hash(prev, body)
                rows.append(
                    {
                        "seq": seq,
                        "time": record["time"],
                        **{k: _index_value(record.get(k)) for k in _INDEXED},
                        "body": body,
                        "prev_hash": prev,
                        "hash": digest,
                        "mac": self._mac(digest),
                    }
                )
                if self._every and seq % self._every == 0:
                    cps.append(
                        {
                            "seq": seq,
                            "hash": digest,
                            "time": now,
                            "signature": self._checkpoint_signature(seq, digest),
                        }
                    )
                bodies.append(body)
                hashes.append((prev, digest))
                prev = digest
            self._sql["records"].run(conn, rows)
            if cps:
                self._sql["checkpoints"].run(conn, cps)
            self._sql["move"].run(conn, {"seq": seq, "hash": prev, "signature": self._head_signature(seq, prev)})
        except sa.exc.IntegrityError as e:
            # A correctly signed head whose next seq is taken: the head was rolled back.
            raise AuditIntegrityError(f"audit store head is behind its records: {e.orig}") from e
        # Parsed back from the body, so the caller gets exactly what query() will return.
        return [{**json.loads(b), "prev_hash": p, "hash": h} for b, (p, h) in zip(bodies, hashes, strict=True)]

    @staticmethod
    def _prepare(event: Mapping) -> dict:
        """Check and copy an event before taking the lock (the caller's dict is not changed)."""
        if not isinstance(event, Mapping):
            raise TypeError(f"an audit event must be a dict, not {type(event).__name__}")
        clash = [k for k in _RESERVED if k in event]
        if clash:
            raise ValueError(f"audit event may not set {', '.join(clash)}: the store assigns them")
        event = dict(event)
        if event.get("time") is not None:
            event["time"] = format_time(event["time"])
        else:
            event.pop("time", None)
        body = canonical_json(event)  # fails here, not under the lock, if not JSON
        try:
            body.encode()
        except UnicodeEncodeError as e:
            # Lone surrogates: neither hashable as UTF-8 nor storable in PostgreSQL.
            raise ValueError(f"audit event is not valid unicode: {e}") from None
        return event

    def checkpoint(self) -> dict:
        """Sign the current head into ``audit_checkpoints`` (idempotent); returns the row."""
        with self._tx(write=True) as conn:
            seq, digest = self._locked_head(conn)
            if seq == 0:
                raise ValueError("the audit store is empty: nothing to checkpoint")
            row = conn.execute(sa.select(checkpoints).where(checkpoints.c.seq == seq)).first()
            if row is not None:
                return dict(row._mapping)
            cp = {
                "seq": seq,
                "hash": digest,
                "time": format_time(datetime.now(UTC)),
                "signature": self._checkpoint_signature(seq, digest),
            }
            conn.execute(checkpoints.insert().values(**cp))
            return cp

    # -- reading

    def last_seq(self) -> int:
        """The seq of the last append (the head's), 0 when empty."""
        with self._tx(write=False) as conn:
            return conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar() or 0

    def query(
        self,
        *,
        user: str | None = None,
        project: str | None = None,
        kind: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        grep: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        before_seq: int | None = None,
        newest_first: bool = False,
    ) -> list[dict]:
        """Records in seq order (``newest_first``: the reverse). ``since`` is inclusive and ``until``
        exclusive (times in UTC; a time without an offset is UTC). ``grep``: case-insensitive substring
        of the body. ``after_seq`` and ``before_seq`` bound the seqs (exclusive): pages of the trail."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        stmt = sa.select(records.c.body, records.c.prev_hash, records.c.hash).where(
            self._where(user, project, kind, since, until, after_seq, before_seq)
        )
        stmt = stmt.order_by(records.c.seq.desc() if newest_first else records.c.seq)
        if grep is None:
            if limit is not None:
                stmt = stmt.limit(limit)
            with self._tx(write=False) as conn:
                return [_as_record(r) for r in conn.execute(stmt)]
        # Matched in Python, not with (I)LIKE: SQLite folds only ASCII case and the two
        # databases fold differently; casefold() gives one answer on both.
        needle = grep.casefold()
        found: list[dict] = []
        with self._tx(write=False) as conn:
            result = conn.execute(stmt.execution_options(yield_per=256))
            try:
                for row in result:
                    if needle in row.body.casefold():
                        found.append(_as_record(row))
                        if limit is not None and len(found) >= limit:
                            break
            finally:
                result.close()
        return found

    @staticmethod
    def _where(user=None, project=None, kind=None, since=None, until=None, after_seq: int = 0,
               before_seq: int | None = None):  # fmt: skip
        clauses = [records.c.seq > after_seq]
        if before_seq is not None:
            clauses.append(records.c.seq < before_seq)
        for name, value in (("user", user), ("project", project), ("kind", kind)):
            if value is not None:
                clauses.append(records.c[name] == value)
        if since is not None:
            clauses.append(records.c.time >= format_time(since))
        if until is not None:
            clauses.append(records.c.time < format_time(until))
        return sa.and_(*clauses)

    def counts_by_day(self, *, user=None, project=None, kind=None, since=None, until=None,
                      grep: str | None = None) -> dict[tuple[str | None, str], int]:  # fmt: skip
        """(project, UTC day) -> number of records, over every record the filters select (in SQL;
        with ``grep``, the bodies are matched as :meth:`query` does)."""
        where = self._where(user, project, kind, since, until)
        day = sa.func.substr(records.c.time, 1, 10)
        with self._tx(write=False) as conn:
            if grep is None:
                stmt = sa.select(records.c.project, day, sa.func.count()).where(where).group_by(records.c.project, day)
                return {(p, d): n for p, d, n in conn.execute(stmt)}
            needle, out = grep.casefold(), {}
            stmt = sa.select(records.c.project, day, records.c.body).where(where)
            result = conn.execute(stmt.execution_options(yield_per=256))
            try:
                for p, d, body in result:
                    if needle in body.casefold():
                        out[p, d] = out.get((p, d), 0) + 1
            finally:
                result.close()
            return out

    def verify(self) -> VerifyResult:
        """Walk the whole store (see the module docstring) and report the first problem."""
        with self._tx(write=False) as conn:
            head_row = conn.execute(sa.select(head.c.seq, head.c.hash, head.c.signature).where(head.c.id == 1)).first()
            cps = {r.seq: r for r in conn.execute(sa.select(checkpoints))}
            # Streamed: bodies can be megabytes each.
            result = conn.execute(sa.select(records).order_by(records.c.seq).execution_options(yield_per=64))
            try:
                return self._walk(result, cps, head_row)
            finally:
                result.close()

    def _walk(self, rows: Iterable, cps: dict, head_row) -> VerifyResult:
        count = 0
        prev = GENESIS

        def bad(seq: int, reason: str) -> VerifyResult:
            return VerifyResult(False, count, seq, reason)

        if cps and min(cps) < 1:
            return bad(min(cps), f"checkpoint at invalid seq {min(cps)}")
        for row in rows:
            seq = row.seq
            expected = count + 1
            if seq > expected:
                return bad(expected, f"missing record {expected} (next stored record is {seq})")
            if seq < expected:
                return bad(seq, f"record at invalid seq {seq}")
            if row.prev_hash != prev:
                return bad(seq, "prev_hash mismatch: the chain is broken before this record")
            digest = chain_hash(prev, row.body)
            if digest != row.hash:
                return bad(seq, "hash mismatch: the body does not match its hash")
            if not hmac.compare_digest(row.mac, self._mac(digest)):
                return bad(seq, "mac mismatch: the record was not written with this key")
            problem = _body_problem(row)
            if problem:
                return bad(seq, problem)
            cp = cps.get(seq)
            if cp is not None:
                if not hmac.compare_digest(cp.signature, self._checkpoint_signature(cp.seq, cp.hash)):
                    return bad(seq, "checkpoint signature invalid")
                if cp.hash != digest:
                    return bad(seq, "checkpoint hash does not match the record")
            prev = digest
            count += 1
        last = count
        beyond = [s for s in cps if s > last]
        if beyond:
            return bad(last + 1, f"missing records: a checkpoint names seq {min(beyond)}, the last record is {last}")
        if head_row is None:
            return bad(last + 1, "head row missing: the end of the store is not proven")
        if not hmac.compare_digest(head_row.signature, self._head_signature(head_row.seq, head_row.hash)):
            return bad(last + 1, "head signature invalid: the end of the store is not proven")
        if head_row.seq > last:
            return bad(last + 1, f"missing records {last + 1}..{head_row.seq}: the signed head is at {head_row.seq}")
        if head_row.seq < last:
            # Those records verified, but only the signed head proves where the store ends.
            count = max(head_row.seq, 0)
            return bad(head_row.seq + 1, f"records after the signed head (at {head_row.seq}): head rolled back")
        if head_row.hash != prev:
            return bad(last, "head hash does not match the last record")
        return VerifyResult(True, count, None, f"ok: {count} records")

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_record(row) -> dict:
    return {**json.loads(row.body), "prev_hash": row.prev_hash, "hash": row.hash}


def _body_problem(row) -> str | None:
    """The index columns and seq must say what the (hashed) body says."""
    try:
        body = json.loads(row.body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict) or body.get("seq") != row.seq:
        return "body seq does not match the record's seq"
    if body.get("time") != row.time or any(_index_value(body.get(k)) != row._mapping[k] for k in _INDEXED):
        return "index columns (time, kind, user, project) disagree with the body"
    return None


def open_store(layout, url: str = "", busy_timeout: float = 60) -> AuditStore:
    """The store of a state dir (a ``datahavn.paths.Layout``), with the key only root can read."""
    key = bytes.fromhex(layout.audit_key.read_text().strip())
    return AuditStore(url or f"sqlite:///{layout.audit_db}", key, busy_timeout=busy_timeout)
