"""``datahavn demo``: the whole workspace on this machine, in the foreground.

Prepares the state dir, starts JupyterHub (with configurable-http-proxy) as a
child process, then creates, idempotently, the demo users, projects, grants
and small datasets through the same code the CLI uses.
"""

from __future__ import annotations

import os
import secrets
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

from .. import datasets
from ..spawners import provision

USERS = ("alice", "bob", "carol")
PROJECTS = {
    "brca": ("Breast cancer cohort (demo)", ("alice", "carol")),
    "cardio": ("Cardiovascular cohort (demo)", ("bob", "carol")),
}
CONFIG = Path(__file__).parent.parent / "jupyterhub_config.py"


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


#: Demo cohorts: (people, base pairs per chromosome, seed). ~20 000 variants each.
COHORTS = {"brca": (300, 2.5e6, 11), "cardio": (240, 2.5e6, 23)}
DATASET = "cohort"
#: Simulations are deterministic: kept here so that restarting a demo does not redo them.
CACHE = Path("/var/cache/datahavn")


def write_demo_dataset(layout: Layout, project: str, actor: str) -> Path:
    """The project's simulated cohort (a VCF imported like any other) and its phenotype table."""
    from . import cohorts

    final = datasets.store_path(layout, project, DATASET)
    if final.exists():
        return final
    samples, length, seed = COHORTS[project]
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    vcf = CACHE / f"{project}-{samples}x{int(length)}-{seed}.vcf.gz"
    dosage_file = vcf.with_suffix(".dosage.npy")
    if not (vcf.exists() and dosage_file.exists()):
        tmp = vcf.with_name(f".{vcf.name}.{os.getpid()}")
        dosage = cohorts.simulate(tmp, samples, length, seed, prefix=f"{project}_")
        np.save(dosage_file, dosage)
        os.rename(tmp, vcf)
    datasets.import_dataset(
        layout, project, DATASET, vcf, workers=2, actor=actor, audit_url=os.environ.get("DATAHAVN_AUDIT_DB_URL", "")
    )
    ids = cohorts.sample_ids(f"{project}_", samples)
    gid = provision.ensure_project(layout, project)
    cohorts.phenotypes(layout.shared(project) / "phenotypes.csv", ids, np.load(dosage_file), seed, gid)
    return final


def bootstrap(hub: HubClient, layout: Layout) -> None:
    """Users, projects, first grants and datasets; re-running changes nothing."""
    for user in USERS:
        admin.add_user(hub, user, exist_ok=True)
    actor = hub.whoami()
    for project, (description, members) in PROJECTS.items():
        if admin.create_project(hub, project, description, exist_ok=True):
            # Grants only when the project is new: a later revoke is not undone by a restart.
            for user in members:
                admin.grant(hub, user, project, reason="demo")
        provision.ensure_project(layout, project)
        write_demo_dataset(layout, project, actor)


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


#: the demo's Dask limits on a small machine (a site sets $DATAHAVN_DASK_LIMITS, the chart's keys)
DEMO_DASK_LIMITS = (
    '{"defaults": {"maxWorkers": 4, "maxCores": 6, "maxMemoryGiB": 8, "workerCores": {"default": 1,'
    ' "max": 2}, "workerMemoryGiB": {"default": 1, "max": 4}, "schedulerMemoryGiB": 1}}'
)


def slurm_answers(timeout: float = 10) -> str | None:
    """None if this machine's Slurm answers (``sinfo``), else why not."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return "Slurm is not installed"
    except subprocess.TimeoutExpired:
        return f"slurmctld did not answer within {timeout:g} s"
    if proc.returncode != 0:
        return proc.stderr.strip() or f"sinfo failed ({proc.returncode})"
    return None


def run_demo(ip: str = "127.0.0.1", port: int = 8000, state_dir: str | None = None, dask: str = "local") -> int:
    if os.geteuid() != 0:
        print("datahavn: error: the demo runs as root (it creates unix accounts per user and project)", file=sys.stderr)
        return 1
    if not 1 <= port <= 65535:
        print(f"datahavn: error: invalid port {port}", file=sys.stderr)
        return 2
    if dask == "slurm" and (why := slurm_answers()):
        print(f"datahavn: error: --dask slurm needs a running Slurm ({why}); start one on this machine with "
              "`bash scripts/slurm.sh`", file=sys.stderr)  # fmt: skip
        return 1
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
        DATAHAVN_AIRLOCK_PORT=os.environ.get("DATAHAVN_AIRLOCK_PORT") or str(free_port()),
        DATAHAVN_DASK_ENGINE=dask,
        **{
            f"DATAHAVN_GATEWAY_{k}_PORT": os.environ.get(f"DATAHAVN_GATEWAY_{k}_PORT") or str(free_port())
            for k in ("API", "HTTP", "TCP")
        },  # fmt: skip
        DATAHAVN_DASK_LIMITS=os.environ.get("DATAHAVN_DASK_LIMITS") or DEMO_DASK_LIMITS,
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
