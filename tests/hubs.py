"""Real Datahavn hubs for the tests, and small helpers (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

import asyncio
import json
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

import requests

from datahavn import admin
from datahavn.hub_config.demo.run import die_with_parent
from datahavn.hubclient import HubClient
from datahavn.names import InvalidName, account_name, project_group
from datahavn.paths import Layout

#: the project whose egress budget is a researcher's (25 MB an hour, 40 MB a day), on every test hub
BUDGET_PROJECT = "budgetp"
#: (accounts, groups) each hub of this session mapped its users and projects to, filled at shutdown
IDENTITIES: list[tuple[set[str], set[str]]] = []


_FAIL = object()


def wait_for(condition, timeout: float = 30, interval: float = 0.2, message: str = "", otherwise=_FAIL):
    """Call ``condition`` until it returns something true, and return that.

    After ``timeout`` seconds: fail, or return the last value when ``otherwise=True`` (a test that
    expects nothing to happen waits the same time, then asserts on what it got).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return _settle(value, timeout, message or getattr(condition, "__name__", ""), otherwise)
        time.sleep(interval)


async def await_for(condition, timeout: float = 30, interval: float = 0.2, message: str = "", otherwise=_FAIL):
    """:func:`wait_for` for async tests: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            return _settle(value, timeout, message or getattr(condition, "__name__", ""), otherwise)
        await asyncio.sleep(interval)


def _settle(value, timeout: float, what: str, otherwise):
    if value or otherwise is not _FAIL:
        return value
    raise AssertionError(f"not within {timeout:g} s: {what}")


def host_pids(account: str, command: bytes) -> list[int]:
    """Host pids of the account's processes whose command line holds ``command`` (we are root, outside every box)."""
    uid = pwd.getpwnam(account).pw_uid
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text()
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if f"Uid:\t{uid}\t" in status and command in cmd:
            found.append(int(entry.name))
    assert found, f"no {command!r} process of {account}"
    return found


def proc_env(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(i.decode().split("=", 1) for i in items if b"=" in i)


def service_port(pid: int) -> int:
    """The port a server or service listens on (JupyterHub gives it in the process's environment)."""
    return int(proc_env(pid)["JUPYTERHUB_SERVICE_URL"].split(":")[2].split("/")[0])


def refused(error: str) -> bool:
    """Did a kernel's attempt fail because it may not, or because the thing is not in its box?"""
    return error.startswith(("PermissionError", "FileNotFoundError", "ProcessLookupError")) or (
        "Read-only file system" in error)


def login(hub, user: str) -> requests.Session:
    """A browser-like session logged in to ``hub`` as ``user`` (hub login with its password)."""
    s = requests.Session()
    assert s.get(f"{hub.url}/hub/login", timeout=30).status_code == 200
    xsrf = s.cookies.get("_xsrf")
    pw = hub.admin_password if user == "admin" else hub.password
    r = s.post(f"{hub.url}/hub/login", data={"username": user, "password": pw, "_xsrf": xsrf}, timeout=30)
    assert r.ok and "/hub/login" not in r.url, f"login failed: {r.status_code} {r.url}"
    return s


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
        self.env = {
            # small enough that the limits' tests hit them quickly, large enough for the example notebook
            "DATAHAVN_MEM_LIMIT": "1536M",
            "DATAHAVN_PIDS_LIMIT": "512",
            # the tests send far more than a researcher would; the budget's own tests use the project "budgetp"
            "DATAHAVN_EGRESS_HOUR": str(2_000_000_000),
            "DATAHAVN_AUDIT_EVENT_RATE": "50",  # low enough for test_hub_audit's flood to cross it
            "DATAHAVN_EGRESS_DAY": str(8_000_000_000),
            "DATAHAVN_EGRESS_PROJECTS": json.dumps({BUDGET_PROJECT: {"hour": 25_000_000, "day": 40_000_000}}),
            **os.environ,
            "DATAHAVN_ADMIN_TOKEN": self.token,
            "DATAHAVN_HUB_URL": self.url,
            "DATAHAVN_DEMO_PASSWORD": self.password,
            "DATAHAVN_DEMO_ADMIN_PASSWORD": self.admin_password,
            **(extra_env or {}),
        }
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
                if b"datahavn.hub_config.audit.service" not in cmd:
                    continue
                env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"DATAHAVN_STATE_DIR={self.layout.root}".encode() in env:
                return int(entry.name)
        return None

    def identities(self) -> tuple[set[str], set[str]]:
        """The unix accounts and groups this hub's users and projects map to (whether or not they exist)."""
        try:
            users = [u["name"] for u in self.api.users()]
            projects = [g["name"] for g in self.api.groups()]
        except Exception:
            return set(), set()
        accounts, groups = set(), set()
        for project in projects:
            try:
                groups.add(project_group(project))
                accounts.update(account_name(u, project) for u in users)
            except InvalidName:
                continue
        return accounts, groups

    def shutdown(self) -> None:
        IDENTITIES.append(self.identities())
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
