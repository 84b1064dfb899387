"""datahavn-airlock: the JupyterHub-managed service through which results leave a project.

- ``POST api/requests``: a workspace's server asks for an export, with its own hub token (who and
  which project come from the token); the files are copied into the root-only store at once.
- ``GET api/requests[?state=&project=]``, ``GET api/requests/<id>``: a server sees its own
  requests; a person (a token of theirs, or the CLI's) sees theirs, checkers and auditors all.
- ``POST api/requests/<id>/<approve|reject|return|release|withdraw>`` ``{"comment": "..."}``.
- ``GET api/requests/<id>/files/<n>``: a released file, re-hashed before it is sent.
- ``GET /`` and ``/requests/<id>``: the page (hub OAuth), with the files rendered for checkers
  and the same actions as forms.

Every rule is :mod:`.desk`'s; this module only speaks HTTP. Run by the hub, as root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from jupyterhub.services.auth import HubAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web
from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Application

from datahavn.paths import Layout
from datahavn.tokens import server_identity

from ..audit.store import open_store
from ..services import serve, token_model
from ..settings import env_int
from .desk import Desk, Limits
from .page import render_detail, render_list, render_message
from .rules import ACTIONS, Actor, Refused, may
from .store import RequestStore

ID = r"([0-9A-Za-z._-]{1,64})"
MIME = {"image": None, "pdf": "application/pdf", "table": "text/plain; charset=utf-8",
        "text": "text/plain; charset=utf-8", "notebook": "application/json"}  # fmt: skip
IMAGE_MIME = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


def _run(fn, *args):
    return ioloop.IOLoop.current().run_in_executor(None, fn, *args)


def mime_of(f: dict, data: bytes) -> str:
    if f["kind"] == "image":
        for magic, mime in IMAGE_MIME.items():
            if data.startswith(magic):
                return mime
        return "image/svg+xml"
    return MIME.get(f["kind"]) or "application/octet-stream"


class Base(web.RequestHandler):
    @property
    def desk(self) -> Desk:
        return self.settings["desk"]

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def send_error(self, status_code=500, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, Refused):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb):
        if not isinstance(value, Refused):  # a refusal is recorded and answered; not a server error
            super().log_exception(typ, value, tb)

    async def send_file(self, actor: Actor, request_id: str, n: str, purpose: str):
        f, data = await _run(self.desk.file, actor, request_id, n, purpose)
        self.set_header("Content-Type", mime_of(f, data))
        name = os.path.basename(f["path"])
        if purpose == "download":
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name)}")
        else:
            # a preview is shown, never run: no script, even in an SVG
            self.set_header("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'")
            self.set_header("Content-Disposition", "inline")
        self.finish(data)


def _message(exc, reason: str) -> str:
    if isinstance(exc, Refused):
        return str(exc)
    if exc is not None and not isinstance(exc, web.HTTPError):
        # nothing half-done stays: a request's rows, records and snapshot commit together
        return f"the airlock failed ({type(exc).__name__}); nothing was changed; its log says why"
    return getattr(exc, "log_message", None) or reason


class ApiHandler(Base):
    """Token callers: a server (its own token) or a person (their token, the CLI's)."""

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = _message(exc, self._reason)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def model(self) -> dict:
        # a decision (a review, a download) asks the hub afresh: a checker removed a moment ago is no longer one
        fresh = self.request.method == "POST" or "/files/" in self.request.path
        return await token_model(self, self.settings["hub_auth"], use_cache=not fresh)

    def json_body(self) -> object:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None


class RequestsApi(ApiHandler):
    async def post(self):
        model = await self.model()
        identity = server_identity(model)
        if identity is None:
            error = Refused(403, "export requests come from a workspace's server (the lab's Request export…)")
            who = str(model.get("name") or "")
            await _run(self.desk.refuse, "denied", {"user": who, "project": None, "id": None}, who, error, "request")
            raise error
        request = await _run(self.desk.submit, *identity, self.json_body())
        self.set_status(201)
        self.finish(request)

    async def get(self):
        model = await self.model()
        state, project = self.get_argument("state", None), self.get_argument("project", None)
        identity = server_identity(model)
        if identity is not None:  # a server: its own user's requests in its own project
            rows = await _run(lambda: self.desk.requests.list(user=identity[0], project=identity[1], state=state))
        else:
            rows = await _run(self.desk.visible, Actor.from_model(model), project, state)
        self.finish({"requests": rows})


class RequestApi(ApiHandler):
    async def get(self, request_id):
        self.finish(await _run(self.desk.view, await self.person(), request_id))

    async def person(self) -> Actor:
        model = await self.model()
        if server_identity(model) is not None:
            raise web.HTTPError(403, "a workspace's server cannot review or download exports")
        return Actor.from_model(model)


class ActionApi(RequestApi):
    async def post(self, request_id, action):
        actor = await self.person()
        body = self.json_body() or {}
        comment = body.get("comment", "") if isinstance(body, dict) else ""
        self.finish(await _run(self.desk.act, actor, request_id, action, comment))


class FileApi(RequestApi):
    async def get(self, request_id, n):
        await self.send_file(await self.person(), request_id, n, "download")


class PageBase(HubOAuthenticated, Base):
    def actor(self) -> Actor:
        return Actor.from_model(self.current_user)

    def write_error(self, status_code, **kwargs):
        message = _message(kwargs.get("exc_info", (None, None))[1], self._reason)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_message(status_code, message, self.settings["prefix"]))


