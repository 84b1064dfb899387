"""dask-gateway's Kubernetes backend for Datahavn: records, the grant watch, and who a cluster is.

:class:`DatahavnKubeBackend` is dask-gateway's ``KubeBackend`` with :class:`.audit.AuditedBackend`
before it (what every gateway engine does: records, fail-closed, the grant watch). Set by
:func:`..kube.gateway.configure`; the cluster options and config are :func:`..kube.dask.cluster_config`'s.

- **who a cluster is**: the pair its config pinned in the cluster's environment (``DATAHAVN_USER``,
  ``DATAHAVN_PROJECT``), kept in the DaskCluster object's spec, read back from the backend's cache
  of those objects. It must agree with the cluster's gateway user (the pair's account), else the
  cluster names no workspace and the grant watch stops it. A cluster just created is not in that
  cache until the API server reports it: its pair is kept from its creation until then.
- **the records**: the hub's audit store (the chart's PostgreSQL), opened at the gateway's start
  from ``$DATAHAVN_AUDIT_DB_URL`` and ``$DATAHAVN_AUDIT_KEY`` (the chart's ``datahavn-audit``
  Secret); without them the gateway does not start, rather than run clusters unrecorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dask_gateway_server.backends.kubernetes.backend import KubeBackend

from ..audit import hub as audit_hub
from ..audit.store import AuditStore
from .audit import AuditedBackend, spec_identity

#: how long the gateway waits for the audit store's database
STORE_TIMEOUT = 5


def open_gateway_store(env: Mapping = os.environ) -> AuditStore:
    """The audit store the gateway records into (see the module's docstring)."""
    url, key = env.get("DATAHAVN_AUDIT_DB_URL", ""), env.get("DATAHAVN_AUDIT_KEY", "")
    if not url or not key:
        raise RuntimeError("dask-gateway needs $DATAHAVN_AUDIT_DB_URL and $DATAHAVN_AUDIT_KEY (the chart's "
                           "datahavn-audit Secret): it runs no cluster it cannot record")  # fmt: skip
    return AuditStore(url, bytes.fromhex(key.strip()), busy_timeout=STORE_TIMEOUT)


class DatahavnKubeBackend(AuditedBackend, KubeBackend):
    """Kubernetes clusters of Datahavn workspaces (see the module's docstring)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: clusters created here and not yet in KubeBackend's cache: name -> (user, project)
        self._created: dict[str, tuple[str | None, str | None]] = {}
        self._store: AuditStore | None = None

    def make_cluster_object(self, username, options, config):
        obj = super().make_cluster_object(username, options, config)
        self._created[f"{config.namespace}.{obj['metadata']['name']}"] = spec_identity(username, config.environment)
        return obj

    def cluster_identity(self, cluster_name: str) -> tuple[str | None, str | None]:
        cluster = (getattr(self, "clusters", None) or {}).get(cluster_name)
        if cluster is None:
            return self._created.get(cluster_name, (None, None))
        self._created.pop(cluster_name, None)
        return spec_identity(cluster.username, cluster.config.get("environment") or {})

    async def setup(self, app):
        self._store = open_gateway_store()
        audit_hub.configure(self._store)
        await super().setup(app)

    async def cleanup(self):
        try:
            await super().cleanup()
        finally:
            if self._store is not None:
                self._store.close()
