"""Who may use a Datahavn dask-gateway: a workspace's own Dask token, while its grant is current.

The hub mints that token for each workspace it starts (:meth:`..spawners.base.ProjectSpawnerBase.dask_env`):
it carries one scope, ``custom:datahavn:dask!server=<user>/<project>``, which opens the gateway and
nothing else (no server, no hub API but naming itself). The gateway asks the hub who the token is
(:func:`datahavn.tokens.dask_identity`), checks the grant with the one rule
(:func:`datahavn.grants.grant_status`) and acts as the pair's account: a workspace sees, reaches and
counts only its own (user, project)'s clusters. The project is never the caller's to choose.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator, unauthorized
from dask_gateway_server.models import User

from datahavn.grants import Grant, grant_status
from datahavn.tokens import dask_identity

from ..kube.dask import gateway_user


class ProjectUser(User):
    """A gateway user that is one (user, project): named by its account, in its project's group."""

    def __init__(self, user: str, project: str):
        name, groups = gateway_user(user, project)
        super().__init__(name, groups=groups, admin=False)
        self.datahavn_user = user
        self.datahavn_project = project


class HubError(RuntimeError):
    """The hub could not answer (down, or an error): nothing is allowed on a guess."""


class ProjectGatewayAuthenticator(JupyterHubAuthenticator):
    """JupyterHub authentication that accepts a workspace's Dask token only, with a current grant."""

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

    async def grant(self, user: str, project: str) -> Grant:
        """The grant of ``user`` in ``project``, as the hub reports it now (the gateway's own token)."""
        status, group = await self._hub_get(f"/groups/{quote(project)}", self.jupyterhub_api_token)
        if group is None and status != 404:
            raise HubError(f"the hub answered {status} for project {project}'s grants")
        group = group or {}
        return grant_status(project, group.get("properties"), group.get("users") or [], user)

    async def workspace_running(self, user: str, project: str) -> bool:
        """Does the hub run (user, project)'s workspace now? A cluster does not outlive it."""
        status, model = await self._hub_get(f"/users/{quote(user)}", self.jupyterhub_api_token)
        if model is None:
            if status == 404:
                return False
            raise HubError(f"the hub answered {status} for {user}'s workspaces")
        return project in (model.get("servers") or {})

    async def authenticate(self, request):
        token = self.get_token(request)
        if token is None:
            raise unauthorized("jupyterhub")
        status, model = await self._hub_get("/user", token)
        if model is None:
            if status < 500:
                raise unauthorized("jupyterhub")
            raise web.HTTPBadGateway(reason="The hub could not verify the token")
        who = dask_identity(model)
        if who is None:
            raise web.HTTPForbidden(reason="Only a Datahavn workspace's Dask token can use this gateway")
        user, project = who
        try:
            grant = await self.grant(user, project)
        except HubError as e:
            raise web.HTTPBadGateway(reason=f"The hub could not report the grant: {e}") from None
        if not grant.current:
            self.log.warning("Refused %s in %s: grant is %s", user, project, grant.status)
            raise web.HTTPForbidden(reason=f"No current grant for project {project} ({grant.status})")
        return ProjectUser(user, project)


def configure_auth(c) -> None:
    """The authentication every Datahavn gateway uses (``c``: the gateway's config)."""
    c.DaskGateway.authenticator_class = ProjectGatewayAuthenticator
    # our own rule replaces JupyterHub's service-access scopes: a workspace's Dask token, a current grant
    c.JupyterHubAuthenticator.use_service_access_scopes = False
    # a cookie the gateway sets is trusted this long (then the hub and the grant are asked again); the grant
    # watch (audit.py) stops a revoked workspace's clusters in the meantime
    c.Authenticator.cache_max_age = 15
