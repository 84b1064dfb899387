"""Which requests a single-user server answers: a deny-by-default allow-list of handlers (pure, no I/O).

Decisions are made on what tornado will actually run: the handler class the application's
own ``find_handler`` resolved and the path arguments it extracted (:class:`Route`), never on a
parallel set of URL patterns, which would disagree with tornado's (a path ``x/checkpoints/y``
reaches the contents handler, not the checkpoints one). Before that, what no handler should
see: odd methods, encoded or non-canonical paths, and any query key given twice (handlers read
the last value, a policy might read the first).

Content reads are allowed only for directories and validated notebooks; :func:`decide` says
when the file must be checked, and the caller (``egress.py``) checks it against the files and
the workspace's egress budget. JupyterLab's own storage (workspaces, settings) is size-limited
both ways.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote

#: Extensions a researcher may upload or save (code and notes, not data).
UPLOAD_SUFFIXES = (".ipynb", ".py", ".r", ".md", ".txt", ".sh", ".json", ".yaml", ".yml", ".toml", ".sql")

_JS = "jupyter_server"
_LAB = "jupyterlab_server"
CONTENTS = f"{_JS}.services.contents.handlers.ContentsHandler"
LAB_STORAGE = {f"{_LAB}.workspaces_handler.WorkspacesHandler": "workspaces",
               f"{_LAB}.settings_handler.SettingsHandler": "settings"}  # fmt: skip

#: handler class -> the methods it may serve. What JupyterLab needs, and nothing else.
HANDLERS = {
    # the root and redirects to the lab
    f"{_JS}.base.handlers.TrailingSlashHandler": "GET",
    f"{_JS}.base.handlers.RedirectWithParams": "GET",
    "tornado.web.RedirectHandler": "GET",
    f"{_JS}.base.handlers.APIVersionHandler": "GET",
    # the lab: its page, code (root-owned static files), translations, themes, listings
    f"{_LAB}.handlers.LabHandler": "GET",
    f"{_JS}.base.handlers.FileFindHandler": "GET",
    "tornado.web.StaticFileHandler": "GET",
    f"{_LAB}.translations_handler.TranslationsHandler": "GET",
    f"{_LAB}.themes_handler.ThemesHandler": "GET",
    f"{_LAB}.listings_handler.ListingsHandler": "GET",
    "jupyterlab.handlers.build_handler.BuildHandler": "GET",  # "is a build needed?": never started from here
    **{name: "GET PUT DELETE" for name in LAB_STORAGE},
    # kernels, sessions, kernel specs
    f"{_JS}.services.kernels.handlers.MainKernelHandler": "GET POST",
    f"{_JS}.services.kernels.handlers.KernelHandler": "GET DELETE",
    f"{_JS}.services.kernels.handlers.KernelActionHandler": "POST",
    f"{_JS}.services.kernels.websocket.KernelWebsocketHandler": "GET",  # the audited websocket
    f"{_JS}.services.sessions.handlers.SessionRootHandler": "GET POST",
    f"{_JS}.services.sessions.handlers.SessionHandler": "GET PATCH DELETE",
    f"{_JS}.services.kernelspecs.handlers.MainKernelSpecHandler": "GET",
    f"{_JS}.services.kernelspecs.handlers.KernelSpecHandler": "GET",
    f"{_JS}.kernelspecs.handlers.KernelSpecResourceHandler": "GET",  # kernel logos
    # contents (content reads checked by the caller), checkpoints (copies kept inside the workspace)
    CONTENTS: "GET PUT POST PATCH DELETE",
    f"{_JS}.services.contents.handlers.CheckpointsHandler": "GET POST",
    f"{_JS}.services.contents.handlers.ModifyCheckpointsHandler": "POST DELETE",
    # the server's own state
    f"{_JS}.services.config.handlers.ConfigHandler": "GET PATCH",
    f"{_JS}.services.api.handlers.APIStatusHandler": "GET",
    f"{_JS}.services.api.handlers.APISpecHandler": "GET",
    f"{_JS}.services.api.handlers.IdentityHandler": "GET",
    # where a traceback's file is: answered inside the workspace only (provisioner.resolve_path)
    f"{_JS}.services.api.handlers.PathResolverHandler": "GET",
    f"{_JS}.services.events.handlers.SubscribeWebsocket": "GET",
    "jupyter_lsp.handlers.LanguageServersHandler": "GET",
    # export requests, forwarded to the airlock with the server's token (extensions/airlock.py)
    "datahavn.extensions.airlock.AirlockRequestsHandler": "GET POST",
    # the Dask dashboard of this workspace's own clusters, plots only (extensions/dask_dashboard.py)
    **{f"datahavn.extensions.dask_dashboard.Dashboard{name}Handler": "GET" for name in ("Index", "", "Socket")},
    # JupyterHub's sign-in and sign-out of this server
    "jupyterhub.singleuser.extension.JupyterHubOAuthCallbackHandler": "GET",
    "jupyterhub.singleuser.extension.JupyterHubLogoutHandler": "GET",
}
#: query keys a contents read may carry, and their allowed values (None: any; the server ignores
#: ``contentProviderId``, the lab's own name for where it reads)
CONTENT_QUERY = {"content": {"0", "1"}, "type": {"directory", "notebook"}, "format": {"text", "json"},
                 "hash": {"0", "1"}, "contentProviderId": None}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """What may come in: sizes of saves and uploads, and the kinds of file."""

    upload_bytes: int = 1_000_000
    notebook_bytes: int = 20_000_000
    upload_suffixes: tuple[str, ...] = UPLOAD_SUFFIXES
    #: JupyterLab's workspaces and settings, per file, both ways
    lab_storage_bytes: int = 300_000
    #: handlers an administrator adds, as ("GET POST", "module.Class") pairs
    extra_routes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Route:
    """What tornado resolved a request to: the handler's class (``module.Qualname``) and its path arguments."""

    handler: str
    path_kwargs: dict
    #: the request's path below the base URL
    url: str = ""

    @property
    def path(self) -> str:
        return (self.path_kwargs.get("path") or "").strip("/")


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str = ""
    #: the contents path whose file must be a directory or a valid notebook (and fit the budget)
    check_content: str | None = None
    #: JupyterLab storage ("workspaces", "settings") whose files must be small
    check_storage: str | None = None


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def screen(method: str, path: str, query: dict[str, list[str]], content_length: int | None,
           limits: Limits = Limits()) -> Decision | None:  # fmt: skip
    """What is refused before any handler is chosen; None if the request may be routed."""
    method = method.upper()
    if method in ("HEAD", "OPTIONS", "TRACE", "CONNECT"):
        return deny(f"{method} requests are not served")
    decoded = unquote(path)
    if "%" in decoded:
        return deny("encoded characters in the path are not accepted")
    segments = decoded.split("/")
    if ".." in segments or "." in segments or "//" in decoded or "\\" in decoded:
        return deny("the path is not in canonical form")
    repeated = sorted(k for k, v in query.items() if len(v) > 1)
    if repeated:
        return deny(f"a query key given twice ({', '.join(repeated)}) is not accepted")
    if method == "GET" and any(v != ["0"] and k == "download" for k, v in query.items()):
        return deny("downloads are disabled in Datahavn workspaces")
    if method in ("PUT", "POST", "PATCH") and content_length is None:
        return deny("a request body must say its length (no chunked uploads)")
    first = "nbconvert" if decoded.startswith("api/nbconvert") else segments[0]
    if first in ("files", "view", "nbconvert"):
        return deny(f"/{first}/ would send files out of the workspace: it is disabled in Datahavn")
    return None


