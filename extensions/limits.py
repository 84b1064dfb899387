"""What the workspace's resource limits stopped, read from its cgroups, and how to say it to the researcher.

The spawner puts the workspace's cgroup folders (``DATAHAVN_CGROUP_MEMORY``, ``_PIDS``, ``_CPU``)
and its limits (``DATAHAVN_LIMIT_MEMORY_BYTES``, ``_CPUS``, ``_PROCESSES``) in the server's
environment; the server, outside every kernel's box, reads the counters before and after each
cell and when a kernel dies.
"""

from __future__ import annotations

import os
from pathlib import Path


def _read(path: str | None, name: str) -> str:
    try:
        return Path(path, name).read_text() if path else ""
    except OSError:
        return ""


def counters(env=None) -> dict[str, int]:
    """Memory kills, refused forks and throttled CPU periods of this workspace so far."""
    env = os.environ if env is None else env
    out = {}
    for line in _read(env.get("DATAHAVN_CGROUP_MEMORY"), "memory.oom_control").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            out["oom_kill"] = int(value)
    events = _read(env.get("DATAHAVN_CGROUP_PIDS"), "pids.events").split()
    if len(events) == 2 and events[1].isdigit():
        out["pids_max"] = int(events[1])
    for line in _read(env.get("DATAHAVN_CGROUP_CPU"), "cpu.stat").splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled" and value.strip().isdigit():
            out["nr_throttled"] = int(value)
    return out


def _gib(value: str) -> str:
    try:
        return f"{int(value) / (1 << 30):.3g} GiB"
    except ValueError:
        return "its"


def notices(before: dict, after: dict, env=None) -> list[tuple[str, str]]:
    """(kind, text) for each limit hit between two readings of :func:`counters`."""
    env = os.environ if env is None else env
    hit = []
    if after.get("oom_kill", 0) > before.get("oom_kill", 0):
        hit.append(("memory", (
            f"[Datahavn] This workspace reached its memory limit ({_gib(env.get('DATAHAVN_LIMIT_MEMORY_BYTES', ''))}): "
            "its largest process was stopped (if that was the kernel, its variables are gone and it restarts). "
            "Work on a subset, use project.genotypes() (read chunk by chunk), or ask an administrator for more memory."
        )))  # fmt: skip
    if after.get("pids_max", 0) > before.get("pids_max", 0):
        hit.append(("processes", (
            f"[Datahavn] This workspace reached its limit of {env.get('DATAHAVN_LIMIT_PROCESSES', 'its')} processes "
            "and threads: a new one was refused. Stop the processes you started, or restart the kernel."
        )))  # fmt: skip
    if after.get("nr_throttled", 0) > before.get("nr_throttled", 0) + 10:
        hit.append(("cpu", (
            f"[Datahavn] This cell was slowed to the workspace's {env.get('DATAHAVN_LIMIT_CPUS', 'its')} CPU(s): "
            "it ran as fast as the limit allows."
        )))  # fmt: skip
    return hit
