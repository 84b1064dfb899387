"""What every Datahavn gateway backend does around dask-gateway's own: records, fail-closed, the grant watch.

:class:`AuditedBackend` sits before the engine's backend in the class order
(``class DatahavnSlurmBackend(AuditedBackend, SlurmBackend)``):

- a cluster is started, or scaled, only once ``dask_cluster_start`` / ``dask_cluster_scale`` is recorded
  (the store cannot record: 503, nothing runs); ``dask_cluster_stop`` says why a cluster stopped;
- every refusal the gateway answers (a token it does not take, another workspace's cluster, options
  beyond the project's limits) is a ``denied`` record;
- every ``grant_check_period`` seconds the grants of the running clusters are read again from the hub;
  a cluster whose grant lapsed (revoked, expired, or the member removed), or whose workspace no longer
  runs (a killed kernel cannot close it), is stopped and the stop recorded with the reason. The hub
  refusing the token at the next request does the rest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

from aiohttp import web
from dask_gateway_server.backends.base import Backend
from traitlets import Float

from datahavn.names import InvalidName, account_name

from ..audit import hub as audit_hub
from .auth import HubError

ACTOR = "datahavn-dask"


def spec_identity(username: str, environment: Mapping) -> tuple[str | None, str | None]:
    """(user, project) of a cluster of gateway user ``username`` with ``environment``; (None, None) if none."""
    user, project = environment.get("DATAHAVN_USER"), environment.get("DATAHAVN_PROJECT")
    if not user or not project:
        return None, None
    try:
        if account_name(user, project) != username:
            return None, None
    except InvalidName:
        return None, None
    return user, project


class AuditedBackend(Backend):
    """Records and the grant watch for a dask-gateway backend (mixed in before it)."""

    grant_check_period = Float(
        10.0,
        help="""Seconds between two readings of the running clusters' grants; a lapsed grant stops its clusters.""",
        config=True,
    )

    # --- who a cluster is ------------------------------------------------------------

    def cluster_identity(self, cluster_name: str) -> tuple[str | None, str | None]:
        """(user, project) of a cluster, from the environment its config pinned at creation."""
        cluster = self.db.get_cluster(cluster_name) if hasattr(self, "db") else None
        if cluster is None:
            return None, None
        return spec_identity(cluster.username, cluster.config.get("environment") or {})

    def record(self, kind: str, cluster_name: str, strict: bool = False, **fields) -> None:
        user, project = self.cluster_identity(cluster_name)
        detail = {"cluster": cluster_name, **fields.pop("detail", {})}
        try:
            audit_hub.record(kind, strict=strict, user=user, project=project,
                             server=f"{user}/{project}" if user else None, actor=ACTOR, detail=detail,
                             **fields)  # fmt: skip
        except audit_hub.AuditUnavailable:
            raise web.HTTPServiceUnavailable(
                reason=f"The audit store cannot record {kind}: nothing was started. Ask an administrator."
            ) from None

    # --- the API's verbs, recorded -----------------------------------------------------

    async def start_cluster(self, user, cluster_options):
        name = await super().start_cluster(user, cluster_options)
        try:
            self.record("dask_cluster_start", name, strict=True, outcome="requested",
                        detail={"account": user.name, "options": dict(cluster_options or {})})  # fmt: skip
        except web.HTTPServiceUnavailable:
            await super().stop_cluster(name, failed=True)
            raise
        return name

    async def forward_message_to_scheduler(self, cluster, msg):
        if msg.get("op") in ("scale", "adapt"):
            self.record("dask_cluster_scale", cluster.name, strict=True, outcome="requested",
                        detail={k: v for k, v in msg.items() if k != "op"} | {"op": msg["op"]})  # fmt: skip
        return await super().forward_message_to_scheduler(cluster, msg)

    async def stop_cluster(self, cluster_name, failed=False, reason: str = "requested"):
        cluster = await self.get_cluster(cluster_name)
        if cluster is not None and cluster.status.name in ("PENDING", "RUNNING"):
            self.record("dask_cluster_stop", cluster_name, outcome="failed" if failed else "stopped",
                        detail={"reason": reason})  # fmt: skip
        return await super().stop_cluster(cluster_name, failed=failed)

    # --- the grant watch -----------------------------------------------------------------

    async def setup(self, app):
        await super().setup(app)
        self._authenticator = app["authenticator"]
        app.middlewares.append(self._record_refusals)
        self._grant_watch = asyncio.ensure_future(self._watch_grants())

    @web.middleware
    async def _record_refusals(self, request, handler):
        """Every refusal is a ``denied`` record (a client's first, token-less request is only the handshake)."""
        refusal = None
        try:
            response = await handler(request)
            status, reason = response.status, ""
        except web.HTTPException as e:
            refusal, response, status, reason = e, None, e.status, e.reason
        if status in (401, 403, 404, 409, 422) and (status != 401 or "Authorization" in request.headers):
            if response is not None and not reason:
                try:
                    reason = json.loads(response.body)["error"]
                except (TypeError, ValueError, KeyError):
                    reason = response.reason or ""
            who = request.get("user")
            user, project = getattr(who, "datahavn_user", None), getattr(who, "datahavn_project", None)
            detail = {"gateway": f"{request.method} {request.path}", "reason": str(reason)[:500]}
            audit_hub.record("denied", user=user, project=project, server=f"{user}/{project}" if user else None,
                             actor=ACTOR, outcome=f"HTTP {status}", detail=detail)  # fmt: skip
        if refusal is not None:
            raise refusal
        return response

    async def cleanup(self):
        watch = getattr(self, "_grant_watch", None)
        if watch is not None:
            watch.cancel()
        await super().cleanup()

    async def _watch_grants(self):
        while True:
            await asyncio.sleep(self.grant_check_period)
            try:
                await self.stop_lapsed()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Checking the running clusters' grants")

    async def stop_lapsed(self) -> list[str]:
        """Stop every running cluster whose grant is no longer current; returns their names."""
        stopped = []
        grants = {}
        for cluster in await self.list_clusters():
            user, project = self.cluster_identity(cluster.name)
            if user is None or project is None:
                self.log.warning("Stopping cluster %s: it names no Datahavn workspace", cluster.name)
                await self.stop_cluster(cluster.name, reason="no Datahavn workspace")
                stopped.append(cluster.name)
                continue
            if (user, project) not in grants:
                try:
                    grants[user, project] = await self._authenticator.grant(user, project)
                except HubError as e:  # the hub is down: keep running, look again next time
                    self.log.warning("Cannot read the grant of %s in %s: %s", user, project, e)
                    continue
            grant = grants[user, project]
            if not grant.current:
                self.log.warning("Stopping cluster %s of %s in %s: grant %s", cluster.name, user, project, grant.status)
                await self.stop_cluster(cluster.name, reason=f"grant {grant.status}")
                stopped.append(cluster.name)
                continue
            try:
                running = await self._authenticator.workspace_running(user, project)
            except HubError as e:
                self.log.warning("Cannot read the workspaces of %s: %s", user, e)
                continue
            # its kernel killed, its server stopped: nothing will close it, so the gateway does
            age = time.time() - (cluster.start_time or time.time() * 1000) / 1000
            if not running and age > self.grant_check_period:
                self.log.warning("Stopping cluster %s of %s in %s: the workspace stopped", cluster.name, user, project)
                await self.stop_cluster(cluster.name, reason="workspace stopped")
                stopped.append(cluster.name)
        return stopped
