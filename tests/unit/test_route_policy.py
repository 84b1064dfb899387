"""The route policy on jupyter-server's real routing: what a workspace's server answers, and what it refuses.

Requests are resolved by a tornado application holding jupyter-server's own handlers under a
server's base URL, exactly as the guard does (``egress.route_of``); the lab's handlers, which
need JupyterLab, are named directly.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import Application

from datahavn.extensions.egress import route_of
from datahavn.extensions.route_policy import Limits, Route, decide, screen

BASE = "/user/alice/brca/"
KERNEL = "0b6e0f35-4b0e-4c6b-9f5c-1a2b3c4d5e6f"


def _app() -> Application:
    from jupyter_server.base import handlers as base
    from jupyter_server.services.api import handlers as api
    from jupyter_server.services.config import handlers as config
    from jupyter_server.services.contents import handlers as contents
    from jupyter_server.services.kernels import handlers as kernels
    from jupyter_server.services.kernelspecs import handlers as kernelspecs
    from jupyter_server.services.nbconvert import handlers as nbconvert
    from jupyter_server.services.sessions import handlers as sessions

    rules = []
    for module in (contents, kernels, sessions, kernelspecs, config, api, nbconvert, base):
        for pattern, cls, *kw in module.default_handlers:
            rules.append((BASE.rstrip("/") + "/" + pattern.lstrip("/"), cls, *kw))
    return Application(rules)


APP = _app()


DEFAULT = Limits()


def judge(method: str, uri: str, length: int | None = 0, limits: Limits = DEFAULT):
    """The guard's decision for ``method uri`` (relative to the base URL)."""
    url = urlsplit(uri)
    query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    decision = screen(method, url.path, query, length, limits)
    if decision is not None:
        return decision
    headers = HTTPHeaders({"Host": "127.0.0.1", **({"Content-Length": str(length)} if length is not None else {})})
    request = HTTPServerRequest(start_line=RequestStartLine(method, BASE + uri, "HTTP/1.1"), headers=headers)
    route, _ = route_of(APP.find_handler, request, url.path)
    return decide(method, route, query, length, limits)


Q = {}
LAB = "jupyterlab_server"


@pytest.mark.parametrize(
    "method, uri",
    [
        ("GET", "api/kernelspecs"),
        ("POST", "api/kernels"),
        ("DELETE", f"api/kernels/{KERNEL}"),
        ("POST", f"api/kernels/{KERNEL}/interrupt"),
        ("GET", f"api/kernels/{KERNEL}/channels"),
        ("POST", "api/sessions"),
        ("GET", "api/contents/?content=1"),
        ("GET", "api/contents?content=1&hash=0&1796169051933"),  # the lab's cache-buster
        ("GET", "api/contents/data/cohort.vcz?content=0"),
        ("GET", "api/contents/analysis.ipynb?type=notebook&content=1&hash=1&contentProviderId=undefined"),
        ("PUT", "api/contents/analysis.ipynb"),
        ("PATCH", "api/contents/old.ipynb"),
        ("POST", "api/contents/analysis.ipynb/checkpoints"),
        ("GET", "api/contents/analysis.ipynb/checkpoints"),
        ("GET", "api/status"),
        ("GET", "api/resolvePath?path=analysis.py"),
        ("PATCH", "api/config/notebook"),
    ],
)
def test_what_jupyterlab_needs_is_allowed(method, uri):
    d = judge(method, uri)
    assert d.allow, d.reason


@pytest.mark.parametrize(
    "method, uri",
    [
        ("GET", "files/data/cohort.vcz/.zgroup"),
        ("GET", "files/analysis.ipynb?download=1"),
        ("GET", "view/report.html"),
        ("GET", "nbconvert/html/analysis.ipynb"),
        ("POST", "api/nbconvert"),
        ("GET", "api/nbconvert"),
        ("GET", "api/contents/data/x.csv?format=base64"),
        ("GET", "api/contents/x.csv?type=file"),
        ("GET", "api/contents/%2e%2e/%2e%2e/cardio"),
        ("GET", "api/contents/%252e%252e/secret"),
        ("GET", "api/contents//etc/passwd"),
        ("GET", "FILES/data.csv"),
        ("HEAD", "api/contents/analysis.ipynb"),
        ("OPTIONS", "api/contents"),
        ("GET", "api/terminals"),
        ("GET", "lab/api/extensions"),
        ("PUT", "api/contents/genotypes.csv"),
        ("GET", "metrics"),
        ("GET", "tree"),
        # tornado and a regex policy disagree on these: decided on the handler tornado runs, they are refused
        ("GET", "api/contents/x.ipynb?content=0&content=1&type=directory&type=file&format=text&format=base64"),
        ("GET", "api/contents/x/checkpoints/data.csv?format=base64"),
        ("GET", "api/contents/data/cohort.vcz/call_genotype/0.0.0?format=text&type=file"),
        ("GET", "api/contents/genotypes.csv/"),  # no redirect to guess API paths by
        ("GET", "api/contents/x.ipynb?unknown=1"),
        ("PUT", "api/contents/notes.md?x=1&x=2"),
    ],
)
def test_download_paths_and_unknown_routes_are_refused(method, uri):
    d = judge(method, uri)
    assert not d.allow and d.reason


