"""dask-gateway's Slurm backend for Datahavn: each cluster is Slurm jobs of the workspace's own account.

The gateway (a hub service, root on the hub machine, as ``PrivateData=jobs`` needs) is dask-gateway's
``SlurmBackend`` with four things changed:

- **who**: the gateway's user is the pair's account (:func:`..kube.dask.gateway_user`), so ``sbatch``
  runs as ``dh-<project>-<user>``, with the project's group as its only group, from here (no
  ``sudo``, no launcher in the users' environment); an account that is not a Datahavn workspace's
  is refused. ``scancel`` runs as the gateway, which the account cannot interfere with;
- **where**: the staging folder (the cluster's TLS key and certificate, its logs) is
  ``<state>/dask/<account>/<cluster>``, made by root and then handed to the account, not ``~``
  (the accounts have no home);
- **what**: scheduler and workers run in the box of :mod:`datahavn.extensions.dask_box`, the
  kernels' own (the project's folders only, a private ``/tmp``, Landlock scopes), sharing the
  node's network: on the gateway's own machine fenced to loopback (:mod:`.fence`), on a site's
  nodes by its firewall;
- **when**: every Slurm command has a timeout (a hung ``slurmctld`` fails a start, never hangs it),
  and every submission and cancellation is recorded with its job id (:mod:`.audit`).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
from collections.abc import Mapping
from pathlib import Path

from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend
from traitlets import Bool, Float, Unicode

from datahavn.names import account_name
from datahavn.paths import DEFAULT_USER_ENV, Layout

from ..workspace import project_env
from . import fence as nft_fence
from .audit import AuditedBackend
from .limits import DaskLimits, LimitsError, OptionsError, check_options, common_config, gateway_options

#: how scheduler and workers start: the users' environment's Python, isolated, in the box
BOX_MODULE = "datahavn.extensions.dask_box"


class SlurmSettingsError(ValueError):
    pass


def parse_limits(text: str) -> tuple[dict, dict]:
    """``$DATAHAVN_DASK_LIMITS``: ``{"defaults": {...}, "projects": {"brca": {...}}}`` in the chart's keys."""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise SlurmSettingsError(f"$DATAHAVN_DASK_LIMITS is not JSON: {e}") from None
    if not isinstance(data, dict) or set(data) - {"defaults", "projects"}:
        raise SlurmSettingsError('$DATAHAVN_DASK_LIMITS: give {"defaults": {...}, "projects": {"<p>": {...}}}')
    defaults, projects = data.get("defaults") or {}, data.get("projects") or {}
    try:
        DaskLimits.from_dict("defaults", defaults)
        for name, layer in projects.items():
            DaskLimits.from_dict(f"projects.{name}", defaults, layer)
    except LimitsError as e:
        raise SlurmSettingsError(f"$DATAHAVN_DASK_LIMITS: {e}") from None
    return defaults, projects


def project_limits(defaults: Mapping, projects: Mapping, project: str) -> DaskLimits:
    return DaskLimits.from_dict(f"projects.{project}", defaults, projects.get(project) or {})


def job_command(user_env: str, role: str) -> list[str]:
    """The scheduler's or a worker's command: dask, started in its box by the users' environment."""
    return [os.path.join(user_env, "bin", "python"), "-I", "-m", BOX_MODULE, role]


def slurm_cluster_config(layout: Layout, user_env: str, user: str, project: str, limits: DaskLimits,
                         options: Mapping, partition: str = "", hub_prefix: str = "/") -> dict:  # fmt: skip
    """``SlurmClusterConfig`` values for a cluster of ``user`` in ``project`` (the project is never an option)."""
    try:
        sizes = check_options(project, limits, options)
    except OptionsError as e:
        raise ValueError(str(e)) from None
    account = account_name(user, project)
    env = project_env(layout, user, project, account)
    # the cluster's pair, read back by the grant watch (audit.py); the box's own environment
    env.update(DATAHAVN_USER=user, DATAHAVN_USER_ENV=user_env, HOME=str(layout.dask / account),
               # the dashboard, under the workspace's own server (extensions/dask_dashboard.py)
               DATAHAVN_DASHBOARD_PREFIX=f"{hub_prefix.rstrip('/')}/user/{user}/{project}/datahavn/dask/")  # fmt: skip
    return {
        **common_config(limits, sizes),
        "worker_threads": max(1, int(sizes.cores)),
        "scheduler_cmd": job_command(user_env, "scheduler"),
        "worker_cmd": job_command(user_env, "worker"),
        "environment": env,
        "partition": partition,
        "staging_directory": str(layout.dask / "{username}"),
    }


