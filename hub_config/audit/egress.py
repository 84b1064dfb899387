"""What each workspace has sent to the browser: one budget per (user, project), over rolling windows.

Kept by the audit service in its database (not in the hash chain: these are counters, and the
``egress_alert`` and ``content_read`` records that matter are in the chain), so new kernels,
kernel restarts and server restarts start from the same total. Servers report the bytes they
sent; the service answers with the totals over the last hour and day and the limits that apply.

Buckets are minutes: a window's total is the sum of its buckets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

MB = 1_000_000
WINDOWS = {"hour": 3600, "day": 86400}

_metadata = sa.MetaData()
usage = sa.Table(
    "egress_usage",
    _metadata,
    sa.Column("user", sa.Text, primary_key=True),
    sa.Column("project", sa.Text, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Limits:
    hour: int = 25 * MB
    day: int = 100 * MB

    def as_dict(self) -> dict:
        return {"hour": self.hour, "day": self.day}


def limits_for(project: str, default: Limits, per_project: Mapping[str, Mapping]) -> Limits:
    """The project's limits: its own where the configuration names it, else the default."""
    own = per_project.get(project) or {}
    return Limits(hour=int(own.get("hour", default.hour)), day=int(own.get("day", default.day)))


class EgressLedger:
    """The counters, in the audit store's database (its own table)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        _metadata.create_all(engine)

    def add(self, user: str, project: str, nbytes: int, now: float | None = None) -> dict[str, int]:
        """Count ``nbytes`` more for (user, project); returns the totals per window, this one included."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        with self.engine.begin() as conn:
            if nbytes > 0:
                updated = conn.execute(
                    usage.update()
                    .where(usage.c.user == user, usage.c.project == project, usage.c.minute == minute)
                    .values(bytes=usage.c.bytes + nbytes)
                ).rowcount
                if not updated:
                    conn.execute(usage.insert().values(user=user, project=project, minute=minute, bytes=nbytes))
            return self._totals(conn, user, project, minute)

    def totals(self, user: str, project: str, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            return self._totals(conn, user, project, int(now // 60))

    @staticmethod
    def _totals(conn, user: str, project: str, minute: int) -> dict[str, int]:
        out = {}
        for name, seconds in WINDOWS.items():
            since = minute - seconds // 60 + 1
            out[name] = int(conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(usage.c.bytes), 0))
                .where(usage.c.user == user, usage.c.project == project, usage.c.minute >= since)
            ).scalar())  # fmt: skip
        return out

    def by_workspace(self, now: float | None = None) -> list[dict]:
        """Every (user, project) that sent anything in the last day, with its hour and day totals."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        with self.engine.connect() as conn:
            hour_since, day_since = minute - 59, minute - 1439
            rows = conn.execute(
                sa.select(
                    usage.c.user, usage.c.project,
                    sa.func.sum(sa.case((usage.c.minute >= hour_since, usage.c.bytes), else_=0)),
                    sa.func.sum(usage.c.bytes),
                )
                .where(usage.c.minute >= day_since)
                .group_by(usage.c.user, usage.c.project)
                .order_by(usage.c.project, usage.c.user)
            ).all()  # fmt: skip
            # old buckets are of no use to any window: drop them as we go
            conn.execute(usage.delete().where(usage.c.minute < day_since))
            conn.commit()
        return [{"user": u, "project": p, "hour": int(h), "day": int(d)} for u, p, h, d in rows]
