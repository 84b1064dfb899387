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
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datahavn import admin  # noqa: E402
from datahavn.hub_config.demo.run import die_with_parent, free_port  # noqa: E402
from datahavn.hubclient import HubClient  # noqa: E402
from tests.kernel_client import KernelClient  # noqa: E402


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


async def kernel(url, hub, user, project):
    hub.request("POST", f"/users/{user}/servers/{project}", ok=(201, 202))
    for _ in range(240):
        if hub.user(user)["servers"].get(project, {}).get("ready"):
            break
        await asyncio.sleep(0.5)
    token = hub.request("POST", f"/users/{user}/tokens", json={"note": "bench"}).json()["token"]
    server = f"{url}/user/{user}/{project}/"
    kid = requests.post(f"{server}api/kernels", headers={"Authorization": f"token {token}"}, json={}).json()["id"]
    return await KernelClient.connect(server, kid, token)


async def bench(url, token, cells):
    hub = HubClient(url, token)
    admin.add_user(hub, "benchuser", exist_ok=True)
    for project in ("auditon", "auditoff"):
        admin.create_project(hub, project, "benchmark", exist_ok=True)
        admin.grant(hub, "benchuser", project)
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
    if os.geteuid() != 0:
        sys.exit("run as root (the hub creates unix accounts)")
    tmp = Path(tempfile.mkdtemp(prefix="datahavn-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    port, token = free_port(), secrets.token_hex(32)
    env = dict(os.environ, DATAHAVN_ADMIN_TOKEN=token, DATAHAVN_DEMO_PASSWORD="bench-" + secrets.token_hex(4),
               DATAHAVN_HUB_EXTRA_CONFIG=str(REPO / "benchmarks" / "audit_off_config.py"))  # fmt: skip
    log = open(tmp / "hub.log", "w")
    cmd = [sys.executable, "-m", "datahavn.cli", "demo", "--port", str(port), "--state-dir", str(tmp / "state")]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        while "demo is running" not in (tmp / "hub.log").read_text():
            if proc.poll() is not None:
                sys.exit((tmp / "hub.log").read_text()[-3000:])
            time.sleep(0.5)
        times, n_on, n_off = asyncio.run(bench(f"http://127.0.0.1:{port}", token, args.cells))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"cells per side: {args.cells} (alternating), recorded: audit on {n_on}, audit off {n_off}")
    print(f"{'':10}{'median ms':>12}{'p99 ms':>12}")
    for name in ("off", "on"):
        print(f"{'audit ' + name:10}{statistics.median(times[name]):12.2f}{p99(times[name]):12.2f}")
    print(f"p99_ratio={p99(times['on']) / p99(times['off']):.3f}")
    print(f"audit_overhead_ratio={statistics.median(times['on']) / statistics.median(times['off']):.3f}")


if __name__ == "__main__":
    main()
