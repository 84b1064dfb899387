"""Fixtures: real Datahavn hubs, servers and kernels on this machine.

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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from datahavn import admin
from datahavn.hub_config.demo import die_with_parent
from datahavn.hubclient import HubClient
from datahavn.paths import Layout

from .kernel_client import KernelClient

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """A running ``datahavn demo``: its URL, state layout, admin token and passwords."""

    def __init__(self, name: str, extra_env: dict | None = None):
        ARTIFACTS.mkdir(exist_ok=True)
        # Under /tmp, not pytest's 0700 tmp_path: project accounts must traverse it.
        self.tmp = Path(tempfile.mkdtemp(prefix=f"datahavn-{name}-", dir="/tmp"))
        os.chmod(self.tmp, 0o755)
        self.layout = Layout(self.tmp / "state")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.password = "demo-" + secrets.token_hex(6)
        self.admin_password = secrets.token_hex(20)
        self.env = dict(
            os.environ,
            DATAHAVN_ADMIN_TOKEN=self.token,
            DATAHAVN_HUB_URL=self.url,
            DATAHAVN_DEMO_PASSWORD=self.password,
            DATAHAVN_DEMO_ADMIN_PASSWORD=self.admin_password,
            **(extra_env or {}),
        )
        self.log_path = ARTIFACTS / f"hub-{name}.log"
        self.log = open(self.log_path, "w")
        cmd = [
            sys.executable,
            "-m",
            "datahavn.cli",
            "demo",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.layout.root),
        ]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        self.api = HubClient(self.url, self.token)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"datahavn demo exited {self.proc.returncode}:\n{self.log_tail()}")
            if "Datahavn demo is running" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"datahavn demo not ready in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    # --- REST helpers ---------------------------------------------------
    def rest(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token or self.token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=90, **kw)

    def new_member(self) -> tuple[str, str]:
        """A fresh user granted a fresh project: names of its own, as unix accounts are machine-wide
        and a test must not touch (or, at its end, kill) another hub's workspaces."""
        user, project = f"u{secrets.token_hex(3)}", f"p{secrets.token_hex(3)}"
        admin.add_user(self.api, user)
        admin.create_project(self.api, project)
        admin.grant(self.api, user, project)
        return user, project

    def user_token(self, user: str) -> str:
        r = self.rest("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 3600})
        r.raise_for_status()
        return r.json()["token"]

    def server(self, user: str, project: str) -> dict | None:
        return self.rest("GET", f"/users/{user}").json()["servers"].get(project)

    def start(self, user: str, project: str, timeout: float = 90) -> str:
        """Start a workspace over REST and return its URL once it is ready."""
        r = self.rest("POST", f"/users/{user}/servers/{project}")
        if r.status_code not in (201, 202, 400):
            raise AssertionError(f"spawn {user}/{project}: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = self.server(user, project)
            if srv and srv["ready"]:
                return f"{self.url}/user/{user}/{project}/"
            if srv is None:
                raise AssertionError(f"{user}/{project} stopped during start-up:\n{self.log_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"{user}/{project} not ready after {timeout} s")

    def stop(self, user: str, project: str) -> None:
        self.rest("DELETE", f"/users/{user}/servers/{project}")

    def wait_stopped(self, user: str, project: str, timeout: float) -> float:
        """Seconds until the workspace is gone; fails after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.server(user, project) is None:
                return time.monotonic() - t0
            time.sleep(1)
        raise AssertionError(f"{user}/{project} still running after {timeout} s")

    def audit(self, path: str, token: str | None = None, **params):
        headers = {"Authorization": f"token {token or self.token}"}
        return requests.get(f"{self.url}/services/datahavn-audit/api{path}", headers=headers, params=params, timeout=60)

    def events(self, **params) -> list[dict]:
        r = self.audit("/events", **params)
        r.raise_for_status()
        return r.json()

    def audit_pid(self) -> int | None:
        """The PID of this hub's audit service (found by its state dir)."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                if b"datahavn.hub_config.audit_service" not in cmd:
                    continue
                env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"DATAHAVN_STATE_DIR={self.layout.root}".encode() in env:
                return int(entry.name)
        return None

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _dh_identities() -> tuple[set[str], set[str]]:
    users = {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("dh-")}
    groups = {g.gr_name for g in grp.getgrall() if g.gr_name.startswith("dh-")}
    return users, groups


@pytest.fixture(scope="session", autouse=True)
def _remove_created_identities():
    if os.geteuid() != 0:
        pytest.exit("the Datahavn tests run as root (they create unix accounts)", returncode=2)
    users0, groups0 = _dh_identities()
    yield
    users1, groups1 = _dh_identities()
    for name in sorted(users1 - users0):
        subprocess.run(["userdel", name], capture_output=True)
    for name in sorted(groups1 - groups0):
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
        clients.append(client)
        return client

    yield connect
    for c in clients:
        c.close()
