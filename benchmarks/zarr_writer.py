"""Hand-written zarr v2 chunk writer vs zarr's own API for the arrays the importer writes: is ChunkWriter worth it?

The importer (``StoreWriter``, in ``hub_config/datasets/writer.py``, formerly ``datahavn/vcz_import.py``) writes
``call_genotype`` (int8, variants x samples x ploidy), ``call_genotype_mask`` (bool, same shape) and
``call_genotype_phased`` (bool, variants x samples) with ``ChunkWriter`` (``hub_config/datasets/chunks.py``, formerly
``datahavn/zarr_v2.py``), which compresses chunks in the import's thread pool and takes each chunk file's
SHA-256 as it writes it (the manifest lists them). This script times, in one process, on the same in-memory data:

(a) ``chunkwriter``: ChunkWriter exactly as StoreWriter drives it: one ``ThreadPoolExecutor(N)``, ``depth=N``, blocks
    of ``variants_chunk(n_samples, 2)`` variants appended along axis 0 (the importer's block size), chunks
    ``(variants_chunk, min(n_samples, 10 000), 2)``, ``CALLS_CODEC`` (blosc zstd 1 bitshuffle); constant mask and
    phased blocks through ``append_constant`` (encoded once per writer), the real mask (``g < 0``) through ``append``.
    Its SHA-256 of every chunk file is part of the timed work.
(b) ``zarr``: ``zarr.open_group(zarr_format=2)`` + ``create_array`` with the same shape, chunks and
    ``numcodecs.Blosc(zstd, 1, BITSHUFFLE)`` as compressor, ``config={"write_empty_chunks": False}`` (zarr 3's
    per-array setting; the global one is ``zarr.config.set({"array.write_empty_chunks": False})``, also False by
    default in zarr 3.1), fill values 0 / False; ``arr[start:stop] = block`` block by block from the main thread
    (constant blocks as a scalar, ``arr[start:stop] = False``), zarr's concurrency set to N (``async.concurrency``
    and ``threading.max_workers``, the pool its codecs run in); then the SHA-256 of the chunk files, as the importer
    does for the arrays it writes through zarr (``array_digest`` beside ChunkWriter: read back and hashed, one
    thread). The row is write + hash; the ``write only`` row (c) is the write part of the same runs, the ``SHA-256
    pass`` row the hash part.
(d) ``zarr-threads``: as (b), but the block writes (``arr[a:b] = block``, three arrays per block) are submitted from a
    ``ThreadPoolExecutor(N)`` with at most N blocks in flight: the best the sync zarr API can do for a streaming
    writer, since one ``arr[a:b] = block`` covers a single chunk here (all samples fit in one samples chunk) and
    zarr only overlaps the chunks of one call.
(e) ``zarr-threads-fill``: as (d), with ``fill_value=True`` for ``call_genotype_phased``, so that zarr skips its
    all-True chunks as it skips the all-False mask chunks (no file; read back as the fill value). This is the
    diagnostic for how much of (a)'s lead is ``append_constant`` (a constant chunk encoded once per writer, where
    zarr encodes every constant chunk it does write: an all-equal 30-66 MB chunk takes ~0.1-0.25 s to bitshuffle
    and compress here, more than a genotype chunk).

Not measured: parsing, indexing, the allele index arrays, the per-variant arrays (the importer already writes those
through zarr). zarr gets the final shape up front here; the importer streams a VCF of unknown length, so a zarr
writer would have to ``resize``/``append`` per block (one metadata write each), which this does not charge it for.

Data (numpy, seeded, in memory before any timing): diploid int8 genotypes, each variant's derived-allele count drawn
from a neutral site-frequency spectrum (P(k) ~ 1/k, k = 1..2n-1) and its carriers i.i.d. among the haplotypes (no
linkage, so it does not compress exactly like real data); 0.1 % of the calls of the first block are -1 (missing). The
mask is then what the importer writes: ``g < 0`` for the first block, constant False (constant chunks) for the rest;
phased is constant True. Sizes: ``small`` 1 000 samples x 100 000 variants (0.2 GB of genotypes, chunks of 33 000
variants: 3 full chunks + an edge chunk), ``large`` 5 000 x 200 000 (2 GB, chunks of 6 000: 33 + an edge chunk).

Each method runs ``--repeat`` (3) times, round-robin with the starting method rotated, after one untimed warm-up of
each on a tiny array; output folders are new temp folders under /tmp (``--tmp``) removed after each run (untimed).
Reported: median seconds (range), genotype GB/s, and the ratio to (b) zarr API incl. hashing, measured in the same
run. Correctness, once per size, on the last run's stores: every array read back with ``zarr.open_array`` from each
store, chunk row by chunk row, must equal the source (else MISMATCH, exit status 2); and whether the chunk files are
byte-identical between (a) and (b) (zarr skips chunks equal to the fill value, so the constant-False mask chunks have
no file in its store and its digest differs). This is a measurement, not a pass/fail test.
The last line is ``chunkwriter_vs_zarr_<size>=<(a) / (b) incl. hashing>`` per size (< 1: hand-written is faster),
then the same against (d) and (e) (``chunkwriter_vs_zarr_threads_<size>``, ``chunkwriter_vs_zarr_fill_<size>``).

Run from the repository root with the hub venv (small + large take ~2 min on a quiet 2-core machine):

    .venv/bin/python benchmarks/zarr_writer.py                          # --sizes small,large --workers 2 --repeat 3
    .venv/bin/python benchmarks/zarr_writer.py --sizes small --repeat 1 # quick
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numcodecs import Blosc

from datahavn.hub_config.datasets.chunks import ChunkWriter, array_digest, digest
from datahavn.hub_config.datasets.writer import CALLS_CODEC, SAMPLES_CHUNK, variants_chunk

PRESETS = {"tiny": (200, 20_000), "small": (1_000, 100_000), "large": (5_000, 200_000)}
PLOIDY = 2
MISSING_RATE = 1e-3  # of the first block's calls
ARRAYS = ("call_genotype", "call_genotype_mask", "call_genotype_phased")


class Data:
    """Genotypes, the first block's mask, and the importer's chunking, for one size."""

    def __init__(self, n_samples: int, n_variants: int, seed: int = 42):
        self.n_samples, self.n_variants = n_samples, n_variants
        self.v = variants_chunk(n_samples, PLOIDY)
        self.s = min(n_samples, SAMPLES_CHUNK)
        self.g = simulate(n_samples, n_variants, self.v, seed)
        self.blocks = [(a, min(a + self.v, n_variants)) for a in range(0, n_variants, self.v)]
        first = self.g[: self.blocks[0][1]]
        self.first_mask = first < 0 if (first < 0).any() else None  # None: a constant block (index_records' rule)

    def mask_block(self, i: int):
        """The mask of block i: an array, or None for constant False."""
        return self.first_mask if i == 0 else None

    @property
    def nbytes(self) -> int:
        return self.g.nbytes


def simulate(n_samples: int, n_variants: int, block: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_hap = n_samples * PLOIDY
    k = np.arange(1, n_hap, dtype=np.float64)
    cdf = np.cumsum(1.0 / k)
    cdf /= cdf[-1]
    counts = np.minimum(np.searchsorted(cdf, rng.random(n_variants)) + 1, n_hap - 1)
    p = (counts / n_hap).astype(np.float32)
    g = np.empty((n_variants, n_samples, PLOIDY), dtype=np.int8)
    flat = g.reshape(n_variants, n_hap).view(np.bool_)
    step = max(1, (64 << 20) // (4 * n_hap))  # ~64 MB of float32 at a time
    for a in range(0, n_variants, step):
        b = min(a + step, n_variants)
        np.less(rng.random((b - a, n_hap), dtype=np.float32), p[a:b, None], out=flat[a:b])
    first = g[: min(block, n_variants)].reshape(-1)
    first[rng.choice(first.size, max(1, int(first.size * MISSING_RATE)), replace=False)] = -1
    return g


def codec_kwargs() -> dict:
    return {k: v for k, v in CALLS_CODEC.items() if k != "id"}


def shapes(d: Data, phased_fill: bool = False) -> dict:
    """name -> (tail, chunks, dtype, dims, fill value for zarr)."""
    tail3, chunks3 = (d.n_samples, PLOIDY), (d.v, d.s, PLOIDY)
    return {
        "call_genotype": (tail3, chunks3, "i1", ("variants", "samples", "ploidy"), 0),
        "call_genotype_mask": (tail3, chunks3, "?", ("variants", "samples", "ploidy"), False),
        "call_genotype_phased": ((d.n_samples,), (d.v, d.s), "?", ("variants", "samples"), phased_fill),
    }


# --------------------------------------------------------------------------------------------------------------------
# The writers. Each returns {"write": s, "sha": s, "digests": {name: digest}}.


def run_chunkwriter(d: Data, root: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    root.mkdir(parents=True)
    (root / ".zgroup").write_text('{"zarr_format": 2}')
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-cw") as pool:
        w = {
            name: ChunkWriter(root, name, tail, chunks, dtype, CALLS_CODEC, dims, pool, workers)
            for name, (tail, chunks, dtype, dims, _) in shapes(d).items()
        }
        for i, (a, b) in enumerate(d.blocks):
            w["call_genotype"].append(d.g[a:b])
            mask = d.mask_block(i)
            if mask is None:
                w["call_genotype_mask"].append_constant(b - a, False)
            else:
                w["call_genotype_mask"].append(mask)
            w["call_genotype_phased"].append_constant(b - a, True)
        meta = {name: writer.close() for name, writer in w.items()}
    t1 = time.perf_counter()
    return {"write": t1 - t0, "sha": 0.0, "digests": {name: m["sha256"] for name, m in meta.items()}}


def _zarr_arrays(d: Data, root: Path, phased_fill: bool = False) -> dict:
    import zarr

    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    arrays = {}
    for name, (tail, chunks, dtype, dims, fill) in shapes(d, phased_fill).items():
        arr = group.create_array(name, shape=(d.n_variants, *tail), chunks=chunks, dtype=dtype,
                                 compressors=Blosc(**codec_kwargs()), fill_value=fill,
                                 config={"write_empty_chunks": False})
        arr.attrs["_ARRAY_DIMENSIONS"] = list(dims)
        arrays[name] = arr
    return arrays


def _zarr_block(d: Data, arrays: dict, i: int) -> None:
    a, b = d.blocks[i]
    arrays["call_genotype"][a:b] = d.g[a:b]
    mask = d.mask_block(i)
    arrays["call_genotype_mask"][a:b] = False if mask is None else mask
    arrays["call_genotype_phased"][a:b] = True


def _sha_pass(root: Path) -> dict:
    return {name: array_digest(root / name) for name in ARRAYS}


def run_zarr(d: Data, root: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    arrays = _zarr_arrays(d, root)
    for i in range(len(d.blocks)):
        _zarr_block(d, arrays, i)
    t1 = time.perf_counter()
    digests = _sha_pass(root)
    t2 = time.perf_counter()
    return {"write": t1 - t0, "sha": t2 - t1, "digests": digests}


def run_zarr_threads(d: Data, root: Path, workers: int, phased_fill: bool = False) -> dict:
    t0 = time.perf_counter()
    arrays = _zarr_arrays(d, root, phased_fill)
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-zt") as pool:
        inflight = []
        for i in range(len(d.blocks)):
            inflight.append(pool.submit(_zarr_block, d, arrays, i))
            while len(inflight) > workers:
                inflight.pop(0).result()
        for f in inflight:
            f.result()
    t1 = time.perf_counter()
    digests = _sha_pass(root)
    t2 = time.perf_counter()
    return {"write": t1 - t0, "sha": t2 - t1, "digests": digests}


def run_zarr_threads_fill(d: Data, root: Path, workers: int) -> dict:
    return run_zarr_threads(d, root, workers, phased_fill=True)


METHODS = {"chunkwriter": run_chunkwriter, "zarr": run_zarr, "zarr-threads": run_zarr_threads,
           "zarr-threads-fill": run_zarr_threads_fill}
LABELS = {
    "chunkwriter": "(a) ChunkWriter (pool N, depth N), SHA-256 as written",
    "zarr": "(b) zarr API arr[a:b]=block + SHA-256 pass",
    "zarr:write": "(c)   zarr API write only (same runs)",
    "zarr:sha": "      SHA-256 pass only (same runs)",
    "zarr-threads": "(d) zarr API, N blocks in flight + SHA-256 pass",
    "zarr-threads:write": "      zarr API, N blocks in flight, write only",
    "zarr-threads-fill": "(e) as (d), phased fill_value=True + SHA-256 pass",
}


# --------------------------------------------------------------------------------------------------------------------
# Checks.


def file_sums(path: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in path.iterdir() if not f.name.startswith(".")}


def verify(d: Data, stores: dict) -> tuple[list[str], list[str]]:
    """(lines to print, mismatches): decoded arrays against the source, chunk files of (a) against (b)."""
    import zarr

    lines, bad = [], []
    for method, root in stores.items():
        for name in ARRAYS:
            arr = zarr.open_array(str(root / name), mode="r")
            if arr.shape != (d.n_variants, *shapes(d)[name][0]):
                bad.append(f"{method} {name}: shape {arr.shape}")
                continue
            for i, (a, b) in enumerate(d.blocks):
                got = arr[a:b]
                if name == "call_genotype":
                    want = d.g[a:b]
                elif name == "call_genotype_mask":
                    mask = d.mask_block(i)
                    want = np.zeros(got.shape, bool) if mask is None else mask
                else:
                    want = np.ones(got.shape, bool)
                if got.dtype != want.dtype or not np.array_equal(got, want):
                    bad.append(f"{method} {name}: variants {a}-{b} differ from the source")
                    break
    lines.append("decoded: " + ("MISMATCH: " + "; ".join(bad) if bad else
                                f"all {len(ARRAYS)} arrays of {', '.join(stores)} equal the source (zarr.open_array)"))
    hand, api = stores["chunkwriter"], stores["zarr"]
    for name in ARRAYS:
        h, z = file_sums(hand / name), file_sums(api / name)
        same = sum(1 for k in h if z.get(k) == h[k])
        differ = sum(1 for k in h if k in z and z[k] != h[k])
        only_h, only_z = sorted(set(h) - set(z)), sorted(set(z) - set(h))
        mh = json.loads((hand / name / ".zarray").read_text())
        mz = json.loads((api / name / ".zarray").read_text())
        meta = [f"{k} {mh.get(k)!r} vs {mz.get(k)!r}" for k in sorted(set(mh) | set(mz)) if mh.get(k) != mz.get(k)]
        lines.append(
            f"chunk files {name}: (a) {len(h)}, (b) {len(z)}; byte-identical {same}, differing {differ}, "
            f"only in (a) {len(only_h)}{' (zarr skipped them: all fill value)' if only_h else ''}, "
            f"only in (b) {len(only_z)}; digest {'equal' if digest(h) == digest(z) else 'differs'}; "
            f".zarray differs: {', '.join(meta) or 'no'}"
        )
    return lines, bad


# --------------------------------------------------------------------------------------------------------------------


def store_bytes(root: Path) -> int:
    return sum(f.stat().st_size for name in ARRAYS for f in (root / name).iterdir())


def fmt_s(x: float) -> str:
    return f"{x:.3f}"


def run_size(label: str, n_samples: int, n_variants: int, args, tmp: Path) -> tuple[dict, bool]:
    t_gen = time.perf_counter()
    d = Data(n_samples, n_variants)
    t_gen = time.perf_counter() - t_gen
    print(f"\n== {label}: {n_samples:,} samples x {n_variants:,} variants x {PLOIDY}, {d.nbytes / 1e9:.3f} GB of "
          f"genotypes (mean alt frequency {d.g[: d.v].clip(0).mean():.3f}); blocks and chunks of {d.v:,} variants "
          f"({len(d.blocks)} blocks, last {d.blocks[-1][1] - d.blocks[-1][0]:,}); {args.workers} workers; "
          f"data generated in {t_gen:.1f} s", flush=True)
    load0 = os.getloadavg()[0]
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    digests: dict[str, dict] = {}
    kept: dict[str, Path] = {}
    digest_ok = True
    names = list(METHODS)
    for r in range(args.repeat):
        for method in names[r % len(names):] + names[: r % len(names)]:
            root = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=tmp)) / "store.vcz"
            gc.collect()
            t0 = time.perf_counter()
            res = METHODS[method](d, root, args.workers)
            total = time.perf_counter() - t0
            times.setdefault(method, []).append(total)
            if method != "chunkwriter":
                times.setdefault(f"{method}:write", []).append(res["write"])
                times.setdefault(f"{method}:sha", []).append(res["sha"])
            sizes[method] = store_bytes(root)
            digests.setdefault(method, res["digests"])
            print(f"   run {r + 1} {method:<17} {total:7.3f} s (write {res['write']:.3f}, sha {res['sha']:.3f})",
                  file=sys.stderr, flush=True)
            if r == args.repeat - 1:
                if method == "chunkwriter":  # its running sums must be those of the files on disk
                    for name in ARRAYS:
                        if array_digest(root / name) != res["digests"][name]:
                            print(f"MISMATCH: ChunkWriter's digest of {name} is not its files'", flush=True)
                            digest_ok = False
                kept[method] = root
            else:
                shutil.rmtree(root.parent)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["zarr"]
    rows = ["chunkwriter", "zarr", "zarr:write", "zarr:sha", "zarr-threads", "zarr-threads:write", "zarr-threads-fill"]
    width = max(len(LABELS[k]) for k in rows)
    print(f"{'method':<{width}}  n  seconds  range          GB/s  x (b)  output")
    print(f"{'-' * width}  -  -------  -------------  ----  -----  --------")
    for k in rows:
        ts = times[k]
        rng = f"{min(ts):.3f}-{max(ts):.3f}"
        out = f"{sizes[k] / 1e6:.1f} MB" if k in sizes else ""
        gbs = d.nbytes / 1e9 / med[k] if med[k] > 0 else float("inf")
        ratio = med[k] / base
        print(f"{LABELS[k]:<{width}}  {len(ts)}  {fmt_s(med[k]):>7}  {rng:<13}  {gbs:4.2f}  {ratio:5.2f}  {out}")
    print(f"x (b) = median seconds / median of (b) zarr API incl. SHA-256 pass; load average {load0:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end ({os.cpu_count()} CPUs)")
    lines, bad = verify(d, kept)
    for line in lines:
        print(line)
    same_digest = {name: digests["chunkwriter"][name] == digests["zarr"][name] for name in ARRAYS}
    print("manifest digests (a) vs (b): " + ", ".join(f"{n} {'equal' if s else 'differ'}"
                                                      for n, s in same_digest.items()))
    for root in kept.values():
        shutil.rmtree(root.parent)
    ratios = {"zarr": med["chunkwriter"] / med["zarr"], "zarr_threads": med["chunkwriter"] / med["zarr-threads"],
              "zarr_fill": med["chunkwriter"] / med["zarr-threads-fill"]}
    return ratios, digest_ok and not bad


def warm_up(tmp: Path, workers: int) -> None:
    """One untimed run of each method on a tiny array: zarr's event loop and pool, blosc, first-call costs."""
    d = Data(20, 3000)
    for method, fn in METHODS.items():
        root = Path(tempfile.mkdtemp(prefix=f"warm-{method}-", dir=tmp)) / "store.vcz"
        fn(d, root, workers)
        shutil.rmtree(root.parent)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="small,large", help=f"comma-separated, of {', '.join(PRESETS)}")
    ap.add_argument("--workers", type=int, default=2, help="threads: ChunkWriter's pool and depth, zarr's concurrency")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per method and size (medians reported)")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary stores go")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in PRESETS]
    if unknown:
        ap.error(f"unknown size(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")

    import numcodecs
    import zarr

    # before zarr's first I/O: its thread pool is created once, with threading.max_workers
    zarr.config.set({"async.concurrency": args.workers, "threading.max_workers": args.workers,
                     "array.write_empty_chunks": False})
    started = time.perf_counter()
    print(f"ChunkWriter from {ChunkWriter.__module__}, CALLS_CODEC and variants_chunk from {variants_chunk.__module__}")
    print(f"zarr {zarr.__version__}, numcodecs {numcodecs.__version__}, numpy {np.__version__}; codec {CALLS_CODEC}; "
          f"zarr config async.concurrency={zarr.config.get('async.concurrency')} "
          f"threading.max_workers={zarr.config.get('threading.max_workers')} "
          f"array.write_empty_chunks={zarr.config.get('array.write_empty_chunks')}")
    tmp = Path(tempfile.mkdtemp(prefix="zarr-writer-bench-", dir=args.tmp))
    ok = True
    final = {}
    try:
        warm_up(tmp, args.workers)
        for s in sizes:
            ratios, good = run_size(s, *PRESETS[s], args, tmp)
            ok &= good
            final[s] = ratios
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntook {(time.perf_counter() - started) / 60:.1f} min")
    print(" ".join([f"chunkwriter_vs_zarr_{s}={r['zarr']:.2f}" for s, r in final.items()]
                   + [f"chunkwriter_vs_zarr_threads_{s}={r['zarr_threads']:.2f}" for s, r in final.items()]
                   + [f"chunkwriter_vs_zarr_fill_{s}={r['zarr_fill']:.2f}" for s, r in final.items()]))
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
