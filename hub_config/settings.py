"""Settings the hub reads from its environment (set by ``datahavn demo``, a service unit or the chart).

Kept apart from the config files so they read like any JupyterHub config, and so
that one validator checks every value, on one machine and on Kubernetes alike,
with one clear error each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from datahavn.paths import DEFAULT_USER_ENV, Layout


class SettingsError(ValueError):
    pass


def env_int(env, name: str, default: int, low: int = 1, high: int = 65535) -> int:
    """``$name`` as a whole number in ``low..high`` (``default`` when unset or empty)."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"${name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"${name}={value} is out of range ({low}..{high})")
    return value


def env_float(env, name: str, default: float, low: float, high: float) -> float:
    """``$name`` as a number in ``low..high`` (``default`` when unset or empty)."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"${name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"${name}={value:g} is out of range ({low:g}..{high:g})")
    return value


def env_bytes(env, name: str, default: str) -> int:
    """``$name`` as a size: 512M, 4G, or bytes."""
    raw = (env.get(name, "") or default).strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        value = int(float(raw[:-1]) * units[raw[-1].upper()]) if raw[-1:].upper() in units else int(raw)
    except (ValueError, KeyError):
        raise SettingsError(f"${name}={raw!r} is not a size (e.g. 512M or 4G)") from None
    if value < 64 << 20:
        raise SettingsError(f"${name}={raw!r} is below 64M: no workspace starts in that")
    return value


def poll_interval(env=None) -> int:
    """Seconds between the hub's polls of a running server (each re-checks its grant)."""
    return env_int(os.environ if env is None else env, "DATAHAVN_POLL_INTERVAL", 10, 1, 60)


def dask_engine(env) -> str:
    """``$DATAHAVN_DASK_ENGINE`` on one machine: local (the default) or slurm."""
    value = env.get("DATAHAVN_DASK_ENGINE", "") or "local"
    if value not in ("local", "slurm"):
        raise SettingsError(f"$DATAHAVN_DASK_ENGINE={value!r}: choose local or slurm (kubernetes is the chart's)")
    return value


@dataclass(frozen=True)
class Settings:
    layout: Layout
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    poll_interval: int = 10
    audit_port: int = 8002
    airlock_port: int = 8003
    #: where project.dask() runs clusters: "local" (in the kernel's box) or "slurm" (dask-gateway, datahavn-dask)
    dask_engine: str = "local"
    #: the gateway's API (its schedulers' heartbeats), its HTTP proxy (API, dashboards), its TLS proxy (schedulers)
    gateway_ports: tuple[int, int, int] = (8004, 8005, 8006)
    #: output checkers named in configuration (more by `datahavn airlock checker add`)
    checkers: tuple[str, ...] = ()
    audit_db_url: str = field(default="", repr=False)
    user_env: str = DEFAULT_USER_ENV
    admin_token: str = field(default="", repr=False)
    user_password: str = field(default="", repr=False)
    admin_password: str = field(default="", repr=False)
    #: every workspace's limits (per project: ProjectSpawner.project_limits)
    mem_limit: int = 4 << 30
    cpu_limit: float = 1.0
    pids_limit: int = 512

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = os.environ if env is None else env
        token = env.get("DATAHAVN_ADMIN_TOKEN", "")
        if token and len(token) < 32:
            raise SettingsError("$DATAHAVN_ADMIN_TOKEN must be at least 32 characters")
        return cls(
            layout=Layout.from_env(env),
            ip=env.get("DATAHAVN_IP", "127.0.0.1"),
            port=env_int(env, "DATAHAVN_PORT", 8000),
            hub_port=env_int(env, "DATAHAVN_HUB_PORT", 8081),
            proxy_api_port=env_int(env, "DATAHAVN_PROXY_API_PORT", 8001),
            poll_interval=poll_interval(env),
            audit_port=env_int(env, "DATAHAVN_AUDIT_PORT", 8002),
            airlock_port=env_int(env, "DATAHAVN_AIRLOCK_PORT", 8003),
            dask_engine=dask_engine(env),
            gateway_ports=tuple(
                env_int(env, f"DATAHAVN_GATEWAY_{k}_PORT", d) for k, d in (("API", 8004), ("HTTP", 8005), ("TCP", 8006))
            ),  # fmt: skip
            checkers=tuple(n for n in env.get("DATAHAVN_AIRLOCK_CHECKERS", "").replace(",", " ").split() if n),
            audit_db_url=env.get("DATAHAVN_AUDIT_DB_URL", ""),
            user_env=env.get("DATAHAVN_USER_ENV", DEFAULT_USER_ENV),
            admin_token=token,
            user_password=env.get("DATAHAVN_DEMO_PASSWORD", ""),
            admin_password=env.get("DATAHAVN_DEMO_ADMIN_PASSWORD", ""),
            mem_limit=env_bytes(env, "DATAHAVN_MEM_LIMIT", "4G"),
            cpu_limit=env_float(env, "DATAHAVN_CPU_LIMIT", 1.0, 0.1, os.cpu_count() or 1),
            pids_limit=env_int(env, "DATAHAVN_PIDS_LIMIT", 512, 32, 1 << 20),
        )
