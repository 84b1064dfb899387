"""``datahavn demo``: the whole workspace on this machine, in the foreground.

Prepares the state dir, starts JupyterHub (with configurable-http-proxy) as a
child process, then creates, idempotently, the demo users, projects, grants
and small datasets through the same code the CLI uses.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from datahavn import admin
from datahavn.hubclient import HubClient, HubError
from datahavn.paths import DEFAULT_STATE_DIR, Layout

from . import provision

USERS = ("alice", "bob", "carol")
PROJECTS = {
    "brca": ("Breast cancer cohort (demo)", ("alice", "carol")),
    "cardio": ("Cardiovascular cohort (demo)", ("bob", "carol")),
}
CONFIG = Path(__file__).with_name("jupyterhub_config.py")


class DemoError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret(layout: Layout, name: str, env_name: str, nbytes: int) -> str:
    """A secret from the environment, else the one stored in hub/secrets (0600), else a new one."""
    value = os.environ.get(env_name, "")
    if value:
        return value
    path = layout.secrets / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when its parent dies, even by SIGKILL."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def write_demo_dataset(layout: Layout, project: str, seed: int, name: str = "demo.vcz") -> Path:
    """A small genotype store in the VCF Zarr layout, read-only to the project's group."""
    final = layout.data(project) / name
    if final.exists():
        return final
    gid = provision.ensure_project(layout, project)
    tmp = layout.data(project) / f".{name}.tmp-{os.getpid()}"
    try:
        _write_store(tmp, project, seed, gid)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, final)
    return final


def _write_store(tmp: Path, project: str, seed: int, gid: int) -> None:
    import zarr

    rng = np.random.default_rng(seed)
    variants, samples = 2000, 60
    root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
    freqs = rng.beta(0.5, 2.0, size=(variants, 1, 1))
    gt = (rng.random((variants, samples, 2)) < freqs).astype("i1")
    root.create_array("call_genotype", data=gt, chunks=(1000, samples, 2))
    root.create_array("variant_position", data=np.sort(rng.choice(10_000_000, variants, replace=False)).astype("i4"))
    root.create_array("variant_contig", data=np.zeros(variants, dtype="i1"))
    root.create_array("contig_id", data=np.array(["chr1"]))
    root.create_array("sample_id", data=np.array([f"{project}_{i:03d}" for i in range(samples)]))
    root.attrs["source"] = "datahavn demo (random genotypes)"
    for dirpath, _dirs, filenames in os.walk(tmp):
        os.chown(dirpath, 0, gid)
        os.chmod(dirpath, 0o2750)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), 0, gid)
            os.chmod(os.path.join(dirpath, f), 0o640)


def bootstrap(hub: HubClient, layout: Layout) -> None:
    """Users, projects, first grants and datasets; re-running changes nothing."""
    for user in USERS:
        admin.add_user(hub, user, exist_ok=True)
    for seed, (project, (description, members)) in enumerate(PROJECTS.items()):
        if admin.create_project(hub, project, description, exist_ok=True):
            # Grants only when the project is new: a later revoke is not undone by a restart.
            for user in members:
                admin.grant(hub, user, project, reason="demo")
        provision.ensure_project(layout, project)
        write_demo_dataset(layout, project, seed)


def wait_up(hub: HubClient, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"JupyterHub exited with status {proc.returncode} during start-up (see its log above)")
        try:
            hub.whoami()
            return
        except HubError:
            time.sleep(0.5)
    raise DemoError(f"JupyterHub did not answer at {hub.url} within {timeout:.0f} s")


def run_demo(ip: str = "127.0.0.1", port: int = 8000, state_dir: str | None = None) -> int:
    if os.geteuid() != 0:
        print("datahavn: error: the demo runs as root (it creates unix accounts per user and project)", file=sys.stderr)
        return 1
    if not 1 <= port <= 65535:
        print(f"datahavn: error: invalid port {port}", file=sys.stderr)
        return 2
    layout = Layout(Path(state_dir or os.environ.get("DATAHAVN_STATE_DIR") or DEFAULT_STATE_DIR).absolute())
    try:
        provision.ensure_state(layout)
    except (provision.ProvisionError, OSError) as e:
        print(f"datahavn: error: {e}", file=sys.stderr)
        return 1
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((ip, port))
    except OSError as e:
        print(f"datahavn: error: cannot listen on {ip}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    token = _secret(layout, "admin-token", "DATAHAVN_ADMIN_TOKEN", 32)
    user_password = _secret(layout, "demo-password", "DATAHAVN_DEMO_PASSWORD", 9)
    admin_password = _secret(layout, "demo-admin-password", "DATAHAVN_DEMO_ADMIN_PASSWORD", 32)
    env = dict(
        os.environ,
        DATAHAVN_STATE_DIR=str(layout.root),
        DATAHAVN_IP=ip,
        DATAHAVN_PORT=str(port),
        DATAHAVN_HUB_PORT=os.environ.get("DATAHAVN_HUB_PORT") or str(free_port()),
        DATAHAVN_PROXY_API_PORT=os.environ.get("DATAHAVN_PROXY_API_PORT") or str(free_port()),
        DATAHAVN_AUDIT_PORT=os.environ.get("DATAHAVN_AUDIT_PORT") or str(free_port()),
        DATAHAVN_ADMIN_TOKEN=token,
        DATAHAVN_DEMO_PASSWORD=user_password,
        DATAHAVN_DEMO_ADMIN_PASSWORD=admin_password,
    )
    # configurable-http-proxy comes from npm; make sure the hub finds it.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:/usr/local/bin:/usr/bin"
    jupyterhub = str(Path(sys.executable).with_name("jupyterhub"))
    proc = subprocess.Popen([jupyterhub, "-f", str(CONFIG)], cwd=layout.hub, env=env, preexec_fn=die_with_parent)

    def forward(signum, frame):
        # JupyterHub stops cleanly (with its servers) on SIGTERM.
        proc.send_signal(signal.SIGTERM)

    # Explicit handlers: a demo started in the background inherits an ignored SIGINT.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    url = f"http://{'127.0.0.1' if ip in ('', '0.0.0.0') else ip}:{port}"
    hub = HubClient(url, token)
    try:
        wait_up(hub, proc)
        bootstrap(hub, layout)
    except (DemoError, HubError, admin.AdminError, provision.ProvisionError) as e:
        print(f"datahavn: error: {e}", file=sys.stderr)
        _stop(proc)
        return 1
    except BaseException:
        _stop(proc)
        raise
    print(
        f"\n  Datahavn demo is running at {url}/\n"
        f"  Log in as alice, bob or carol with password: {user_password}\n"
        f"  Log in as admin with password: {admin_password}\n"
        f"  Scripts: export DATAHAVN_HUB_URL={url}"
        + (
            ""
            if os.environ.get("DATAHAVN_ADMIN_TOKEN")
            else f" DATAHAVN_ADMIN_TOKEN=$(cat {layout.secrets / 'admin-token'})"
        )
        + "\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )
    return proc.wait()


def _stop(proc: subprocess.Popen) -> int:
    """Stop the hub (it stops every server it started) and wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