class DatahavnSlurmBackend(AuditedBackend, SlurmBackend):
    """Slurm clusters of Datahavn workspaces (see the module's docstring)."""

    state_dir = Unicode(help="Datahavn's state directory (projects, workspaces, dask/ staging).", config=True)
    user_env = Unicode(DEFAULT_USER_ENV, help="The users' environment: dask, dask-gateway, datahavn.",
                       config=True)  # fmt: skip
    partition = Unicode("", help="The Slurm partition of every cluster's jobs ('': Slurm's default).", config=True)
    limits_json = Unicode(
        "", help="""Per-project Dask limits as JSON, in the chart's keys (``$DATAHAVN_DASK_LIMITS``).""", config=True
    )
    default_host = Unicode(
        "0.0.0.0",
        help="""Where schedulers and workers listen (their peers, the gateway and the proxy must reach them; TLS
        with the cluster's own certificate guards every connection). One machine: 127.0.0.1.""",
        config=True,
    )
    fence = Bool(
        False,
        help="""Fence each cluster's account to loopback with nftables (:mod:`.fence`): for Slurm on the gateway's
        own machine. On a cluster of nodes, the site's firewall does this (a network zone per project).""",
        config=True,
    )
    command_timeout = Float(
        20.0, help="""Seconds any Slurm command (sbatch, scancel, squeue) may take before it is killed.""",
        config=True,
    )  # fmt: skip

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.state_dir))

    async def get_cluster_options(self, user):
        project = getattr(user, "datahavn_project", None)
        if project is None:
            raise ValueError("Only a Datahavn workspace can create clusters")
        defaults, projects = parse_limits(self.limits_json)
        limits = project_limits(defaults, projects, project)

        def handler(options, user):
            return slurm_cluster_config(self.layout, self.user_env, user.datahavn_user, user.datahavn_project,
                                        limits, dict(options), self.partition)  # fmt: skip

        return gateway_options(limits, handler)

    # --- as the account ---------------------------------------------------------------

    def account(self, username: str) -> pwd.struct_passwd:
        """The unix account of a cluster: a Datahavn workspace's, with its project's group only."""
        try:
            entry = pwd.getpwnam(username)
        except KeyError:
            raise RuntimeError(f"no unix account {username}") from None
        if entry.pw_uid == 0 or not entry.pw_gecos.startswith("datahavn "):
            raise RuntimeError(f"{username} is not a Datahavn workspace's account")
        if set(os.getgrouplist(username, entry.pw_gid)) != {entry.pw_gid}:
            raise RuntimeError(f"{username} holds groups besides its project's")
        return entry

    def get_staging_directory(self, cluster):
        return str(self.layout.dask / self.account(cluster.username).pw_name / cluster.name)

    async def do_as_user(self, user, action, cmd=None, env=None, stdin=None, staging_dir=None, files=None):
        if action != "start":
            raise RuntimeError(f"unexpected action {action!r}: jobs are stopped by stop_job, as the gateway")
        entry = self.account(user)
        if staging_dir:
            make_staging(self.layout, entry, Path(staging_dir), files or {})
        return await self.run(cmd, env or {}, stdin, entry)

    async def run(self, cmd, env, stdin=None, entry: pwd.struct_passwd | None = None) -> tuple[int, str, str]:
        """Run a Slurm command (as ``entry``, else as the gateway) within ``command_timeout``."""

        def preexec():
            os.setgid(entry.pw_gid)
            os.setgroups([entry.pw_gid])  # the project's group, nothing else
            os.setuid(entry.pw_uid)

        proc = await asyncio.create_subprocess_exec(
            *cmd, env={"PATH": "/usr/bin:/bin", **env}, cwd="/", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=preexec if entry is not None else None,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None),
                                              self.command_timeout)  # fmt: skip
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(
                f"{os.path.basename(cmd[0])} did not answer within {self.command_timeout:g} s: "
                "the batch scheduler (slurmctld) is not responding"
            ) from None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def stop_job(self, username, job_id, staging_dir=None):
        """``scancel`` as the gateway (root), not as the account: the account can neither delay nor kill it,
        and a hub stopping the workspace (which kills every process of the account) cannot cut it short."""
        if staging_dir:
            parent = self.layout.dask / self.account(username).pw_name
            if Path(staging_dir).parent != parent:
                raise RuntimeError(f"staging folder {staging_dir} is not under {parent}")
            shutil.rmtree(staging_dir, ignore_errors=True)
        cmd, env = self.get_stop_cmd_env(job_id)
        code, _, err = await self.run(cmd, env)
        if code != 0 and "Job has finished" not in err and "Invalid job id" not in err:
            raise RuntimeError(f"scancel {job_id} failed ({code}): {err.strip()}")

    async def cleanup(self):
        await super().cleanup()  # the clusters are stopped first
        if self.fence:
            nft_fence.remove(nft_fence.table_name(self.state_dir))

    async def check_jobs(self, job_ids):
        if not job_ids:
            return {}
        cmd, env = self.get_status_cmd_env(job_ids)
        code, out, err = await self.run(cmd, env)
        if code != 0:
            self.log.warning("squeue failed (%d): %s", code, err.strip())
            raise RuntimeError("Job status check failed")
        return self.parse_job_states(out)

    # --- every job recorded with its id --------------------------------------------------

    async def do_start_cluster(self, cluster):
        if self.fence:
            try:
                nft_fence.fence(nft_fence.table_name(self.state_dir), self.account(cluster.username).pw_uid)
            except nft_fence.FenceError as e:  # a cluster that could reach out is not started
                raise RuntimeError(f"cannot fence the cluster's network: {e}") from None
        async for state in super().do_start_cluster(cluster):
            try:
                self.record("dask_cluster_start", cluster.name, strict=True, outcome="submitted",
                            detail={"account": cluster.username, "job_id": state["job_id"],
                                    **_sizes(cluster.config)})  # fmt: skip
            except Exception:
                await self.stop_job(cluster.username, state["job_id"], staging_dir=state["staging_dir"])
                raise
            yield state

    async def do_start_worker(self, worker):
        async for state in super().do_start_worker(worker):
            try:
                self.record("dask_cluster_scale", worker.cluster.name, strict=True, outcome="worker_submitted",
                            detail={"worker": worker.name, "job_id": state["job_id"],
                                    **_sizes(worker.cluster.config)})  # fmt: skip
            except Exception:
                await self.stop_job(worker.cluster.username, state["job_id"])
                raise
            yield state

    async def do_stop_cluster(self, cluster):
        await super().do_stop_cluster(cluster)
        self.record("dask_cluster_stop", cluster.name, outcome="cancelled",
                    detail={"job_id": cluster.state.get("job_id")})  # fmt: skip

    async def do_stop_worker(self, worker):
        await super().do_stop_worker(worker)
        self.record("dask_cluster_scale", worker.cluster.name, outcome="worker_stopped",
                    detail={"worker": worker.name, "job_id": worker.state.get("job_id")})  # fmt: skip


def _sizes(config) -> dict:
    return {"worker_cores": config.get("worker_cores"), "worker_memory": config.get("worker_memory"),
            "max_workers": config.get("cluster_max_workers")}  # fmt: skip


def make_staging(layout: Layout, entry: pwd.struct_passwd, staging: Path, files: Mapping[str, str]) -> None:
    """``dask/<account>/<cluster>``: made and filled by root, then handed to the account (0700).

    ``dask/<account>`` stays root's (0711): the account cannot plant a link where root writes.
    """
    parent = layout.dask / entry.pw_name
    if staging.parent != parent:
        raise RuntimeError(f"staging folder {staging} is not under {parent}")
    for folder, mode in ((layout.dask, 0o711), (parent, 0o711)):
        folder.mkdir(exist_ok=True)
        os.chown(folder, 0, 0)
        os.chmod(folder, mode)
    staging.mkdir(mode=0o700)  # a new cluster's name: it must not exist
    for name, text in files.items():
        fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chown(staging / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    os.chown(staging, entry.pw_uid, entry.pw_gid)
