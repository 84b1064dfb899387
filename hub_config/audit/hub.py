"""Hub events into the audit store: logins, spawns, stops, grants, users, projects, denials, every API change.

JupyterHub emits events only for server start and stop, so the hub's actions are read where every
one of them passes: the request log (``log_function``), which sees the acting identity, the route
and the status of every request, whether it came from the CLI, a script or the admin page.

- Every successful mutating ``/hub/api`` request is a ``hub_api`` record (actor, method, path, the
  fields it sent, and for group properties the grants it changed); the specific kinds (``grant``,
  ``revoke``, ``user_add``, ``project_create``, ``stop``) come on top, grants with their expiry and
  reason.
- **Fails closed**: before a mutating API request runs, the store must take a write
  (:func:`guard_mutation`, installed on JupyterHub's ``APIHandler.prepare``); if it cannot, the
  request fails with 503 and changes nothing. A record that fails after the response (rare: the
  store failed in between) is an alert in the hub's log, and the next record carries the count of
  records missed (``missed_before``).
- The spawner records spawns, refusals and stops itself (it knows why).

The hub writes to the store directly: it is the hub side, as the audit service is, and the store
serialises the two writers into one sequence.
"""

from __future__ import annotations

import copy
import json
import logging
import re

from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.log import log_request
from tornado import web

from datahavn.grants import project_record

from .store import AuditStore

log = logging.getLogger("datahavn.audit")

_store: AuditStore | None = None
_missed = 0

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
API_USER = re.compile(r"^/hub/api/users/([^/]+)$")
API_GROUP = re.compile(r"^/hub/api/groups/([^/]+)$")
API_PROPERTIES = re.compile(r"^/hub/api/groups/([^/]+)/properties$")
API_MEMBERS = re.compile(r"^/hub/api/groups/([^/]+)/users$")
API_SERVER = re.compile(r"^/hub/api/users/([^/]+)/servers/([^/]+)$")
API_USER_ANY = re.compile(r"^/hub/api/users/([^/]+)")
API_GROUP_ANY = re.compile(r"^/hub/api/groups/([^/]+)")
#: our own grant endpoint (hub_config/grants_api.py) records its grants and revocations itself
API_GRANT = re.compile(r"^/hub/api/datahavn/projects/([^/]+)/grants/([^/]+)$")
#: fields whose values never go into a record
SECRET_FIELDS = {"token", "api_token", "password"}


class AuditUnavailable(web.HTTPError):
    def __init__(self, why: str):
        super().__init__(503, f"Not done: the audit trail cannot record it ({why}). Nothing was changed.")


def configure(store: AuditStore) -> None:
    global _store
    _store = store


def record(kind: str, strict: bool = False, **fields) -> None:
    """Append a hub event. ``strict``: raise if it cannot be stored; else the failure is an alert, carried on."""
    global _missed
    if _store is None:
        return
    event = {"schema": 1, "kind": kind, **{k: v for k, v in fields.items() if v is not None}}
    if _missed:
        event["missed_before"] = _missed
    try:
        _store.append(event)
    except Exception as e:
        if strict:
            raise AuditUnavailable(type(e).__name__) from e
        _missed += 1
        log.error("AUDIT ALERT: %s event not recorded (%d missed so far): %s", kind, _missed, event, exc_info=True)
        return
    _missed = 0


def guard_mutation(handler) -> None:
    """Before a mutating API request: the store must be writable (else 503), and what it changes is noted."""
    if _store is None or handler.request.method not in MUTATING:
        return
    try:
        _store.check_writable()
    except Exception as e:
        log.error("AUDIT: refusing %s %s: the store is not writable (%s)", handler.request.method,
                  handler.request.path, e)  # fmt: skip
        raise AuditUnavailable(type(e).__name__) from None
    if m := API_PROPERTIES.match(handler.request.path):
        from jupyterhub import orm

        group = handler.db.query(orm.Group).filter_by(name=m.group(1)).one_or_none()
        handler._datahavn_before = copy.deepcopy(group.properties) if group is not None else None


def install_fail_closed() -> None:
    """Run :func:`guard_mutation` in every JupyterHub API handler, after authentication."""
    from jupyterhub.apihandlers.base import APIHandler

    if getattr(APIHandler, "_datahavn_guarded", False):
        return
    prepare = APIHandler.prepare

    async def guarded_prepare(self):
        await prepare(self)
        if not self._finished:
            guard_mutation(self)

    APIHandler.prepare = guarded_prepare
    APIHandler._datahavn_guarded = True


def _actor(handler) -> str | None:
    try:
        who = handler.current_user
    except Exception:
        return None
    return getattr(who, "name", None)


def _body(handler) -> dict:
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _grant_of(handler, project: str, user: str) -> dict:
    """The grant record of ``user`` in ``project`` as it is now (until, reason, by)."""
    from jupyterhub import orm

    group = handler.db.query(orm.Group).filter_by(name=project).one_or_none()
    record = project_record(group.properties if group is not None else None) or {}
    entry = (record.get("grants") or {}).get(user) or {}
    return {k: entry.get(k) for k in ("until", "reason", "by") if entry.get(k) is not None}


