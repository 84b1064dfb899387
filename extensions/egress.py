"""The egress guard: every request to the single-user server passes the route policy first.

The hook is the application's ``find_handler``: every request goes through it before any
handler runs. It asks the application's own router which handler would run and with which
path arguments, then decides on that (:mod:`.route_policy`), so a route nobody thought of is
refused too (deny by default) and the policy cannot disagree with tornado. Content reads are
checked against the file (a directory, or a notebook that parses) and against the workspace's
egress budget (:mod:`.meter`): past it, no content is sent. A refusal is a 403 with a JSON
message and a ``denied`` audit event; every notebook sent is a ``content_read`` event with its
size.
"""

from __future__ import annotations

import asyncio
import html
import json
import os

import nbformat
from tornado import web
from traitlets import Integer, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .meter import meter
from .route_policy import CONTENTS, UPLOAD_SUFFIXES, Decision, Limits, Route, decide, screen


class EgressGuard(Configurable):
    """What a workspace's server lets out. All on by default; set by root-owned config only."""

    notebook_size_limit = Integer(
        20_000_000,
        help="""Largest notebook (bytes) the server sends to the browser or accepts as a save.""",
    ).tag(config=True)

    upload_size_limit = Integer(
        1_000_000,
        help="""Largest request body (bytes) for saving or uploading a file other than a notebook.""",
    ).tag(config=True)

    lab_storage_limit = Integer(
        300_000,
        help="""Largest JupyterLab workspace or settings file (bytes), read or written.""",
    ).tag(config=True)

    upload_suffixes = List(
        Unicode(),
        list(UPLOAD_SUFFIXES),
        help="""File name endings (lower case) a researcher may save or upload: notebooks, text and code.""",
    ).tag(config=True)

    extra_routes = List(
        Unicode(),
        [],
        help="""Handlers to allow besides what JupyterLab needs, as "METHODS module.Class" (e.g.
        "GET myext.handlers.StatusHandler"): the class tornado resolves the request to. Refused paths stay refused.""",
    ).tag(config=True)

    @validate("extra_routes")
    def _check_extra_routes(self, proposal):
        for route in proposal.value:
            methods, _, handler = route.rpartition(" ")
            if not methods or "." not in handler:
                raise TraitError(f"EgressGuard.extra_routes: {route!r} is not 'METHODS module.Class'")
        return proposal.value

    @property
    def limits(self) -> Limits:
        extra = tuple(tuple(r.rsplit(" ", 1)) for r in self.extra_routes)
        return Limits(self.upload_size_limit, self.notebook_size_limit, tuple(self.upload_suffixes),
                      self.lab_storage_limit, extra)  # fmt: skip


class DeniedHandler(web.RequestHandler):
    """Answers a refused request: 403, a message a person understands, an audit event.

    A browser's navigation (it asks for HTML) gets a page saying it; the lab and API clients keep JSON.
    """

    def initialize(self, reason: str, record):
        self.reason = reason
        self.record = record

    def prepare(self):
        self.record(self.request, self.reason)
        self.set_status(403)
        message = self.reason if self.reason.endswith(")") or self.reason[-1:] in ".!" else f"{self.reason}."
        accept = self.request.headers.get("Accept", "")
        if self.request.method == "GET" and "text/html" in accept.split(",")[0]:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            return self.finish(refusal_page(message, self.settings.get("base_url", "/")))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": 403, "message": f"Refused: {message}"}))


def refusal_page(message: str, base_url: str) -> str:
    """The HTML a person sees for a refused page: what happened and where to go (no script)."""
    hub = html.escape(os.environ.get("JUPYTERHUB_BASE_URL") or "/")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Not available in Datahavn</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;color:#222}"
        "h1{font-size:1.4rem}p.msg{background:#fff4e5;border-left:4px solid #f59e0b;padding:.8rem 1rem}</style>"
        "</head><body><h1>This is not available in a Datahavn workspace</h1>"
        f"<p class=msg>{html.escape(message)}</p><p>Data and results leave a project only through the airlock "
        "(\u201cRequest export\u2026\u201d in the lab). This refusal was recorded.</p>"
        f'<p><a href="{html.escape(base_url)}lab">Back to the workspace</a> \u00b7 <a href="{hub}hub/home">Hub home</a>'
        "</p></body></html>"
    )


def content_problem(os_path: str, limit: int) -> str | None:
    """None if the path is a directory or a valid notebook under the limit and the budget, else why not."""
    if os.path.isdir(os_path):
        return meter.refusal(meter.exhausted()) if meter.exhausted() else None
    if not os.path.isfile(os_path):
        return None  # the contents API answers 404 itself
    if not os_path.endswith(".ipynb"):
        return "only notebooks and folders can be opened: data stays in the workspace"
    size = os.path.getsize(os_path)
    if size > limit:
        return f"this notebook is {size} bytes, above the {limit}-byte limit"
    if meter.exhausted():
        return meter.refusal(meter.exhausted())
    left = meter.left()
    if left is not None and size > left:
        return (f"this notebook is {size / 1e6:.1f} MB; this workspace may send {max(left, 0) / 1e6:.1f} MB more to "
                "the browser for now")  # fmt: skip
    try:
        nbformat.read(os_path, as_version=4)
    except Exception:
        return "this file is named .ipynb but is not a notebook"
    return None


