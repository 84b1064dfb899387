"""datahavn-audit: the JupyterHub-managed service that owns the audit store.

- ``POST api/events``: a single-user server records an event with its own hub
  token. Who and where (user, project, server) come from the token, as the hub
  reports it, never from the payload; the reply carries the event's ``seq``,
  and a server forwards code to its kernel only after that reply.
- ``GET api/events`` (query, ``format=json|jsonl|csv``) and ``GET api/verify``:
  for tokens holding the ``custom:datahavn:audit`` scope (administrators, auditors).
- ``GET /`` : a browsing page for the same people (hub OAuth), with a per-day
  activity chart per project.

Run by the hub (see ``jupyterhub_config.py``); an ``Application`` around plain
handlers, as jupyterhub-idle-culler is.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import os
from pathlib import Path

from jupyterhub.services.auth import HubAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web, websocket
from traitlets import Dict, Float, Integer, Unicode, default
from traitlets.config import Application

from datahavn.paths import Layout
from datahavn.tokens import AUDIT_SCOPE, has_scope
from datahavn.tokens import server_identity as token_identity

from ..services import serve, token_model
from ..settings import env_float, env_int
from . import egress
from .intake import Refused, ServerIntake
from .page import FilterError, check_filters, render_page
from .store import AuditStore, open_store

EVENTS_PER_FRAME = 200
QUERY_ARGS = ("user", "project", "kind", "since", "until", "grep")
CSV_FIELDS = (
    "seq", "time", "kind", "user", "actor", "project", "server", "kernel_id", "session", "msg_id",
    "msg_type", "path", "code_sha256", "code", "status", "duration_ms", "output_bytes", "outcome", "detail", "hash",
)  # fmt: skip


class BaseHandler(web.RequestHandler):
    @property
    def store(self) -> AuditStore:
        return self.settings["store"]

    @property
    def hub_auth(self) -> HubAuth:
        return self.settings["hub_auth"]

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def token_model(self) -> dict:
        return await token_model(self, self.hub_auth)


def server_identity(model: dict) -> tuple[str, str]:
    """(user, project) of a single-user server's own token, as the hub reports it."""
    identity = token_identity(model)
    if identity is None:
        raise web.HTTPError(403, "only a single-user server's own token can record events")
    return identity


