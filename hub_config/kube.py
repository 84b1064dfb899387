"""Datahavn on Kubernetes: pure builders for the spawner and the dask-gateway.

Everything here is a function of its arguments: no I/O, and no import of
kubespawner or dask_gateway_server, so the pod and option dicts can be
checked against literal expectations without a cluster (as kubespawner's
``objects.make_pod`` is). The glue that plugs them in lives in
``kube_spawner.py`` (KubeSpawner), ``kube_gateway.py`` (dask-gateway) and
``kube_config.py`` (the hub's config file, mounted from the chart).

Shared with the single machine, not repeated here:

- the names and the identity: :func:`datahavn.names.account_name` names the
  (user, project) identity, :func:`datahavn.names.project_group` its only group;
- the layout: :class:`datahavn.paths.Layout` (the same paths inside pods);
- the grant rule: :func:`datahavn.grants.grant_status` (the hub reads it with
  ``projects.check_grant``, the gateway over the hub's REST API).

The numeric ids. A pod has no ``/etc/passwd`` to allocate from, so the ids
are derived, stably, from the names:

- uid = ``UID_MIN + sha256("datahavn <project>/<user>") mod UID_SPAN``: one per
  (user, project), the same on every start and in every pod of that pair (its
  server, its Dask scheduler and workers);
- gid = the project's ``gid`` from the chart, else ``GID_MIN + sha256("dh-<project>")
  mod GID_SPAN``, the project's group and the pods' only group.

A derived id can collide. The rule is therefore checked where a collision
would matter: gids across the configured projects when the settings load
(:meth:`KubeSettings.from_dict`), a uid against every other user the project
knows when a server starts (:func:`uid_clashes`); either refuses rather than
share an identity.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datahavn.names import InvalidName, account_gecos, account_name, check_project, check_user, project_group
from datahavn.paths import RUNTIME_BASE, Layout

#: Per-(user, project) uids: [UID_MIN, UID_MIN + UID_SPAN), below 2**31.
UID_MIN = 1_000_000
UID_SPAN = 1 << 30
#: Derived project gids: [GID_MIN, GID_MIN + GID_SPAN), apart from the uids.
GID_MIN = 100_000
GID_SPAN = 900_000
#: The state dir inside pods: the single machine's layout, so kernels see the same paths.
POD_STATE_DIR = "/srv/datahavn"
GIB = 1 << 30

#: Labels. ``component: singleuser-server`` is KubeSpawner's own label for every
#: server pod; the NetworkPolicies select on it (and on dask-gateway's own labels
#: for Dask pods), so a pod is confined whether or not it carries ours.
PROJECT_LABEL = "datahavn/project"
ACCOUNT_LABEL = "datahavn/account"
SERVER_LABELS = {"component": "singleuser-server", "hub.jupyter.org/network-access-hub": "true"}
#: A single-user server's own token carries exactly one scope of this form.
SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.+)$")


class KubeSettingsError(ValueError):
    """Settings from the chart that Datahavn cannot run with."""


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# --- identity ----------------------------------------------------------------


def derived_gid(project: str) -> int:
    """The project's gid when the chart pins none."""
    return GID_MIN + _digest(project_group(project)) % GID_SPAN


def workspace_uid(user: str, project: str) -> int:
    """The uid of ``user``'s workspace (server and Dask) in ``project``."""
    return UID_MIN + _digest(account_gecos(check_user(user), check_project(project))) % UID_SPAN


@dataclass(frozen=True)
class Identity:
    """Who a (user, project) pod runs as."""

    user: str
    project: str
    account: str
    uid: int
    gid: int


def identity(user: str, project: str, gid: int) -> Identity:
    return Identity(user, project, account_name(user, project), workspace_uid(user, project), gid)


def uid_clashes(user: str, project: str, others: Iterable[str]) -> list[str]:
    """The other users of ``project`` whose workspace uid equals ``user``'s (should be none)."""
    uid = workspace_uid(user, project)
    return sorted(o for o in set(others) if o != user and workspace_uid(o, project) == uid)


# --- settings (the chart's datahavn.json) -------------------------------------------


