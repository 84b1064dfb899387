"""Dask clusters of a (user, project) on Kubernetes: dask-gateway's options and cluster config (pure).

The project comes from the caller's token, never from the options; the sizes a
user may choose are bounded by the project's limits (:class:`.settings.DaskLimits`).
The glue that plugs these into dask-gateway-server is :mod:`.gateway`.
"""

from __future__ import annotations

from collections.abc import Mapping

from datahavn.names import account_name, project_group

from .ids import Identity, identity
from .pods import ACCOUNT_LABEL, PROJECT_LABEL, pod_project_env, project_volumes, security_contexts
from .settings import DaskLimits, KubeSettings, KubeSettingsError

GIB = 1 << 30


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
        "environment": pod_project_env(settings, ident),
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
