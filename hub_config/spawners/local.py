"""ProjectSpawner: one server per (user, project), on this machine, as that pair's own unix account.

The server name is the project name. The order of checks and audit records is
:class:`.base.ProjectSpawnerBase`'s; this module fills in its hooks for local
processes: ``prepare`` provisions the account and folders (:mod:`.provision`),
``launch`` starts ``jupyterhub-singleuser`` as the account and waits until it
listens (failing fast if it exits first), ``halt`` kills every process the
account still runs.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.traitlets import ByteSpecification
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default, validate

from datahavn.names import account_name
from datahavn.paths import DEFAULT_USER_ENV, Layout

from ..workspace import host_port, server_env
from . import cgroups, provision
from .base import ProjectSpawnerBase, WorkspaceError

LIMIT_KEYS = {"mem_limit", "cpu_limit", "pids_limit", "network_allow"}


class ProjectSpawner(ProjectSpawnerBase, LocalProcessSpawner):
    """Start a project workspace as the (user, project) unix account.

    - refuses the default (unnamed) server: every workspace belongs to a project;
    - refuses a project the user holds no current grant for;
    - runs the server with the project's group as its only group, rooted in
      the user's workspace, with the project's data and shared folders linked in;
    - fails fast: if the server exits before it listens, the spawn fails with
      the reason instead of waiting for ``http_timeout``.
    """

    state_dir = Unicode(
        help="""Datahavn state directory (hub state, projects, workspaces).

        Defaults to $DATAHAVN_STATE_DIR, else /srv/datahavn.
        """,
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        return str(Layout.from_env().root)

    python_env = Unicode(
        DEFAULT_USER_ENV,
        help="""Prefix of the users' Python environment (root-owned, read-only to users).

        Must hold jupyterhub-singleuser and JupyterLab, and be executable by every account.
        """,
    ).tag(config=True)

    audit_url = Unicode(
        "",
        help="""URL of the datahavn-audit service (without its prefix), as servers reach it.""",
    ).tag(config=True)

    airlock_url = Unicode(
        "",
        help="""URL of the datahavn-airlock service (without its prefix), as servers reach it (export requests).""",
    ).tag(config=True)

    listen_timeout = Float(
        30,
        help="""Seconds to wait for a started server to listen before the spawn fails.""",
    ).tag(config=True)

    dask_workers = Int(
        0,
        help="""Workers of the Dask cluster ``project.dask()`` starts in a kernel (0: one, or two with processes).""",
    ).tag(config=True)

    dask_threads = Int(
        0,
        help="""Threads per Dask worker (0: the machine's cores, shared among the workers).""",
    ).tag(config=True)

    dask_processes = Bool(
        False,
        help="""Dask workers as processes (TLS between them) instead of threads in the kernel.

        Threads are faster on one machine for genotype work (no serialisation, no
        recompilation of numba functions in every worker) and open no network port.
        """,
    ).tag(config=True)

    dask_memory_limit = Unicode(
        "auto",
        help="""Memory limit per Dask worker, e.g. "4GiB" ("auto": the machine's memory shared among them).""",
    ).tag(config=True)

    dask_engine = Unicode(
        "local",
        help="""Where ``project.dask()`` runs a cluster: "local" (a LocalCluster in the kernel's box) or "slurm"
        (dask-gateway on Slurm: the hub service datahavn-dask). The researcher's code is the same.""",
    ).tag(config=True)

    @validate("dask_engine")
    def _check_dask_engine(self, proposal):
        if proposal.value not in ("local", "slurm"):
            raise TraitError(f"ProjectSpawner.dask_engine must be local or slurm, not {proposal.value!r}")
        return proposal.value

    dask_gateway_url = Unicode(
        "", help="""The gateway's address as kernels reach it (its proxy's HTTP side), e.g. http://127.0.0.1:8005."""
    ).tag(config=True)

    dask_gateway_proxy = Unicode(
        "", help="""The gateway's scheduler proxy (TLS by SNI) as kernels reach it, e.g. tls://127.0.0.1:8006."""
    ).tag(config=True)

    workspace_seed = List(
        Unicode(),
        help="""Files copied into a workspace when it is created (e.g. an example notebook).""",
    ).tag(config=True)

    kernel_sandbox = Unicode(
        "bwrap",
        help="""How kernels are boxed (extensions/provisioner.py): "bwrap", bubblewrap namespaces. "pod" leaves the
        box to the platform (a Kubernetes pod) and is no box on one machine: benchmarks use it as their baseline.""",
    ).tag(config=True)

    pids_limit = Int(
        512,
        help="""Most processes (and threads) a workspace may run at once: its server, kernels, shells and workers.

        A fork loop stops there, in that workspace only. 0: no limit.""",
    ).tag(config=True)

    network_allow = List(
        Unicode(),
        [],
        help="""Addresses ("host:port") every kernel may connect to, through a relay in its server; nothing else is
        reachable from a kernel, loopback included. Empty by default. Per project: ``project_limits``.""",
    ).tag(config=True)

    project_limits = Dict(
        help="""Per-project overrides of ``mem_limit`` (e.g. "8G"), ``cpu_limit`` (cores, e.g. 2.5), ``pids_limit`` and
        ``network_allow``: ``{"brca": {"mem_limit": "8G", "cpu_limit": 2}}``.""",
    ).tag(config=True)

    @validate("project_limits")
    def _check_project_limits(self, proposal):
        for project, limits in proposal.value.items():
            if not isinstance(limits, dict) or set(limits) - LIMIT_KEYS:
                raise TraitError(f"ProjectSpawner.project_limits[{project!r}]: a dict of {sorted(LIMIT_KEYS)}")
        return proposal.value

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.state_dir))

    @default("cmd")
    def _default_cmd(self):
        return [os.path.join(self.python_env, "bin", "jupyterhub-singleuser")]

    @default("env_keep")
    def _default_env_keep(self):
        # Nothing of the hub's environment (tokens, PYTHONPATH, venv) leaks into servers.
        return ["LANG", "LC_ALL", "TZ"]

    @default("default_url")
    def _default_url(self):
        return "/lab"

    # --- starting ---------------------------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(server_env(self.layout, self.user.name, self.project, self.account.pw_name,
                              self.account.pw_uid, self.audit_url, self.airlock_url))  # fmt: skip
        env.update(
            PATH=f"{self.python_env}/bin:/usr/local/bin:/usr/bin:/bin",
            DATAHAVN_DASK_WORKERS=str(self.dask_workers),
            DATAHAVN_DASK_THREADS=str(self.dask_threads),
            DATAHAVN_DASK_PROCESSES="1" if self.dask_processes else "0",
            DATAHAVN_DASK_MEMORY=self.dask_memory_limit,
            # the kernels' box (extensions/provisioner.py): bubblewrap, this workspace's /tmp, its limits
            DATAHAVN_SANDBOX=self.kernel_sandbox,
            DATAHAVN_TMP=str(self.layout.workspace_tmp(self.account.pw_uid)),
            DATAHAVN_NET_ALLOW=",".join(self.network_allow_all()),
            **self.dask_gateway_env(self.dask_engine, self.dask_gateway_url, self.dask_gateway_proxy),
            # the clusters' staging folders of this account (dashboards: extensions/dask_dashboard.py)
            DATAHAVN_DASK_STAGING=str(self.layout.dask / self.account.pw_name),
            **{f"DATAHAVN_CGROUP_{c.upper()}": str(p) for c, p in self._cgroups.items()},
            **{f"DATAHAVN_LIMIT_{k.upper()}": str(v) for k, v in self.limits().describe().items() if v},
        )
        return env

    def network_allow_all(self) -> list[str]:
        """The kernels' allow-list: the project's, and with a gateway engine the gateway's two addresses."""
        allow = list(self.limit("network_allow"))
        if self.dask_engine != "local":
            allow += [host_port(a) for a in (self.dask_gateway_url, self.dask_gateway_proxy) if a]
        return list(dict.fromkeys(allow))

    def limit(self, name: str):
        """This project's value of a limit (``project_limits``), else the spawner's."""
        return (self.project_limits.get(self.project) or {}).get(name, getattr(self, name))

    def limits(self) -> cgroups.Limits:
        memory = self.limit("mem_limit")
        if isinstance(memory, str):
            memory = ByteSpecification().validate(self, memory)
        return cgroups.Limits(memory_bytes=int(memory) if memory else None, cpus=self.limit("cpu_limit") or None,
                              processes=self.limit("pids_limit") or None)  # fmt: skip

    def user_env(self, env):
        # LocalProcessSpawner looks up a unix user named like the hub user; get_env sets all of it.
        return env

    def make_preexec_fn(self, name):
        uid, gid, cwd = self.account.pw_uid, self.account.pw_gid, self.notebook_dir
        where = self._cgroups

        def preexec():
            cgroups.join(where)  # as root: the account cannot leave them
            os.setgid(gid)
            os.setgroups([gid])  # the project's group, and nothing else
            os.setuid(uid)
            os.umask(0o007)
            os.chdir(cwd)

        return preexec

    async def prepare(self) -> None:
        ws = self.layout.workspace(self.project, self.user.name)
        new_workspace = not ws.exists()
        try:
            self.account = provision.ensure_account(self.layout, self.user.name, self.project)
            if new_workspace:
                provision.seed_workspace(ws, self.account, self.workspace_seed)
        except provision.ProvisionError as e:
            self.log.error("Cannot provision %s: %s", self._log_name, e)
            raise WorkspaceError(500, f"Cannot prepare the workspace: {e}") from None
        provision.ensure_runtime_dir(self.account)
        provision.ensure_workspace_tmp(self.layout, self.account)
        try:
            self._cgroups = cgroups.create(self.account.pw_name, self.limits())
        except (cgroups.CgroupError, OSError) as e:
            raise WorkspaceError(500, f"Cannot set the workspace's resource limits: {e}") from None
        self.notebook_dir = str(ws)

    async def launch(self):
        log_path = self.layout.logs / f"{self.account.pw_name}.log"
        self._log_file = open(log_path, "ab")  # root-only: the user cannot rewrite it
        self.popen_kwargs = {"stdout": self._log_file, "stderr": self._log_file}
        try:
            ip, port = await self.platform_start()
        finally:
            self._log_file.close()
        await self._wait_listening(ip, port, log_path)
        self._port = port
        return ip, port

    def spawn_detail(self) -> dict:
        return {"uid": self.account.pw_uid, "port": self._port}

    async def _wait_listening(self, ip: str, port: int, log_path: Path) -> None:
        """Return once the server accepts connections; fail fast if it exits first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.listen_timeout
        while loop.time() < deadline:
            status = self.proc.poll() if self.proc else None
            if status is not None:
                tail = _tail(log_path)
                self.log.error("Server %s exited with %s before listening:\n%s", self._log_name, status, tail)
                raise WorkspaceError(
                    500,
                    f"The workspace for {self.project!r} exited during start-up (status {status}). "
                    f"Last log line: {tail.splitlines()[-1] if tail else '(none)'}",
                )
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(0.2)
        await self.terminate()
        raise WorkspaceError(
            500, f"The workspace for {self.project!r} did not start within {self.listen_timeout:.0f} s."
        )

    # --- stopping -------------------------------------------------------

    async def halt(self, now: bool = False) -> None:
        await self.platform_stop(now)
        await self.terminate()

    async def terminate(self) -> None:
        """Kill the server and everything else of the workspace (kernels, workers, what they forked)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        entry = getattr(self, "account", None) or _account_of(self.user.name, self.name)
        loop = asyncio.get_running_loop()
        if entry is not None:
            await loop.run_in_executor(None, self._kill_workspace, entry)
        if self.proc is not None:
            await loop.run_in_executor(None, self.proc.wait)
        self.clear_state()

    def _kill_workspace(self, entry: pwd.struct_passwd) -> None:
        where = cgroups.paths(entry.pw_name, Path("/proc/self/cgroup").read_text())
        try:
            cgroups.kill_all(where)  # frozen, then killed: a fork loop cannot outrun it
        except (cgroups.CgroupError, OSError) as e:
            self.log.error("Stopping %s: %s", self._log_name, e)
        provision.kill_account(entry.pw_uid)  # anything that was never in the cgroups
        cgroups.remove(where)
        provision.clear_workspace_tmp(self.layout, entry)


def _account_of(user: str, project: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(account_name(user, project))
    except (KeyError, ValueError):
        return None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
