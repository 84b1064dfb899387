"""The route policy alone (pure): what a workspace's server answers, and what it refuses."""

import pytest

from datahavn.extensions.route_policy import Limits, decide

Q = {}


@pytest.mark.parametrize(
    "method, path, query",
    [
        ("GET", "lab", Q),
        ("GET", "lab/tree/analysis.ipynb", Q),
        ("GET", "lab/api/settings", Q),
        ("PUT", "lab/api/settings/@jupyterlab/notebook-extension:tracker", Q),
        ("GET", "static/lab/main.js", Q),
        ("GET", "api/kernelspecs", Q),
        ("POST", "api/kernels", Q),
        ("GET", "api/kernels/0b6e0f35-4b0e-4c6b-9f5c-1a2b3c4d5e6f/channels", Q),
        ("POST", "api/sessions", Q),
        ("GET", "api/contents/", {"content": ["1"]}),
        ("GET", "api/contents/data/cohort.vcz", {"content": ["0"]}),
        ("PUT", "api/contents/analysis.ipynb", Q),
        ("PATCH", "api/contents/old.ipynb", Q),
        ("POST", "api/contents/analysis.ipynb/checkpoints", Q),
    ],
)
def test_what_jupyterlab_needs_is_allowed(method, path, query):
    assert decide(method, path, query).allow


@pytest.mark.parametrize(
    "method, path, query",
    [
        ("GET", "files/data/cohort.vcz/.zgroup", Q),
        ("GET", "files/analysis.ipynb", {"download": ["1"]}),
        ("GET", "view/report.html", Q),
        ("GET", "nbconvert/html/analysis.ipynb", Q),
        ("POST", "api/nbconvert", Q),
        ("GET", "api/nbconvert", Q),
        ("GET", "api/contents/data/x.csv", {"format": ["base64"]}),
        ("GET", "api/contents/x.csv", {"type": ["file"]}),
        ("GET", "api/contents/%2e%2e/%2e%2e/cardio", Q),
        ("GET", "api/contents/%252e%252e/secret", Q),
        ("GET", "api/contents//etc/passwd", Q),
        ("GET", "FILES/data.csv", Q),
        ("HEAD", "api/contents/analysis.ipynb", Q),
        ("OPTIONS", "api/contents", Q),
        ("GET", "api/terminals", Q),
        ("GET", "lab/api/extensions", Q),
        ("PUT", "api/contents/genotypes.csv", Q),
        ("GET", "metrics", Q),
        ("GET", "tree", Q),
    ],
)
def test_download_paths_and_unknown_routes_are_refused(method, path, query):
    d = decide(method, path, query)
    assert not d.allow and d.reason


def test_content_reads_are_left_to_the_file_check():
    d = decide("GET", "api/contents/analysis.ipynb", Q)
    assert d.allow and d.check_content == "analysis.ipynb"
    assert decide("GET", "api/contents/sub/dir", {"content": ["1"]}).check_content == "sub/dir"


def test_uploads_are_small_text_or_code_unless_configured_otherwise():
    assert not decide("PUT", "api/contents/notes.md", Q, content_length=2_000_000).allow
    assert decide("PUT", "api/contents/notes.md", Q, content_length=2_000).allow
    assert decide("PUT", "api/contents/analysis.ipynb", Q, content_length=5_000_000).allow  # notebooks: 20 MB
    assert not decide("PUT", "api/contents/cohort.vcf", Q).allow
    assert decide("PUT", "api/contents/cohort.vcf", Q, limits=Limits(upload_suffixes=(".vcf",))).allow


def test_an_administrator_can_add_routes_but_not_reopen_refused_ones():
    limits = Limits(extra_routes=(("GET", r"api/myext/status"),))
    assert decide("GET", "api/myext/status", Q, limits=limits).allow
    assert not decide("POST", "api/myext/status", Q, limits=limits).allow
    assert not decide("GET", "files/x.csv", Q, limits=Limits(extra_routes=(("GET", r"files/.*"),))).allow


def test_extra_routes_are_checked_when_configured():
    from traitlets import TraitError

    from datahavn.extensions.egress import EgressGuard

    assert EgressGuard(extra_routes=["GET POST api/myext/.*"]).limits.extra_routes == (("GET POST", "api/myext/.*"),)
    with pytest.raises(TraitError):
        EgressGuard(extra_routes=["nonsense"])
