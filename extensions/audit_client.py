"""The server's one channel to the audit service (a websocket), and events nothing waits on.

The service checks the server's own hub token once, when the socket opens; after
that an acknowledgement costs one frame each way and the store's append.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class AuditRefused(Exception):
    pass


class AuditChannel:
    """One websocket from this server to the audit service, shared by its kernel connections.

    The service checks the server's token once, when the socket opens; after that an
    acknowledgement costs one frame each way and the store's append. Any doubt (not
    connected, no answer in time, an error frame) is an :class:`AuditRefused`.
    """

    def __init__(self, url: str, token: str):
        self.url = url_path_join(url, "api/events/ws").replace("http", "ws", 1)
        self.token = token
        self.ws = None
        self.waiters: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.lock = asyncio.Lock()

    async def _connect(self, timeout: float) -> None:
        req = HTTPRequest(self.url, headers={"Authorization": f"token {self.token}"},
                          connect_timeout=timeout, request_timeout=timeout)  # fmt: skip
        try:
            ws = await asyncio.wait_for(websocket_connect(req), timeout)
        except Exception as e:
            raise AuditRefused(f"cannot reach the audit service ({type(e).__name__})") from None
        ws.protocol.set_nodelay(True)
        self.ws = ws
        asyncio.ensure_future(self._read(ws))

    async def _read(self, ws) -> None:
        while True:
            raw = await ws.read_message()
            if raw is None:
                break
            try:
                reply = json.loads(raw)
                fut = self.waiters.pop(reply["id"], None)
            except (ValueError, KeyError, TypeError):
                continue
            if fut is not None and not fut.done():
                fut.set_result(reply)
        self._drop(ws, "the audit service closed the connection")

    def _drop(self, ws, why: str) -> None:
        if self.ws is ws:
            self.ws = None
            for fut in self.waiters.values():
                if not fut.done():
                    fut.set_exception(AuditRefused(why))
            self.waiters.clear()
        ws.close()

    async def record(self, event: dict, timeout: float) -> dict:
        """Append ``event``; returns ``{"seq": ..., "hash": ...}`` once it is stored."""
        return await self.call({"event": event}, timeout)

    async def report_egress(self, nbytes: int, timeout: float = 5) -> dict:
        """Count ``nbytes`` sent to the browser; returns the workspace's totals and limits."""
        return await self.call({"egress": int(nbytes)}, timeout)

    async def call(self, frame: dict, timeout: float) -> dict:
        if self.ws is None:
            async with self.lock:
                if self.ws is None:
                    await self._connect(timeout)
        ws = self.ws
        self.next_id += 1
        ident, fut = self.next_id, asyncio.get_running_loop().create_future()
        self.waiters[ident] = fut
        try:
            await ws.write_message(json.dumps({"id": ident, **frame}))
            reply = await asyncio.wait_for(fut, timeout)
        except AuditRefused:
            raise
        except Exception as e:
            self.waiters.pop(ident, None)
            # no answer in time: this socket is not to be trusted again
            self._drop(ws, "the audit service stopped answering")
            raise AuditRefused(f"the audit service did not answer ({type(e).__name__})") from None
        if "error" in reply:
            raise AuditRefused(f"the audit service did not record it: {reply['error']}")
        return reply


_channels: dict[str, AuditChannel] = {}


async def post_quietly(event: dict, timeout: float = 30) -> None:
    """Record an event that nothing waits on (a refusal, a reply); failures are logged."""
    url = os.environ.get("DATAHAVN_AUDIT_URL", "")
    try:
        if not url:
            raise AuditRefused("no audit service is configured")
        await channel_for(url).record(event, timeout)
    except AuditRefused as e:
        logging.getLogger("datahavn").error("datahavn: %s event not recorded: %s", event.get("kind"), e)


#: how long an event nothing waits on may wait for others, to share one frame and one commit
LATER_SECONDS = 0.2
LATER_MAX = 100
_later: list[dict] = []


def post_later(event: dict) -> None:
    """Record an event nothing waits on (a cell's reply) within :data:`LATER_SECONDS`, batched with others.

    A trivial cell then costs the audit service one commit, not two; failures are logged, as
    :func:`post_quietly`'s are.
    """
    _later.append(event)
    if len(_later) == 1:
        asyncio.get_running_loop().call_later(LATER_SECONDS, lambda: asyncio.ensure_future(send_later()))
    elif len(_later) >= LATER_MAX:
        asyncio.ensure_future(send_later())


async def send_later(timeout: float = 30) -> None:
    events = _later[:]
    _later.clear()
    if not events:
        return
    url = os.environ.get("DATAHAVN_AUDIT_URL", "")
    try:
        if not url:
            raise AuditRefused("no audit service is configured")
        await channel_for(url).call({"events": events}, timeout)
    except AuditRefused as e:
        logging.getLogger("datahavn").error("datahavn: %d events (%s) not recorded: %s", len(events),
                                            ", ".join(sorted({str(x.get("kind")) for x in events})), e)  # fmt: skip


async def report_egress(nbytes: int) -> dict:
    """The meter's report (:mod:`.meter`), through the process's channel."""
    url = os.environ.get("DATAHAVN_AUDIT_URL", "")
    if not url:
        raise AuditRefused("no audit service is configured")
    return await channel_for(url).report_egress(nbytes)


def channel_for(url: str) -> AuditChannel:
    """The process's channel to the audit service (one per server process)."""
    if url not in _channels:
        _channels[url] = AuditChannel(url, os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    return _channels[url]