def grant_changes(before: dict | None, after: dict | None) -> dict:
    """user -> {field: [old, new]} for every grant record a properties write changed."""
    old = (project_record(before) or {}).get("grants") or {}
    new = (project_record(after) or {}).get("grants") or {}
    out = {}
    for user in sorted(set(old) | set(new)):
        a, b = old.get(user) or {}, new.get(user) or {}
        diff = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        if diff:
            out[user] = diff
    return out


def events_for(handler) -> list[tuple[str, dict]]:
    """The audit events one finished hub request stands for (pure but for reading the handler)."""
    req, status = handler.request, handler.get_status()
    path, method = req.path, req.method
    actor = _actor(handler)
    out: list[tuple[str, dict]] = []
    if path.endswith("/hub/login") and method == "POST":
        user = handler.get_body_argument("username", default="") or None
        if status in (301, 302, 303):
            out.append(("login", {"user": actor or user, "actor": actor or user}))
        else:
            out.append(("login_failed", {"user": user, "outcome": f"HTTP {status}"}))
    elif path.endswith("/hub/logout"):
        pass  # recorded by AuditedLogoutHandler, which still knows who it was
    elif status in (401, 403) and "/hub/" in path:
        out.append(("denied", {"user": actor, "actor": actor, "detail": f"{method} {path} -> {status}"}))
    elif (
        200 <= status < 300 and path.startswith("/hub/api/") and method in MUTATING and not path.endswith("/activity")
    ):  # servers' activity pings are the hub's bookkeeping, not anyone's action
        body = _body(handler)
        out += _specific(handler, method, path, body, actor)
        detail = {"method": method, "path": path, "status": status,
                  "fields": {k: ("(secret)" if k in SECRET_FIELDS else v) for k, v in body.items()
                             if not isinstance(v, dict | list) or k in ("users", "usernames", "scopes")}}  # fmt: skip
        if API_PROPERTIES.match(path):
            detail["grants_changed"] = grant_changes(getattr(handler, "_datahavn_before", None), body)
            detail["fields"] = sorted(body)
        target_user = m.group(1) if (m := API_USER_ANY.match(path)) else None
        target_group = m.group(1) if (m := API_GROUP_ANY.match(path)) else None
        if m := API_GRANT.match(path):
            target_group, target_user = m.groups()
        out.append(("hub_api", {"user": target_user, "project": target_group, "actor": actor, "outcome": "ok",
                                "detail": detail}))  # fmt: skip
    return out


def _specific(handler, method: str, path: str, body: dict, actor) -> list[tuple[str, dict]]:
    out = []
    if method == "POST" and (m := API_USER.match(path)):
        out.append(("user_add", {"user": m.group(1), "actor": actor}))
    elif method == "POST" and path == "/hub/api/users":
        out += [("user_add", {"user": u, "actor": actor}) for u in body.get("usernames", [])]
    elif method == "POST" and (m := API_GROUP.match(path)):
        out.append(("project_create", {"project": m.group(1), "actor": actor}))
    elif method == "DELETE" and (m := API_SERVER.match(path)):
        user, project = m.groups()
        out.append(("stop", {"user": user, "project": project, "server": f"{user}/{project}",
                             "actor": actor, "outcome": "requested"}))  # fmt: skip
    elif method in ("POST", "DELETE") and (m := API_MEMBERS.match(path)):
        project = m.group(1)
        for user in body.get("users", []):
            if method == "POST":  # membership from the admin page: with the record it has, if any
                out.append(("grant", {"user": user, "project": project, "actor": actor,
                                      "detail": _grant_of(handler, project, user) or None}))  # fmt: skip
            else:
                out.append(("revoke", {"user": user, "project": project, "actor": actor}))
    return out


def log_function(handler) -> None:
    """``tornado_settings["log_function"]``: JupyterHub's request log, plus the audit events."""
    log_request(handler)
    try:
        events = events_for(handler)
    except Exception:
        log.exception("AUDIT ALERT: could not read request %s", handler.request.path)
        return
    for kind, fields in events:
        record(kind, **fields)


class AuditedLogoutHandler(LogoutHandler):
    """JupyterHub's logout, recording who logged out (the name is gone once cookies are cleared)."""

    def _backend_logout_cleanup(self, name):
        record("logout", user=name, actor=name)
        super()._backend_logout_cleanup(name)


def with_audited_logout(authenticator_class):
    """The authenticator class, serving /logout with :class:`AuditedLogoutHandler`."""

    class Audited(authenticator_class):
        def get_handlers(self, app):
            # the authenticator's handlers come before JupyterHub's own: this one wins
            return [(r"/logout", AuditedLogoutHandler), *super().get_handlers(app)]

    Audited.__name__ = Audited.__qualname__ = f"Audited{authenticator_class.__name__}"
    return Audited
