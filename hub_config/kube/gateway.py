"""dask-gateway on Kubernetes for Datahavn: clusters pinned to the caller's (user, project).

Loaded by the gateway's config (the chart sets ``dask-gateway.gateway.extraConfig``
to ``configure(c)``); the gateway image must hold the ``datahavn`` package and
psycopg (the audit store's PostgreSQL driver).

- Who: :mod:`..dask.auth`, as on Slurm: only a workspace's Dask token, with a current grant;
  the gateway's user is the pair's account, so a workspace sees and reaches only its own
  pair's clusters, and limits count per pair.
- What: the project is never a cluster option. Users choose worker cores, memory and
  count within the project's bounds (:mod:`..dask.limits`); images, volumes, security context,
  labels and cluster limits come from :func:`.dask.cluster_config`.
- Records: every start, scale and stop, into the audit store, and clusters whose grant lapsed
  stopped (:mod:`..dask.kube_backend`, the backend this sets).
- Settings: the chart's ``datahavn.json``, read from its ConfigMap through the
  Kubernetes API with the gateway's service account (the chart grants it
  ``get`` on that one ConfigMap), asynchronously, cached for ``SETTINGS_TTL`` seconds.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from urllib.parse import quote

from aiohttp import web

from ..dask.auth import ProjectGatewayAuthenticator, ProjectUser, configure_auth
from ..dask.limits import gateway_options
from .dask import cluster_config
from .settings import KubeSettings

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONFIGMAP = os.environ.get("DATAHAVN_CONFIGMAP", "datahavn-hub-config")
SETTINGS_TTL = 30.0


async def read_configmap_settings(name: str = CONFIGMAP, key: str = "datahavn.json") -> dict:
    """The chart's settings from its ConfigMap, with this pod's service account.

    Asynchronous (aiohttp, which the gateway already runs on): a slow API server
    delays this one request, never the gateway's event loop.
    """
    import aiohttp

    with open(f"{SA_DIR}/namespace") as f:
        namespace = f.read().strip()
    with open(f"{SA_DIR}/token") as f:
        token = f.read().strip()
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    url = f"https://{host}:{port}/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}"
    context = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}, ssl=context) as resp:
            resp.raise_for_status()
            return json.loads((await resp.json())["data"][key])


class SettingsCache:
    def __init__(self, load=read_configmap_settings, ttl: float = SETTINGS_TTL):
        self.load, self.ttl = load, ttl
        self._value: KubeSettings | None = None
        self._at = 0.0

    async def get(self) -> KubeSettings:
        now = time.monotonic()
        if self._value is None or now - self._at > self.ttl:
            self._value = KubeSettings.from_dict(await self.load())
            self._at = now
        return self._value


settings = SettingsCache()


async def cluster_options(user):
    """The options of ``user``'s clusters: worker size and count within the project's bounds; the rest is pinned."""
    project = getattr(user, "datahavn_project", None)
    if project is None:
        raise web.HTTPForbidden(reason="Only a Datahavn workspace can create clusters")
    current = await settings.get()

    def handler(options, user):
        return cluster_config(current, user.datahavn_user, user.datahavn_project, dict(options))

    return gateway_options(current.project(project).dask, handler)


#: the Kubernetes backend with Datahavn's records and grant watch (a name: it imports kubernetes_asyncio)
BACKEND = "datahavn.hub_config.dask.kube_backend.DatahavnKubeBackend"


def configure(c) -> None:
    """Plug Datahavn into a dask-gateway-server config ``c`` (after the chart's own settings).

    The chart's ``c.KubeBackend`` and ``c.KubeClusterConfig`` settings still apply: the backend is a subclass.
    """
    configure_auth(c)
    c.DaskGateway.backend_class = BACKEND
    c.Backend.cluster_options = cluster_options


__all__ = [
    "BACKEND",
    "ProjectGatewayAuthenticator",
    "ProjectUser",
    "SettingsCache",
    "cluster_options",
    "configure",
    "settings",
]
