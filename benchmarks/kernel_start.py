"""Kernel start and trivial-cell latency, with and without the kernel's box (bubblewrap), in one run.

Starts a ``datahavn demo`` hub (as root) on free ports where the project "boxoff" starts its
kernels without bubblewrap (``DATAHAVN_SANDBOX=pod``: what a Kubernetes pod's kernel gets, the
same command and environment, Landlock included) and "boxon" as every workspace does. Then,
alternating between the two:

- kernel start: ``POST api/kernels`` until the kernel answers ``kernel_info`` over its websocket
  (ipykernel, the preloaded ``project`` and, on "boxon", the namespaces and mounts);
- a trivial cell (``1+1``) through the proxy and the audited websocket, median and p99.

The last lines are ``kernel_start_ratio=<boxed / unboxed>`` and ``cell_latency_ratio=<...>``.

    sudo .venv/bin/python benchmarks/kernel_start.py [--starts 12] [--cells 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import requests
from bench_hub import member, p99, running_hub, server

from tests.kernel_client import KernelClient

SIDES = ("boxoff", "boxon")


async def start_once(base: str, token: str) -> tuple[float, KernelClient]:
    headers = {"Authorization": f"token {token}"}
    t0 = time.perf_counter()
    kid = requests.post(f"{base}api/kernels", headers=headers, json={}, timeout=60).json()["id"]
    k = await KernelClient.connect(base, kid, token)
    await k.send(k.message("kernel_info_request", {}))
    async with asyncio.timeout(60):
        while (reply := await k.receive()) is None or reply["msg_type"] != "kernel_info_reply":
            pass
    return time.perf_counter() - t0, k


async def bench(url, hub, starts: int, cells: int):
    member(hub, "benchuser", SIDES)
    servers = {side: await server(url, hub, "benchuser", side) for side in SIDES}
    start = {side: [] for side in SIDES}
    for i in range(starts + 1):  # the first of each warms the page cache, and is not counted
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            base, token = servers[side]
            seconds, k = await start_once(base, token)
            kid = k.ws.request.url.split("/api/kernels/")[1].split("/")[0]
            k.close()
            requests.delete(f"{base}api/kernels/{kid}", headers={"Authorization": f"token {token}"}, timeout=60)
            if i:
                start[side].append(seconds)
    kernels = {side: (await start_once(*servers[side]))[1] for side in SIDES}
    for k in kernels.values():
        for _ in range(20):
            assert (await k.execute("1+1")).status == "ok"
    latency = {side: [] for side in SIDES}
    for i in range(cells):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            t0 = time.perf_counter()
            assert (await kernels[side].execute("1+1")).status == "ok"
            latency[side].append((time.perf_counter() - t0) * 1000)
    return start, latency


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=12, help="kernel starts per side (default 12)")
    ap.add_argument("--cells", type=int, default=300, help="trivial cells per side (default 300)")
    args = ap.parse_args()
    with running_hub("sandbox_off_config.py") as (url, hub):
        start, latency = asyncio.run(bench(url, hub, args.starts, args.cells))
    print(f"kernel starts per side: {args.starts}, cells per side: {args.cells} (alternating)")
    print(f"{'':22}{'start median s':>16}{'start p99 s':>14}{'cell median ms':>16}{'cell p99 ms':>14}")
    for side, label in zip(SIDES, ("without the box", "in the box"), strict=True):
        print(f"{label:22}{statistics.median(start[side]):16.3f}{p99(start[side]):14.3f}"
              f"{statistics.median(latency[side]):16.2f}{p99(latency[side]):14.2f}")  # fmt: skip
    print(f"kernel_start_ratio={statistics.median(start['boxon']) / statistics.median(start['boxoff']):.3f}")
    print(f"cell_latency_ratio={statistics.median(latency['boxon']) / statistics.median(latency['boxoff']):.3f}")


if __name__ == "__main__":
    main()
