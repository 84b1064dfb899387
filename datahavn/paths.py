"""Where Datahavn keeps its state on one machine (DESIGN §3).

Pure: computes paths and the modes they must have; creating them is
``datahavn.hub_config.spawners.provision``'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = "/srv/datahavn"
#: The users' environment: built from a Python every account can execute,
#: root-owned and read-only to users.
DEFAULT_USER_ENV = "/opt/datahavn/user-env"
#: Kernels' connection files and ipc sockets, one 0700 folder per account: short paths,
#: as a unix socket path must fit in 107 bytes.
RUNTIME_BASE = "/run/datahavn"


def runtime_dir(uid: int) -> str:
    """The private runtime folder of account ``uid``: kernel connection files, ipc sockets."""
    return f"{RUNTIME_BASE}/{uid}"


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def from_env(cls, env=None) -> Layout:
        env = os.environ if env is None else env
        return cls(Path(env.get("DATAHAVN_STATE_DIR") or DEFAULT_STATE_DIR).absolute())

    # hub side: root only
    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def hub_db(self) -> Path:
        return self.hub / "jupyterhub.sqlite"

    @property
    def cookie_secret(self) -> Path:
        return self.hub / "jupyterhub_cookie_secret"

    @property
    def logs(self) -> Path:
        return self.hub / "logs"

    @property
    def secrets(self) -> Path:
        return self.hub / "secrets"

    @property
    def audit_db(self) -> Path:
        return self.hub / "audit.sqlite"

    @property
    def audit_key(self) -> Path:
        return self.secrets / "audit-key"

    @property
    def tmp(self) -> Path:
        """Workspaces' own /tmp folders (root 0711); never the machine's /tmp, which every account shares."""
        return self.root / "tmp"

    def workspace_tmp(self, uid: int) -> Path:
        return self.tmp / str(uid)

    @property
    def dask(self) -> Path:
        """Dask clusters' staging folders (dask-gateway's Slurm backend): ``dask/<account>/<cluster>``."""
        return self.root / "dask"

    @property
    def airlock(self) -> Path:
        return self.root / "airlock"

    # the servers' jupyter config: root-owned, readable by every account
    @property
    def jupyter_config(self) -> Path:
        return self.root / "config" / "jupyter"

    # projects
    @property
    def projects(self) -> Path:
        return self.root / "projects"

    def project(self, project: str) -> Path:
        return self.projects / project

    def data(self, project: str) -> Path:
        return self.project(project) / "data"

    def shared(self, project: str) -> Path:
        return self.project(project) / "shared"

    def work(self, project: str) -> Path:
        return self.project(project) / "work"

    def workspace(self, project: str, user: str) -> Path:
        return self.work(project) / user


#: (relative path, mode) of the fixed part of the tree; everything root-owned.
FIXED_MODES = (
    ("", 0o755),
    ("hub", 0o700),
    ("hub/logs", 0o700),
    ("hub/secrets", 0o700),
    ("airlock", 0o700),
    ("config", 0o755),
    ("config/jupyter", 0o755),
    # 0711: accounts can reach their project, but cannot list which projects exist
    ("projects", 0o711),
    ("tmp", 0o711),
    ("dask", 0o711),
)

#: Per-project folders: (name, mode); owner root, group the project's group.
PROJECT_MODES = (
    ("", 0o750),
    ("data", 0o2750),  # datasets: read-only to members
    ("shared", 0o2770),  # writable by every member
    ("work", 0o710),  # members reach their own workspace, cannot list others'
)

#: A workspace: owned by the (user, project) account, private to it.
WORKSPACE_MODE = 0o700
