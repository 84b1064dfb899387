"""Simulated genotype data for ``genotype_bench.py``, made once and cached.

One dataset per size, under ``<cache>/`` (default ``~/.cache/datahavn-bench/<samples>x<sites>/``):

- ``sim.trees``       msprime ``sim_ancestry`` (diploid, Hudson, Ne 10 000, r 1e-8) + ``sim_mutations`` (JC69, 1e-8);
                      the sequence length is chosen from the requested site count (Watterson: S = 4 Ne mu L a_n).
- ``sim.vcf.gz``      ``tskit write_vcf`` (1-based positions via ``position_transform``), BGZF-compressed,
  ``sim.vcf.gz.tbi``  and tabix-indexed, both with the htslib that ships inside cyvcf2 (no bgzip/tabix needed).
- ``samples.txt``     sample IDs in VCF order; ``phenotypes.tsv`` (IID, CASE 1/0: a seeded random ~half are cases);
  ``cases.txt``       the cases' IDs (plink2 ``--keep`` file, ``#IID`` header); ``cases.npy`` their 0-based indices.
- ``meta.json``       counts (samples, variants, max_allele, genotype bytes) and how the data were made.

Run alone: ``python benchmarks/genotype_sim.py --samples 200 --sites 20000 [--cache DIR]``.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

NE = 10_000
MUTATION_RATE = 1e-8
RECOMBINATION_RATE = 1e-8
SEED = 42
CASE_FRACTION = 0.5
FORMAT_VERSION = 1


def default_cache(samples: int, sites: int) -> Path:
    return Path.home() / ".cache" / "datahavn-bench" / f"{samples}x{sites}"


def sequence_length_for(samples: int, sites: int) -> float:
    """Sequence length expected to give ``sites`` segregating sites for ``samples`` diploids."""
    a_n = sum(1.0 / i for i in range(1, 2 * samples))
    return float(math.ceil(sites / (4 * NE * MUTATION_RATE * a_n)))


def _htslib() -> ctypes.CDLL:
    """htslib as bundled in the cyvcf2 wheel (a dependency of bio2zarr[vcf])."""
    import cyvcf2

    libs = glob.glob(os.path.join(os.path.dirname(cyvcf2.__file__), "cyvcf2*.so"))
    if not libs:
        raise RuntimeError("cyvcf2 extension not found: pip install 'bio2zarr[vcf]'")
    lib = ctypes.CDLL(libs[0])
    lib.bgzf_open.restype = ctypes.c_void_p
    lib.bgzf_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.bgzf_mt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.bgzf_write.restype = ctypes.c_ssize_t
    lib.bgzf_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.bgzf_close.argtypes = [ctypes.c_void_p]
    lib.tbx_index_build.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
    return lib


class BgzfWriter:
    """Minimal text sink writing BGZF through htslib (what ``bgzip`` does)."""

    def __init__(self, path: Path, threads: int = 2):
        self.lib = _htslib()
        self.fp = self.lib.bgzf_open(str(path).encode(), b"w6")
        if not self.fp:
            raise OSError(f"bgzf_open failed for {path}")
        if threads > 1:
            self.lib.bgzf_mt(self.fp, threads, 256)
        self.buf: list[str] = []
        self.size = 0

    def write(self, s: str) -> int:
        self.buf.append(s)
        self.size += len(s)
        if self.size > 8 << 20:
            self.flush()
        return len(s)

    def flush(self) -> None:
        if self.buf:
            data = "".join(self.buf).encode()
            if self.lib.bgzf_write(self.fp, data, len(data)) != len(data):
                raise OSError("bgzf_write failed")
            self.buf, self.size = [], 0

    def close(self) -> None:
        self.flush()
        if self.lib.bgzf_close(self.fp) != 0:
            raise OSError("bgzf_close failed")


def tabix_index(path: Path) -> Path:
    lib = _htslib()
    conf = ctypes.c_void_p.in_dll(lib, "tbx_conf_vcf")
    if lib.tbx_index_build(str(path).encode(), 0, ctypes.addressof(conf)) != 0:
        raise OSError(f"tbx_index_build failed for {path}")
    return Path(str(path) + ".tbi")


def max_allele_of(ts) -> int:
    """Largest allele index in the VCF tskit writes (alleles per site = ancestral + distinct derived states)."""
    import numpy as np

    tables = ts.tables
    if tables.mutations.num_rows == 0:
        return 1
    anc = tskit_strings(tables.sites.ancestral_state, tables.sites.ancestral_state_offset)
    der = tskit_strings(tables.mutations.derived_state, tables.mutations.derived_state_offset)
    per_site: dict[int, set] = {}
    for site, state in zip(tables.mutations.site.tolist(), der, strict=True):
        per_site.setdefault(site, {anc[site]}).add(state)
    return int(np.max([len(s) for s in per_site.values()])) - 1


def tskit_strings(data, offsets) -> list[str]:
    raw = data.tobytes()
    off = offsets.tolist()
    return [raw[off[i] : off[i + 1]].decode() for i in range(len(off) - 1)]


def log(msg: str) -> None:
    print(f"[sim] {msg}", file=sys.stderr, flush=True)


def ensure_dataset(samples: int, sites: int, cache: Path | None = None, threads: int = 2) -> dict:
    """Make (or reuse) the cached dataset; return its meta dict (with ``paths``)."""
    cache = Path(cache) if cache else default_cache(samples, sites)
    cache.mkdir(parents=True, exist_ok=True)
    meta_path = cache / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT_VERSION and meta["samples"] == samples and meta["target_sites"] == sites:
            meta["paths"] = paths(cache)
            if all(Path(p).exists() for p in meta["paths"].values()):
                return meta
        log(f"cache {cache} is stale or incomplete: remaking")

    import msprime
    import numpy as np
    import tskit

    from datahavn.hub_config.demo import cohorts

    p = paths(cache)
    length = sequence_length_for(samples, sites)
    trees = Path(p["trees"])
    if trees.exists():
        ts = tskit.load(trees)
        log(f"reusing {trees}")
    else:
        t0 = time.perf_counter()
        log(f"sim_ancestry: {samples} diploids, {length / 1e6:.2f} Mb (takes minutes at 5 000 samples)")
        ts = cohorts.ancestry(samples, length, SEED, mutation_rate=MUTATION_RATE,
                              recombination_rate=RECOMBINATION_RATE, population_size=NE)  # fmt: skip
        tmp = trees.with_suffix(".tmp")
        ts.dump(tmp)
        os.replace(tmp, trees)
        log(f"simulated {ts.num_sites} sites, {ts.num_trees} trees in {time.perf_counter() - t0:.1f} s")

    names = [f"S{i + 1:06d}" for i in range(ts.num_individuals)]
    vcf = Path(p["vcf"])
    t0 = time.perf_counter()
    log(f"writing {vcf} ({ts.num_sites} sites x {len(names)} samples)")
    tmp = vcf.with_name("tmp.vcf.gz")
    for stale in (tmp, Path(str(vcf) + ".tbi")):
        stale.unlink(missing_ok=True)
    out = BgzfWriter(tmp, threads=threads)
    cohorts.write_vcf(ts, out, "1", names)
    out.close()
    tabix_index(tmp)
    os.replace(Path(str(tmp) + ".tbi"), Path(str(vcf) + ".tbi"))
    os.replace(tmp, vcf)
    log(f"wrote {vcf.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")

    rng = np.random.default_rng(SEED)
    case = rng.random(len(names)) < CASE_FRACTION
    Path(p["samples"]).write_text("".join(f"{n}\n" for n in names))
    Path(p["phenotypes"]).write_text(
        "IID\tCASE\n" + "".join(f"{n}\t{int(c)}\n" for n, c in zip(names, case, strict=True))
    )
    Path(p["cases"]).write_text("#IID\n" + "".join(f"{n}\n" for n, c in zip(names, case, strict=True) if c))
    np.save(p["case_idx"], np.flatnonzero(case).astype(np.int64))

    meta = {
        "format": FORMAT_VERSION,
        "samples": samples,
        "target_sites": sites,
        "n_variants": ts.num_sites,
        "n_samples": len(names),
        "ploidy": 2,
        "n_cases": int(case.sum()),
        "max_allele": max_allele_of(ts),
        "genotype_bytes": ts.num_sites * len(names) * 2,
        "vcf_gz_bytes": vcf.stat().st_size,
        "sequence_length": length,
        "params": {
            "Ne": NE,
            "mutation_rate": MUTATION_RATE,
            "recombination_rate": RECOMBINATION_RATE,
            "seed": SEED,
            "mutation_model": "JC69 (msprime default)",
            "msprime": msprime.__version__,
            "tskit": tskit.__version__,
        },
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["paths"] = p
    return meta


def paths(cache: Path) -> dict:
    return {
        "trees": str(cache / "sim.trees"),
        "vcf": str(cache / "sim.vcf.gz"),
        "tbi": str(cache / "sim.vcf.gz.tbi"),
        "samples": str(cache / "samples.txt"),
        "phenotypes": str(cache / "phenotypes.tsv"),
        "cases": str(cache / "cases.txt"),
        "case_idx": str(cache / "cases.npy"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--sites", type=int, default=20_000)
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--force", action="store_true", help="remake everything, including the trees")
    args = ap.parse_args(argv)
    cache = args.cache or default_cache(args.samples, args.sites)
    if args.force and cache.exists():
        shutil.rmtree(cache)
    meta = ensure_dataset(args.samples, args.sites, cache)
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
