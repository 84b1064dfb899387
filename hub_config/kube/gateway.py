"""dask-gateway on Kubernetes for Datahavn: clusters pinned to the caller's (user, project).

Loaded by the gateway's config (the chart sets ``dask-gateway.gateway.extraConfig``
to ``configure(c)``); the gateway image must hold the ``datahavn`` package.

- Who: only a single-user server's own hub token is accepted, and it names
  one (user, project) (:func:`datahavn.tokens.server_identity`). The grant is checked
  with the one rule, :func:`datahavn.grants.grant_status`, on the project as
  the hub reports it. The gateway's user is the pair's account
  (:func:`.dask.gateway_user`): a workspace sees and reaches only its own
  pair's clusters, and limits count per pair.
- What: the project is never a cluster option. Users choose worker cores
  and memory within the project's bounds; images, volumes, security context,
  labels and cluster limits come from :func:`.dask.cluster_config`.
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
from dask_gateway_server.auth import JupyterHubAuthenticator, unauthorized
from dask_gateway_server.models import User
from dask_gateway_server.options import Float, Options

from datahavn.grants import grant_status
from datahavn.tokens import server_identity

from .dask import cluster_config, dask_option_fields, gateway_user
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


class ProjectUser(User):
    """A gateway user that is one (user, project): named by its account, in its project's group."""

    def __init__(self, user: str, project: str):
        name, groups = gateway_user(user, project)
        super().__init__(name, groups=groups, admin=False)
        self.datahavn_user = user
        self.datahavn_project = project


class ProjectGatewayAuthenticator(JupyterHubAuthenticator):
    """JupyterHub authentication that accepts a workspace's own token only, with a current grant."""

    async def _hub_get(self, path: str, token: str) -> tuple[int, dict | None]:
        resp = await self.session.get(
            f"{self.jupyterhub_api_url.rstrip('/')}{path}",
            headers={"Authorization": f"token {token}"},
            ssl=self.ssl_context,
        )
        async with resp:
            if resp.status >= 400:
                return resp.status, None
            return resp.status, await resp.json()

    async def authenticate(self, request):
        token = self.get_token(request)
        if token is None:
            raise unauthorized("jupyterhub")
        status, model = await self._hub_get("/user", token)
        if model is None:
            if status < 500:
                raise unauthorized("jupyterhub")
            raise web.HTTPBadGateway(reason="The hub could not verify the token")
        who = server_identity(model)
        if who is None:
            raise web.HTTPForbidden(reason="Only a Datahavn workspace's own token can use Dask")
        user, project = who
        status, group = await self._hub_get(f"/groups/{quote(project)}", self.jupyterhub_api_token)
        if group is None and status != 404:
            raise web.HTTPBadGateway(reason="The hub could not report the project's grants")
        group = group or {}
        grant = grant_status(project, group.get("properties"), group.get("users") or [], user)
        if not grant.current:
            self.log.warning("Refused %s in %s: grant is %s", user, project, grant.status)
            raise web.HTTPForbidden(reason=f"No current grant for project {project}")
        return ProjectUser(user, project)


async def cluster_options(user) -> Options:
    """The options of ``user``'s clusters: worker size within the project's bounds; the rest is pinned."""
    project = getattr(user, "datahavn_project", None)
    if project is None:
        raise web.HTTPForbidden(reason="Only a Datahavn workspace can create clusters")
    current = await settings.get()
    fields = [
        Float(f["field"], default=f["default"], min=f["min"], max=f["max"], label=f["label"])
        for f in dask_option_fields(current.project(project).dask)
    ]

    def handler(options, user):
        return cluster_config(current, user.datahavn_user, user.datahavn_project, dict(options))

    return Options(*fields, handler=handler)


def configure(c) -> None:
    """Plug Datahavn into a dask-gateway-server config ``c`` (after the chart's own settings)."""
    c.DaskGateway.authenticator_class = ProjectGatewayAuthenticator
    # our own rule replaces JupyterHub's service-access scopes: a server token, a current grant
    c.JupyterHubAuthenticator.use_service_access_scopes = False
    # a revoked workspace's token is forgotten within a minute
    c.Authenticator.cache_max_age = 60
    c.Backend.cluster_options = cluster_options
