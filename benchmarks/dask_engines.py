"""Dask engines: cluster start, scale and dense allele counts on ``local`` and ``slurm``, in one run (issue 14).

Two ``datahavn demo`` hubs (``tests/hubs.py``), one after the other: ``DATAHAVN_DASK_ENGINE=local`` and ``=slurm``
(dask-gateway on this machine's Slurm, ``scripts/slurm.sh``). On each: a fresh user and project (never the demo's
alice, bob, carol, brca, cardio: unix accounts are machine-wide), the benchmarks' small cohort (1 000 samples x
~103 000 sites, ``genotype_sim.py``) imported with ``datahavn dataset import``, one kernel, then per variant
(``local`` threads, ``local`` processes, ``slurm``), all with workers of 1 core:

- start: ``project.dask(...)`` until it returns a client, ``--cycles`` (3) times, each on a new cluster. The gateway
  starts a scheduler with 0 workers; a LocalCluster cannot start with 0 (``workers=0`` means the default), so local
  starts with 1 worker and is scaled to 0, untimed, before the scale step;
- scale: 0 -> 2 workers ready (``cluster.scale(2)``, ``client.wait_for_workers(2)``);
- count: ``allel.GenotypeDaskArray(g.values).count_alleles(max_allele=int(g.max().compute())).compute()`` on the
  last cycle's 2 workers, the dense path (not the allele index), ``--reps`` (3) times; checked once per variant
  against scikit-allel on numpy in the kernel.

The workspaces get ``--cpus`` (2) CPUs, not the settings' default of 1: the workspace's quota also caps a
LocalCluster's workers (they run in the kernel's box), Slurm's do not, so with 1 the count compares quotas, not
engines (1.45 s local threads vs 0.81 s slurm here). Slurm is shared: if another's clean-up cancels one of our
jobs, that cycle is retried once and a note says so. Everything is timed inside the kernel (not the websocket).
Medians are printed with ratios against ``local`` threads (the default local engine) and ``local`` processes; the
last line is ``dask_engines start_ratio=... scale_ratio=... count_ratio=...`` (slurm / local threads). No pass or
fail: the exit status is 1 only if a step failed. Not part of CI. As root, ~1.5 min:

    .venv/bin/python benchmarks/dask_engines.py [--cycles 3] [--reps 3] [--cpus 2] [--no-processes]
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import json
import os
import pwd
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genotype_sim import ensure_dataset  # noqa: E402

from datahavn.hub_config.spawners.provision import account_pids, kill_account  # noqa: E402
from datahavn.names import account_name, project_group  # noqa: E402
from tests.hubs import Hub, free_port, wait_for  # noqa: E402
from tests.kernel_client import KernelClient  # noqa: E402

SMALL = (1_000, 103_000)  # genotype_bench.py's "small" preset
DATASET = "small"

#: kernel code run once: imports out of the timings (the gateway's client too, where installed), and the steps
SETUP = """
import json, time
import allel, dask.array, distributed, numpy as np
try:
    import dask_gateway
except ImportError:
    pass

def _bench_workers(c):
    return len(c.scheduler_info(n_workers=-1)["workers"])

def _bench_cycle(kw, local):
    t = time.perf_counter()
    c = project.dask(**kw)
    start = time.perf_counter() - t
    if local:
        c.cluster.scale(0)
        while _bench_workers(c):
            time.sleep(0.02)
    scale = c.cluster.scale if local else c.datahavn_cluster.scale
    t = time.perf_counter()
    scale(2)
    c.wait_for_workers(2, timeout=180)
    return c, {"start": start, "scale": time.perf_counter() - t, "workers": _bench_workers(c)}

def _bench_count(name, reps):
    g = project.genotypes(name)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        ac = allel.GenotypeDaskArray(g.values).count_alleles(max_allele=int(g.max().compute())).compute()
        times.append(time.perf_counter() - t)
    return ac, times

