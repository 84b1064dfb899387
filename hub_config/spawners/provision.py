"""Create what the single-machine layout needs: folders, unix groups and accounts.

Runs in the hub (root). Idempotent: every function checks what exists and
only adds what is missing, and refuses (rather than repairs) anything that
contradicts the identity rules, such as an account whose GECOS names another
(user, project) or that holds extra groups.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from datahavn.names import account_gecos, account_name, project_group
from datahavn.paths import FIXED_MODES, PROJECT_MODES, RUNTIME_BASE, WORKSPACE_MODE, Layout, runtime_dir

from ..workspace import WORKSPACE_LINKS


class ProvisionError(RuntimeError):
    """The machine is not in a state where a server can be started safely."""


def check_traversable(path: Path) -> None:
    """Every account must be able to pass through the state dir's ancestors."""
    for parent in [path, *path.parents]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise ProvisionError(
                f"{parent} is not traversable by other users (mode "
                f"{oct(os.stat(parent).st_mode & 0o777)}): project accounts could not "
                "reach their workspaces; choose a state dir under a path like /srv or /tmp"
            )


def _ensure_dir(path: Path, mode: int, uid: int = 0, gid: int = 0) -> None:
    path.mkdir(exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def ensure_state(layout: Layout) -> None:
    """The fixed part of the tree, with DESIGN §3 modes, and a private hub DB."""
    layout.root.mkdir(parents=True, exist_ok=True)
    check_traversable(layout.root)
    for rel, mode in FIXED_MODES:
        _ensure_dir(layout.root / rel, mode)
    # sqlite would create the DB 0644; create it first, private.
    for private in (layout.hub_db,):
        private.touch(mode=0o600, exist_ok=True)
        os.chmod(private, 0o600)
    # the audit store's key: root only, never in the environment of anything
    if not layout.audit_key.exists():
        fd = os.open(layout.audit_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    # jupyter_core writes {JUPYTER_CONFIG_DIR}/migrated on first start; it is read-only to servers.
    migrated = layout.jupyter_config / "migrated"
    migrated.touch(exist_ok=True)
    os.chmod(migrated, 0o644)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProvisionError(f"{cmd[0]} failed: {proc.stderr.strip() or proc.returncode}")


def ensure_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run(["groupadd", name])
        return grp.getgrnam(name).gr_gid


def ensure_project(layout: Layout, project: str) -> int:
    """The project's unix group and folders; returns the group id."""
    gid = ensure_group(project_group(project))
    for rel, mode in PROJECT_MODES:
        _ensure_dir(layout.project(project) / rel, mode, 0, gid)
    return gid


def ensure_account(layout: Layout, user: str, project: str) -> pwd.struct_passwd:
    """The (user, project) account, its workspace, and links to the project's folders."""
    gid = ensure_project(layout, project)
    name = account_name(user, project)
    gecos = account_gecos(user, project)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _run([
            "useradd", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin", "--gid", str(gid), "--no-user-group",
            "--comment", gecos, name,
        ])  # fmt: skip
        entry = pwd.getpwnam(name)
    if entry.pw_gecos != gecos:
        raise ProvisionError(f"unix account {name} belongs to {entry.pw_gecos!r}, not {gecos!r}")
    if entry.pw_gid != gid or set(os.getgrouplist(name, gid)) != {gid}:
        raise ProvisionError(f"unix account {name} must have {project_group(project)} as its only group")
    if entry.pw_uid == 0:
        raise ProvisionError(f"unix account {name} has uid 0")
    ws = layout.workspace(project, user)
    _ensure_dir(ws, WORKSPACE_MODE, entry.pw_uid, gid)
    for name, target in WORKSPACE_LINKS.items():
        link = ws / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(target)
            os.lchown(link, 0, 0)
    return entry


def ensure_runtime_dir(entry: pwd.struct_passwd) -> Path:
    """The account's private runtime folder (kernel connection files, ipc sockets), empty at every start.

    A uid freed by a deleted account is given to the next one: what an earlier server left here
    (connection files with their keys) must not be the new account's to read.
    """
    _ensure_dir(Path(RUNTIME_BASE), 0o711)
    path = Path(runtime_dir(entry.pw_uid))
    shutil.rmtree(path, ignore_errors=True)
    _ensure_dir(path, 0o700, entry.pw_uid, entry.pw_gid)
    return path


def ensure_workspace_tmp(layout: Layout, entry: pwd.struct_passwd) -> Path:
    """The workspace's own /tmp and /var/tmp (bound into its kernels' boxes), private to its account."""
    _ensure_dir(layout.tmp, 0o711)
    path = layout.workspace_tmp(entry.pw_uid)
    _ensure_dir(path, 0o700, entry.pw_uid, entry.pw_gid)
    for sub in ("tmp", "var-tmp"):
        _ensure_dir(path / sub, 0o700, entry.pw_uid, entry.pw_gid)
    return path


def clear_workspace_tmp(layout: Layout, entry: pwd.struct_passwd) -> None:
    """A stopped workspace keeps nothing in its /tmp, nor in its runtime folder."""
    shutil.rmtree(layout.workspace_tmp(entry.pw_uid), ignore_errors=True)
    shutil.rmtree(runtime_dir(entry.pw_uid), ignore_errors=True)


def account_pids(uid: int) -> list[int]:
    """Every process running with ``uid`` as its real or effective uid."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        real, effective = line.split()[1:3]
                        if uid in (int(real), int(effective)):
                            pids.append(int(entry.name))
                        break
        except OSError:
            continue
    return pids


def kill_account(uid: int) -> int:
    """SIGKILL whatever still runs as a (user, project) account; returns how many."""
    if uid == 0:
        raise ProvisionError("refusing to kill processes of uid 0")
    pids = account_pids(uid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def seed_workspace(workspace: Path, account: pwd.struct_passwd, files) -> None:
    """Copy files (e.g. the example notebook) into a new workspace, owned by its account."""
    for src in map(Path, files):
        dest = workspace / src.name
        try:
            data = src.read_bytes()
        except OSError as e:
            raise ProvisionError(f"cannot read workspace seed {src}: {e.strerror}") from None
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chown(dest, account.pw_uid, account.pw_gid)
