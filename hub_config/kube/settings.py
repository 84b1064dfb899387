"""The chart's settings for Datahavn (``datahavn.json`` in the hub's ConfigMap), parsed and checked (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datahavn.names import InvalidName, check_project
from datahavn.paths import Layout

from ..dask.limits import DaskLimits, LimitsError
from .ids import UID_MIN, UID_SPAN, derived_gid

#: The state dir inside pods: the single machine's layout, so kernels see the same paths.
POD_STATE_DIR = "/srv/datahavn"


class KubeSettingsError(ValueError):
    """Settings from the chart that Datahavn cannot run with."""


@dataclass(frozen=True)
class ProjectSettings:
    """What the cluster holds for one project: its group, its two volumes, its Dask limits."""

    name: str
    gid: int
    datasets_claim: str
    workspaces_claim: str
    dask: DaskLimits = field(default_factory=DaskLimits)


@dataclass(frozen=True)
class GatewaySettings:
    """Where workspaces reach dask-gateway (inside the cluster only), and the image of its schedulers and workers."""

    #: the gateway's HTTP API, through its proxy (``http://traefik-...:80/<prefix>``)
    address: str
    #: its TLS scheduler proxy (``tls://traefik-...:<port>``)
    proxy_address: str
    image: str
    image_pull_policy: str = "IfNotPresent"


@dataclass(frozen=True)
class KubeSettings:
    projects: Mapping[str, ProjectSettings]
    audit_url: str
    jupyter_config_map: str
    state_dir: str = POD_STATE_DIR
    gateway: GatewaySettings | None = None
    #: users who may read the audit trail (the datahavn-auditor role)
    auditors: tuple[str, ...] = ()
    #: the airlock service's address (the hub service "datahavn-airlock"); None: no airlock
    airlock_url: str | None = None
    #: users who review airlock requests (the datahavn-airlock-checker role)
    checkers: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping) -> KubeSettings:
        """Parse and check the JSON the chart renders (``templates/hub/configmap.yaml``)."""
        try:
            defaults = data.get("daskDefaults") or {}
            projects = {}
            for name, raw in sorted((data.get("projects") or {}).items()):
                try:
                    check_project(name)
                except InvalidName as e:
                    raise KubeSettingsError(f"projects: {e}") from None
                gid = raw.get("gid")
                if gid is None:
                    gid = derived_gid(name)
                if isinstance(gid, bool) or not isinstance(gid, int) or not 1000 <= gid < 1 << 31:
                    raise KubeSettingsError(f"projects.{name}.gid must be a whole number from 1000, got {gid!r}")
                try:
                    dask = DaskLimits.from_dict(f"projects.{name}.dask", defaults, raw.get("dask") or {})
                except LimitsError as e:
                    raise KubeSettingsError(str(e)) from None
                projects[name] = ProjectSettings(name, gid, raw["datasetsClaim"], raw["workspacesClaim"], dask)
            gw = data.get("gateway") or {}
            gateway = (
                GatewaySettings(
                    gw["address"], gw["proxyAddress"], gw["image"], gw.get("imagePullPolicy") or "IfNotPresent"
                )
                if gw.get("enabled")
                else None
            )
            settings = cls(
                projects=projects,
                audit_url=data["auditUrl"],
                jupyter_config_map=data["jupyterConfigMap"],
                state_dir=data.get("stateDir") or POD_STATE_DIR,
                gateway=gateway,
                auditors=tuple(data.get("auditors") or ()),
                airlock_url=data.get("airlockUrl") or None,
                checkers=tuple(data.get("checkers") or ()),
            )
        except KeyError as e:
            raise KubeSettingsError(f"missing setting {e.args[0]!r}") from None
        by_gid: dict[int, str] = {}
        for p in projects.values():
            if p.gid in by_gid:
                raise KubeSettingsError(
                    f"projects {by_gid[p.gid]} and {p.name} would share gid {p.gid}: pin a gid for one of them"
                )
            if UID_MIN <= p.gid < UID_MIN + UID_SPAN:
                raise KubeSettingsError(f"projects.{p.name}.gid {p.gid} is in the workspace uid range")
            by_gid[p.gid] = p.name
        return settings

    def project(self, name: str) -> ProjectSettings:
        try:
            return self.projects[name]
        except KeyError:
            raise KubeSettingsError(
                f"project {name} has no volumes on this cluster: an administrator must add it to the chart's projects"
            ) from None

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.state_dir))
