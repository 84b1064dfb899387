"""A Dask scheduler or worker of a workspace's cluster, in the kernels' box (run as a Slurm job).

``python -I -m datahavn.extensions.dask_box scheduler|worker ARGS...`` (the command dask-gateway's
Slurm backend submits, :mod:`datahavn.hub_config.dask.slurm`) runs ``dask scheduler|worker ARGS`` as
the job's account, boxed as kernels are (:func:`.sandbox.bwrap_argv`): only ``/usr``, the users'
environment, this project's data (read-only), its shared folder and the account's workspace are
there; ``/tmp`` and ``/var/tmp`` are the job's own; ``/proc`` shows the job's processes; Landlock
scopes signals and abstract sockets. The network is the node's: scheduler and workers must reach one
another, so a site fences it (a network zone per project, or a firewall; see the README).

The job's folder (Slurm's ``--chdir``, the cluster's staging folder) holds the cluster's TLS files
and logs; it is the box's working folder.
"""

from __future__ import annotations

import os
import shutil
import sys

from datahavn.names import project_group

from . import landlock
from .sandbox import BWRAP, USR_LINKS, KernelBox, bwrap_argv, passwd_lines

ROLES = ("scheduler", "worker")


def job_box(env, cwd: str, uid: int, gid: int, job: str) -> KernelBox:
    """The box of one job of a cluster, from the environment the gateway gave the job."""
    project = env["DATAHAVN_PROJECT"]
    return KernelBox(
        user_env=env.get("DATAHAVN_USER_ENV") or sys.prefix, project_dir=env["DATAHAVN_PROJECT_DIR"],
        workspace=env["DATAHAVN_WORKSPACE"], tmp=os.path.join(cwd, f"tmp-{job}"), kernel_dir=cwd, cwd=cwd,
        account=env.get("USER") or str(uid), uid=uid, gid=gid, group=project_group(project),
    )  # fmt: skip


def _write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # scheduler and workers share the folder: each writes whole files


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ROLES:
        sys.exit(f"usage: python -m {__spec__.name} {'|'.join(ROLES)} ARGS...")
    role, args = argv[0], argv[1:]
    env = os.environ
    try:
        box = job_box(env, os.getcwd(), os.getuid(), os.getgid(), env.get("SLURM_JOB_ID") or str(os.getpid()))
    except KeyError as e:
        sys.exit(f"datahavn: not a Datahavn cluster's job (${e.args[0]} is not set): not started")
    if landlock.abi() < landlock.NEEDED_ABI:
        sys.exit(f"datahavn: this node has Landlock ABI {landlock.abi()}, {landlock.NEEDED_ABI} is needed: not started")
    if not os.access(BWRAP, os.X_OK):
        sys.exit(f"datahavn: {BWRAP} is missing (Debian package bubblewrap): not started")
    passwd, group = passwd_lines(box)
    _write(os.path.join(box.kernel_dir, "passwd"), passwd)
    _write(os.path.join(box.kernel_dir, "group"), group)
    os.makedirs(os.path.join(box.kernel_dir, "empty"), mode=0o500, exist_ok=True)
    shutil.rmtree(box.tmp, ignore_errors=True)
    for sub in ("tmp", "var-tmp"):
        os.makedirs(os.path.join(box.tmp, sub), mode=0o700)
    links = [name for name in USR_LINKS if os.path.islink(f"/{name}")]
    command = [os.path.join(box.user_env, "bin", "dask"), role, *args]
    if role == "scheduler" and env.get("DATAHAVN_DASHBOARD_PREFIX"):
        # the dashboard at the path the workspace's server shows it under, its address told to that server only
        prefix = env["DATAHAVN_DASHBOARD_PREFIX"].rstrip("/") + "/" + env.get("DASK_GATEWAY_CLUSTER_NAME", "")
        os.environ["DATAHAVN_DASHBOARD_PREFIX"] = prefix
        command += ["--dashboard-prefix", prefix, "--preload", "datahavn.extensions.dask_preload"]
    argv = bwrap_argv(box, command, links, network=True)
    # the kernels' rules: root-owned Dask and IPython config, nothing of the workspace's
    os.environ["DASK_CONFIG"] = os.path.join(box.user_env, "etc", "datahavn", "dask")
    os.environ["PYTHONNOUSERSITE"] = "1"
    landlock.restrict(None)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
