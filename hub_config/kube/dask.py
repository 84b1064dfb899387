"""Dask clusters of a (user, project) on Kubernetes: dask-gateway's options and cluster config (pure).

The project comes from the caller's token, never from the options; the sizes a
user may choose are bounded by the project's limits (:func:`..dask.limits.check_options`, shared with Slurm).
The glue that plugs these into dask-gateway-server is :mod:`.gateway`.
"""

from __future__ import annotations

from collections.abc import Mapping

from datahavn.names import account_name, project_group

from ..dask.limits import OptionsError, check_options, common_config
from .ids import Identity, identity
from .pods import ACCOUNT_LABEL, PROJECT_LABEL, pod_project_env, project_volumes, security_contexts
from .settings import KubeSettings, KubeSettingsError


def gateway_user(user: str, project: str) -> tuple[str, list[str]]:
    """The gateway's user for a (user, project): the pair's account, in the project's group only.

    dask-gateway scopes clusters and limits by this name, so a workspace sees,
    connects to and counts only the clusters of its own (user, project).
    """
    return account_name(user, project), [project_group(project)]


def dask_labels(ident: Identity) -> dict[str, str]:
    return {PROJECT_LABEL: ident.project, ACCOUNT_LABEL: ident.account}


def cluster_config(settings: KubeSettings, user: str, project: str, options: Mapping) -> dict:
    """dask-gateway ``KubeClusterConfig`` overrides for a cluster of ``user`` in ``project``.

    The project comes from the caller's token, never from ``options``; the
    workers get the project's volumes and the server's security context; the
    scheduler gets the security context and no data. Sizes beyond the project's
    limits, and any other option, are refused (:class:`.settings.KubeSettingsError`).
    """
    if settings.gateway is None:
        raise KubeSettingsError("dask-gateway is not enabled on this cluster")
    p = settings.project(project)
    limits = p.dask
    ident = identity(user, project, p.gid)
    try:
        sizes = check_options(project, limits, options)
    except OptionsError as e:
        raise KubeSettingsError(str(e)) from None
    common = common_config(limits, sizes)
    pod_sc, container_sc = security_contexts(ident)
    volumes, mounts = project_volumes(settings, project)
    labels = dask_labels(ident)
    pod_common = {"securityContext": pod_sc, "automountServiceAccountToken": False, "enableServiceLinks": False}
    return {
        "image": settings.gateway.image,
        "image_pull_policy": settings.gateway.image_pull_policy,
        # DATAHAVN_USER and DATAHAVN_PROJECT: the cluster's pair, read back by the gateway (..dask.kube_backend)
        "environment": {**pod_project_env(settings, ident), "DATAHAVN_USER": user},
        **common,
        "worker_cores_limit": common["worker_cores"],
        "worker_memory_limit": common["worker_memory"],
        "scheduler_cores_limit": common["scheduler_cores"],
        "scheduler_memory_limit": common["scheduler_memory"],
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