def test_content_reads_are_left_to_the_file_check():
    d = judge("GET", "api/contents/analysis.ipynb")
    assert d.allow and d.check_content == "analysis.ipynb"
    assert judge("GET", "api/contents/sub/dir?content=1").check_content == "sub/dir"
    assert judge("GET", "api/contents/sub/dir?content=0").check_content is None


def test_uploads_are_small_text_or_code_unless_configured_otherwise():
    assert not judge("PUT", "api/contents/notes.md", length=2_000_000).allow
    assert judge("PUT", "api/contents/notes.md", length=2_000).allow
    assert judge("PUT", "api/contents/analysis.ipynb", length=5_000_000).allow  # notebooks: 20 MB
    assert not judge("PUT", "api/contents/cohort.vcf").allow
    assert judge("PUT", "api/contents/cohort.vcf", limits=Limits(upload_suffixes=(".vcf",))).allow
    assert not judge("PUT", "api/contents/notes.md", length=None).allow  # chunked: of unsaid length
    assert not judge("POST", "api/sessions", length=2_000_000).allow  # every write route has its limit


def test_jupyterlab_storage_is_small_both_ways():
    for handler in (f"{LAB}.workspaces_handler.WorkspacesHandler", f"{LAB}.settings_handler.SettingsHandler"):
        route = Route(handler, {}, "lab/api/workspaces")
        assert decide("GET", route, Q).check_storage in ("workspaces", "settings")
        assert decide("PUT", route, Q, 100_000).allow
        assert not decide("PUT", route, Q, 5_000_000).allow
    assert decide("GET", Route(f"{LAB}.handlers.LabHandler", {}, "lab"), Q).allow
    assert not decide("GET", Route(f"{LAB}.handlers.NotFoundHandler", {}, "lab/nothing"), Q).allow


def test_an_administrator_can_add_handlers_but_not_reopen_refused_paths():
    limits = Limits(extra_routes=(("GET", "myext.handlers.StatusHandler"),))
    assert decide("GET", Route("myext.handlers.StatusHandler", {}), Q, 0, limits).allow
    assert not decide("POST", Route("myext.handlers.StatusHandler", {}), Q, 0, limits).allow
    extra = Limits(extra_routes=(("GET", "jupyter_server.files.handlers.FilesHandler"),))
    assert not judge("GET", "files/x.csv", limits=extra).allow  # /files/ is refused before any handler


def test_extra_routes_are_checked_when_configured():
    from traitlets import TraitError

    from datahavn.extensions.egress import EgressGuard

    assert EgressGuard(extra_routes=["GET POST myext.Handler"]).limits.extra_routes == (("GET POST", "myext.Handler"),)
    with pytest.raises(TraitError):
        EgressGuard(extra_routes=["nonsense"])


def test_refusals_say_what_to_do_instead():
    d = judge("GET", "api/contents/shared/phenotypes.csv?type=file&format=text&content=1")
    assert not d.allow
    assert d.reason == "Data files stay in the workspace. Read it in a notebook: pd.read_csv('shared/phenotypes.csv')"
    assert "open('notes.txt').read()" in judge("GET", "api/contents/notes.txt?format=base64").reason
    refused = judge("PUT", "api/contents/cases.csv", length=36)
    assert not refused.allow and "'cases.csv' cannot be saved or uploaded here: only .ipynb, .py" in refused.reason
    assert "up to 1 MB" in refused.reason and "datahavn dataset import" in refused.reason
    assert "up to 1 MB" in judge("PUT", "api/contents/notes.md", length=2_000_000).reason
