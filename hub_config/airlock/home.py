"""The hub's home page side of the airlock: a person's export requests and their states (read only)."""

from __future__ import annotations

import sqlalchemy as sa

from .page import LABELS
from .store import files_t, requests_t

RECENT = 20


def exports_of(engine: sa.Engine, user: str) -> list[dict]:
    """``user``'s latest export requests, newest first: id, project, state, its label, file names."""
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.select(requests_t.c.id, requests_t.c.project, requests_t.c.state, requests_t.c.created)
                .where(requests_t.c.user == user)
                .order_by(requests_t.c.created.desc())
                .limit(RECENT)
            ).all()  # fmt: skip
            names = {}
            if rows:
                ids = [r.id for r in rows]
                for rid, path in c.execute(sa.select(files_t.c.request_id, files_t.c.path)
                                           .where(files_t.c.request_id.in_(ids))):  # fmt: skip
                    names.setdefault(rid, []).append(path)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no airlock tables yet: no requests
        return []
    return [{"id": r.id, "project": r.project, "state": r.state, "label": LABELS.get(r.state, r.state),
             "files": names.get(r.id, []), "created": r.created} for r in rows]  # fmt: skip