_bench_ref = None

def _bench_equal(name, ac):
    global _bench_ref
    if _bench_ref is None:
        gt = allel.GenotypeArray(project.open(name)["call_genotype"][:])
        _bench_ref = gt.count_alleles(max_allele=int(gt.max()))
        del gt
    return bool(np.array_equal(np.asarray(ac), _bench_ref))

def _bench_close(c, local):
    cluster = c.cluster
    c.close()
    if local:
        cluster.close()
"""

#: (label, engine, project.dask keyword arguments)
VARIANTS = [
    ("local threads", "local", {"workers": 1, "cores": 1, "processes": False}),
    ("local processes", "local", {"workers": 1, "cores": 1, "processes": True}),
    ("slurm", "slurm", {"cores": 1}),
]


def log(msg: str) -> None:
    print(f"[dask_engines {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def jobs(account: str) -> list[str]:
    """Slurm job ids of ``account`` (root sees every job under PrivateData=jobs)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%u"], capture_output=True, text=True, timeout=20).stdout
    return [i for i, u in (line.split("|") for line in out.splitlines() if "|" in line) if u == account]


async def run_cell(k: KernelClient, code: str, timeout: float) -> dict:
    r = await k.execute(code, timeout=timeout)
    if r.status != "ok":
        raise RuntimeError(f"kernel: {r.error}\n{r.stderr[-1500:]}")
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


async def cycle(k: KernelClient, kw: dict, local: bool, account: str, count: int, reps: int) -> dict:
    """One cluster: start, scale to 2, (count), close; on slurm, until its jobs are gone (untimed)."""
    out = await run_cell(k, f"_c, _out = _bench_cycle({kw!r}, {local})\nprint(json.dumps(_out))", 300)
    if out["workers"] != 2:
        raise RuntimeError(f"{out['workers']} workers after scaling to 2")
    if not local:
        out["jobs"] = len(jobs(account))  # the scheduler and 2 workers, as this workspace's account
    if count:
        code = (f"_ac, _t = _bench_count({DATASET!r}, {reps})\n"
                f"print(json.dumps({{'count': _t, 'equal': _bench_equal({DATASET!r}, _ac)}}))")  # fmt: skip
        out.update(await run_cell(k, code, 300))
    await run_cell(k, f"_bench_close(_c, {local})", 120)
    if not local:  # the next cycle starts on an empty node
        t = time.perf_counter()
        wait_for(lambda: not jobs(account), 60, 0.2, f"{account}'s jobs gone after close()")
        out["gone"] = time.perf_counter() - t
    return out


async def measure(k: KernelClient, label: str, engine: str, kw: dict, account: str, args, notes: list[str]) -> dict:
    local = engine == "local"
    row = {"label": label, "start": [], "scale": [], "gone": []}
    for i in range(args.cycles):
        for attempt in (1, 2):
            try:
                out = await cycle(k, kw, local, account, i == args.cycles - 1, args.reps)
                break
            except RuntimeError as e:
                # the machine's Slurm is shared: another's clean-up may cancel our jobs; one retry, said so
                if local or attempt == 2:
                    raise
                notes.append(f"{label} cycle {i + 1} failed and was retried: {str(e).splitlines()[0][:160]}")
                await k.execute("_c.close()\nproject._client = None", timeout=60)
                wait_for(lambda: not jobs(account), 60, 0.5, otherwise=True)
        row["start"].append(out["start"])
        row["scale"].append(out["scale"])
        for key in ("count", "equal", "jobs"):
            if key in out:
                row[key] = out[key]
        if "gone" in out:
            row["gone"].append(out["gone"])
    return row


def import_cohort(hub: Hub, project: str, vcf: str) -> float:
    t = time.perf_counter()
    cmd = [str(REPO / ".venv" / "bin" / "datahavn"), "dataset", "import", "--state-dir", str(hub.layout.root),
           "--quiet", "--workers", "2", project, DATASET, vcf]  # fmt: skip
    proc = subprocess.run(cmd, env=hub.env, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"dataset import failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return time.perf_counter() - t


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80].strip()
    except OSError:
        return "?"


