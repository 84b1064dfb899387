"""The airlock's requests: tables in the audit store's database, snapshots in a root-only folder.

Every change of a request commits in one transaction with its audit records
(:meth:`AuditStore.write_transaction`): a step the audit trail cannot record is not taken.
A snapshot is written once, into ``<airlock>/<id>/<n>`` (files 0400, folders 0500, root's), and
its SHA-256 is kept in the database; a download re-reads and re-hashes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from ..audit.store import AuditStore

_metadata = sa.MetaData()
requests_t = sa.Table(
    "airlock_requests",
    _metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user", sa.Text, nullable=False, index=True),
    sa.Column("project", sa.Text, nullable=False, index=True),
    sa.Column("state", sa.Text, nullable=False, index=True),
    sa.Column("justification", sa.Text, nullable=False),
    sa.Column("output_type", sa.Text, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),  # of the files' hashes: a double submission shows here
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("updated", sa.Text, nullable=False),
)
files_t = sa.Table(
    "airlock_files",
    _metadata,
    sa.Column("request_id", sa.Text, sa.ForeignKey("airlock_requests.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("checks", sa.Text, nullable=False),  # JSON list of Check.as_dict()
)
reviews_t = sa.Table(
    "airlock_reviews",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, sa.ForeignKey("airlock_requests.id"), nullable=False, index=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("time", sa.Text, nullable=False),
)
OPEN_STATES = ("requested", "under_review", "approved")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def files_digest(hashes: Iterable[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{p}\0{h}" for p, h in sorted(hashes)).encode()).hexdigest()


class SnapshotMismatch(RuntimeError):
    pass


class RequestStore:
    def __init__(self, audit: AuditStore, folder: Path):
        self.audit = audit
        self.engine = audit.engine
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        (self.folder / ".staging").mkdir(mode=0o700, exist_ok=True)
        _metadata.create_all(self.engine)

    # -- reading

    def get(self, request_id: str, conn=None, lock: bool = False) -> dict | None:
        q = sa.select(requests_t).where(requests_t.c.id == request_id)
        if lock:
            q = q.with_for_update()
        with self._conn(conn) as c:
            row = c.execute(q).mappings().first()
            if row is None:
                return None
            return self._full(c, dict(row))

    def list(self, user: str | None = None, project: str | None = None, state: str | None = None) -> list[dict]:
        q = sa.select(requests_t).order_by(requests_t.c.created.desc())
        for col, value in (("user", user), ("project", project), ("state", state)):
            if value is not None:
                q = q.where(requests_t.c[col] == value)
        with self.engine.connect() as c:
            return [self._full(c, dict(r)) for r in c.execute(q).mappings()]

    def open_duplicate(self, conn, user: str, project: str, digest: str) -> str | None:
        q = sa.select(requests_t.c.id).where(
            requests_t.c.user == user, requests_t.c.project == project,
            requests_t.c.digest == digest, requests_t.c.state.in_(OPEN_STATES),
        )  # fmt: skip
        return conn.execute(q).scalar()

    @staticmethod
    def _full(c, row: dict) -> dict:
        files = c.execute(sa.select(files_t).where(files_t.c.request_id == row["id"]).order_by(files_t.c.n))
        row["files"] = [{**dict(f), "checks": json.loads(f["checks"])} for f in files.mappings()]
        for f in row["files"]:
            f.pop("request_id")
        reviews = c.execute(sa.select(reviews_t).where(reviews_t.c.request_id == row["id"]).order_by(reviews_t.c.id))
        row["reviews"] = [{k: r[k] for k in ("actor", "action", "comment", "time")} for r in reviews.mappings()]
        row["approvals"] = sorted({r["actor"] for r in row["reviews"] if r["action"] == "approve"})
        row.pop("digest", None)
        return row

    @contextmanager
    def _conn(self, conn):
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as c:
                yield c

    # -- writing

    def stage(self, request_id: str, blobs: list[bytes]) -> Path:
        """The snapshot's files, written to a staging folder (moved into place by :meth:`create`)."""
        staging = self.folder / ".staging" / request_id
        staging.mkdir(mode=0o700)
        for n, data in enumerate(blobs):
            fd = os.open(staging / str(n), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return staging

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def create(self, conn, row: dict, files: list[dict], staging: Path) -> None:
        """Insert the request (in the caller's transaction) and move its snapshot into place."""
        conn.execute(requests_t.insert().values(**row))
        conn.execute(files_t.insert(), [{**f, "request_id": row["id"], "checks": json.dumps(f["checks"])}
                                        for f in files])  # fmt: skip
        final = self.folder / row["id"]
        os.rename(staging, final)
        os.chmod(final, 0o500)

    def move(self, conn, request_id: str, state: str, actor: str, action: str, comment: str) -> None:
        t = now()
        conn.execute(requests_t.update().where(requests_t.c.id == request_id).values(state=state, updated=t))
        conn.execute(reviews_t.insert().values(request_id=request_id, actor=actor, action=action,
                                               comment=comment, time=t))  # fmt: skip

    def read_snapshot(self, request: dict, n: int) -> bytes:
        """The snapshot's file ``n``, re-hashed: :class:`SnapshotMismatch` if it is not what was requested."""
        f = request["files"][n]
        try:
            data = (self.folder / request["id"] / str(n)).read_bytes()
        except OSError as e:
            raise SnapshotMismatch(f"snapshot file {f['path']} cannot be read ({type(e).__name__})") from None
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise SnapshotMismatch(f"snapshot file {f['path']} does not match its SHA-256 {f['sha256'][:12]}…")
        return data
