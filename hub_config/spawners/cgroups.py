"""A workspace's resources on one machine: memory, CPU and processes, through cgroups (v1 controllers).

One cgroup per (user, project) account in each of the ``memory``, ``cpu``, ``pids`` and
``freezer`` hierarchies, made by the hub (root) before the server starts; the server joins
them before it drops privileges, and everything it starts (kernels, shells, Dask workers)
stays in them: the account cannot move out (the parents are root's, and nothing in a
kernel's box can reach ``/sys/fs/cgroup``).

- a workspace that runs out of memory loses its largest process (a kernel: the server is
  protected by its ``oom_score_adj``), and only that workspace;
- a fork loop stops at ``pids.max``; a busy loop at its CPU quota;
- :func:`kill_all` freezes the cgroup, kills every process in it and thaws it, until it is
  empty: a process that forks in a loop cannot outrun it.

:func:`paths` is pure; the rest writes the cgroup files.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpu", "pids", "freezer")
BASE = "datahavn"
CFS_PERIOD_US = 100_000


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Limits:
    """A workspace's limits; None: no limit of that kind."""

    memory_bytes: int | None = None
    cpus: float | None = None
    processes: int | None = None

    def describe(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpus": self.cpus, "processes": self.processes}


def own_path(controller: str, proc_cgroup: str) -> str:
    """This process's cgroup path in ``controller``, from the text of ``/proc/self/cgroup``."""
    for line in proc_cgroup.splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return "/"


def paths(account: str, proc_cgroup: str, root: Path = ROOT) -> dict[str, Path]:
    """Where ``account``'s cgroups are, nested under the hub's own (a hub in a container keeps its accounting)."""
    out = {}
    for c in CONTROLLERS:
        base = own_path(c, proc_cgroup).strip("/")
        out[c] = root / c / base / BASE / account if base else root / c / BASE / account
    return out


def _write(path: Path, value) -> None:
    # os.write, not a buffered file: a refusal must raise here, not be lost at close
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def available(root: Path = ROOT) -> bool:
    return all((root / c / "cgroup.procs").exists() for c in CONTROLLERS)


def create(account: str, limits: Limits) -> dict[str, Path]:
    """The account's cgroups, made or updated with ``limits``; returns their paths."""
    if not available():
        raise CgroupError(f"cgroup v1 controllers {', '.join(CONTROLLERS)} are not mounted under {ROOT}")
    where = paths(account, Path("/proc/self/cgroup").read_text())
    for path in where.values():
        path.mkdir(parents=True, exist_ok=True)
    mem = where["memory"]
    # memory+swap may never be below memory: lift it first, then set both (no swap for a workspace)
    memsw = mem / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        _write(memsw, -1)
    _write(mem / "memory.limit_in_bytes", limits.memory_bytes or -1)
    if memsw.exists() and limits.memory_bytes:
        _write(memsw, limits.memory_bytes)
    cpu = where["cpu"]
    _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
    _write(cpu / "cpu.cfs_quota_us", int(limits.cpus * CFS_PERIOD_US) if limits.cpus else -1)
    _write(where["pids"] / "pids.max", limits.processes or "max")
    return where


def join(where: dict[str, Path]) -> None:
    """Put this process in the cgroups (``preexec_fn``, as root, before dropping privileges)."""
    pid = os.getpid()
    for path in where.values():
        _write(path / "cgroup.procs", pid)


def members(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill_all(where: dict[str, Path], timeout: float = 10.0) -> int:
    """Kill every process of the workspace: freeze, kill, thaw, until none is left. Returns how many were killed."""
    freezer = where["freezer"]
    killed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = members(freezer)
        if not pids:
            return killed
        _write(freezer / "freezer.state", "FROZEN")
        for pid in members(freezer):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        _write(freezer / "freezer.state", "THAWED")
        time.sleep(0.05)
    raise CgroupError(f"processes remain in {freezer} after {timeout:.0f} s")


def remove(where: dict[str, Path]) -> None:
    """Remove the (empty) cgroups; one still in use stays, and is reused at the next start."""
    for path in where.values():
        try:
            path.rmdir()
        except OSError:
            pass
