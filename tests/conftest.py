"""Fixtures: real Datahavn hubs, servers and kernels on this machine.

``unit/`` tests need no hub (pure functions, the store, the chart, the importer); ``e2e/`` tests
drive real hubs through the proxy. Helpers are in ``hubs.py`` (``Hub``, ``login``, ``wait_for``,
``await_for``), ``kernel_client.py`` (a kernel websocket client) and ``vcf_data.py`` (VCF inputs).

Every hub is a real ``datahavn demo`` subprocess (JupyterHub, configurable-http-proxy,
ProjectSpawner starting real single-user servers as real unix accounts) on free
ports and a fresh state dir. Tests run as root.

- ``hub``: the session's demo hub (users admin, alice, bob, carol; projects brca, cardio).
- ``make_hub``: start another hub with extra environment (stopped at the end of the test).
- ``cli``: run the ``datahavn`` command against ``hub``; returns the CompletedProcess.
- ``kernel``: ``await kernel(user, project[, protocol="v1"])`` starts that workspace, returns a KernelClient.
- ``unique``: a fresh lower-case name for users and projects a test creates.

Unix accounts and groups the session creates are removed at its end.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
import sys

import pytest
import requests

from .hubs import IDENTITIES, Hub
from .kernel_client import KernelClient


def _dh_identities() -> tuple[set[str], set[str]]:
    users = {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("dh-")}
    groups = {g.gr_name for g in grp.getgrall() if g.gr_name.startswith("dh-")}
    return users, groups


@pytest.fixture(scope="session", autouse=True)
def _remove_created_identities():
    """Remove the unix accounts and groups this session's hubs created, and only those: an account
    that existed before, or that no hub of this session maps a user and project to, stays."""
    if os.geteuid() != 0:
        pytest.exit("the Datahavn tests run as root (they create unix accounts)", returncode=2)
    users0, groups0 = _dh_identities()
    yield
    users1, groups1 = _dh_identities()
    ours_users = set().union(*(a for a, _ in IDENTITIES)) if IDENTITIES else set()
    ours_groups = set().union(*(g for _, g in IDENTITIES)) if IDENTITIES else set()
    for name in sorted((users1 - users0) & ours_users):
        subprocess.run(["userdel", name], capture_output=True)
    for name in sorted((groups1 - groups0) & ours_groups):
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture(scope="session")
def hub():
    h = Hub("session")
    yield h
    h.shutdown()


@pytest.fixture
def make_hub():
    hubs = []

    def make(name: str, **extra_env) -> Hub:
        h = Hub(name, extra_env)
        hubs.append(h)
        return h

    yield make
    for h in hubs:
        h.shutdown()


@pytest.fixture
def cli(hub):
    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "datahavn.cli", *args],
            env=env or hub.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return run


@pytest.fixture
def unique():
    def make(prefix: str = "t") -> str:
        return f"{prefix}{secrets.token_hex(3)}"

    return make


@pytest.fixture
async def kernel(hub):
    """``await kernel(user, project)``: start the workspace, a kernel in it, and connect."""
    clients = []

    async def connect(user: str, project: str, on_hub: Hub | None = None, protocol: str = "json") -> KernelClient:
        h = on_hub or hub
        url = h.start(user, project)
        token = h.user_token(user)
        r = requests.post(f"{url}api/kernels", headers={"Authorization": f"token {token}"}, json={}, timeout=60)
        r.raise_for_status()
        client = await KernelClient.connect(url, r.json()["id"], token, protocol)
        clients.append((client, f"{url}api/kernels/{r.json()['id']}", token))
        return client

    yield connect
    for c, kernel_url, token in clients:
        c.close()
        # kernels are shut down with the test: a workspace's process limit is not used up by earlier tests
        requests.delete(kernel_url, headers={"Authorization": f"token {token}"}, timeout=30)