def storage_problem(folder: str | None, limit: int) -> str | None:
    """JupyterLab's workspaces or settings: every file small, and nothing sent past the budget."""
    if meter.exhausted():
        return meter.refusal(meter.exhausted())
    if not folder or not os.path.isdir(folder):
        return None
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.getsize(path) > limit:
                return f"a JupyterLab file of {os.path.getsize(path)} bytes ({name}) is above the {limit}-byte limit"
    return None


def route_of(find_handler, request, url: str = "") -> tuple[Route, object]:
    """(what the application's router would run for ``request``, the delegate that runs it)."""
    delegate = find_handler(request)
    cls = delegate.handler_class
    # tornado gives path arguments as (unquoted) bytes; the handler decodes them as UTF-8 too
    kwargs = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
              for k, v in (delegate.path_kwargs or {}).items()}  # fmt: skip
    return Route(f"{cls.__module__}.{cls.__qualname__}", kwargs, url), delegate


def install(serverapp, record_denial) -> None:
    """Put the route policy in front of every handler of ``serverapp``."""
    guard = EgressGuard(parent=serverapp)
    app = serverapp.web_app
    base = serverapp.base_url
    find_handler = app.find_handler
    storage = {"workspaces": os.environ.get("JUPYTERLAB_WORKSPACES_DIR"),
               "settings": os.environ.get("JUPYTERLAB_SETTINGS_DIR")}  # fmt: skip

    def refused(request, reason):
        return app.get_handler_delegate(request, DeniedHandler, {"reason": reason, "record": record_denial})

    def guarded_find_handler(request, **kwargs):
        try:
            return decide_request(request)
        except Exception as e:  # fail closed: a request the guard cannot judge is refused
            serverapp.log.exception("datahavn: cannot judge %s %s", request.method, request.uri)
            return refused(request, f"this request could not be checked ({type(e).__name__})")

    def decide_request(request):
        path = request.path
        if path == base.rstrip("/"):
            path = base  # tornado redirects it to the slashed form
        if not path.startswith(base):
            return refused(request, "outside this workspace")
        query = {k: [v.decode(errors="replace") for v in vs] for k, vs in request.query_arguments.items()}
        length = request.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None  # None: a body of unsaid length
        decision = screen(request.method, path[len(base) :], query, length, guard.limits)
        if decision is not None:
            return refused(request, decision.reason)
        route, delegate = route_of(find_handler, request, path[len(base) :])
        decision: Decision = decide(request.method, route, query, length, guard.limits)
        reason = decision.reason
        if not decision.allow:
            serverapp.log.info("datahavn: %s %s resolves to %s", request.method, request.path, route.handler)
        if decision.allow and decision.check_content is not None:
            try:
                os_path = serverapp.contents_manager._get_os_path(decision.check_content)
                reason = content_problem(os_path, guard.notebook_size_limit) or ""
            except web.HTTPError:
                reason = ""  # the contents API refuses paths outside its root itself
        elif decision.allow and decision.check_storage is not None:
            reason = storage_problem(storage[decision.check_storage], guard.lab_storage_limit) or ""
        if reason:
            if meter.exhausted() or "may send" in reason:
                # the workspace's budget stopped a content read: an egress alert, beside the denial
                event = {"kind": "egress_alert", "path": decision.check_content, "outcome": "content refused",
                         "detail": {"reason": reason, "used": {w: meter.used(w) for w in ("hour", "day")},
                                    "limits": meter.limits}}  # fmt: skip
                asyncio.ensure_future(record_denial.post(event))
            return refused(request, reason)
        return delegate

    app.find_handler = guarded_find_handler

    # Refusals by the handlers themselves (another user's token, hidden files) are recorded too, and so is
    # every notebook sent. Hooked on the application's log_request, not settings["log_function"]:
    # JupyterHub's singleuser extension replaces that setting after extensions load.
    log_request = app.log_request

    def log_and_record(handler):
        log_request(handler)
        if handler.get_status() in (401, 403) and not isinstance(handler, DeniedHandler):
            record_denial(handler.request, f"HTTP {handler.get_status()} from {type(handler).__name__}")
        elif _is_notebook_read(handler):
            path = (handler.path_kwargs or {}).get("path", "").strip("/")
            event = {"kind": "content_read", "path": path, "outcome": "ok",
                     "detail": {"bytes": getattr(handler, "_datahavn_sent", 0)}}  # fmt: skip
            asyncio.ensure_future(record_denial.post(event))

    app.log_request = log_and_record
    serverapp.log.info("datahavn: egress guard on (deny by default)")


def _is_notebook_read(handler) -> bool:
    cls = type(handler)
    return (f"{cls.__module__}.{cls.__qualname__}" == CONTENTS and handler.request.method == "GET"
            and handler.get_status() == 200 and handler.get_query_argument("content", "1") != "0"
            and (handler.path_kwargs or {}).get("path", "").endswith(".ipynb"))  # fmt: skip


def denial_recorder(serverapp, post):
    """A function recording a refused request as an audit ``denied`` event (without waiting)."""

    def record(request, reason):
        serverapp.log.warning("datahavn: refused %s %s: %s", request.method, request.uri, reason)
        event = {"kind": "denied", "outcome": "HTTP 403", "detail": f"{request.method} {request.uri[:500]}: {reason}"}
        asyncio.ensure_future(post(event))

    record.post = post
    return record