def decide(method: str, route: Route, query: dict[str, list[str]], content_length: int | None = 0,
           limits: Limits = Limits()) -> Decision:  # fmt: skip
    """The policy for one routed request (after :func:`screen`)."""
    method = method.upper()
    methods = HANDLERS.get(route.handler)
    if methods is None:
        methods = next((m for m, h in limits.extra_routes if h == route.handler), None)
    if methods is None or method not in methods.upper().split():
        return deny("this route is not available in Datahavn workspaces")
    if route.handler.endswith(".TrailingSlashHandler") and route.url.startswith("api/"):
        return deny("this route is not available in Datahavn workspaces")  # no redirect to guess API paths by
    if route.handler == CONTENTS:
        return _contents(method, route.path, query, content_length or 0, limits)
    if route.handler in LAB_STORAGE:
        if method == "PUT" and (content_length or 0) > limits.lab_storage_bytes:
            return deny(f"JupyterLab's {LAB_STORAGE[route.handler]} are limited to {limits.lab_storage_bytes} bytes")
        return Decision(True, check_storage=LAB_STORAGE[route.handler] if method == "GET" else None)
    if method in ("PUT", "POST", "PATCH") and (content_length or 0) > limits.upload_bytes:
        return deny(f"requests are limited to {limits.upload_bytes} bytes here")
    return Decision(True)


#: how a notebook reads a data file, by its suffix: the way in refusals point to
READERS = {".csv": "pd.read_csv({!r})", ".tsv": "pd.read_csv({!r}, sep='\\t')", ".txt": "open({!r}).read()",
           ".parquet": "pd.read_parquet({!r})", ".json": "json.load(open({!r}))"}  # fmt: skip


def read_hint(path: str) -> str:
    """Why a file does not open in the lab, and how to read it instead, in a notebook."""
    suffix = os.path.splitext(path)[1].lower()
    how = READERS.get(suffix, "open({!r}, 'rb')").format(path)
    return f"Data files stay in the workspace. Read it in a notebook: {how}"


def upload_refusal(name: str, limit: int, limits: Limits) -> str:
    return (f"{name!r} cannot be saved or uploaded here: only {', '.join(limits.upload_suffixes)} files, up to "
            f"{limit / 1e6:g} MB. Bringing data in is an administrator's job (datahavn dataset import)")  # fmt: skip


def _contents(method: str, path: str, query, content_length: int, limits: Limits) -> Decision:
    last = path.rsplit("/", 1)[-1]
    if method == "GET":
        for key, values in query.items():
            if key.isdigit() and values == [""]:
                continue  # the lab's cache-buster (?content=1&1796169051933)
            if key not in CONTENT_QUERY:
                return deny(read_hint(path))
            allowed = CONTENT_QUERY[key]
            if allowed is not None and values[0] not in allowed:
                return deny(read_hint(path))
        if query.get("content", ["1"])[0] == "0":
            return Decision(True)  # metadata only: names, sizes, dates
        return Decision(True, check_content=path)
    if method in ("PUT", "POST"):
        limit = limits.notebook_bytes if last.lower().endswith(".ipynb") else limits.upload_bytes
        if method == "PUT" and last and not last.lower().endswith(tuple(limits.upload_suffixes)):
            return deny(upload_refusal(last, limit, limits))
        if content_length > limit:
            return deny(upload_refusal(last or path, limit, limits))
        return Decision(True)
    return Decision(True)  # PATCH (rename), DELETE: nothing leaves the workspace
