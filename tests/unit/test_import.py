"""VCF/BCF import: the store round-trips against independent readers, and bad files fail cleanly.

No hub here: ``convert`` and the allele index on files made by the tests. The CLI
path (project, permissions, audit) is in test_datasets.py.
"""

from __future__ import annotations

import json
import warnings

import allel
import numpy as np
import pytest
import zarr

from datahavn import allele_index as ai
from datahavn.hub_config.datasets.chunks import array_digest
from datahavn.hub_config.datasets.convert import convert
from datahavn.hub_config.datasets.source import SourceError
from datahavn.kernels import Project

from ..vcf_data import EDGE_VCF, bgzip, simulated_vcf, write


@pytest.fixture(scope="module")
def sim_text():
    return simulated_vcf()


def reference(path, max_alt):
    """scikit-allel's own parser: genotypes (negative = no call), positions, alleles, samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = allel.read_vcf(str(path), fields=["samples", "variants/POS", "variants/REF", "variants/ALT",
                                               "variants/CHROM", "calldata/GT"], alt_number=max_alt)
    return cs


def check_store(store, ref):
    root = zarr.open_group(str(store), mode="r")
    g = root["call_genotype"][:]
    assert g.dtype == np.int8 and g.ndim == 3
    expected = ref["calldata/GT"]
    # scikit-allel pads absent copies (a haploid call) with -1 where the VCF Zarr layout uses -2
    assert np.array_equal(np.where(g < 0, -1, g), np.where(expected < 0, -1, expected))
    assert np.array_equal(root["call_genotype_mask"][:], g < 0)
    assert list(root["sample_id"][:]) == list(ref["samples"])
    assert np.array_equal(root["variant_position"][:], ref["variants/POS"])
    alleles = root["variant_allele"][:]
    assert list(alleles[:, 0]) == list(ref["variants/REF"])
    alts = ref["variants/ALT"]
    for i in range(len(alts)):
        want = [a for a in np.atleast_1d(alts[i]) if a]
        assert [a for a in alleles[i, 1:] if a] == want
    contigs = root["contig_id"][:]
    assert list(contigs[root["variant_contig"][:]]) == list(ref["variants/CHROM"])
    return root, g


def index_counts(store, samples=None):
    p = Project("t", store.parent.parent)
    return p.genotypes(store.name[:-4]).count_alleles(subpop=samples).compute()


@pytest.mark.parametrize("kind", ["vcf", "gz", "bgzf"])
def test_simulated_round_trip(tmp_path, sim_text, kind):
    src = write(tmp_path / ("in.vcf" if kind == "vcf" else "in.vcf.gz"), sim_text, kind)
    store = tmp_path / "p" / "data" / "sim.vcz"
    manifest = convert(src, store, workers=2)
    root, g = check_store(store, reference(src, 3))
    assert manifest["counts"]["variants"] == g.shape[0] > 500
    assert manifest["source"]["format"] == {"vcf": "vcf", "gz": "vcf.gz", "bgzf": "vcf.bgzf"}[kind]
    # allele counts from the index equal scikit-allel's on the whole matrix, for all samples and a subset
    ga = allel.GenotypeArray(g)
    top = int(g.max())
    rng = np.random.default_rng(3)
    subset = np.sort(rng.choice(g.shape[1], g.shape[1] // 3, replace=False))
    assert np.array_equal(index_counts(store), ga.count_alleles(max_allele=top))
    assert np.array_equal(index_counts(store, subset), ga.count_alleles(max_allele=top, subpop=subset))
    assert top >= 2, "the simulation should have multi-allelic sites"


def test_edge_cases_round_trip(tmp_path):
    src = write(tmp_path / "edge.vcf.gz", EDGE_VCF, "bgzf")
    store = tmp_path / "p" / "data" / "edge.vcz"
    manifest = convert(src, store, workers=1)
    root, g = check_store(store, reference(src, 11))
    assert g[2, 1].tolist() == [0, -2]  # a haploid call in a diploid file
    assert g[4, 0].tolist() == [0, 11] and g[4, 1].tolist() == [10, 1]
    assert root["call_genotype_phased"][:][:, 0].tolist() == [True, False, True, True, True]
    assert list(root["filter_id"][:]) == ["PASS", "q10"]
    assert root["variant_filter"][:].tolist()[2] == [True, True]
    q = root["variant_quality"][:]
    assert q[0] == 50 and np.isnan(q[1]) and q[2] == 7.5
    assert list(root["contig_id"][:]) == ["chr1", "chr2"]  # chr2 was not declared
    assert list(root["variant_id"][:]) == ["rs1", ".", "rs3", ".", "."]
    assert manifest["counts"] == {"variants": 5, "samples": 4, "ploidy": 2, "contigs": 2, "max_allele": 11}
    ga = allel.GenotypeArray(np.where(g < 0, -1, g))
    for subset in (None, [0, 3], [1]):
        assert np.array_equal(index_counts(store, subset), ga.count_alleles(max_allele=11, subpop=subset))


def test_bcf_round_trip(tmp_path, sim_text):
    import cyvcf2
    text_path = write(tmp_path / "in.vcf", sim_text, "vcf")
    src = tmp_path / "in.bcf"
    reader = cyvcf2.VCF(str(text_path))
    w = cyvcf2.Writer(str(src), reader, mode="wb")
    for v in reader:
        w.write_record(v)
    w.close()
    reader.close()
    store = tmp_path / "p" / "data" / "bcf.vcz"
    manifest = convert(src, store)
    assert manifest["source"]["format"] == "bcf"
    check_store(store, reference(text_path, 3))


def test_manifest_and_layout(tmp_path, sim_text):
    src = write(tmp_path / "in.vcf.gz", sim_text, "bgzf")
    store = tmp_path / "s.vcz"
    convert(src, store)
    m = json.loads((store / "manifest.json").read_text())
    import hashlib

    assert m["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m["source"]["bytes"] == src.stat().st_size
    cg = m["arrays"]["call_genotype"]
    assert cg["dtype"] == "|i1" and cg["codec"]["cname"] == "zstd" and len(cg["chunks"]) == 3
    for name, info in m["arrays"].items():
        assert array_digest(store / name) == info["sha256"], name
    for name, info in m["allele_index"].items():
        assert array_digest(store / ai.GROUP / name) == info["sha256"], name
    attrs = json.loads((store / "call_genotype" / ".zattrs").read_text())
    assert attrs["_ARRAY_DIMENSIONS"] == ["variants", "samples", "ploidy"]
    assert json.loads((store / ".zattrs").read_text())["vcf_zarr_version"] == "0.4"


def test_opens_in_sgkit(tmp_path, sim_text):
    import sgkit
    src = write(tmp_path / "in.vcf.gz", sim_text, "bgzf")
    store = tmp_path / "s.vcz"
    convert(src, store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = sgkit.load_dataset(str(store))
        stats = sgkit.variant_stats(ds)
    g = ds["call_genotype"].values
    assert ds["variant_position"].dtype == np.int32 and ds["call_genotype"].dtype == np.int8
    n_alt = np.array([((g == a).sum(axis=(1, 2))) for a in range(1, 4)]).T.sum(axis=1)
    assert np.array_equal(stats["variant_allele_count"].values[:, 1:].sum(axis=1), n_alt)


def test_bio2zarr_store_opens_in_project(tmp_path):
    """A store bio2zarr wrote (from a tree sequence: its VCF path needs an index) works through ``project``."""
    import subprocess
    import sys
    from pathlib import Path

    import bio2zarr  # noqa: F401
    import msprime

    ts = msprime.sim_ancestry(30, sequence_length=3e5, recombination_rate=1e-8, population_size=10_000, random_seed=5)
    msprime.sim_mutations(ts, rate=2e-8, random_seed=5).dump(tmp_path / "sim.trees")
    store = tmp_path / "p" / "data" / "b2z.vcz"
    store.parent.mkdir(parents=True)
    tool = Path(sys.executable).with_name("tskit2zarr")
    subprocess.run([str(tool), "convert", str(tmp_path / "sim.trees"), str(store)], check=True, capture_output=True)
    p = Project("p", tmp_path / "p")
    assert "b2z" in p.datasets()
    root = p.open("b2z")
    g = p.genotypes("b2z")
    expected = allel.GenotypeArray(root["call_genotype"][:])
    top = int(expected.max())
    assert np.array_equal(g.count_alleles().compute(), expected.count_alleles(max_allele=top))
    assert np.array_equal(g.count_alleles(subpop=[0, 5, 9]).compute(),
                          expected.count_alleles(max_allele=top, subpop=[0, 5, 9]))
    with pytest.raises(Exception, match="(?i)read.only"):
        root["call_genotype"][0, 0, 0] = 1


# --- bad input: a clear error, nothing left behind ---------------------------------


def damaged(tmp_path, sim_text):
    good = bgzip(sim_text.encode())
    blocks = good.count(b"\x1f\x8b\x08\x04")
    assert blocks > 3
    header_end = sim_text.index("\n", sim_text.index("#CHROM")) + 1
    lines = sim_text[header_end:].split("\n")
    mid = len(good) // 2
    flipped = bytearray(good)
    flipped[mid] ^= 0xFF
    return {
        "cut mid-block": (good[: mid + 7], "truncated"),
        "cut at a block boundary": (good[: good.rindex(b"\x1f\x8b\x08\x04", 0, len(good) - 28)], "truncated"),
        "no EOF block": (good[:-28], "no BGZF end-of-file block"),
        "a flipped byte": (bytes(flipped), "damaged compressed data"),
        "gzip cut short": (gzip_cut(sim_text), "truncated"),
        "not a VCF": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not a VCF"),
        "empty": (b"", "not a VCF"),
        "plain text": (b"hello\nworld\n", "not a VCF"),
        "header only": (sim_text[:header_end].encode(), "no records"),
        "garbled genotype": (
            (sim_text[:header_end] + "\n".join(lines[:3] + [lines[3].replace("0|", "0x", 1)] + lines[4:])).encode(),
            f"line {sim_text[:header_end].count(chr(10)) + 4}, sample",
        ),
        "missing samples": (
            (sim_text[:header_end] + "\n".join(lines[:5] + [lines[5].rsplit("\t", 2)[0]] + lines[6:])).encode(),
            "fewer samples than the header",
        ),
        "allele out of range": (
            (sim_text[:header_end] + "\n".join(lines[:2] + [lines[2].replace("|0", "|7", 1)] + lines[3:])).encode(),
            "above the number of alleles",
        ),
        "bad POS": (
            (sim_text[:header_end] + "\n".join(
                [lines[0].split("\t", 2)[0] + "\tX1\t" + lines[0].split("\t", 2)[2]] + lines[1:])).encode(),
            "POS is not a positive integer",
        ),
        "cut mid-line (plain)": (sim_text[: len(sim_text) * 2 // 3].encode(), "line "),
    }


def gzip_cut(text: str) -> bytes:
    import gzip

    data = gzip.compress(text.encode())
    return data[: len(data) // 2]


def test_bad_files_fail_cleanly(tmp_path, sim_text):
    for name, (data, message) in damaged(tmp_path, sim_text).items():
        src = tmp_path / "bad.vcf.gz"
        src.write_bytes(data)
        store = tmp_path / "out" / "bad.vcz"
        with pytest.raises(SourceError) as info:
            convert(src, store)
        text = str(info.value)
        assert message in text, f"{name}: {text}"
        assert "\n" not in text, name
        assert not store.exists(), f"{name}: a store was left behind"


def test_refuses_existing_store(tmp_path, sim_text):
    src = write(tmp_path / "in.vcf", sim_text, "vcf")
    store = tmp_path / "s.vcz"
    store.mkdir()
    (store / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        convert(src, store)
    assert (store / "keep").read_text() == "x"


def test_stack_fixes(tmp_path, sim_text):
    """scikit-allel 1.3.13 on numpy 2 / Dask: what breaks upstream works through datahavn.kernels."""
    import dask.array as da

    from datahavn.kernels.genotypes import locate_unlinked

    src = write(tmp_path / "in.vcf", sim_text, "vcf")
    convert(src, tmp_path / "p" / "data" / "s.vcz")
    g = Project("p", tmp_path / "p").genotypes("s")
    numpy_g = allel.GenotypeArray(g.compute())
    top = int(numpy_g.max())
    # upstream: count_alleles() without max_allele overflows int8 on numpy 2
    plain = allel.GenotypeDaskArray(g.values)
    try:
        plain.count_alleles().compute()
        upstream_overflows = False
    except OverflowError:
        upstream_overflows = True
    assert upstream_overflows, "scikit-allel fixed the overflow: the workaround can go"
    # ours: whole array (index) and a slice (scikit-allel with max_allele from the data)
    assert np.array_equal(g.count_alleles().compute(), numpy_g.count_alleles(max_allele=top))
    part = g[100:400]
    assert type(part).__name__ == "ProjectGenotypes" and part._index is None
    assert np.array_equal(part.count_alleles().compute(), numpy_g[100:400].count_alleles(max_allele=int(
        numpy_g[100:400].max())))
    # upstream: locate_unlinked on a Dask array fails; ours prunes block by block
    gn = g.to_n_alt()
    assert isinstance(gn, da.Array)
    try:
        allel.locate_unlinked(gn)
        upstream_fails = False
    except (TypeError, ValueError):
        upstream_fails = True
    assert upstream_fails
    loc = locate_unlinked(gn.rechunk({0: 250}), size=50, step=10, threshold=0.1)
    n = numpy_g.to_n_alt()
    expected = np.concatenate([allel.locate_unlinked(n[i : i + 250], size=50, step=10, threshold=0.1)
                               for i in range(0, len(n), 250)])
    assert loc.dtype == bool and np.array_equal(loc, expected) and 0 < loc.sum() < len(loc)
