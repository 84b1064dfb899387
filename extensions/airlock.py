"""``<server>/datahavn/api/airlock/requests``: the lab's "Request export…" reaches the airlock here.

The server forwards the request to the datahavn-airlock service with its own hub token, which
the kernel never holds: the airlock learns who and which project from that token, never from the
browser or the kernel. ``GET`` lists this workspace's requests and their states.
"""

from __future__ import annotations

import json
import os

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

ROUTE = "datahavn/api/airlock/requests"
MAX_BODY = 64_000
TIMEOUT = 60.0  # the airlock copies and checks the files before it answers


class AirlockRequestsHandler(APIHandler):
    async def _forward(self, method: str, body: bytes | None = None) -> None:
        base = os.environ.get("DATAHAVN_AIRLOCK_URL")
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not base or not token:
            raise web.HTTPError(503, "the airlock is not configured on this deployment; ask an administrator")
        req = HTTPRequest(url_path_join(base, "api/requests"), method=method, body=body,
                          headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
                          request_timeout=TIMEOUT)  # fmt: skip
        try:
            resp = await AsyncHTTPClient().fetch(req)
            status, answer = resp.code, resp.body
        except HTTPClientError as e:
            if e.response is None:
                raise web.HTTPError(503, "the airlock cannot be reached; try again, or ask an administrator") from None
            status, answer = e.code, e.response.body
        except OSError:
            raise web.HTTPError(503, "the airlock cannot be reached; try again, or ask an administrator") from None
        try:
            model = json.loads(answer)
        except ValueError:
            raise web.HTTPError(502, "the airlock answered something that is not JSON") from None
        if status >= 400:
            raise web.HTTPError(status, str(model.get("message") or "refused by the airlock"))
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(model))

    @web.authenticated
    async def get(self):
        await self._forward("GET")

    @web.authenticated
    async def post(self):
        if len(self.request.body or b"") > MAX_BODY:
            raise web.HTTPError(413, f"an export request is at most {MAX_BODY:,} bytes of JSON")
        try:
            payload = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, 'an export request is JSON: {"files": [...], "justification": "..."}') from None
        await self._forward("POST", json.dumps(payload).encode())


def install(serverapp) -> None:
    route = url_path_join(serverapp.web_app.settings["base_url"], ROUTE)
    serverapp.web_app.add_handlers(".*$", [(route, AirlockRequestsHandler)])
