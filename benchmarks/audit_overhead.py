"""Round trip of a trivial cell (``1+1``) through the proxy, audit on vs off, alternating in one run.

Starts a ``datahavn demo`` hub (as root) on free ports with a benchmark-only spawner that
runs one project's server without the audited kernel websocket, warms both kernels up,
then alternates on/off executions and prints median and p99 of each; the last line is
``audit_overhead_ratio=<median on / median off>``.

    sudo .venv/bin/python benchmarks/audit_overhead.py [--cells 400]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench_hub import kernel, member, p99, running_hub


async def bench(url, hub, cells):
    member(hub, "benchuser", ("auditon", "auditoff"))
    on = await kernel(url, hub, "benchuser", "auditon")
    off = await kernel(url, hub, "benchuser", "auditoff")
    for k in (on, off):
        for _ in range(20):
            assert (await k.execute("1+1")).status == "ok"
    times = {"on": [], "off": []}
    for i in range(cells):
        order = (("on", on), ("off", off)) if i % 2 == 0 else (("off", off), ("on", on))
        for name, k in order:
            t0 = time.perf_counter()
            r = await k.execute("1+1")
            times[name].append((time.perf_counter() - t0) * 1000)
            assert r.status == "ok"
    audited = [e for e in hub.audit("/events", kind="execute", user="benchuser").json() if e["project"] == "auditon"]
    unaudited = [e for e in hub.audit("/events", kind="execute", user="benchuser").json() if e["project"] == "auditoff"]
    return times, len(audited), len(unaudited)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=400, help="executions per side (default 400)")
    args = ap.parse_args()
    with running_hub("audit_off_config.py") as (url, hub):
        times, n_on, n_off = asyncio.run(bench(url, hub, args.cells))
    print(f"cells per side: {args.cells} (alternating), recorded: audit on {n_on}, audit off {n_off}")
    print(f"{'':10}{'median ms':>12}{'p99 ms':>12}")
    for name in ("off", "on"):
        print(f"{'audit ' + name:10}{statistics.median(times[name]):12.2f}{p99(times[name]):12.2f}")
    print(f"p99_ratio={p99(times['on']) / p99(times['off']):.3f}")
    print(f"audit_overhead_ratio={statistics.median(times['on']) / statistics.median(times['off']):.3f}")


if __name__ == "__main__":
    main()