class ListPage(PageBase):
    @web.authenticated
    async def get(self):
        actor = self.actor()
        state = self.get_argument("state", "") or None
        rows = await _run(self.desk.visible, actor, None, state)
        self.finish(render_list(rows, actor, state, self.settings["prefix"]))


class DetailPage(PageBase):
    @web.authenticated
    async def get(self, request_id):
        actor = self.actor()
        request = await _run(self.desk.view, actor, request_id)
        previews = {}
        if may(actor, request["user"], "preview"):
            for f in request["files"]:
                if f["kind"] in ("table", "text", "notebook"):
                    _, data = await _run(self.desk.file, actor, request_id, f["n"], "preview")
                    previews[f["n"]] = data
        self.finish(render_detail(request, actor, previews, self.settings["prefix"], self.xsrf_token.decode()))


class ActionPage(PageBase):
    @web.authenticated
    async def post(self, request_id, action):
        await _run(self.desk.act, self.actor(), request_id, action, self.get_body_argument("comment", ""))
        self.redirect(url_path_join(self.settings["prefix"], "requests", request_id))


class FilePage(PageBase):
    @web.authenticated
    async def get(self, request_id, purpose, n):
        await self.send_file(self.actor(), request_id, n, purpose)


class AirlockService(Application):
    name = "datahavn-airlock"
    description = "Datahavn's airlock: export requests, automatic checks, two-person review, release."

    state_dir = Unicode(help="Datahavn state directory (defaults to $DATAHAVN_STATE_DIR).").tag(config=True)

    @default("state_dir")
    def _state_dir(self):
        return str(Layout.from_env().root)

    airlock_dir = Unicode(help="The root-only snapshot store (default: <state>/airlock).").tag(config=True)

    @default("airlock_dir")
    def _airlock_dir(self):
        return os.environ.get("DATAHAVN_AIRLOCK_DIR") or str(Layout(Path(self.state_dir)).airlock)

    db_url = Unicode(help="The audit store's SQLAlchemy URL (the airlock's tables live beside it).").tag(config=True)

    @default("db_url")
    def _db_url(self):
        return os.environ.get("DATAHAVN_AUDIT_DB_URL", "")

    max_file_bytes = Integer(20_000_000, help="Largest file a request may carry.").tag(config=True)

    @default("max_file_bytes")
    def _max_file_bytes(self):
        return env_int(os.environ, "DATAHAVN_AIRLOCK_MAX_FILE", 20_000_000, 1, 10**10)

    max_request_bytes = Integer(50_000_000, help="Largest total of a request's files.").tag(config=True)
    max_files = Integer(20, help="Most files in one request.").tag(config=True)
    min_cell_count = Integer(10, help="Smallest count a table's cell may show without a flag.").tag(config=True)
    notebook_outputs = Bool(
        False, help="Let notebooks leave with their outputs (default: outputs stripped, the code and text stay)."
    ).tag(config=True)

    def start(self):
        layout = Layout(Path(self.state_dir))
        audit = open_store(layout, self.db_url)
        limits = Limits(max_files=self.max_files, max_file_bytes=self.max_file_bytes,
                        max_request_bytes=self.max_request_bytes, notebook_outputs=self.notebook_outputs,
                        min_cell_count=self.min_cell_count)  # fmt: skip
        desk = Desk(layout, audit, RequestStore(audit, Path(self.airlock_dir)), limits)
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/datahavn-airlock/")
        actions = "|".join(a for a in ACTIONS if a not in ("view", "download"))
        api = url_path_join(prefix, "api/requests")
        app = web.Application(
            [
                (api, RequestsApi),
                (rf"{api}/{ID}", RequestApi),
                (rf"{api}/{ID}/({actions})", ActionApi),
                (rf"{api}/{ID}/files/([0-9]{{1,4}})", FileApi),
                (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
                (rf"{prefix}requests/{ID}", DetailPage),
                (rf"{prefix}requests/{ID}/({actions})", ActionPage),
                (rf"{prefix}requests/{ID}/(download|preview)/([0-9]{{1,4}})", FilePage),
                (prefix, ListPage),
            ],
            desk=desk,
            hub_auth=HubAuth(cache_max_age=60),
            prefix=prefix,
            cookie_secret=os.urandom(32),
        )
        self.log.info("datahavn-airlock: snapshots in %s", self.airlock_dir)
        serve(app, os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"), self.log, self.name,
              max_body_size=1_000_000)  # fmt: skip
        audit.close()


main = AirlockService.launch_instance

if __name__ == "__main__":
    main()
