"""``<server>/datahavn/dask/``: the Dask dashboard of this workspace's own clusters, inside the lab.

A gateway cluster's scheduler serves its dashboard under this server's path
(``--dashboard-prefix``, :mod:`.dask_box`) and tells its address to its workspace only, in the
cluster's staging folder, which only the workspace's account can read (:mod:`.dask_preload`).
This server relays those pages and their websockets to the browser:

- only clusters found in this workspace's staging folder (``$DATAHAVN_DASK_STAGING``): another
  workspace's cluster is not there to name (403, recorded as a denial);
- only the live plots (status, workers, tasks, system, graph, groups, the ``individual-*``
  plots) and their static files: not ``info/`` (worker logs, call stacks), not ``json/``,
  ``api/`` or ``metrics``, which can show values or act on the cluster;
- every byte goes through this server's meter (the workspace's egress budget), like any other
  response, and behind the route policy like any other route.
"""

from __future__ import annotations

import asyncio
import json
import os
import re

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web, websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

ROUTE = "datahavn/dask"
CLUSTER = r"[0-9a-f]{32}"
#: the dashboard's pages that show no data values: plots and their code
PAGES = re.compile(r"^(?:(?:status|workers|tasks|system|graph|groups|individual-[a-z0-9-]+)(?:/ws|/autoload\.js)?"
                   r"|statics?/[A-Za-z0-9._/-]+|favicon\.ico)$")  # fmt: skip
TIMEOUT = 30.0


def own_dashboard(staging: str, cluster: str) -> tuple[str, str] | None:
    """(host:port, prefix) of ``cluster``'s dashboard if it is one of this workspace's running clusters."""
    if not staging or not re.fullmatch(CLUSTER, cluster):
        return None
    try:
        with open(os.path.join(staging, cluster, "dashboard.json")) as f:
            found = json.load(f)
        address, prefix = str(found["address"]), str(found["prefix"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return address, prefix


async def own_clusters() -> list[str]:
    """This workspace's running clusters, as its gateway lists them to its own Dask token."""
    gateway, token = os.environ.get("DATAHAVN_DASK_GATEWAY"), os.environ.get("DATAHAVN_DASK_TOKEN")
    if not gateway or not token:
        return []
    req = HTTPRequest(url_path_join(gateway, "api/v1/clusters/"), request_timeout=TIMEOUT,
                      headers={"Authorization": f"jupyterhub {token}"})  # fmt: skip
    try:
        clusters = json.loads((await AsyncHTTPClient().fetch(req)).body)
    except (HTTPClientError, OSError, ValueError):
        raise web.HTTPError(502, "the Dask gateway cannot be reached; try again, or ask an administrator") from None
    staging = os.environ.get("DATAHAVN_DASK_STAGING", "")
    return sorted(name for name in clusters if own_dashboard(staging, name))


class _Dashboard:
    def set_default_headers(self):
        super().set_default_headers()
        # shown in a lab tab: framed by this server's own pages only (its others say frame-ancestors 'none')
        self.set_header("Content-Security-Policy", "frame-ancestors 'self'")

    def target(self, cluster: str, path: str, scheme: str = "http") -> str:
        if not PAGES.match(path):
            raise web.HTTPError(403, "this part of the Dask dashboard is not shown in Datahavn (it can show data)")
        found = own_dashboard(os.environ.get("DATAHAVN_DASK_STAGING", ""), cluster)
        if found is None:
            raise web.HTTPError(403, f"{cluster} is not a running Dask cluster of this workspace")
        address, prefix = found
        query = f"?{self.request.query}" if self.request.query else ""
        return f"{scheme}://{address}{url_path_join(prefix, path)}{query}"


class DashboardIndexHandler(_Dashboard, JupyterHandler):
    """The workspace's running clusters: straight to the dashboard when there is one."""

    @web.authenticated
    async def get(self):
        clusters = await own_clusters()
        base = url_path_join(self.base_url, ROUTE)
        if len(clusters) == 1:
            return self.redirect(url_path_join(base, clusters[0], "status"))
        links = "".join(f'<li><a href="{url_path_join(base, c, "status")}">{c}</a></li>' for c in clusters)
        self.finish(
            "<!doctype html><title>Dask dashboard</title><body style='font-family:sans-serif'>"
            + (f"<p>This workspace's Dask clusters:</p><ul>{links}</ul>" if clusters else
               "<p>No Dask cluster is running in this workspace. Start one in a notebook with "
               "<code>client = project.dask(workers=2)</code>, then open this page again.</p>")
            + "</body>"
        )  # fmt: skip


class DashboardHandler(_Dashboard, JupyterHandler):
    @web.authenticated
    async def get(self, cluster: str, path: str):
        req = HTTPRequest(self.target(cluster, path), request_timeout=TIMEOUT, follow_redirects=False)
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except (HTTPClientError, OSError):
            raise web.HTTPError(502, "the Dask dashboard cannot be reached (has the cluster stopped?)") from None
        if resp.code >= 500 or resp.code == 599:
            raise web.HTTPError(502, "the Dask dashboard cannot be reached (has the cluster stopped?)")
        self.set_status(resp.code)
        for name in ("Content-Type", "Location", "Cache-Control"):
            if name in resp.headers:
                self.set_header(name, resp.headers[name])
        self.finish(resp.body or b"")


class DashboardSocketHandler(_Dashboard, WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """The live plots' websocket, relayed frame by frame (each one counted by the meter)."""

    upstream = None

    def set_default_headers(self):
        pass  # JupyterHandler's headers make no sense on a websocket

    @ws_authenticated
    async def get(self, cluster: str, path: str):
        url = self.target(cluster, path, "ws")
        # bokeh carries its session's token as a subprotocol: offered upstream as the browser offered it
        offered = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            self.upstream = await websocket.websocket_connect(
                url, connect_timeout=TIMEOUT, subprotocols=offered or None
            )
        except (OSError, HTTPClientError, websocket.WebSocketError):
            raise web.HTTPError(502, "the Dask dashboard cannot be reached (has the cluster stopped?)") from None
        await super().get(cluster, path)

    def select_subprotocol(self, subprotocols):
        chosen = self.upstream.selected_subprotocol if self.upstream is not None else None
        return chosen if chosen in subprotocols else None

    async def open(self, cluster: str, path: str):
        super().open()
        self._pump = asyncio.ensure_future(self._from_upstream())

    async def _from_upstream(self):
        while True:
            message = await self.upstream.read_message()
            if message is None:
                self.close()
                return
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                return

    async def on_message(self, message):
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        if self.upstream is not None:
            self.upstream.close()


def install(serverapp) -> None:
    base = url_path_join(serverapp.web_app.settings["base_url"], ROUTE)
    serverapp.web_app.add_handlers(".*$", [
        (base + "/?", DashboardIndexHandler),
        (base + rf"/(?P<cluster>{CLUSTER})/(?P<path>.+/ws)", DashboardSocketHandler),
        (base + rf"/(?P<cluster>{CLUSTER})/(?P<path>.*)", DashboardHandler),
    ])  # fmt: skip
