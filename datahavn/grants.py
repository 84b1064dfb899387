"""Projects and grants as stored in JupyterHub group properties.

A project is a JupyterHub group whose properties carry ``{"datahavn": {...}}``.
A grant is membership of that group; the record beside it says until when,
why and who granted it. Membership changed outside Datahavn (the JupyterHub
admin page) is honoured: a member without a record holds an open-ended grant,
a record without membership is a revoked grant.

Everything here is pure (no I/O): the hub's spawn check, the hub's running
check and the CLI's listing all call :func:`grant_status`, so there is one
grant rule.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

PROPERTIES_KEY = "datahavn"
PROJECT_KIND = "project"

ACTIVE = "active"
EXPIRED = "expired"
REVOKED = "revoked"
NONE = "none"


class InvalidGrant(ValueError):
    """A grant argument (such as an expiry) that cannot be used."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def isoformat(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_until(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Parse an expiry given by an administrator.

    ``YYYY-MM-DD`` means access through the end of that day (UTC); a full ISO
    8601 time with a zone (``2026-12-01T12:00:00Z``) means access until that
    instant. An expiry in the past is refused rather than silently creating a
    grant that never worked.
    """
    now = now or utcnow()
    text = (text or "").strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            until = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        else:
            until = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if until.tzinfo is None:
                raise InvalidGrant(f"expiry {text!r} has no time zone: add Z for UTC, or give a date")
    except ValueError as e:
        if isinstance(e, InvalidGrant):
            raise
        raise InvalidGrant(
            f"invalid expiry {text!r}: use YYYY-MM-DD or an ISO 8601 time such as 2026-12-01T12:00:00Z"
        ) from None
    if until <= now:
        shown = text if text == isoformat(until) else f"{text} (access until {isoformat(until)})"
        raise InvalidGrant(f"expiry {shown} is already in the past: give a later date")
    return until.astimezone(dt.UTC)


def project_record(properties: dict | None) -> dict | None:
    """The Datahavn record in a group's properties, or None if the group is not a project."""
    record = (properties or {}).get(PROPERTIES_KEY)
    if isinstance(record, dict) and record.get("kind") == PROJECT_KIND:
        return record
    return None


def new_project_properties(description: str, by: str, now: dt.datetime | None = None) -> dict:
    return {
        PROPERTIES_KEY: {
            "kind": PROJECT_KIND,
            "description": description,
            "created_by": by,
            "created_at": isoformat(now or utcnow()),
            "grants": {},
        }
    }


@dataclass(frozen=True)
class Grant:
    """What one user holds in one project, as the rule sees it."""

    project: str
    user: str
    status: str
    until: str | None = None
    reason: str = ""
    by: str = ""
    at: str = ""
    revoked_by: str = ""
    revoked_at: str = ""

    @property
    def current(self) -> bool:
        return self.status == ACTIVE


def grant_status(
    project: str,
    properties: dict | None,
    members: set[str] | list[str],
    user: str,
    now: dt.datetime | None = None,
) -> Grant:
    """The one grant rule: does ``user`` hold a current grant for ``project``?"""
    now = now or utcnow()
    record = project_record(properties)
    if record is None:
        return Grant(project, user, NONE, reason="not a Datahavn project")
    entry = (record.get("grants") or {}).get(user) or {}
    member = user in set(members)
    fields = dict(
        until=entry.get("until"),
        reason=entry.get("reason", ""),
        by=entry.get("by", ""),
        at=entry.get("at", ""),
        revoked_by=entry.get("revoked_by", ""),
        revoked_at=entry.get("revoked_at", ""),
    )
    if not member:
        if not entry:
            return Grant(project, user, NONE)
        if not fields["revoked_at"]:
            fields["revoked_by"] = "(removed outside datahavn)"
        return Grant(project, user, REVOKED, **fields)
    if not entry or entry.get("revoked_at"):
        # Added outside datahavn (the JupyterHub admin page): honour it, open-ended.
        return Grant(project, user, ACTIVE, reason="(added outside datahavn)")
    until = fields["until"]
    if until:
        try:
            expiry = dt.datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            # An unreadable expiry must not become an open-ended grant.
            return Grant(project, user, EXPIRED, **fields)
        if expiry <= now:
            return Grant(project, user, EXPIRED, **fields)
    return Grant(project, user, ACTIVE, **fields)


def project_grants(project: str, properties: dict | None, members, now=None) -> list[Grant]:
    """Every grant a project has ever recorded, plus members without a record."""
    record = project_record(properties) or {}
    users = set(members) | set((record.get("grants") or {}).keys())
    return [grant_status(project, properties, members, u, now) for u in sorted(users)]


def with_grant(properties: dict, user: str, until: dt.datetime | None, reason: str, by: str, now=None) -> dict:
    """Return new properties recording a grant (the caller adds the membership)."""
    props = _copy(properties)
    props[PROPERTIES_KEY].setdefault("grants", {})[user] = {
        "until": isoformat(until) if until else None,
        "reason": reason,
        "by": by,
        "at": isoformat(now or utcnow()),
    }
    return props


def with_revocation(properties: dict, user: str, by: str, now=None) -> dict:
    """Return new properties recording a revocation (the caller removes the membership)."""
    props = _copy(properties)
    entry = props[PROPERTIES_KEY].setdefault("grants", {}).setdefault(user, {})
    entry["revoked_by"] = by
    entry["revoked_at"] = isoformat(now or utcnow())
    return props


def _copy(properties: dict) -> dict:
    if project_record(properties) is None:
        raise InvalidGrant("not a Datahavn project")
    return copy.deepcopy(properties)
