"""Pods of a (user, project) on Kubernetes: the KubeSpawner settings of a server (pure).

Everything here is a function of its arguments: no I/O, and no import of
kubespawner, so the pod can be checked against literal expectations without a
cluster (as kubespawner's ``objects.make_pod`` is). The glue that plugs it in
is :mod:`..spawners.kube`; the hub's config file is ``kube_config.py``.

Shared with the single machine, not repeated here: the names and the identity
(:mod:`datahavn.names`), the layout (:class:`datahavn.paths.Layout`, the same
paths inside pods), the workspace's environment and links (:mod:`..workspace`),
the grant rule (:func:`datahavn.grants.grant_status`).
"""

from __future__ import annotations

from datahavn.paths import runtime_dir

from ..workspace import links_script, project_env, server_env
from .ids import Identity, identity
from .settings import KubeSettings

#: Labels. ``component: singleuser-server`` is KubeSpawner's own label for every
#: server pod; the NetworkPolicies select on it (and on dask-gateway's own labels
#: for Dask pods), so a pod is confined whether or not it carries ours.
PROJECT_LABEL = "datahavn/project"
ACCOUNT_LABEL = "datahavn/account"
SERVER_LABELS = {"component": "singleuser-server", "hub.jupyter.org/network-access-hub": "true"}
#: the pod's /tmp and /var/tmp (an emptyDir on the node's disk)
TMP_SIZE = "10Gi"


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


def pod_project_env(settings: KubeSettings, ident: Identity) -> dict[str, str]:
    """What a kernel or a Dask worker of the pair sees of its project (as on a single machine)."""
    return project_env(settings.layout, ident.user, ident.project, ident.account)


def pod_server_env(settings: KubeSettings, ident: Identity) -> dict[str, str]:
    """The server's environment (as on a single machine); ``project.dask()``'s is the spawner's (a token)."""
    env = server_env(settings.layout, ident.user, ident.project, ident.account, ident.uid, settings.audit_url,
                     settings.airlock_url or "")  # fmt: skip
    # the pod is the kernels' box: their provisioner adds the command, environment and Landlock rules
    env["DATAHAVN_SANDBOX"] = "pod"
    return env


def dask_engine(settings: KubeSettings) -> tuple[str, str, str]:
    """(engine, gateway address, proxy address) of ``project.dask()`` in this cluster's workspaces.

    With the chart's gateway, ``kubernetes`` and the gateway's two addresses inside the cluster
    (the only parts of it a workspace pod may reach); else ``local``, in the kernel.
    """
    if settings.gateway is None:
        return "local", "", ""
    return "kubernetes", settings.gateway.address, settings.gateway.proxy_address


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
""" + links_script()


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
        # the workspace's own /tmp and /var/tmp: nothing of the node's, nothing of another pod's
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
    ]
    mounts += [
        {"name": "jupyter-config", "mountPath": str(lay.jupyter_config), "readOnly": True},
        {"name": "runtime", "mountPath": runtime_dir(ident.uid)},
        {"name": "tmp", "mountPath": "/tmp", "subPath": "tmp"},
        {"name": "tmp", "mountPath": "/var/tmp", "subPath": "var-tmp"},
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
        "environment": pod_server_env(settings, ident),
        # the kernel shares its container with the server, never its pid namespace with another container;
        # Landlock (extensions/landlock.py) keeps it from signalling the server inside the container
        "extra_pod_config": {"enableServiceLinks": False, "shareProcessNamespace": False},
        "notebook_dir": ws,
        "working_dir": ws,
        "disable_user_config": True,
        "default_url": "/lab",
    }