def cleanup(hub: Hub, user: str | None, project: str | None, slurm: bool, notes: list[str]) -> None:
    """Stop the hub, then remove what this benchmark made: its Slurm jobs, processes and unix account only."""
    hub.shutdown()
    if not user:
        return
    account = account_name(user, project)
    if slurm:
        left = wait_for(lambda: not jobs(account), 30, 0.5, otherwise=True)
        if not left:
            stray = jobs(account)
            notes.append(f"slurm: {len(stray)} job(s) of {account} left after the hub stopped; cancelled")
            for job in stray:
                subprocess.run(["scancel", job], capture_output=True, timeout=20)
    try:
        uid = pwd.getpwnam(account).pw_uid
    except KeyError:
        uid = None
    if uid:
        if pids := account_pids(uid):
            what = ", ".join(sorted({cmdline(p) for p in pids}))
            gone = wait_for(lambda: not account_pids(uid), 15, 0.5, otherwise=True)
            fate = "gone within 15 s" if gone else f"{kill_account(uid)} killed after 15 s"
            notes.append(f"{hub.env['DATAHAVN_DASK_ENGINE']}: {len(pids)} process(es) of {account} still ran after "
                         f"the hub stopped ({what}); {fate}")  # fmt: skip
        subprocess.run(["userdel", account], capture_output=True, timeout=30)
    group = project_group(project)
    try:
        grp.getgrnam(group)
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)
    except KeyError:
        pass


async def bench_engine(engine: str, variants, vcf: str, args, notes: list[str]) -> tuple[dict, float]:
    # 4G: the settings' default, not tests'; CPUs: the workspace's quota also caps a LocalCluster's workers
    env = {"DATAHAVN_DASK_ENGINE": engine, "DATAHAVN_MEM_LIMIT": "4G", "DATAHAVN_CPU_LIMIT": str(args.cpus)}
    if engine == "slurm":
        env.update({f"DATAHAVN_GATEWAY_{k}_PORT": str(free_port()) for k in ("API", "HTTP", "TCP")})
    t = time.perf_counter()
    hub = Hub(f"bench-dask-{engine}", env)
    log(f"{engine} hub up in {time.perf_counter() - t:.1f} s")
    user = project = None
    rows, imported = {}, 0.0
    try:
        user, project = hub.new_member()
        imported = import_cohort(hub, project, vcf)
        log(f"{engine}: {user} in {project}; imported {DATASET} in {imported:.1f} s")
        url = hub.start(user, project)
        token = hub.user_token(user)
        r = requests.post(f"{url}api/kernels", headers={"Authorization": f"token {token}"}, json={}, timeout=60)
        r.raise_for_status()
        k = await KernelClient.connect(url, r.json()["id"], token)
        try:
            await run_cell(k, SETUP, 120)
            for label, _engine, kw in variants:
                log(f"measuring {label}")
                try:
                    rows[label] = await measure(k, label, engine, kw, account_name(user, project), args, notes)
                except Exception as e:
                    rows[label] = {"label": label, "error": f"{type(e).__name__}: {e}"}
                    log(f"{label} failed: {e}")
                    await k.execute("project._client = None", timeout=30)
        finally:
            k.close()
    finally:
        cleanup(hub, user, project, engine == "slurm", notes)
    return rows, imported


def med(xs) -> float:
    return statistics.median(xs)


def fmt_row(row: dict) -> str:
    if "error" in row:
        return f"{row['label']:16}  failed: {row['error'][:200]}"
    equal = "yes" if row["equal"] else "NO"
    return (f"{row['label']:16}  {med(row['start']):7.3f}  {row['start'][0]:7.3f}  {med(row['scale']):7.3f}  "
            f"{row['scale'][0]:7.3f}  {med(row['count']):7.3f}  {min(row['count']):6.3f}-{max(row['count']):<6.3f}"
            f"  {equal}")  # fmt: skip


