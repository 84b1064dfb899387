"""Datahavn on Kubernetes: pure builders for the spawner and the dask-gateway.

- :mod:`.ids`: uids and gids derived from the names;
- :mod:`.settings`: the chart's ``datahavn.json``, parsed and checked;
- :mod:`.pods`: a server's pod (KubeSpawner settings);
- :mod:`.dask`: a cluster's options and config (dask-gateway);
- :mod:`.gateway`: the glue inside dask-gateway-server (imports it; not re-exported here); its
  backend is :mod:`..dask.kube_backend`.

Everything re-exported here is a function of its arguments, checked against literal dicts
without a cluster.
"""

from .dask import cluster_config, dask_labels, gateway_user
from .ids import GID_MIN, GID_SPAN, UID_MIN, UID_SPAN, Identity, derived_gid, identity, uid_clashes, workspace_uid
from .pods import (
    ACCOUNT_LABEL,
    PROJECT_LABEL,
    SERVER_LABELS,
    WORKSPACE_INIT,
    dask_engine,
    pod_project_env,
    pod_server_env,
    project_volumes,
    security_contexts,
    server_labels,
    server_spec,
)
from .settings import POD_STATE_DIR, DaskLimits, GatewaySettings, KubeSettings, KubeSettingsError, ProjectSettings

__all__ = [
    "ACCOUNT_LABEL", "GID_MIN", "GID_SPAN", "PROJECT_LABEL", "UID_MIN", "UID_SPAN", "POD_STATE_DIR", "SERVER_LABELS",
    "WORKSPACE_INIT", "DaskLimits",
    "GatewaySettings", "Identity", "KubeSettings", "KubeSettingsError", "ProjectSettings", "cluster_config",
    "dask_engine", "dask_labels", "derived_gid", "gateway_user", "identity", "pod_project_env",
    "pod_server_env", "project_volumes", "security_contexts", "server_labels", "server_spec", "uid_clashes",
    "workspace_uid",
]  # fmt: skip
