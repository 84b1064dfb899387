"""Which requests a single-user server answers: a deny-by-default allow-list (pure, no I/O).

Paths are relative to the server's base URL (``/user/alice/brca/``). Anything not
listed here is refused. Content reads are allowed only for directories and
validated notebooks; :func:`decide` says when the file must be checked, and the
caller (``egress.py``) checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

#: Extensions a researcher may upload or save (code and notes, not data).
UPLOAD_SUFFIXES = (".ipynb", ".py", ".r", ".md", ".txt", ".sh", ".json", ".yaml", ".yml", ".toml", ".sql")

# (methods, path pattern) of what JupyterLab needs; contents are handled apart.
ALLOWED = [
    ({"GET"}, r""),  # the server's root: a redirect to /lab
    ({"GET"}, r"lab(/(?!api/extensions).*)?"),  # the app, its settings, workspaces, translations
    ({"PUT", "PATCH", "DELETE"}, r"lab/api/(settings|workspaces)(/.*)?"),
    ({"GET"}, r"static/.*"),
    ({"GET"}, r"custom/custom\.css"),
    ({"GET"}, r"kernelspecs/[^/]+/[^/]+"),  # kernel logos
    ({"GET"}, r"api(/(status|me|spec\.yaml))?"),
    ({"GET"}, r"api/kernelspecs(/[^/]+)?"),
    ({"GET", "POST"}, r"api/kernels"),
    ({"GET", "DELETE"}, r"api/kernels/[0-9a-f-]{36}"),
    ({"POST"}, r"api/kernels/[0-9a-f-]{36}/(interrupt|restart)"),
    ({"GET"}, r"api/kernels/[0-9a-f-]{36}/channels"),  # the (audited) kernel websocket
    ({"GET", "POST"}, r"api/sessions"),
    ({"GET", "PATCH", "DELETE"}, r"api/sessions/[0-9a-f-]{36}"),
    ({"GET", "PATCH"}, r"api/config/[\w-]+"),
    ({"GET"}, r"api/events/subscribe"),
    ({"GET"}, r"lsp/status"),
    ({"GET"}, r"api/lsp/status"),
    ({"GET"}, r"(oauth_callback|logout)"),
]
_ALLOWED = [(methods, re.compile(pattern)) for methods, pattern in ALLOWED]
CONTENTS = re.compile(r"api/contents(?P<path>/.*)?")


@dataclass(frozen=True)
class Limits:
    """What may come in: sizes of saves and uploads, and the kinds of file."""

    upload_bytes: int = 1_000_000
    notebook_bytes: int = 20_000_000
    upload_suffixes: tuple[str, ...] = UPLOAD_SUFFIXES
    #: routes an administrator adds, as ("GET POST", r"regex") pairs (the regex matches the whole path)
    extra_routes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str = ""
    #: the contents path whose file must be a directory or a valid notebook
    check_content: str | None = None


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def decide(method: str, path: str, query: dict[str, list[str]], content_length: int = 0,
           limits: Limits = Limits()) -> Decision:  # fmt: skip
    """The policy for one request (``path`` raw, as it came, relative to the base URL)."""
    method = method.upper()
    if method in ("HEAD", "OPTIONS", "TRACE", "CONNECT"):
        return deny(f"{method} requests are not served")
    decoded = unquote(path)
    if "%" in decoded:
        return deny("encoded characters in the path are not accepted")
    segments = decoded.split("/")
    if ".." in segments or "." in segments or "//" in decoded or "\\" in decoded:
        return deny("the path is not in canonical form")
    if method == "GET" and any(v != ["0"] and k == "download" for k, v in query.items()):
        return deny("downloads are disabled in Datahavn workspaces")
    if m := CONTENTS.fullmatch(decoded):
        return _contents(method, (m.group("path") or "/").lstrip("/"), query, content_length, limits)
    first = "nbconvert" if decoded.startswith("api/nbconvert") else segments[0]
    if first in ("files", "view", "nbconvert"):
        return deny(f"/{first}/ would send files out of the workspace: it is disabled in Datahavn")
    for methods, pattern in _ALLOWED:
        if method in methods and pattern.fullmatch(decoded):
            return Decision(True)
    for methods, pattern in limits.extra_routes:
        if method in methods.upper().split() and re.fullmatch(pattern, decoded):
            return Decision(True)
    return deny("this route is not available in Datahavn workspaces")


def _contents(method: str, path: str, query, content_length: int, limits: Limits) -> Decision:
    last = path.rsplit("/", 1)[-1]
    if path.endswith("/checkpoints") or "/checkpoints/" in path:
        return Decision(True) if method in ("GET", "POST", "DELETE") else deny("checkpoints are read-only")
    if method == "GET":
        if query.get("format", [""])[0] not in ("", "text", "json") or query.get("type", [""])[0] == "file":
            return deny("reading files as raw or base64 content is disabled in Datahavn")
        if query.get("content", ["1"])[0] == "0":
            return Decision(True)  # metadata only: names, sizes, dates
        return Decision(True, check_content=path)
    if method in ("PUT", "POST"):
        limit = limits.notebook_bytes if last.lower().endswith(".ipynb") else limits.upload_bytes
        if method == "PUT" and last and not last.lower().endswith(tuple(limits.upload_suffixes)):
            return deny(f"only notebooks and small text or code files can be saved or uploaded ({last!r})")
        if content_length > limit:
            return deny(
                f"saves and uploads are limited to {limit} bytes here; bringing data in is an administrator's job"
            )
        return Decision(True)
    if method in ("PATCH", "DELETE"):  # rename, delete: nothing leaves the workspace
        return Decision(True)
    return deny(f"{method} is not served for contents")
