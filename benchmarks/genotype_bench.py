"""Genotype benchmark: import, allele frequencies and the decompression floor, against plink2 in the same run.

What it measures, on one msprime dataset per size (diploid; simulated once and cached, see genotype_sim.py):

(a) import of the bgzipped, tabix-indexed VCF: ours (``datahavn.hub_config.datasets.convert.convert``, 2 workers) vs
    ``bio2zarr vcf2zarr convert`` (2 worker processes) vs ``allel.vcf_to_zarr`` (one thread) vs
    ``plink2 --make-pgen``;
(b) allele counts over all variants, for all samples and for the cases of a seeded case/control split
    (``phenotypes.tsv`` / ``cases.txt``): ours (``Project(...).genotypes(ds).count_alleles(subpop=...)``), the generic
    scikit-allel Dask path on our store and on bio2zarr's, scikit-allel on numpy in memory, sgkit ``variant_stats``
    (threads) and ``plink2 --freq`` (``--keep cases.txt`` for the cases);
(c) the floor: read and decompress ``call_genotype`` only (``zarr.open_array(...)[:]`` and a Dask store into a null
    target), for our store and bio2zarr's.

Every measured operation runs in a fresh subprocess that times only the operation (opening stores, loading the
in-memory array and one warm-up call on the first 1 000 variants, for JIT compilation such as sgkit's numba and Dask's
first-call costs, are not timed; plink2 is timed as a whole process). Peak memory is that subprocess's peak RSS
(``os.wait4`` ru_maxrss, or the sampled sum over its process tree if larger; it includes the interpreter and its
imports, ~0.2 GB). AF and floor timings are medians of ``--af-repeats`` (3) runs taken round-robin; each import runs
up to ``--import-repeats`` (3) times but no new run starts once that tool has used ``--import-budget`` (150) seconds,
so at the large size plink2 (and ours, if quick) get 2-3 runs and bio2zarr / scikit-allel one; the ``n`` column says.
GB/s = n_variants x n_samples x ploidy bytes / seconds, for every row (cases too).
The ratio column is seconds / plink2's seconds for the same task (floor rows: vs ``--freq`` on all samples).
Correctness is checked once per size: every tool's allele counts (all samples and cases) must equal the numpy
reference and plink2's ``.afreq`` (ALT_FREQS x OBS_CT); otherwise it prints MISMATCH and exits 2.
The last line is ``af_vs_plink2=<ours, cases, largest size> import_vs_plink2=<ours, largest size>``.

Run (hub venv, from the repository root). The small size takes ~7 min with its data cached (+0.5 min to simulate);
the large one an estimated 35-45 min cached and 45-60 min the first time (simulation and VCF ~10-15 min), more if the
2 cores are shared:

    .venv/bin/python benchmarks/genotype_bench.py                         # 1 000 samples x ~103 000 sites
    .venv/bin/python benchmarks/genotype_bench.py --sizes small,large     # + 5 000 x ~487 000 (VCF.gz ~320 MB)
    .venv/bin/python benchmarks/genotype_bench.py --samples 200 --sites 20000 [--cache DIR] [--skip-import]

Data and stores are cached in ``~/.cache/datahavn-bench/<samples>x<sites>/`` (``--cache DIR``: that directory for
one size, ``DIR/<samples>x<sites>`` for several).

Dependencies: msprime, tskit, numpy, zarr 3, numcodecs, dask, scikit-allel, bio2zarr[vcf] (its cyvcf2 htslib also
bgzips and indexes the VCF), sgkit, psutil (all in the hub venv); plink2 on PATH (Debian: ``apt-get install -y
plink2``). A missing tool's rows print n/a with how to get it; our rows print n/a until
``datahavn.hub_config.datasets.convert`` and
``datahavn.kernels.Project`` exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASET = "sim"
PRESETS = {"tiny": (200, 20_000), "small": (1_000, 103_000), "large": (5_000, 487_000)}
WARM = 1000  # variants in the untimed warm-up call of each AF and floor operation

HINTS = {
    "plink2": "plink2 not installed: apt-get install -y plink2",
    "bio2zarr": "pip install 'bio2zarr[vcf]'",
    "allel": "pip install scikit-allel",
    "sgkit": "pip install sgkit",
}


# --------------------------------------------------------------------------------------------------------------------
# Worker side: one operation per process.


def _null_target():
    class Null:
        def __setitem__(self, key, value):
            pass

    return Null()


def _store_paths(spec):
    stores = spec["stores"]
    return {
        "ours": Path(stores["project"]) / "data" / f"{DATASET}.vcz",
        "bio2zarr": Path(stores["bio2zarr"]),
    }


class NotAvailable(Exception):
    pass


NOTES: list[str] = []  # worker-side remarks shown in the row's notes


def _import_ours(module, attr, what):
    """The installed (editable) datahavn first: it maps datahavn.kernels to kernels/; the checkout as a fallback."""
    import importlib

    for attempt in (0, 1):
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if attempt == 0 and e.name == "datahavn":
                sys.path.insert(0, str(REPO))
                continue
            raise NotAvailable(f"{what} not available: {type(e).__name__}: {e}") from e
        except Exception as e:  # ImportError, AttributeError, or anything the module raises at import time
            raise NotAvailable(f"{what} not available: {type(e).__name__}: {e}") from e


def _import_ours_convert():
    return _import_ours("datahavn.hub_config.datasets.convert", "convert", "datahavn importer")


def _import_ours_project():
    # ``datahavn.kernels.project`` is the preloaded instance; the class is exported beside it
    return _import_ours("datahavn.kernels", "Project", "datahavn Project")


def _require(module, hint):
    try:
        return __import__(module)
    except ImportError as e:
        raise NotAvailable(f"{module} not available ({hint}): {e}") from e


def _ensure_store(path: Path, what: str):
    what = {"ours": "datahavn"}.get(what, what)
    if not (path / "call_genotype").exists():
        raise NotAvailable(f"no {what} store at {path} (its import did not run or failed)")


def _prepare(spec):
    """Return (timed callable, result -> allele counts, untimed warm-up callable); all set-up happens here."""
    op, subset, threads = spec["op"], spec.get("subset"), spec["threads"]
    max_allele = spec["max_allele"]
    idx = None
    if subset == "cases":
        import numpy as np

        idx = np.load(spec["case_idx"])
    stores = _store_paths(spec)

    if op == "import_ours":
        convert = _import_ours_convert()
        dest = Path(spec["dest"])
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return (lambda: convert(spec["vcf"], str(dest), workers=threads)), None, None

    if op == "import_bio2zarr":
        _require("bio2zarr", HINTS["bio2zarr"])
        _require("cyvcf2", HINTS["bio2zarr"])
        from bio2zarr import vcf

        dest = Path(spec["dest"])
        shutil.rmtree(dest, ignore_errors=True)
        return (
            lambda: vcf.convert([spec["vcf"]], str(dest), worker_processes=threads, show_progress=False)
        ), None, None

    if op == "import_allel":
        _require("allel", HINTS["allel"])
        import allel
        import numcodecs
        import zarr

        dest = Path(spec["dest"])
        shutil.rmtree(dest, ignore_errors=True)

        def run():
            # Workarounds for zarr 3 (see /work/shared/notes/genomics-stack.md): a zarr_format 2 group and an explicit
            # numcodecs Blosc (zarr 2's default, which allel's compressor='default' used to mean); 'samples' left out
            # because allel creates it with create_dataset(data=...) without a shape, which zarr 3 refuses.
            zarr.open_group(str(dest), mode="w", zarr_format=2)
            allel.vcf_to_zarr(
                spec["vcf"],
                str(dest),
                fields=["variants/*", "calldata/GT"],
                compressor=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
            )

        return run, None, None

    if op in ("af_ours", "af_allel_dask_ours", "af_allel_dask_bio2zarr", "af_numpy", "af_sgkit"):
        _require("allel", HINTS["allel"])
        import allel
        import dask
        import dask.array as da
        import numpy as np

        dask.config.set(num_workers=threads)
        kw = {} if idx is None else {"subpop": idx}

        if op == "af_ours":
            Project = _import_ours_project()
            _ensure_store(stores["ours"], "datahavn")
            p = Project(name="bench", root=spec["stores"]["project"])
            g = p.genotypes(DATASET)

            def count(g):
                return g.count_alleles(**kw).compute()

            return (lambda: count(g)), np.asarray, (lambda: count(g[:WARM]))

        if op.startswith("af_allel_dask_"):
            store = stores[op.rsplit("_", 1)[1]]
            _ensure_store(store, op.rsplit("_", 1)[1])
            g = allel.GenotypeDaskArray(da.from_zarr(str(store / "call_genotype")))

            def count(g):
                return g.count_alleles(max_allele=max_allele, **kw).compute(scheduler="threads")

            return (lambda: count(g)), np.asarray, (lambda: count(g[:WARM]))

        if op == "af_numpy":
            import zarr

            _ensure_store(stores["bio2zarr"], "bio2zarr")
            g = allel.GenotypeArray(zarr.open_array(str(stores["bio2zarr"] / "call_genotype"), mode="r")[:])

            def count(g):
                return g.count_alleles(max_allele=max_allele, **kw)

            return (lambda: count(g)), np.asarray, (lambda: count(g[:WARM]))

        if op == "af_sgkit":
            sg = _require("sgkit", HINTS["sgkit"])
            _ensure_store(stores["bio2zarr"], "bio2zarr")
            ds = sg.load_dataset(str(stores["bio2zarr"]))
            if idx is not None:
                ds = ds.isel(samples=idx)

            def stats(ds):
                with dask.config.set(scheduler="threads"):
                    return sg.variant_stats(ds, merge=False).compute()

            return (
                (lambda: stats(ds)),
                (lambda r: np.asarray(r["variant_allele_count"].values)),
                (lambda: stats(ds.isel(variants=slice(0, WARM)))),
            )

    if op.startswith("floor_"):
        import dask
        import dask.array as da
        import zarr

        _, how, which = op.split("_")
        store = stores[which]
        _ensure_store(store, which)
        path = str(store / "call_genotype")
        if how == "zarr":
            arr = zarr.open_array(path, mode="r")
            return (lambda: arr[:]), None, (lambda: arr[:WARM])
        d = da.from_zarr(path)
        dask.config.set(num_workers=threads)

        def read(d):
            da.store(d, _null_target(), lock=False, compute=True, scheduler="threads")

        return (lambda: read(d)), None, (lambda: read(d[:WARM]))

    raise ValueError(f"unknown op {op}")


def worker(spec_json: str) -> int:
    spec = json.loads(spec_json)
    out = {"status": "ok"}
    try:
        run, convert, warm = _prepare(spec)
        if warm is not None:  # untimed: JIT compilation (sgkit's numba), imports done lazily, zarr metadata
            try:
                warm()
            except Exception as e:
                print(f"warm-up failed (ignored): {type(e).__name__}: {e}", flush=True)
        t0 = time.perf_counter()
        result = run()
        out["seconds"] = time.perf_counter() - t0
        if spec.get("save") and convert is not None:
            import numpy as np

            np.save(spec["save"], convert(result))
        if NOTES:
            out["note"] = "; ".join(NOTES)
    except NotAvailable as e:
        out = {"status": "na", "reason": str(e)}
    except Exception as e:
        traceback.print_exc()
        out = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    Path(spec["result"]).write_text(json.dumps(out))
    return 0 if out["status"] == "ok" else 3


# --------------------------------------------------------------------------------------------------------------------
# Parent side.


class TreeRss(threading.Thread):
    """Samples the summed RSS of a process and its descendants (catches concurrent worker processes)."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.done = threading.Event()

    def run(self):
        try:
            import psutil

            root = psutil.Process(self.pid)
        except Exception:
            return
        while not self.done.is_set():
            try:
                total = root.memory_info().rss
                for c in root.children(recursive=True):
                    try:
                        total += c.memory_info().rss
                    except Exception:
                        pass
                self.peak = max(self.peak, total)
            except Exception:
                return
            self.done.wait(self.interval)


