"""KubeProjectSpawner: one pod per (user, project), as that pair's own identity.

The Kubernetes twin of :class:`.spawner.ProjectSpawner`, and thin: the rules
are shared, not repeated.

- the checks at start (default server refused, project name, current grant)
  are :class:`.spawner.ProjectRules`' ``check_allowed``, with its messages; the grant
  is read by :func:`.projects.check_grant` at start and again at every poll,
  so a revoked or expired grant stops the pod within ``poll_interval``;
- what the pod is (uid and gid, volumes, environment, labels) comes from the
  pure :func:`.kube.server_spec`, tested without a cluster;
- spawns, refusals and stops are recorded in the audit trail, as on one machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from jupyterhub import orm
from kubespawner import KubeSpawner
from traitlets import Unicode

from datahavn.grants import project_record

from . import kube
from .spawner import ProjectRules, WorkspaceError

#: Where the chart mounts its ConfigMap (``templates/hub/configmap.yaml``).
DEFAULT_SETTINGS = "/usr/local/etc/jupyterhub/jupyterhub_config.d/datahavn.json"


def load_settings(path: str | Path) -> kube.KubeSettings:
    """The chart's settings; read at every start, so a ``helm upgrade`` adding a project needs no hub restart."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise kube.KubeSettingsError(f"cannot read {path}: {e}") from None
    return kube.KubeSettings.from_dict(data)


def project_users(db, project: str) -> set[str]:
    """Everyone the project knows: its members and whoever its grant record names (revoked too)."""
    group = db.query(orm.Group).filter_by(name=project).one_or_none()
    if group is None:
        return set()
    record = project_record(group.properties) or {}
    return {u.name for u in group.users} | set(record.get("grants") or {})


class KubeProjectSpawner(ProjectRules, KubeSpawner):
    """Start a project workspace as a pod of the (user, project) identity."""

    datahavn_settings = Unicode(
        DEFAULT_SETTINGS,
        help="The chart's Datahavn settings (JSON): projects, their volumes and Dask limits, addresses.",
    ).tag(config=True)

    def apply_project(self) -> None:
        """Set this pod's identity, volumes and environment for the checked (user, project)."""
        try:
            settings = load_settings(self.datahavn_settings)
            clashes = kube.uid_clashes(self.user.name, self.name, project_users(self.db, self.name))
            if clashes:
                raise kube.KubeSettingsError(
                    f"the workspace id of {self.user.name} in {self.name} collides with {', '.join(clashes)}'s"
                )
            spec = kube.server_spec(settings, self.user.name, self.name, self.image)
        except kube.KubeSettingsError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise WorkspaceError(500, f"Cannot prepare the workspace: {e}. Ask an administrator.") from None
        # keep what the chart sets for every server (e.g. extraEnv, labels); ours win
        spec["environment"] = {**self.environment, **spec["environment"]}
        spec["extra_labels"] = {**self.extra_labels, **spec["extra_labels"]}
        spec["extra_pod_config"] = {**self.extra_pod_config, **spec["extra_pod_config"]}
        for name, value in spec.items():
            setattr(self, name, value)

    async def start(self):
        try:
            self.check_allowed()
            self.apply_project()
        except WorkspaceError as e:
            kind = "spawn_refused" if e.status_code < 500 else "spawn"
            outcome = f"HTTP {e.status_code}" if e.status_code < 500 else "error"
            self._audit(kind, actor=self._actor(), outcome=outcome, detail=e.log_message)
            raise
        try:
            result = await super().start()
        except Exception as e:
            self._audit("spawn", actor=self._actor(), outcome="error", detail=f"{type(e).__name__}: {e}")
            raise
        self._audit("spawn", actor=self._actor(), outcome="ok", detail={"uid": self.uid, "pod": self.pod_name})
        return result

    async def stop_lapsed(self) -> None:
        await super().stop(now=True)

    async def stop(self, now=False):
        await super().stop(now=now)
        self._audit("stop", actor=self._actor(), outcome="ok")