@dataclass(frozen=True)
class DaskLimits:
    """Per-project Dask limits; worker sizes are what users may choose within."""

    max_workers: int = 4
    max_cores: float = 8.0
    max_memory_gib: float = 32.0
    worker_cores: float = 1.0
    worker_cores_max: float = 2.0
    worker_memory_gib: float = 2.0
    worker_memory_gib_max: float = 8.0
    scheduler_cores: float = 1.0
    scheduler_memory_gib: float = 2.0
    idle_timeout_seconds: int = 1800

    #: chart key -> field
    KEYS = {
        "maxWorkers": "max_workers",
        "maxCores": "max_cores",
        "maxMemoryGiB": "max_memory_gib",
        "workerCores": ("worker_cores", "worker_cores_max"),
        "workerMemoryGiB": ("worker_memory_gib", "worker_memory_gib_max"),
        "schedulerCores": "scheduler_cores",
        "schedulerMemoryGiB": "scheduler_memory_gib",
        "idleTimeoutSeconds": "idle_timeout_seconds",
    }

    @classmethod
    def from_dict(cls, where: str, *layers: Mapping) -> DaskLimits:
        """Defaults, then each layer (the chart's defaults, the project's own) on top."""
        values: dict = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                target = cls.KEYS.get(key)
                if target is None:
                    raise KubeSettingsError(f"{where}: unknown Dask setting {key!r}")
                if isinstance(target, tuple):
                    if not isinstance(value, Mapping) or set(value) - {"default", "max"}:
                        raise KubeSettingsError(f"{where}.{key}: give default and max")
                    for sub, name in zip(("default", "max"), target, strict=True):
                        if sub in value:
                            values[name] = value[sub]
                else:
                    values[target] = value
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise KubeSettingsError(f"{where}: {name} must be a positive number, got {value!r}")
        limits = cls(**values)
        if not isinstance(limits.max_workers, int) or not isinstance(limits.idle_timeout_seconds, int):
            raise KubeSettingsError(f"{where}: maxWorkers and idleTimeoutSeconds are whole numbers")
        if limits.worker_cores > limits.worker_cores_max or limits.worker_cores_max > limits.max_cores:
            raise KubeSettingsError(f"{where}: need workerCores.default <= workerCores.max <= maxCores")
        if (
            limits.worker_memory_gib > limits.worker_memory_gib_max
            or limits.worker_memory_gib_max > limits.max_memory_gib
        ):
            raise KubeSettingsError(f"{where}: need workerMemoryGiB.default <= workerMemoryGiB.max <= maxMemoryGiB")
        return limits


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
    """Where workspaces reach dask-gateway, and the image of its schedulers and workers."""

    address: str
    proxy_address: str
    public_address: str
    image: str
    #: the hub service "dask-gateway" proxies /services/dask-gateway/ here
    service_url: str
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
                dask = DaskLimits.from_dict(f"projects.{name}.dask", defaults, raw.get("dask") or {})
                projects[name] = ProjectSettings(name, gid, raw["datasetsClaim"], raw["workspacesClaim"], dask)
            gw = data.get("gateway") or {}
            gateway = (
                GatewaySettings(
                    gw["address"],
                    gw["proxyAddress"],
                    gw["publicAddress"],
                    gw["image"],
                    gw["serviceUrl"],
                    gw.get("imagePullPolicy") or "IfNotPresent",
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


# --- pods of a (user, project) ------------------------------------------------------


def security_contexts(ident: Identity) -> tuple[dict, dict]:
    """(pod, container) security contexts: the pair's uid, the project's gid and nothing else."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": ident.uid,
        "runAsGroup": ident.gid,
        "supplementalGroups": [],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsNonRoot": True,
        "runAsUser": ident.uid,
        "runAsGroup": ident.gid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def project_volumes(settings: KubeSettings, project: str) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts) of a project: its datasets read-only, its work and shared folders read-write.

    The same paths as on a single machine: ``projects/<p>/data``, ``work``, ``shared``.
    No other project's claim is ever named.
    """
    p = settings.project(project)
    lay = settings.layout
    volumes = [
        {"name": "datasets", "persistentVolumeClaim": {"claimName": p.datasets_claim, "readOnly": True}},
        {"name": "workspaces", "persistentVolumeClaim": {"claimName": p.workspaces_claim}},
    ]
    mounts = [
        {"name": "datasets", "mountPath": str(lay.data(project)), "readOnly": True},
        {"name": "workspaces", "mountPath": str(lay.work(project)), "subPath": "work"},
        {"name": "workspaces", "mountPath": str(lay.shared(project)), "subPath": "shared"},
    ]
    return volumes, mounts


def project_env(settings: KubeSettings, ident: Identity) -> dict[str, str]:
    """What a kernel or a Dask worker of the pair sees of its project (as on a single machine)."""
    lay = settings.layout
    ws = str(lay.workspace(ident.project, ident.user))
    return {
        "HOME": ws,
        "USER": ident.account,
        "SHELL": "/usr/sbin/nologin",
        "PYTHONNOUSERSITE": "1",
        "DATAHAVN_PROJECT": ident.project,
        "DATAHAVN_PROJECT_DIR": str(lay.project(ident.project)),
        "DATAHAVN_WORKSPACE": ws,
        # numba and matplotlib cache beside their packages, read-only in the image
        "NUMBA_CACHE_DIR": f"{ws}/.cache/numba",
        "MPLCONFIGDIR": f"{ws}/.cache/matplotlib",
    }


def runtime_dir(ident: Identity) -> str:
    return f"{RUNTIME_BASE}/{ident.uid}"


def server_env(settings: KubeSettings, ident: Identity) -> dict[str, str]:
    """The server's environment: the project's, root-owned Jupyter config, the audit and Dask addresses."""
    lay = settings.layout
    ws = lay.workspace(ident.project, ident.user)
    env = project_env(settings, ident)
    env.update(
        JUPYTER_CONFIG_DIR=str(lay.jupyter_config),
        JUPYTER_PREFER_ENV_PATH="1",
        JUPYTERLAB_SETTINGS_DIR=str(ws / ".jupyter" / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(ws / ".jupyter" / "lab" / "workspaces"),
        JUPYTER_RUNTIME_DIR=runtime_dir(ident),
        DATAHAVN_AUDIT_URL=settings.audit_url.rstrip("/") + "/services/datahavn-audit/",
    )
    if settings.gateway is not None:
        env.update(
            DASK_GATEWAY__ADDRESS=settings.gateway.address,
            DASK_GATEWAY__PROXY_ADDRESS=settings.gateway.proxy_address,
            DASK_GATEWAY__PUBLIC_ADDRESS=settings.gateway.public_address,
            DASK_GATEWAY__AUTH__TYPE="jupyterhub",
        )
    return env


#: Creates the workspace as the pair itself (no root anywhere): ``work/`` is group-writable
#: and sticky, so a member creates their own folder and cannot touch another's. A folder
#: that exists but belongs to someone else stops the start.
WORKSPACE_INIT = """set -eu
ws="$DATAHAVN_WORKSPACE"
if [ ! -e "$ws" ] && [ ! -L "$ws" ]; then mkdir -m 0700 "$ws"; fi
if [ -L "$ws" ] || [ ! -d "$ws" ] || [ ! -O "$ws" ]; then
  echo "datahavn: $ws is not this workspace's own folder; ask an administrator" >&2
  exit 1
fi
chmod 0700 "$ws"
for t in data shared; do
  if [ ! -e "$ws/$t" ] && [ ! -L "$ws/$t" ]; then ln -s "../../$t" "$ws/$t"; fi
done
"""


def server_labels(ident: Identity) -> dict[str, str]:
    return {**SERVER_LABELS, PROJECT_LABEL: ident.project, ACCOUNT_LABEL: ident.account}


def server_spec(settings: KubeSettings, user: str, project: str, image: str) -> dict:
    """KubeSpawner settings for ``user``'s server in ``project`` (attribute name -> value).

    Replaces, not extends, the volumes and init containers: the pod mounts this
    project's volumes, a read-only Jupyter config and a private runtime folder,
    and nothing else. No service account token; the pair's uid, the project's gid.
    """
    p = settings.project(project)
    ident = identity(user, project, p.gid)
    pod_sc, container_sc = security_contexts(ident)
    volumes, mounts = project_volumes(settings, project)
    lay = settings.layout
    volumes += [
        {"name": "jupyter-config", "configMap": {"name": settings.jupyter_config_map, "defaultMode": 0o444}},
        {"name": "runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    mounts += [
        {"name": "jupyter-config", "mountPath": str(lay.jupyter_config), "readOnly": True},
        {"name": "runtime", "mountPath": runtime_dir(ident)},
    ]
    ws = str(lay.workspace(project, user))
    init = {
        "name": "workspace",
        "image": image,
        "command": ["/bin/sh", "-c", WORKSPACE_INIT],
        "env": [{"name": "DATAHAVN_WORKSPACE", "value": ws}],
        "securityContext": container_sc,
        "volumeMounts": [m for m in mounts if m["name"] == "workspaces"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    return {
        "uid": ident.uid,
        "gid": ident.gid,
        "fs_gid": None,
        "supplemental_gids": [],
        "privileged": False,
        "allow_privilege_escalation": False,
        "pod_security_context": pod_sc,
        "container_security_context": container_sc,
        "service_account": None,
        "automount_service_account_token": False,
        "storage_pvc_ensure": False,
        "volumes": volumes,
        "volume_mounts": mounts,
        "init_containers": [init],
        "extra_labels": server_labels(ident),
        "environment": server_env(settings, ident),
        "extra_pod_config": {"enableServiceLinks": False},
        "notebook_dir": ws,
        "working_dir": ws,
        "disable_user_config": True,
        "default_url": "/lab",
    }


# --- dask-gateway --------------------------------------------------------------------


def server_identity(model: Mapping) -> tuple[str, str] | None:
    """(user, project) if ``model`` (the hub's answer for a token) is a single-user server's own token.

    A server's token carries exactly one ``access:servers!server=<user>/<project>``
    scope naming its owner; tokens of people, services and administrators do not.
    """
    if model.get("kind") != "user":
        return None
    found = {m.groups() for s in model.get("scopes") or () if (m := SERVER_SCOPE.match(s))}
    if len(found) != 1:
        return None
    user, project = found.pop()
    if user != model.get("name"):
        return None
    try:
        check_user(user)
        check_project(project)
    except InvalidName:
        return None
    return user, project


def gateway_user(user: str, project: str) -> tuple[str, list[str]]:
    """The gateway's user for a (user, project): the pair's account, in the project's group only.

    dask-gateway scopes clusters and limits by this name, so a workspace sees,
    connects to and counts only the clusters of its own (user, project).
    """
    return account_name(user, project), [project_group(project)]


def dask_option_fields(limits: DaskLimits) -> list[dict]:
    """The options a user may set on a cluster: worker size within the project's bounds. Not the project."""
    return [
        {
            "kind": "float",
            "field": "worker_cores",
            "default": limits.worker_cores,
            "min": 0.1,
            "max": limits.worker_cores_max,
            "label": "Worker cores",
        },
        {
            "kind": "float",
            "field": "worker_memory",
            "default": limits.worker_memory_gib,
            "min": 0.25,
            "max": limits.worker_memory_gib_max,
            "label": "Worker memory (GiB)",
        },
    ]


def dask_labels(ident: Identity) -> dict[str, str]:
    return {PROJECT_LABEL: ident.project, ACCOUNT_LABEL: ident.account}


def cluster_config(settings: KubeSettings, user: str, project: str, options: Mapping) -> dict:
    """dask-gateway ``KubeClusterConfig`` overrides for a cluster of ``user`` in ``project``.

    The project comes from the caller's token, never from ``options``; the
    workers get the project's volumes and the server's security context; the
    scheduler gets the security context and no data.
    """
    if settings.gateway is None:
        raise KubeSettingsError("dask-gateway is not enabled on this cluster")
    p = settings.project(project)
    limits = p.dask
    ident = identity(user, project, p.gid)
    unknown = set(options) - {f["field"] for f in dask_option_fields(limits)}
    if unknown:
        raise KubeSettingsError(f"unknown cluster options {sorted(unknown)}: the project is not an option")
    cores = float(options.get("worker_cores", limits.worker_cores))
    memory = float(options.get("worker_memory", limits.worker_memory_gib))
    if not 0 < cores <= limits.worker_cores_max or not 0 < memory <= limits.worker_memory_gib_max:
        raise KubeSettingsError(
            f"workers in {project} may have up to {limits.worker_cores_max:g} cores "
            f"and {limits.worker_memory_gib_max:g} GiB"
        )
    pod_sc, container_sc = security_contexts(ident)
    volumes, mounts = project_volumes(settings, project)
    labels = dask_labels(ident)
    pod_common = {"securityContext": pod_sc, "automountServiceAccountToken": False, "enableServiceLinks": False}
    return {
        "image": settings.gateway.image,
        "image_pull_policy": settings.gateway.image_pull_policy,
        "environment": project_env(settings, ident),
        "worker_cores": cores,
        "worker_cores_limit": cores,
        "worker_memory": int(memory * GIB),
        "worker_memory_limit": int(memory * GIB),
        "scheduler_cores": limits.scheduler_cores,
        "scheduler_cores_limit": limits.scheduler_cores,
        "scheduler_memory": int(limits.scheduler_memory_gib * GIB),
        "scheduler_memory_limit": int(limits.scheduler_memory_gib * GIB),
        "cluster_max_workers": limits.max_workers,
        "cluster_max_cores": limits.max_cores,
        "cluster_max_memory": int(limits.max_memory_gib * GIB),
        "idle_timeout": float(limits.idle_timeout_seconds),
        "scheduler_extra_pod_labels": labels,
        "worker_extra_pod_labels": labels,
        "scheduler_extra_pod_config": pod_common,
        "scheduler_extra_container_config": {"securityContext": container_sc},
        "worker_extra_pod_config": {**pod_common, "volumes": volumes},
        "worker_extra_container_config": {
            "securityContext": container_sc,
            "volumeMounts": mounts,
            "workingDir": str(settings.layout.workspace(project, user)),
        },
    }
