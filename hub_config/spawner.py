"""ProjectSpawner: one server per (user, project), as that pair's own unix account.

The server name is the project name. The hub checks the grant when the server
starts and again at every poll, so a revoked or expired grant stops a running
server within ``poll_interval`` seconds. The grant check
(:func:`.projects.check_grant`) and the identity rule
(:func:`datahavn.names.account_name`) are shared with any other spawner.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from http.client import responses
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Float, Int, List, Unicode, default

from datahavn.names import InvalidName, account_name, check_project
from datahavn.paths import DEFAULT_USER_ENV, Layout

from . import audit_hub, provision
from .projects import check_grant


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


class ProjectRules:
    """What every Datahavn spawner does the same way, local processes or Kubernetes pods.

    The checks at start, the grant check at every poll (a lapsed grant stops the
    server through ``stop_lapsed``), and the audit records of both. Mix in before
    the JupyterHub spawner class.
    """

    @property
    def project(self) -> str:
        return self.name

    def check_allowed(self):
        """Raise a 4xx HTTPError unless this spawn may happen."""
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

    def _actor(self) -> str | None:
        handler = getattr(self, "handler", None)
        who = getattr(handler, "current_user", None) if handler is not None else None
        return getattr(who, "name", None)

    def _audit(self, kind: str, **fields) -> None:
        audit_hub.record(
            kind, user=self.user.name, project=self.name or None,
            server=f"{self.user.name}/{self.name}", **fields,
        )  # fmt: skip

    async def poll(self):
        status = await super().poll()
        if status is None and self.name:
            grant = check_grant(self.db, self.user.name, self.name)
            if not grant.current:
                self.log.warning("Stopping %s: grant is %s (until %s)", self._log_name, grant.status, grant.until)
                await self.stop_lapsed()
                self._audit("stop", actor="hub", outcome="ok", detail=f"grant {grant.status}")
                return 0
        return status

    async def stop_lapsed(self) -> None:
        """Stop the server at once: its grant is no longer current."""
        raise NotImplementedError


class ProjectSpawner(ProjectRules, LocalProcessSpawner):
    """Start a project workspace as the (user, project) unix account.

    - refuses the default (unnamed) server: every workspace belongs to a project;
    - refuses a project the user holds no current grant for;
    - runs the server with the project's group as its only group, rooted in
      the user's workspace, with the project's data and shared folders linked in;
    - fails fast: if the server exits before it listens, the spawn fails with
      the reason instead of waiting for ``http_timeout``.
    """

    state_dir = Unicode(
        help="""Datahavn state directory (hub state, projects, workspaces).

        Defaults to $DATAHAVN_STATE_DIR, else /srv/datahavn.
        """,
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        return str(Layout.from_env().root)

    python_env = Unicode(
        DEFAULT_USER_ENV,
        help="""Prefix of the users' Python environment (root-owned, read-only to users).

        Must hold jupyterhub-singleuser and JupyterLab, and be executable by every account.
        """,
    ).tag(config=True)

    listen_timeout = Float(
        30,
        help="""Seconds to wait for a started server to listen before the spawn fails.""",
    ).tag(config=True)

    dask_workers = Int(
        0,
        help="""Workers of the Dask cluster ``project.dask()`` starts in a kernel (0: one, or two with processes).""",
    ).tag(config=True)

    dask_threads = Int(
        0,
        help="""Threads per Dask worker (0: the machine's cores, shared among the workers).""",
    ).tag(config=True)

    dask_processes = Bool(
        False,
        help="""Dask workers as processes (TLS between them) instead of threads in the kernel.

        Threads are faster on one machine for genotype work (no serialisation, no
        recompilation of numba functions in every worker) and open no network port.
        """,
    ).tag(config=True)

    dask_memory_limit = Unicode(
        "auto",
        help="""Memory limit per Dask worker, e.g. "4GiB" ("auto": the machine's memory shared among them).""",
    ).tag(config=True)

    workspace_seed = List(
        Unicode(),
        help="""Files copied into a workspace when it is created (e.g. an example notebook).""",
    ).tag(config=True)

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.state_dir))

    @default("cmd")
    def _default_cmd(self):
        return [os.path.join(self.python_env, "bin", "jupyterhub-singleuser")]

    @default("env_keep")
    def _default_env_keep(self):
        # Nothing of the hub's environment (tokens, PYTHONPATH, venv) leaks into servers.
        return ["LANG", "LC_ALL", "TZ"]

    @default("default_url")
    def _default_url(self):
        return "/lab"

    # --- starting ---------------------------------------------------------

    def get_env(self):
        env = super().get_env()
        lay = self.layout
        ws = lay.workspace(self.project, self.user.name)
        env.update(
            PATH=f"{self.python_env}/bin:/usr/local/bin:/usr/bin:/bin",
            HOME=str(ws),
            USER=self.account.pw_name,
            SHELL="/usr/sbin/nologin",
            # root-owned config; env paths win over the (ignored) user's
            JUPYTER_CONFIG_DIR=str(lay.jupyter_config),
            JUPYTER_PREFER_ENV_PATH="1",
            JUPYTERLAB_SETTINGS_DIR=str(ws / ".jupyter" / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(ws / ".jupyter" / "lab" / "workspaces"),
            PYTHONNOUSERSITE="1",
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            DATAHAVN_PROJECT=self.project,
            DATAHAVN_PROJECT_DIR=str(lay.project(self.project)),
            DATAHAVN_WORKSPACE=str(ws),
            DATAHAVN_DASK_WORKERS=str(self.dask_workers),
            DATAHAVN_DASK_THREADS=str(self.dask_threads),
            DATAHAVN_DASK_PROCESSES="1" if self.dask_processes else "0",
            DATAHAVN_DASK_MEMORY=self.dask_memory_limit,
            # numba (scikit-allel, sgkit) caches compiled code next to the package: read-only here
            NUMBA_CACHE_DIR=str(ws / ".cache" / "numba"),
            MPLCONFIGDIR=str(ws / ".cache" / "matplotlib"),
        )
        return env

    def user_env(self, env):
        # LocalProcessSpawner looks up a unix user named like the hub user; get_env sets all of it.
        return env

    def make_preexec_fn(self, name):
        uid, gid, cwd = self.account.pw_uid, self.account.pw_gid, self.notebook_dir

        def preexec():
            os.setgid(gid)
            os.setgroups([gid])  # the project's group, and nothing else
            os.setuid(uid)
            os.umask(0o007)
            os.chdir(cwd)

        return preexec

    async def start(self):
        try:
            self.check_allowed()
        except WorkspaceError as e:
            self._audit("spawn_refused", actor=self._actor(), outcome=f"HTTP {e.status_code}", detail=e.log_message)
            raise
        new_workspace = not self.layout.workspace(self.project, self.user.name).exists()
        try:
            self.account = provision.ensure_account(self.layout, self.user.name, self.project)
            if new_workspace:
                provision.seed_workspace(self.layout.workspace(self.project, self.user.name), self.account,
                                         self.workspace_seed)
        except provision.ProvisionError as e:
            self.log.error("Cannot provision %s: %s", self._log_name, e)
            raise WorkspaceError(500, f"Cannot prepare the workspace: {e}") from None
        self.runtime_dir = provision.ensure_runtime_dir(self.account)
        self.notebook_dir = str(self.layout.workspace(self.project, self.user.name))
        log_path = self.layout.logs / f"{self.account.pw_name}.log"
        self._log_file = open(log_path, "ab")  # root-only: the user cannot rewrite it
        self.popen_kwargs = {"stdout": self._log_file, "stderr": self._log_file}
        try:
            ip, port = await super().start()
        finally:
            self._log_file.close()
        try:
            await self._wait_listening(ip, port, log_path)
        except WorkspaceError as e:
            self._audit("spawn", actor=self._actor(), outcome="error", detail=e.log_message)
            raise
        self._audit("spawn", actor=self._actor(), outcome="ok", detail={"uid": self.account.pw_uid, "port": port})
        return ip, port

    async def _wait_listening(self, ip: str, port: int, log_path: Path) -> None:
        """Return once the server accepts connections; fail fast if it exits first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.listen_timeout
        while loop.time() < deadline:
            status = self.proc.poll() if self.proc else None
            if status is not None:
                tail = _tail(log_path)
                self.log.error("Server %s exited with %s before listening:\n%s", self._log_name, status, tail)
                raise WorkspaceError(
                    500,
                    f"The workspace for {self.project!r} exited during start-up (status {status}). "
                    f"Last log line: {tail.splitlines()[-1] if tail else '(none)'}",
                )
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(0.2)
        await self.terminate()
        raise WorkspaceError(
            500, f"The workspace for {self.project!r} did not start within {self.listen_timeout:.0f} s."
        )

    # --- running and stopping ---------------------------------------------

    async def stop(self, now=False):
        await super().stop(now=now)
        await self.terminate()
        self._audit("stop", actor=self._actor(), outcome="ok")

    async def stop_lapsed(self) -> None:
        await self.terminate()

    async def terminate(self) -> None:
        """Kill the server and everything else its account still runs (kernels, workers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        uid = getattr(getattr(self, "account", None), "pw_uid", None)
        if uid is None and self.name:
            uid = _uid_of(self.user.name, self.name)
        if uid:
            provision.kill_account(uid)
        if self.proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait)
        self.clear_state()


def _uid_of(user: str, project: str):
    try:
        return pwd.getpwnam(account_name(user, project)).pw_uid
    except (KeyError, ValueError):
        return None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
