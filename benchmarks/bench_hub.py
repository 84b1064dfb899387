"""A ``datahavn demo`` hub for benchmarks: started as root on free ports, with a config of the benchmark's own.

Shared by the benchmarks that compare two projects of one hub through the same proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
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


@contextlib.contextmanager
def running_hub(extra_config: str, **env):
    """(url, admin HubClient) of a fresh demo hub using ``benchmarks/<extra_config>``; stopped on exit."""
    if os.geteuid() != 0:
        sys.exit("run as root (the hub creates unix accounts)")
    tmp = Path(tempfile.mkdtemp(prefix="datahavn-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    port, token = free_port(), secrets.token_hex(32)
    env = dict(os.environ, DATAHAVN_ADMIN_TOKEN=token, DATAHAVN_DEMO_PASSWORD="bench-" + secrets.token_hex(4),
               DATAHAVN_HUB_EXTRA_CONFIG=str(REPO / "benchmarks" / extra_config), **env)  # fmt: skip
    log = open(tmp / "hub.log", "w")
    cmd = [sys.executable, "-m", "datahavn.cli", "demo", "--port", str(port), "--state-dir", str(tmp / "state")]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        while "demo is running" not in (tmp / "hub.log").read_text():
            if proc.poll() is not None:
                sys.exit((tmp / "hub.log").read_text()[-3000:])
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}"
        yield url, HubClient(url, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def member(hub: HubClient, user: str, projects) -> None:
    admin.add_user(hub, user, exist_ok=True)
    for project in projects:
        admin.create_project(hub, project, "benchmark", exist_ok=True)
        admin.grant(hub, user, project)


async def server(url: str, hub: HubClient, user: str, project: str) -> tuple[str, str]:
    """Start ``user``'s ``project`` server; (its URL, a token of the user's)."""
    hub.request("POST", f"/users/{user}/servers/{project}", ok=(201, 202))
    for _ in range(240):
        if hub.user(user)["servers"].get(project, {}).get("ready"):
            break
        await asyncio.sleep(0.5)
    token = hub.request("POST", f"/users/{user}/tokens", json={"note": "bench"}).json()["token"]
    return f"{url}/user/{user}/{project}/", token


async def kernel(url: str, hub: HubClient, user: str, project: str) -> KernelClient:
    base, token = await server(url, hub, user, project)
    kid = requests.post(f"{base}api/kernels", headers={"Authorization": f"token {token}"}, json={}).json()["id"]
    return await KernelClient.connect(base, kid, token)
