"""What every Datahavn spawner does the same way, local processes or Kubernetes pods.

:class:`ProjectSpawnerBase` is mixed in before the JupyterHub spawner class it
extends (``class ProjectSpawner(ProjectSpawnerBase, LocalProcessSpawner)``). It
owns the order of ``start``, ``stop`` and ``poll``, their checks and their audit
records; a platform fills in small hooks, as a dask-gateway ``Backend`` does:

``prepare()``
    Make the machine ready for this (user, project): accounts, folders, a pod's
    identity. Raise :class:`WorkspaceError` to refuse (recorded as a failed spawn).
``launch()``
    Start the server and return ``(ip, port)`` (or the URL). The default is the
    JupyterHub spawner's own start (:meth:`platform_start`).
``halt(now)``
    Stop the server and everything it started. Called by ``stop`` and when a
    grant lapses.
``spawn_detail()``
    What the ``spawn`` audit record says of a started server (its uid, port, pod).

In order, ``start`` refuses the default server and unknown or lapsed grants
(``spawn_refused``), prepares, launches, and records ``spawn``; ``poll`` re-checks
the grant of a running server and halts it when the grant has lapsed (``stop``,
with the reason); ``stop`` halts and records ``stop``. The grant is read by
:func:`..projects.check_grant`, the one rule, at start and at every poll.
"""

from __future__ import annotations

from http.client import responses

from tornado import web

from datahavn.names import InvalidName, check_project
from datahavn.tokens import dask_token_scope

from ..audit import hub as audit_hub
from ..projects import check_grant
from ..workspace import dask_env

#: the note of a workspace's Dask token (one per running workspace; replaced at each start, deleted at stop)
DASK_TOKEN_NOTE = "datahavn dask-gateway: {project}"


class WorkspaceError(web.HTTPError):
    """A refused or failed spawn whose message JupyterHub shows as it is.

    JupyterHub sets ``reason = "error"`` on spawn errors and then shows a
    generic text for that reason; ``jupyterhub_message`` takes precedence, and
    ``reason`` stays the HTTP phrase so the page's heading reads "403 : Forbidden".
    """

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message)
        self.jupyterhub_message = message

    @property
    def reason(self):
        return responses.get(self.status_code, "Error")

    @reason.setter
    def reason(self, value):
        pass


class ProjectSpawnerBase:
    """The documented base of Datahavn's spawners (see the module's docstring for the hooks)."""

    #: set while halting: JupyterHub's own stop polls, and that poll must not halt again
    _halting = False

    @property
    def project(self) -> str:
        return self.name

    # --- hooks ------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Make the machine ready for this workspace; raise WorkspaceError to refuse."""

    async def launch(self):
        return await self.platform_start()

    async def halt(self, now: bool = False) -> None:
        await self.platform_stop(now)

    def spawn_detail(self) -> dict | None:
        return None

    # --- the JupyterHub spawner this one extends ------------------------------------

    async def platform_start(self):
        return await super().start()

    async def platform_stop(self, now: bool = False):
        return await super().stop(now=now)

    async def platform_poll(self):
        return await super().poll()

    # --- the order of things ---------------------------------------------------------

    def check_allowed(self):
        """Raise a 4xx WorkspaceError unless this spawn may happen; returns the grant."""
        if not self.name:
            raise WorkspaceError(
                400,
                "Datahavn workspaces belong to projects: start one from the home page, "
                f"or open /hub/spawn/{self.user.name}/<project>.",
            )
        try:
            check_project(self.name)
        except InvalidName as e:
            raise WorkspaceError(400, f"{e}") from None
        grant = check_grant(self.db, self.user.name, self.name)
        if not grant.current:
            detail = {
                "expired": f"your access expired at {grant.until}",
                "revoked": "your access was revoked",
            }.get(grant.status, "you have not been granted access")
            raise WorkspaceError(
                403,
                f"Cannot start a workspace for project {self.name}: {detail}. Ask an administrator for a grant.",
            )
        return grant

    async def start(self):
        try:
            self.check_allowed()
        except WorkspaceError as e:
            self._audit("spawn_refused", actor=self._actor(), outcome=f"HTTP {e.status_code}", detail=e.log_message)
            raise
        try:
            await self.prepare()
            result = await self.launch()
        except WorkspaceError as e:
            self._audit("spawn", actor=self._actor(), outcome="error", detail=e.log_message)
            raise
        except Exception as e:
            self._audit("spawn", actor=self._actor(), outcome="error", detail=f"{type(e).__name__}: {e}")
            raise
        self._audit("spawn", actor=self._actor(), outcome="ok", detail=self.spawn_detail())
        return result

    async def stop(self, now=False):
        await self._halt_once(now)
        self._audit("stop", actor=self._actor(), outcome="ok")

    async def poll(self):
        status = await self.platform_poll()
        if status is None and self.name and not self._halting:
            grant = check_grant(self.db, self.user.name, self.name)
            if not grant.current:
                self.log.warning("Stopping %s: grant is %s (until %s)", self._log_name, grant.status, grant.until)
                await self._halt_once(now=True)
                self._audit("stop", actor="hub", outcome="ok", detail=f"grant {grant.status}")
                return 0
        return status

    async def _halt_once(self, now: bool) -> None:
        if self._halting:
            return
        self._halting = True
        try:
            await self.halt(now)
        finally:
            self._halting = False
            self.drop_dask_token()

    # --- Dask on a gateway --------------------------------------------------------------

    def dask_gateway_env(self, engine: str, gateway_url: str = "", proxy_address: str = "") -> dict[str, str]:
        """The kernels' ``project.dask()`` settings; for a gateway engine, with a fresh Dask token.

        The token carries only :func:`datahavn.tokens.dask_token_scope` for this (user, project): it
        opens the gateway for this workspace and nothing else, and dies with the server.
        """
        if engine == "local":
            return dask_env(engine)
        self.drop_dask_token()
        token = self.user.new_api_token(
            scopes=[dask_token_scope(self.user.name, self.name)], note=DASK_TOKEN_NOTE.format(project=self.name)
        )
        return dask_env(engine, gateway_url, proxy_address, token)

    def drop_dask_token(self) -> None:
        note = DASK_TOKEN_NOTE.format(project=self.name)
        stale = [t for t in self.user.orm_user.api_tokens if t.note == note]
        for t in stale:
            self.db.delete(t)
        if stale:
            self.db.commit()

    # --- audit ------------------------------------------------------------------------

    def _actor(self) -> str | None:
        handler = getattr(self, "handler", None)
        who = getattr(handler, "current_user", None) if handler is not None else None
        return getattr(who, "name", None)

    def _audit(self, kind: str, **fields) -> None:
        audit_hub.record(
            kind, user=self.user.name, project=self.name or None,
            server=f"{self.user.name}/{self.name}", **fields,
        )  # fmt: skip