def ratio(rows: dict, a: str, b: str, key: str) -> float | None:
    if "error" in rows.get(a, {"error": 1}) or "error" in rows.get(b, {"error": 1}):
        return None
    return med(rows[a][key]) / med(rows[b][key])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=3, help="cluster starts and scales per variant (default 3)")
    ap.add_argument("--reps", type=int, default=3, help="timed allele counts per variant (default 3)")
    ap.add_argument("--cpus", type=float, default=2.0,
                    help="the workspaces' CPU quota (default 2: local's 2 workers get the cores slurm's get; the "
                    "settings' default is 1)")  # fmt: skip
    ap.add_argument("--no-processes", action="store_true", help="skip the local processes variant")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the hubs create unix accounts)")
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    slurm = subprocess.run(["bash", str(REPO / "scripts" / "slurm.sh")], capture_output=True, text=True, timeout=300)
    if slurm.returncode:
        sys.exit(f"scripts/slurm.sh failed:\n{slurm.stderr[-2000:]}")
    meta = ensure_dataset(*SMALL)
    variants = [v for v in VARIANTS if not (args.no_processes and v[2].get("processes"))]
    rows, notes, imports = {}, [], {}
    for engine in ("local", "slurm"):
        got, imports[engine] = asyncio.run(bench_engine(engine, [v for v in variants if v[1] == engine],
                                                        meta["paths"]["vcf"], args, notes))  # fmt: skip
        rows.update(got)
    took, load1 = time.perf_counter() - t0, os.getloadavg()[0]

    print(f"== dask engines: the small cohort ({meta['n_samples']:,} samples x {meta['n_variants']:,} variants, "
          f"{meta['genotype_bytes'] / 1e9:.3f} GB of genotypes), imported with `datahavn dataset import` "
          f"({imports['local']:.1f} s local hub, {imports['slurm']:.1f} s slurm hub)")  # fmt: skip
    print(f"   took {took / 60:.1f} min; load average {load0:.2f} at start, {load1:.2f} at end "
          f"({os.cpu_count()} CPUs); workspaces' CPU quota {args.cpus:g}; workers of 1 core; "
          f"{args.cycles} cycles, {args.reps} counts")  # fmt: skip
    print(f"{'variant':16}  {'start s':>7}  {'first':>7}  {'scale s':>7}  {'first':>7}  {'count s':>7}  "
          f"{'range':13}  == numpy")  # fmt: skip
    print("-" * 96)
    for _label, _engine, _kw in variants:
        print(fmt_row(rows[_label]))
    print(
        "start: project.dask() returns a client (slurm: scheduler, 0 workers; local: 1 worker); scale: 0 -> 2 "
        "workers ready; count: dense scikit-allel on Dask (max scan + count_alleles); medians, 'first' = cycle 1"
    )
    s = rows.get("slurm", {})
    if "jobs" in s:
        print(f"slurm: {s['jobs']} Slurm jobs of the workspace after scaling (scheduler + 2 workers); jobs gone "
              f"{med(s['gone']):.1f} s (median) after close()")  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    for base in ("local threads", "local processes"):
        if base not in rows:
            continue
        r = {k: ratio(rows, "slurm", base, k) for k in ("start", "scale", "count")}
        print(f"slurm / {base}: " + "  ".join(f"{k} {v:.2f}x" if v else f"{k} n/a" for k, v in r.items()))
    r = {k: ratio(rows, "slurm", "local threads", k) for k in ("start", "scale", "count")}
    print("dask_engines " + " ".join(f"{k}_ratio={v:.3f}" if v else f"{k}_ratio=n/a" for k, v in r.items()))
    return 1 if any("error" in row for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