class EventsHandler(BaseHandler):
    async def post(self):
        identity = server_identity(await self.token_model())
        try:
            payload = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "invalid event: not JSON") from None
        try:
            self.finish(await self.settings["intake"].record(identity, payload, len(self.request.body or b"")))
        except Refused as e:
            raise web.HTTPError(429 if "a second" in str(e) else 400, str(e)) from None

    async def get(self):
        model = await self.token_model()
        if not has_scope(model, AUDIT_SCOPE):
            raise web.HTTPError(403, "reading the audit trail needs the auditor role")
        args = {k: self.get_argument(k, None) for k in QUERY_ARGS}
        after = int(self.get_argument("after_seq", "0") or 0)
        limit = self.get_argument("limit", None)
        rows = await ioloop.IOLoop.current().run_in_executor(
            None, lambda: self.store.query(**args, after_seq=after, limit=int(limit) if limit else None)
        )
        fmt = self.get_argument("format", "json")
        if fmt == "json":
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(rows))
        elif fmt == "jsonl":
            self.set_header("Content-Type", "application/x-ndjson")
            self.finish("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        elif fmt == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()})
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(buf.getvalue())
        else:
            raise web.HTTPError(400, f"unknown format {fmt!r}: use json, jsonl or csv")


class EventSocketHandler(BaseHandler, websocket.WebSocketHandler):
    """One websocket per single-user server: events in, acknowledgements out.

    The server's token is checked once, at the upgrade; then each frame
    ``{"id": n, "event": {...}}`` is answered ``{"id": n, "seq": s}`` or
    ``{"id": n, "error": "..."}``; ``{"id": n, "events": [...]}`` (events nothing waits on, such
    as replies, all or none) ``{"id": n, "seqs": [...]}``; and ``{"id": n, "egress": bytes}`` (what the server
    sent to the browser) ``{"id": n, "hour": ..., "day": ..., "limits": {...}}``. Answers
    come as each is ready (events are appended in batches), not necessarily in order.
    """

    async def get(self, *args, **kwargs):
        self.identity = server_identity(await self.token_model())
        return await super().get(*args, **kwargs)

    def open(self):
        self.set_nodelay(True)

    def on_message(self, message):
        try:
            frame = json.loads(message)
            ident = frame["id"]
        except (ValueError, KeyError, TypeError):
            self.close(1003, "frames are JSON objects with an id")
            return
        # not awaited: the next frame is read while this one is being stored
        asyncio.ensure_future(self._answer(ident, frame, len(message)))

    async def _answer(self, ident, frame: dict, size: int) -> None:
        try:
            if "egress" in frame:
                reply = await self._egress(frame["egress"])
            elif "events" in frame:
                events = frame["events"]
                if not isinstance(events, list) or not 0 < len(events) <= EVENTS_PER_FRAME:
                    raise Refused(f"events is a list of 1 to {EVENTS_PER_FRAME} events")
                stored = await self.settings["intake"].record_many(self.identity, events, size)
                reply = {"seqs": [r["seq"] for r in stored]}
            else:
                reply = await self.settings["intake"].record(self.identity, frame.get("event"), size)
        except Refused as e:
            reply = {"error": str(e)}
        except Exception as e:  # the store refused: the server must refuse the code
            reply = {"error": f"not recorded: {type(e).__name__}"}
        try:
            self.write_message(json.dumps({"id": ident, **reply}))
        except websocket.WebSocketClosedError:
            pass

    async def _egress(self, nbytes) -> dict:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 0 <= nbytes <= 1 << 40:
            raise Refused("egress is a whole number of bytes")
        user, project = self.identity
        totals = await ioloop.IOLoop.current().run_in_executor(None, self.settings["ledger"].add, user, project, nbytes)
        return {**totals, "limits": self.settings["egress_limits"](project).as_dict()}


class EgressHandler(BaseHandler):
    """``GET api/egress``: what each workspace sent to the browser in the last hour and day, and its limits."""

    async def get(self):
        model = await self.token_model()
        if not has_scope(model, AUDIT_SCOPE):
            raise web.HTTPError(403, "reading the egress budgets needs the auditor role")
        rows = await ioloop.IOLoop.current().run_in_executor(None, self.settings["ledger"].by_workspace)
        for row in rows:
            row["limits"] = self.settings["egress_limits"](row["project"]).as_dict()
        self.finish(json.dumps(rows))


class VerifyHandler(BaseHandler):
    async def get(self):
        model = await self.token_model()
        if not has_scope(model, AUDIT_SCOPE):
            raise web.HTTPError(403, "verifying the audit trail needs the auditor role")
        result = await ioloop.IOLoop.current().run_in_executor(None, self.store.verify)
        self.finish({"ok": result.ok, "count": result.count, "first_bad_seq": result.first_bad_seq,
                     "reason": result.reason})  # fmt: skip


class PageHandler(HubOAuthenticated, BaseHandler):
    hub_scopes = {AUDIT_SCOPE}

    @web.authenticated
    async def get(self):
        try:
            args = check_filters(lambda name: self.get_argument(name, ""))
        except FilterError as e:
            raise web.HTTPError(400, str(e)) from None
        before = self.get_argument("before", "") or None
        if before is not None and not before.isdigit():
            raise web.HTTPError(400, f"before={before!r} is not a record number")
        size = self.settings["page_rows"]
        loop = ioloop.IOLoop.current()
        # one page, newest first, from the store (server-side limit); the chart counts every match, in SQL
        page = await loop.run_in_executor(None, lambda: self.store.query(
            **args, before_seq=int(before) if before else None, newest_first=True, limit=size + 1))  # fmt: skip
        counts = await loop.run_in_executor(None, lambda: self.store.counts_by_day(**args))
        older = page[size - 1]["seq"] if len(page) > size else None
        usage = await loop.run_in_executor(None, self.settings["ledger"].by_workspace)
        for row in usage:
            row["limits"] = self.settings["egress_limits"](row["project"]).as_dict()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_page(list(reversed(page[:size])), args, self.current_user["name"], self.settings["prefix"],
                                usage, counts=counts, older=older, paged=before is not None,
                                hub_home=url_path_join(self.hub_auth.hub_prefix, "home")))  # fmt: skip

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        if status_code == 400:
            error = kwargs.get("exc_info", (None, None))[1]
            reason = html.escape(getattr(error, "log_message", None) or self._reason)
            return self.finish(f"<!doctype html><title>Datahavn audit trail</title><h1>Not a filter the page can use"
                               f"</h1><p id='filter-error'>{reason}</p><p><a href='{self.settings['prefix']}'>"
                               "Show every event</a></p>")  # fmt: skip
        self.finish(f"<h1>{status_code}</h1><p>The audit trail is for administrators and auditors.</p>")