def measure(argv, log_path: Path):
    """Run argv; return (wall seconds, exit code, peak RSS bytes)."""
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(argv)[:2000]}\n".encode())
        log.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = TreeRss(proc.pid)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.done.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, proc.returncode, max(ru.ru_maxrss * 1024, sampler.peak)


def tail(path: Path, n=15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Row:
    def __init__(self, section, key, label, subset=None):
        self.section, self.key, self.label, self.subset = section, key, label, subset
        self.times: list[float] = []
        self.peaks: list[int] = []
        self.status = "ok"  # ok | na | failed
        self.reason = ""
        self.note = ""

    @property
    def seconds(self):
        return statistics.median(self.times) if self.times else None


class SizeRun:
    def __init__(self, args, samples, sites, cache: Path):
        self.args, self.samples, self.sites, self.cache = args, samples, sites, cache
        self.rows: list[Row] = []
        self.mismatches: list[str] = []
        self.failures: list[str] = []

    def log(self, msg):
        print(f"[{self.samples}x{self.sites}] {msg}", file=sys.stderr, flush=True)

    # -- running --------------------------------------------------------------------------------------------------
    def run_py(self, row: Row, op, subset=None, save=None, **extra):
        spec = {
            "op": op,
            "subset": subset,
            "threads": self.args.threads,
            "max_allele": self.meta["max_allele"],
            "case_idx": self.meta["paths"]["case_idx"],
            "vcf": self.meta["paths"]["vcf"],
            "stores": {k: str(v) for k, v in self.stores.items()},
            "result": str(self.out / "result.json"),
            "save": str(save) if save else None,
            **extra,
        }
        Path(spec["result"]).unlink(missing_ok=True)
        wall, rc, peak = measure([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                 self.logs / f"{row.key}.log")
        try:
            res = json.loads(Path(spec["result"]).read_text())
        except (OSError, ValueError):
            last = tail(self.logs / f"{row.key}.log", 1)
            res = {"status": "failed", "reason": f"worker exited {rc} without a result (killed? out of memory?) {last}"}
        return self.record(row, res.get("seconds"), peak, res)

    def run_cli(self, row: Row, argv):
        wall, rc, peak = measure(argv, self.logs / f"{row.key}.log")
        res = {"status": "ok"} if rc == 0 else {
            "status": "failed", "reason": f"{Path(argv[0]).name} exited {rc}: {tail(self.logs / f'{row.key}.log', 1)}"}
        return self.record(row, wall, peak, res)

    def record(self, row: Row, seconds, peak, res):
        if res.get("note") and res["note"] not in row.note:
            row.note = "; ".join(x for x in (row.note, res["note"]) if x)
        if res["status"] == "ok":
            row.times.append(seconds)
            row.peaks.append(peak)
            self.log(f"{row.label} {row.subset or ''}: {seconds:.3f} s, peak {peak / 1e9:.2f} GB")
            return True
        row.status, row.reason = res["status"], res.get("reason", "")
        if row.status == "failed":
            self.failures.append(f"{row.label} {row.subset or ''}: {row.reason}")
            self.log(f"FAILED {row.label} {row.subset or ''}: {row.reason}\n{tail(self.logs / f'{row.key}.log')}")
        else:
            self.log(f"n/a {row.label}: {row.reason}")
        return False

    # -- stages ---------------------------------------------------------------------------------------------------
    def setup(self):
        sys.path.insert(0, str(HERE))
        import genotype_sim

        self.meta = genotype_sim.ensure_dataset(self.samples, self.sites, self.cache, threads=self.args.threads)
        self.out = self.cache / "out"
        self.logs = self.cache / "logs"
        for d in (self.out, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.stores = {
            "project": self.cache / "project",
            "bio2zarr": self.cache / "stores" / "bio2zarr.vcz",
            "allel": self.cache / "stores" / "allel.zarr",
            "plink2": self.cache / "stores" / "plink2" / DATASET,
        }
        self.ours_store = self.stores["project"] / "data" / f"{DATASET}.vcz"
        self.plink2 = shutil.which("plink2")
        self.gbytes = self.meta["genotype_bytes"]

    def imports(self):
        a = self.args
        reps = a.import_repeats
        self.import_reps = reps
        vcf = self.meta["paths"]["vcf"]
        plan = [
            ("import_plink2", "plink2 --make-pgen", None),
            ("import_ours", "ours: datahavn.hub_config.datasets.convert.convert (workers=2)", self.ours_store),
            ("import_bio2zarr", "bio2zarr vcf2zarr convert -p 2", self.stores["bio2zarr"]),
            ("import_allel", "scikit-allel vcf_to_zarr (1 thread)", self.stores["allel"]),
        ]
        needed = {"import_plink2", "import_ours", "import_bio2zarr"}  # their outputs feed (b) and (c)
        for key, label, dest in plan:
            row = Row("import", key, label)
            self.rows.append(row)
            if a.skip_import:
                present = (Path(str(self.stores["plink2"]) + ".pgen").exists() if key == "import_plink2"
                           else (dest / "call_genotype").exists() or (dest / "calldata" / "GT").exists())
                if present or key not in needed:
                    row.status, row.reason = "na", "skipped (--skip-import; cached store reused)"
                    continue
                row.note = "run once: --skip-import but no cached store"
            if dest is not None:
                shutil.rmtree(dest, ignore_errors=True)  # never let a later stage use a store from an earlier run
            if key == "import_plink2" and not self.plink2:
                row.status, row.reason = "na", HINTS["plink2"]
                continue
            spent = 0.0
            for i in range(1 if row.note else reps):
                if i and spent >= a.import_budget:
                    break
                if key == "import_plink2":
                    out = self.stores["plink2"]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    for suf in (".pgen", ".pvar", ".psam"):
                        Path(str(out) + suf).unlink(missing_ok=True)
                    ok = self.run_cli(row, [self.plink2, "--vcf", vcf, "--make-pgen", "--out", str(out),
                                            "--threads", str(a.threads)])
                else:
                    ok = self.run_py(row, key, dest=str(dest))
                if not ok:
                    break
                spent += row.times[-1]
            if row.times:
                size = (sum(f.stat().st_size for f in Path(str(self.stores["plink2"])).parent.glob("*.p*"))
                        if key == "import_plink2" else du(dest))
                row.note = (row.note + "; " if row.note else "") + f"output {size / 1e6:.1f} MB"

    def af_and_floor(self):
        a = self.args
        pfile = str(self.stores["plink2"])
        have_pgen = bool(self.plink2) and Path(pfile + ".pgen").exists()
        ops = []
        for subset in ("all", "cases"):
            ops += [
                ("af", f"af_plink2_{subset}", "plink2 --freq" + (" --keep" if subset == "cases" else ""), subset),
                ("af", f"af_ours_{subset}", "ours: project.genotypes().count_alleles", subset),
                ("af", f"af_allel_dask_ours_{subset}", "scikit-allel GenotypeDaskArray, ours store", subset),
                ("af", f"af_allel_dask_bio2zarr_{subset}", "scikit-allel GenotypeDaskArray, bio2zarr store", subset),
                ("af", f"af_numpy_{subset}", "scikit-allel on numpy in memory (reference)", subset),
                ("af", f"af_sgkit_{subset}", "sgkit variant_stats (threads)", subset),
            ]
        ops += [
            ("floor", "floor_zarr_ours", "zarr open_array[:] call_genotype, ours", None),
            ("floor", "floor_zarr_bio2zarr", "zarr open_array[:] call_genotype, bio2zarr", None),
            ("floor", "floor_dask_ours", "dask from_zarr -> null store, ours", None),
            ("floor", "floor_dask_bio2zarr", "dask from_zarr -> null store, bio2zarr", None),
        ]
        rows = {key: Row(section, key, label, subset) for section, key, label, subset in ops}
        self.rows += rows.values()
        self.saved: dict[str, Path] = {}
        for rep in range(a.af_repeats):
            for key, row in rows.items():
                if row.status != "ok":
                    continue
                subset = row.subset
                save = self.out / f"{key}.npy" if rep == 0 and row.section == "af" else None
                if key.startswith("af_plink2"):
                    if not have_pgen:
                        row.status = "na"
                        row.reason = HINTS["plink2"] if not self.plink2 else "no .pgen (its import failed)"
                        continue
                    argv = [self.plink2, "--pfile", pfile, "--freq", "--out", str(self.out / key),
                            "--threads", str(a.threads)]
                    if subset == "cases":
                        argv += ["--keep", self.meta["paths"]["cases"]]
                    if self.run_cli(row, argv) and rep == 0:
                        self.saved[key] = Path(str(self.out / key) + ".afreq")
                else:
                    op = key.rsplit("_", 1)[0] if row.section == "af" else key
                    if save:
                        save.unlink(missing_ok=True)
                    if self.run_py(row, op, subset=subset, save=save) and save:
                        self.saved[key] = save
            if rep == 0:
                self.check()

    def check(self):
        import numpy as np

        width = self.meta["max_allele"] + 1
        n = self.meta["n_variants"]
        for subset in ("all", "cases"):
            got = {}
            for key, path in self.saved.items():
                if not key.endswith("_" + subset):
                    continue
                try:
                    arr = read_afreq(path, width) if path.suffix == ".afreq" else np.load(path)
                    got[key] = normalise(arr, width, n)
                except ValueError as e:
                    self.mismatches.append(f"MISMATCH: {key}: {e}")
            ref_key = next((k for k in (f"af_numpy_{subset}", f"af_plink2_{subset}") if k in got), None)
            if ref_key is None:
                self.mismatches.append(f"MISMATCH: no reference allele counts for {subset} (numpy and plink2 failed)")
                continue
            ref = got[ref_key]
            n_checked = 0
            for key, arr in got.items():
                bad = np.flatnonzero((arr != ref).any(axis=1))
                n_checked += 1
                if len(bad):
                    i = int(bad[0])
                    self.mismatches.append(
                        f"MISMATCH: {key} differs from {ref_key} at {len(bad)} of {n} variants; first at variant {i}:"
                        f" {arr[i].tolist()} vs {ref[i].tolist()}"
                    )
            self.log(f"checked allele counts ({subset}): {n_checked} results against {ref_key}")
            self.checked = getattr(self, "checked", []) + [f"{subset}: {', '.join(sorted(got))}"]

    # -- output ---------------------------------------------------------------------------------------------------
    def baseline(self, row: Row):
        if row.section == "import":
            key = "import_plink2"
        elif row.section == "af":
            key = f"af_plink2_{row.subset}"
        else:
            key = "af_plink2_all"
        base = next((r for r in self.rows if r.key == key), None)
        return base.seconds if base and base.times else None

    def table(self) -> str:
        m = self.meta
        head = (
            f"== {m['n_samples']:,} samples x {m['n_variants']:,} variants (target {self.sites:,} sites; max allele "
            f"{m['max_allele']}), {self.gbytes / 1e9:.3f} GB of genotypes, VCF.gz {m['vcf_gz_bytes'] / 1e6:.1f} MB, "
            f"{m['n_cases']:,} cases; {self.args.threads} threads; cache {self.cache}\n"
            f"   took {(self.t_end - self.t_start) / 60:.1f} min; load average {self.load[0]:.2f} at start,"
            f" {self.load[1]:.2f} at end ({os.cpu_count()} CPUs)"
        )
        cols = ["section", "operation", "samples", "n", "seconds", "GB/s", "peak RSS", "x plink2", "notes"]
        lines = []
        for r in self.rows:
            if r.status != "ok" or not r.times:
                lines.append([r.section, r.label, r.subset or "all", "", "", "", "", "",
                              (r.reason if r.reason.startswith("skipped") else f"n/a ({r.reason})") if r.status == "na"
                              else "FAILED: " + r.reason])
                continue
            s = r.seconds
            base = self.baseline(r)
            spread = f"{min(r.times):.3g}-{max(r.times):.3g}" if len(r.times) > 1 else ""
            lines.append([
                r.section,
                r.label,
                r.subset or "all",
                str(len(r.times)),
                f"{s:.3f}",
                gbps(self.gbytes / 1e9 / s),
                f"{max(r.peaks) / 1e9:.2f} GB",
                f"{s / base:.2f}" if base else "n/a",
                "; ".join(x for x in (f"range {spread} s" if spread else "", r.note) if x),
            ])
        return head + "\n" + render(cols, lines)

    def ratio(self, key, base_key):
        r = next((x for x in self.rows if x.key == key), None)
        b = next((x for x in self.rows if x.key == base_key), None)
        if r and b and r.times and b.times:
            return r.seconds / b.seconds
        return None


def read_afreq(path: Path, width: int):
    """plink2 .afreq -> allele counts (n_variants, width): alt = round(ALT_FREQS x OBS_CT), ref = OBS_CT - sum(alt)."""
    import numpy as np

    lines = path.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    fi, oi = header.index("ALT_FREQS"), header.index("OBS_CT")
    out = np.zeros((len(lines) - 1, width), dtype=np.int64)
    for i, line in enumerate(lines[1:]):
        f = line.split("\t")
        obs = int(f[oi])
        alts = [round(float(x) * obs) for x in f[fi].split(",")]
        if len(alts) >= width:
            raise ValueError(f"{path.name}: variant {i} has {len(alts) + 1} alleles, more than max_allele + 1")
        out[i, 1 : 1 + len(alts)] = alts
        out[i, 0] = obs - sum(alts)
    return out


def normalise(arr, width: int, n: int):
    import numpy as np

    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"allele counts have shape {arr.shape}, expected ({n}, {width})")
    if arr.shape[1] > width:
        if arr[:, width:].any():
            raise ValueError(f"counts for allele indices >= {width} (max_allele is {width - 1})")
        arr = arr[:, :width]
    elif arr.shape[1] < width:
        arr = np.pad(arr, ((0, 0), (0, width - arr.shape[1])))
    return arr.astype(np.int64)


def render(cols, rows) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    right = {"n", "seconds", "GB/s", "peak RSS", "x plink2"}

    def fmt(cells):
        return "  ".join(c.rjust(w) if col in right else c.ljust(w)
                         for c, w, col in zip(cells, widths, cols, strict=True)).rstrip()

    return "\n".join([fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def gbps(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def parse_sizes(args) -> list[tuple[int, int]]:
    sizes = []
    for name in (args.sizes or "").split(","):
        name = name.strip()
        if not name:
            continue
        if name in PRESETS:
            sizes.append(PRESETS[name])
        elif "x" in name:
            s, m = name.split("x", 1)
            sizes.append((int(s), int(m)))
        else:
            raise SystemExit(f"unknown size {name!r}: one of {', '.join(PRESETS)} or SAMPLESxSITES")
    if args.samples or args.sites:
        if len(args.samples or []) != len(args.sites or []):
            raise SystemExit("give --samples and --sites the same number of times")
        sizes += list(zip(args.samples, args.sites, strict=True))
    return sizes or [PRESETS["small"]]


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--worker"]:
        return worker(argv[1])
    ap = argparse.ArgumentParser(
        description="Genotype import / allele-frequency benchmark against plink2 (see the module docstring).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--samples", type=int, action="append", help="diploid samples (repeatable, with --sites)")
    ap.add_argument("--sites", type=int, action="append", help="target number of sites (repeatable)")
    ap.add_argument("--sizes", help=f"comma list of {', '.join(f'{k}={s}x{m}' for k, (s, m) in PRESETS.items())}"
                    " or SAMPLESxSITES (default: small)")
    ap.add_argument("--cache", type=Path, help="cache dir (one size) or its parent (several sizes)")
    ap.add_argument("--threads", type=int, default=2, help="threads / workers for every tool (default 2)")
    ap.add_argument("--af-repeats", type=int, default=3, help="runs per AF / floor timing, median (default 3)")
    ap.add_argument("--import-repeats", type=int, default=3, help="max runs per import (default 3; see budget)")
    ap.add_argument("--import-budget", type=float, default=150.0,
                    help="no further import repeat once a tool has used this many seconds (default 150)")
    ap.add_argument("--skip-import", action="store_true", help="reuse cached stores; do not time imports")
    args = ap.parse_args(argv)

    sizes = parse_sizes(args)
    runs = []
    for samples, sites in sizes:
        if args.cache:
            cache = args.cache if len(sizes) == 1 else args.cache / f"{samples}x{sites}"
        else:
            cache = Path.home() / ".cache" / "datahavn-bench" / f"{samples}x{sites}"
        run = SizeRun(args, samples, sites, cache)
        run.t_start, load0 = time.time(), os.getloadavg()[0]
        run.setup()
        if not run.plink2:
            run.log(f"plink2 not found on PATH: its rows are skipped ({HINTS['plink2']})")
        run.imports()
        run.af_and_floor()
        run.t_end, run.load = time.time(), (load0, os.getloadavg()[0])
        runs.append(run)
        for mm in run.mismatches:
            print(mm, flush=True)

    print()
    for run in runs:
        print(run.table())
        print(f"n = runs (seconds = their median). Imports: up to {run.import_reps} run(s) per tool, no new run once a "
              f"tool has used {args.import_budget:g} s. AF and floor: {args.af_repeats} runs, each in a fresh process, "
              "round-robin. GB/s uses all samples' genotype bytes; x plink2 = seconds / plink2's seconds for the "
              "same task (floor: vs --freq on all samples); peak RSS includes the interpreter (~0.2 GB).")
        print("correctness: " + ("; ".join(getattr(run, "checked", [])) or "not checked")
              + (" -- all agree" if not run.mismatches else ""))
        for mm in run.mismatches:
            print(mm)
        print()

    largest = max(runs, key=lambda r: r.gbytes)

    def fmt(x):
        return f"{x:.3f}" if x is not None else "n/a"

    af = largest.ratio("af_ours_cases", "af_plink2_cases")
    imp = largest.ratio("import_ours", "import_plink2")
    if any(r.mismatches for r in runs):
        print(f"MISMATCH in {sum(len(r.mismatches) for r in runs)} check(s): see above")
    print(f"af_vs_plink2={fmt(af)} import_vs_plink2={fmt(imp)}")
    if any(r.mismatches for r in runs):
        return 2
    if any(r.failures for r in runs):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
