"""KubeProjectSpawner: one pod per (user, project), as that pair's own identity.

The Kubernetes twin of :class:`.local.ProjectSpawner`, and thin: the order of
checks and audit records is :class:`.base.ProjectSpawnerBase`'s; ``prepare``
sets the pod from the pure :func:`..kube.pods.server_spec` (uid and gid,
volumes, environment, labels), tested without a cluster, and the kernels'
``project.dask()`` settings with the workspace's Dask token
(:meth:`.base.ProjectSpawnerBase.dask_gateway_env`); ``launch`` and ``halt``
are KubeSpawner's own.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubespawner import KubeSpawner
from traitlets import Unicode

from ..kube import KubeSettings, KubeSettingsError, dask_engine, server_spec, uid_clashes
from ..projects import project_users
from .base import ProjectSpawnerBase, WorkspaceError

#: Where the chart mounts its ConfigMap (``templates/hub/configmap.yaml``).
DEFAULT_SETTINGS = "/usr/local/etc/jupyterhub/jupyterhub_config.d/datahavn.json"


def load_settings(path: str | Path) -> KubeSettings:
    """The chart's settings; read at every start, so a ``helm upgrade`` adding a project needs no hub restart."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise KubeSettingsError(f"cannot read {path}: {e}") from None
    return KubeSettings.from_dict(data)


class KubeProjectSpawner(ProjectSpawnerBase, KubeSpawner):
    """Start a project workspace as a pod of the (user, project) identity."""

    datahavn_settings = Unicode(
        DEFAULT_SETTINGS,
        help="The chart's Datahavn settings (JSON): projects, their volumes and Dask limits, addresses.",
    ).tag(config=True)

    def apply_project(self) -> None:
        """Set this pod's identity, volumes and environment for the checked (user, project)."""
        try:
            settings = load_settings(self.datahavn_settings)
            clashes = uid_clashes(self.user.name, self.name, project_users(self.db, self.name))
            if clashes:
                raise KubeSettingsError(
                    f"the workspace id of {self.user.name} in {self.name} collides with {', '.join(clashes)}'s"
                )
            spec = server_spec(settings, self.user.name, self.name, self.image)
        except KubeSettingsError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise WorkspaceError(500, f"Cannot prepare the workspace: {e}. Ask an administrator.") from None
        # project.dask(): on the chart's gateway, with a fresh token that opens it for this workspace only
        dask = self.dask_gateway_env(*dask_engine(settings))
        # keep what the chart sets for every server (e.g. extraEnv, labels); ours win
        spec["environment"] = {**self.environment, **spec["environment"], **dask}
        spec["extra_labels"] = {**self.extra_labels, **spec["extra_labels"]}
        spec["extra_pod_config"] = {**self.extra_pod_config, **spec["extra_pod_config"]}
        for name, value in spec.items():
            setattr(self, name, value)

    async def prepare(self) -> None:
        self.apply_project()

    def spawn_detail(self) -> dict:
        return {"uid": self.uid, "pod": self.pod_name}
