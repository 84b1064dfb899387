"""The airlock's automatic checks on real files: a dataset imported from a simulated VCF, tables and plots made
from it, ACRO's own results, and damaged inputs. No hub here (``hub_config/airlock/checks.py`` is pure but for
``load_context``)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time

import numpy as np
import pytest
import zarr

from datahavn.hub_config.airlock import checks
from datahavn.hub_config.airlock.checks import ChunkIndex, acro_results, check_file, file_kind, load_context
from datahavn.hub_config.datasets.convert import convert
from datahavn.hub_config.demo import cohorts
from datahavn.paths import Layout

SAMPLES = 40


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project 'brca' with one dataset, imported as the hub imports it: (layout, dataset store, sample ids)."""
    root = tmp_path_factory.mktemp("state")
    vcf = root / "cohort.vcf.gz"
    cohorts.simulate(vcf, SAMPLES, 2e5, seed=5, prefix="brca_")
    layout = Layout(root)
    store = layout.data("brca") / "cohort.vcz"
    convert(vcf, store, workers=2)
    return layout, store, [str(s) for s in zarr.open_array(store / "sample_id", mode="r")[:]]


@pytest.fixture(scope="module")
def ctx(project):
    return load_context(project[0], "brca")


def verdicts(results) -> dict[str, str]:
    return {c.name: c.verdict for c in results}


def detail(results, name: str) -> str:
    return next(c.detail for c in results if c.name == name)


