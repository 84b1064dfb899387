"""Hub events into the audit store: logins, spawns, stops, grants, users, projects, denials.

JupyterHub emits events only for server start and stop, so the hub's actions
are read where every one of them passes: the request log (``log_function``),
which sees the acting identity, the route and the status of every request,
whether it came from the CLI, a script or the JupyterHub admin page. The
spawner records spawns, refusals and stops itself (it knows why).

The hub writes to the store directly: it is the hub side, as the audit
service is, and the store serialises the two writers into one sequence.
"""

from __future__ import annotations

import json
import logging
import re

from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.log import log_request

from .store import AuditStore

log = logging.getLogger("datahavn.audit")

_store: AuditStore | None = None

API_USER = re.compile(r"^/hub/api/users/([^/]+)$")
API_GROUP = re.compile(r"^/hub/api/groups/([^/]+)$")
API_MEMBERS = re.compile(r"^/hub/api/groups/([^/]+)/users$")
API_SERVER = re.compile(r"^/hub/api/users/([^/]+)/servers/([^/]+)$")


def configure(store: AuditStore) -> None:
    global _store
    _store = store


def record(kind: str, **fields) -> None:
    """Append a hub event; a failure is logged loudly (the hub keeps serving logins and stops)."""
    if _store is None:
        return
    event = {"schema": 1, "kind": kind, **{k: v for k, v in fields.items() if v is not None}}
    try:
        _store.append(event)
    except Exception:
        log.exception("AUDIT: could not record %s event %s", kind, event)


def _actor(handler) -> str | None:
    try:
        who = handler.current_user
    except Exception:
        return None
    return getattr(who, "name", None)


def _body(handler) -> dict:
    try:
        return json.loads(handler.request.body or b"{}")
    except ValueError:
        return {}


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
    elif 200 <= status < 300 and path.startswith("/hub/api/"):
        body = _body(handler)
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
            kind = "grant" if method == "POST" else "revoke"
            out += [("grant" if kind == "grant" else "revoke", {"user": u, "project": m.group(1), "actor": actor})
                    for u in body.get("users", [])]  # fmt: skip
    return out


def log_function(handler) -> None:
    """``tornado_settings["log_function"]``: JupyterHub's request log, plus the audit events."""
    log_request(handler)
    try:
        events = events_for(handler)
    except Exception:
        log.exception("AUDIT: could not read request %s", handler.request.path)
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
