"""The egress guard: every request to the single-user server passes the route policy first.

The hook is the application's ``find_handler``: every request goes through it before
any handler is chosen, so a route nobody thought of is refused too (deny by
default), and core handlers cannot win over it as they would over a handler
registered for the same URL. A refusal is a 403 with a JSON message, and an
audit ``denied`` event.
"""

from __future__ import annotations

import asyncio
import json
import os
import re

import nbformat
from tornado import web
from traitlets import Integer, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .route_policy import UPLOAD_SUFFIXES, Decision, Limits, decide


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

    upload_suffixes = List(
        Unicode(),
        list(UPLOAD_SUFFIXES),
        help="""File name endings (lower case) a researcher may save or upload: notebooks, text and code.""",
    ).tag(config=True)

    extra_routes = List(
        Unicode(),
        [],
        help="""Routes to allow besides what JupyterLab needs, as "METHODS regex" (e.g. "GET api/myext/.*"),
        the regex matching the whole path below the server's base URL. Refused routes stay refused.""",
    ).tag(config=True)

    @validate("extra_routes")
    def _check_extra_routes(self, proposal):
        for route in proposal.value:
            methods, _, pattern = route.partition(" ")
            if not methods or not pattern:
                raise TraitError(f"EgressGuard.extra_routes: {route!r} is not 'METHODS regex'")
            re.compile(pattern)
        return proposal.value

    @property
    def limits(self) -> Limits:
        extra = tuple(tuple(r.rsplit(" ", 1)) for r in self.extra_routes)
        return Limits(self.upload_size_limit, self.notebook_size_limit, tuple(self.upload_suffixes), extra)


class DeniedHandler(web.RequestHandler):
    """Answers a refused request: 403, a JSON message a person understands, an audit event."""

    def initialize(self, reason: str, record):
        self.reason = reason
        self.record = record

    def prepare(self):
        self.record(self.request, self.reason)
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": 403, "message": f"Refused: {self.reason}."}))


def content_problem(os_path: str, limit: int) -> str | None:
    """None if the path is a directory or a valid notebook under the limit, else why not."""
    if os.path.isdir(os_path):
        return None
    if not os.path.isfile(os_path):
        return None  # the contents API answers 404 itself
    if not os_path.endswith(".ipynb"):
        return "only notebooks and folders can be opened: data stays in the workspace"
    size = os.path.getsize(os_path)
    if size > limit:
        return f"this notebook is {size} bytes, above the {limit}-byte limit"
    try:
        nbformat.read(os_path, as_version=4)
    except Exception:
        return "this file is named .ipynb but is not a notebook"
    return None


def install(serverapp, record_denial) -> None:
    """Put the route policy in front of every handler of ``serverapp``."""
    guard = EgressGuard(parent=serverapp)
    app = serverapp.web_app
    base = serverapp.base_url
    find_handler = app.find_handler

    def guarded_find_handler(request, **kwargs):
        path = request.path
        if path == base.rstrip("/"):
            path = base  # tornado redirects it to the slashed form
        if not path.startswith(base):
            return app.get_handler_delegate(request, DeniedHandler, {"reason": "outside this workspace",
                                                                     "record": record_denial})  # fmt: skip
        rel = path[len(base) :]
        query = {k: [v.decode(errors="replace") for v in vs] for k, vs in request.query_arguments.items()}
        length = int(request.headers.get("Content-Length", 0) or 0)
        decision: Decision = decide(request.method, rel, query, length, guard.limits)
        reason = decision.reason
        if decision.allow and decision.check_content is not None:
            try:
                os_path = serverapp.contents_manager._get_os_path(decision.check_content)
                reason = content_problem(os_path, guard.notebook_size_limit) or ""
            except web.HTTPError:
                reason = ""  # the contents API refuses paths outside its root itself
            decision = Decision(not reason, reason)
        if not decision.allow:
            return app.get_handler_delegate(request, DeniedHandler, {"reason": reason, "record": record_denial})
        return find_handler(request, **kwargs)

    app.find_handler = guarded_find_handler

    # Refusals by the handlers themselves (another user's token, hidden files) are recorded too.
    # Hooked on the application's log_request, not settings["log_function"]: JupyterHub's
    # singleuser extension replaces that setting after extensions load.
    log_request = app.log_request

    def log_and_record(handler):
        log_request(handler)
        if handler.get_status() in (401, 403) and not isinstance(handler, DeniedHandler):
            record_denial(handler.request, f"HTTP {handler.get_status()} from {type(handler).__name__}")

    app.log_request = log_and_record
    serverapp.log.info("datahavn: egress guard on (deny by default)")


def denial_recorder(serverapp, post):
    """A function recording a refused request as an audit ``denied`` event (without waiting)."""

    def record(request, reason):
        serverapp.log.warning("datahavn: refused %s %s: %s", request.method, request.uri, reason)
        event = {"kind": "denied", "outcome": "HTTP 403", "detail": f"{request.method} {request.uri[:500]}: {reason}"}
        asyncio.ensure_future(post(event))

    return record