def table(rows: list[list], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def check(path: str, data: bytes, ctx, **kw):
    return check_file(path, data, file_kind(path, data), ctx, **kw)


@pytest.fixture(scope="module")
def pca_png(project):
    """An ordinary PCA plot of the cohort, as a researcher makes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = zarr.open_array(project[1] / "call_genotype", mode="r")[:].sum(axis=2).astype(float)
    g = (g - g.mean(axis=1, keepdims=True))[g.std(axis=1) > 0]
    _, _, vt = np.linalg.svd(g, full_matrices=False)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.scatter(vt[0], vt[1])
    ax.set(xlabel="PC1", ylabel="PC2", title="PCA")
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png")
    fig.savefig(svg, format="svg")
    plt.close(fig)
    return png.getvalue(), svg.getvalue()


def test_the_context_holds_the_projects_sample_ids_and_files(project, ctx):
    layout, store, ids = project
    assert ctx.sample_ids == frozenset(ids) and len(ids) == SAMPLES == ctx.cohort_size
    on_disk = {str(p.relative_to(store.parent)) for p in store.rglob("*") if p.is_file()}
    assert set(ctx.chunks.names) == on_disk and "cohort.vcz/call_genotype/0.0.0" in on_disk
    assert load_context(layout, "other").cohort_size == 0  # a project without datasets


def test_a_csv_of_the_cohorts_sample_ids_is_flagged(project, ctx):
    ids = project[2]
    flagged = check("pca.csv", table([["sample", "pc1"], *[[s, i / 7] for i, s in enumerate(ids[:12])]]), ctx)
    assert verdicts(flagged)["sample_ids"] == "flag"
    assert detail(flagged, "sample_ids") == f"column 'sample' holds 12 of the project's {SAMPLES} sample ids"
    assert verdicts(flagged)["row_count"] == "pass"  # 12 of 40: not near the cohort's size
    # the same table with other names passes; quoted fields, a BOM and tabs are read too
    clean = check("pca.csv", table([["sample", "pc1"], *[[f"x{i}", i / 7] for i in range(12)]]), ctx)
    assert verdicts(clean)["sample_ids"] == "pass"
    tsv = "\ufeff" + '"id, quoted"\t"n"\n' + "".join(f'"{s}"\t3\n' for s in ids[:6])
    assert verdicts(check("ids.tsv", tsv.encode(), ctx))["sample_ids"] == "flag"
    two = check("two.csv", table([["who"], [ids[0]], [ids[1]]]), ctx)  # few rows, but all of them ids
    assert verdicts(two)["sample_ids"] == "flag"
    wide = check("matrix.csv", table([["variant", *ids], ["v1", *[0] * SAMPLES]]), ctx)  # samples as columns
    assert verdicts(wide)["sample_ids"] == "flag" and "header" in detail(wide, "sample_ids")


def test_a_table_with_a_row_per_person_is_flagged(ctx):
    rng = np.random.default_rng(1)
    per_person = check("ages.csv", table([["age", "score"], *rng.integers(30, 80, (SAMPLES, 2)).tolist()]), ctx)
    assert verdicts(per_person)["row_count"] == "flag"
    assert "individual-level data is not an aggregate" in detail(per_person, "row_count")
    summary = check("ages.csv", table([["age", "score"], *rng.integers(30, 80, (10, 2)).tolist()]), ctx)
    assert verdicts(summary)["row_count"] == "pass"


def test_small_counts_are_flagged_in_count_columns_only(ctx):
    rows = [["position", "year", "p_value", "cases", "controls"], [1, 2001, 0.5, 3, 120], [2, 2002, 0.01, 45, 4]]
    flagged = check("counts.csv", table(rows), ctx)
    assert verdicts(flagged)["min_cell_count"] == "flag"
    assert detail(flagged, "min_cell_count").startswith("2 cell(s) hold counts from 1 to 9")
    assert "'cases', 'controls'" in detail(flagged, "min_cell_count") and "position" not in detail(
        flagged, "min_cell_count"
    )
    means = [["group", "mean_age", "n"], ["a", 3.5, 40], ["b", 7, 55]]  # a column of decimals is no count
    assert verdicts(check("means.csv", table(means), ctx))["min_cell_count"] == "pass"
    assert verdicts(check("c.csv", table(rows), dataclasses.replace(ctx, min_cell_count=3)))["min_cell_count"] == "pass"


@pytest.fixture(scope="module")
def acro_run(tmp_path_factory):
    """Real ACRO (suppress=False) crosstabs: one with cells under its threshold, one without."""
    import pandas as pd
    from acro import ACRO

    out = tmp_path_factory.mktemp("acro")
    cwd = os.getcwd()
    os.chdir(out)  # ACRO keeps artefacts in the working folder
    try:
        rng = np.random.default_rng(2)
        df = pd.DataFrame({"status": rng.choice(["case", "control"], 300),
                           "grade": rng.choice(["a", "b", "c", "rare"], 300, p=[0.4, 0.3, 0.28, 0.02])})  # fmt: skip
        acro = ACRO(suppress=False)
        acro.crosstab(df.status, df.grade)  # output_0: the rare grade's cells are under 10
        acro.crosstab(df.status, df.grade.replace("rare", "c"))  # output_1: every cell is large
        acro.finalise(str(out / "results"), "json")
    finally:
        os.chdir(cwd)
    return out / "results"


def test_acro_results_are_read_and_shown(acro_run, ctx):
    raw = (acro_run / "results.json").read_bytes()
    results = acro_results(raw)
    assert results["output_0_0.csv"]["status"] == "fail" and results["output_1_0.csv"]["status"] == "pass"
    assert "MinimumThresholdCheck" in results["output_0_0.csv"]["summary"]
    assert "MinimumThresholdCheck" in results["output_0_0.csv"]["outcome"]["rare"]["case"]
    failing = check("out/output_0_0.csv", (acro_run / "output_0_0.csv").read_bytes(), ctx, acro=results)
    assert verdicts(failing)["acro"] == "flag" and verdicts(failing)["min_cell_count"] == "flag"
    assert detail(failing, "acro").startswith("ACRO says fail (crosstab): FrequencyTable")
    assert "MinimumThresholdCheck: fail - 2 cells may need suppressing" in detail(failing, "acro")
    passing = check("output_1_0.csv", (acro_run / "output_1_0.csv").read_bytes(), ctx, acro=results)
    assert verdicts(passing) == {"size": "pass", "type": "pass", "dataset_copy": "pass", "sample_ids": "pass",
                                 "row_count": "pass", "min_cell_count": "pass", "acro": "pass"}  # fmt: skip
    assert results["session_summary.json"]["status"] == "review"  # ACRO's own "DO NOT RELEASE" summary
    assert "DO NOT RELEASE" in detail(check("session_summary.json", b"{}", ctx, acro=results), "acro")
    assert "acro" not in verdicts(check("other.csv", b"a\n1\n", ctx, acro=results))  # not covered: no ACRO check
    doc = json.loads(raw)
    odd = {"results": {"x": 1, "y": {"files": 3}, "z": {"status": "pass", "files": [{"nom": "a"}]}}}
    for bad in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"version": "1"}', b"[" * 100_000, json.dumps(odd).encode()):
        assert acro_results(bad) in (None, {}), bad[:40]
    assert acro_results(raw.replace(b'"results"', b'"resultat"')) is None
    assert set(acro_results(json.dumps(doc).encode())) == set(results)


def test_a_dataset_file_is_refused_as_itself_and_inside_another_file(project, ctx):
    store = project[1]
    chunk = (store / "call_genotype" / "0.0.0").read_bytes()
    assert len(chunk) > 4096
    same = check("genotypes.csv", chunk, ctx)  # a chunk renamed .csv
    assert verdicts(same)["dataset_copy"] == "refuse" and verdicts(same)["type"] == "refuse"
    assert (
        detail(same, "dataset_copy") == "the file is byte-identical to the dataset file cohort.vcz/call_genotype/0.0.0"
    )
    assert ctx.chunks.match(chunk) == "cohort.vcz/call_genotype/0.0.0"
    for wrapped in (b"sample,value\n" + chunk + b"\n", os.urandom(5000) + chunk[1000:3000] + os.urandom(100)):
        assert ctx.chunks.match(wrapped) == "cohort.vcz/call_genotype/0.0.0"
        assert detail(check("x.txt", wrapped, ctx), "dataset_copy").startswith("the file holds a copy of")
    header = (store / ".zattrs").read_bytes()  # the VCF header, every sample id in it: text a notebook might print
    refused = check("notes.md", b"# my notes\n\n" + header + b"\n\nthe end\n", ctx)
    assert verdicts(refused)["dataset_copy"] == "refuse" and verdicts(refused)["sample_ids"] == "flag"
    assert ctx.chunks.match(chunk[:200]) is None  # a short piece is not a substantial copy


def test_ordinary_outputs_are_not_dataset_copies(ctx, pca_png):
    rng = np.random.default_rng(3)
    for data in (*pca_png, os.urandom(1 << 20), bytes(1 << 20), b"0,0\n" * 100_000, b"a" * 5000,
                 table([["pc", "variance"], *[[i, v] for i, v in enumerate(rng.random(10))]])):  # fmt: skip
        assert ctx.chunks.match(data) is None


def test_a_matplotlib_pca_plot_passes(ctx, pca_png):
    png, svg = pca_png
    assert file_kind("pca.png", png) == "image" and file_kind("pca.svg", svg) == "image"
    results = check("plots/pca.png", png, ctx)
    assert verdicts(results) == {"size": "pass", "type": "pass", "dataset_copy": "pass", "image": "pass"}
    assert detail(results, "image").startswith("PNG image, 640 × 480 pixels (0.31 megapixels), ")
    assert verdicts(check("pca.svg", svg, ctx))["image"] == "pass"
    big = check("pca.png", png, dataclasses.replace(ctx, max_image_pixels=100_000))
    assert verdicts(big)["image"] == "flag" and "megapixels" in detail(big, "image")
    smuggled = check("pca.png", png + b"brca_0001,case\n" * 10, ctx)  # data after the end of the image
    assert verdicts(smuggled)["image"] == "flag" and "follow the end of the image" in detail(smuggled, "image")


def test_jpeg_and_gif_are_measured_and_damaged_ones_refused(ctx, pca_png):
    from PIL import Image

    image = Image.open(io.BytesIO(pca_png[0])).convert("RGB")
    for fmt, suffix in (("JPEG", ".jpg"), ("GIF", ".gif")):
        buf = io.BytesIO()
        image.save(buf, fmt)
        data = buf.getvalue()
        assert file_kind(f"a{suffix}", data) == "image" and file_kind(f"a{suffix}", data[1:]) is None
        assert detail(check(f"a{suffix}", data, ctx), "image").startswith(f"{fmt} image, 640 × 480 pixels")
        assert verdicts(check(f"a{suffix}", data[: len(data) // 2], ctx))["image"] == "refuse"


def test_content_must_match_the_suffix(pca_png, ctx):
    csv_bytes = b"sample,value\nx,1\n"
    assert file_kind("plot.png", csv_bytes) is None
    assert verdicts(check("plot.png", csv_bytes, ctx))["type"] == "refuse"
    assert file_kind("plot.jpg", pca_png[0]) is None and file_kind("plot.csv", pca_png[0]) is None
    assert file_kind("plot.svg", b"<html><script>x</script></html>") is None
    assert [file_kind(n, csv_bytes) for n in ("a.csv", "a.tsv", "a.txt", "a.md", "a.log")] == ["table"] * 2 + [
        "text"
    ] * 3
    assert file_kind("a.exe", csv_bytes) is None and file_kind("Makefile", csv_bytes) is None
    assert file_kind("a.json", b"{}") == "text" and file_kind("a.json", b"{") is None
    assert file_kind("a.ipynb", b'{"cells": [], "nbformat": 4}') == "notebook" and file_kind("a.ipynb", b"{}") is None
    assert file_kind("report.pdf", b"%PDF-1.7\n...%%EOF\n") == "pdf" and file_kind("report.pdf", b"PDF") is None
    other = check("x.csv", csv_bytes, ctx)
    assert verdicts(check_file("x.csv", csv_bytes, "image", ctx))["type"] == "flag" != verdicts(other)["type"]


def test_an_svg_that_can_carry_code_or_data_is_flagged(ctx):
    svg = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">{}</svg>'
    assert verdicts(check("a.svg", svg.format("<circle r='4'/>").encode(), ctx))["image"] == "pass"
    for body in ("<script>fetch('x')</script>", "<image href='data:image/png;base64,AAAA'/>",
                 "<rect onclick='x()'/>", "<a href='https://example.org/'>x</a>"):  # fmt: skip
        results = check("a.svg", svg.format(body).encode(), ctx)
        assert verdicts(results)["image"] == "flag", body
        assert "active content or data" in detail(results, "image")


def test_ids_in_texts_and_notebooks_are_flagged(project, ctx):
    ids = project[2]
    assert verdicts(check("notes.md", f"outliers: {ids[3]} and {ids[7]}.".encode(), ctx))["sample_ids"] == "flag"
    assert verdicts(check("notes.md", b"brca_ is the prefix; brca_99999 is no sample", ctx))["sample_ids"] == "pass"
    nb = {"cells": [{"cell_type": "code", "source": "x", "outputs": [{"output_type": "stream", "text": ids[:5]}]}],
          "nbformat": 4, "nbformat_minor": 5, "metadata": {}}  # fmt: skip
    assert verdicts(check("a.ipynb", json.dumps(nb).encode(), ctx))["sample_ids"] == "flag"


def test_malformed_inputs_get_a_clear_verdict_and_never_raise(ctx, pca_png):
    png = pca_png[0]
    garbage = check("data.csv", os.urandom(4000), ctx)
    assert verdicts(garbage) == {"size": "pass", "type": "refuse", "dataset_copy": "pass"}
    assert "content is not UTF-8 text" in detail(garbage, "type")
    truncated = check("pca.png", png[: len(png) // 2], ctx)
    assert verdicts(truncated)["image"] == "refuse" and "truncated" in detail(truncated, "image")
    damaged = bytearray(png)
    damaged[100] ^= 0xFF
    assert verdicts(check("pca.png", bytes(damaged), ctx))["image"] == "refuse"
    assert verdicts(check("notes.txt", "café".encode("latin-1"), ctx))["type"] == "refuse"
    assert verdicts(check("empty.csv", b"", ctx)) == {"size": "pass", "type": "pass", "dataset_copy": "pass",
                                                       "sample_ids": "pass", "row_count": "pass",
                                                       "min_cell_count": "pass"}  # fmt: skip
    huge_field = check("wide.csv", b'a\n"' + b"x" * 200_000 + b'"\n', ctx)
    assert verdicts(huge_field)["table"] == "refuse"
    assert verdicts(check("big.txt", b"x" * (ctx.flag_bytes + 1), ctx))["size"] == "flag"
    assert all(c.as_dict().keys() == {"name", "verdict", "detail"} for c in garbage)
    rng = np.random.default_rng(4)
    for name in ("a.png", "a.jpg", "a.gif", "a.svg", "a.pdf", "a.csv", "a.tsv", "a.json", "a.ipynb", "a.txt", "a"):
        for data in (b"", os.urandom(50), png[:8] + os.urandom(300), b"\xff\xd8\xff" + os.urandom(30), b"GIF89a",
                     bytes(rng.integers(0, 128, 3000, dtype=np.uint8)), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"):  # fmt: skip
            for kind in (None, "image", "table"):
                results = check_file(name, data, kind, ctx, acro={"a.csv": "not a dict"})
                assert {c.verdict for c in results} <= {"pass", "flag", "refuse"} and results[0].name == "size"


def test_chunk_index_speed(ctx):
    """A 10 MB request against the index in well under a second (measured ~0.35 s here; generous bound)."""
    for data in (os.urandom(10 << 20), bytes(10 << 20)):
        started = time.perf_counter()
        assert ctx.chunks.match(data) is None
        assert time.perf_counter() - started < 3
    index = ChunkIndex.build([])
    assert index.match(b"x" * 10_000) is None and not index.names
    assert checks.MIN_CONTAIN > checks.MIN_IDENTITY