class AuditService(Application):
    name = "datahavn-audit"
    description = "Datahavn's audit service: the append-only, hash-chained record of every action."

    state_dir = Unicode(help="Datahavn state directory (defaults to $DATAHAVN_STATE_DIR).").tag(config=True)

    @default("state_dir")
    def _state_dir(self):
        return str(Layout.from_env().root)

    db_url = Unicode(
        help="SQLAlchemy URL of the audit store; default: SQLite in the hub's state dir.",
    ).tag(config=True)

    @default("db_url")
    def _db_url(self):
        return os.environ.get("DATAHAVN_AUDIT_DB_URL", "")

    page_rows = Integer(500, help="Events per page of the web page (newest first; older ones a link away).").tag(
        config=True
    )

    cache_seconds = Integer(60, help="How long the identity of a token is cached.").tag(config=True)

    egress_hour = Integer(
        25_000_000,
        help="""Bytes a workspace may send to the browser in any hour (all its kernels, contents, lab storage).""",
    ).tag(config=True)

    @default("egress_hour")
    def _egress_hour(self):
        return env_int(os.environ, "DATAHAVN_EGRESS_HOUR", 25_000_000, 0, 10**15)

    egress_day = Integer(100_000_000, help="""Bytes a workspace may send to the browser in any day.""").tag(config=True)

    @default("egress_day")
    def _egress_day(self):
        return env_int(os.environ, "DATAHAVN_EGRESS_DAY", 100_000_000, 0, 10**15)

    project_egress = Dict(
        help="""Per-project egress limits: {"brca": {"hour": 50000000, "day": 200000000}}.""",
    ).tag(config=True)

    @default("project_egress")
    def _project_egress(self):
        return json.loads(os.environ.get("DATAHAVN_EGRESS_PROJECTS") or "{}")

    max_event_bytes = Integer(2_000_000, help="""Largest event a server may post (a cell's code).""").tag(config=True)

    max_event_rate = Float(
        200.0,
        help="""Events a second a server may post (a cell is two: its code and its reply), beyond the burst.""",
    ).tag(config=True)

    @default("max_event_rate")
    def _max_event_rate(self):
        return env_float(os.environ, "DATAHAVN_AUDIT_EVENT_RATE", 200.0, 1.0, 100_000.0)

    max_event_burst = Integer(
        help="""Events a server may post at once before the rate applies (default: 10 s of rate)."""
    ).tag(config=True)

    @default("max_event_burst")
    def _max_event_burst(self):
        return int(10 * self.max_event_rate)

    def start(self):
        layout = Layout(Path(self.state_dir))
        store = open_store(layout, self.db_url)
        default_limits = egress.Limits(self.egress_hour, self.egress_day)
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/datahavn-audit/")
        hub_auth = HubAuth(cache_max_age=self.cache_seconds)
        app = web.Application(
            [
                (url_path_join(prefix, "api/events"), EventsHandler),
                (url_path_join(prefix, "api/events/ws"), EventSocketHandler),
                (url_path_join(prefix, "api/verify"), VerifyHandler),
                (url_path_join(prefix, "api/egress"), EgressHandler),
                (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
                (prefix, PageHandler),
            ],
            store=store,
            intake=ServerIntake(store, self.max_event_bytes, self.max_event_rate, self.max_event_burst),
            ledger=egress.EgressLedger(store.engine),
            egress_limits=lambda project: egress.limits_for(project, default_limits, self.project_egress),
            hub_auth=hub_auth,
            prefix=prefix,
            page_rows=self.page_rows,
            cookie_secret=os.urandom(32),
        )
        serve(app, os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"), self.log, self.name)
        store.close()


main = AuditService.launch_instance

if __name__ == "__main__":
    main()
