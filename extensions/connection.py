"""The audited kernel websocket: every message that can run code is recorded before the kernel sees it.

``AuditedConnection`` replaces jupyter-server's ``ZMQChannelsWebsocketConnection``.
Incoming frames (both the legacy JSON protocol and ``v1.kernel.websocket.jupyter.org``)
go through a queue, one at a time and in order: a code-carrying message
(:data:`datahavn.audit_schema.CODE_MSG_TYPES`) is posted to the audit service with
the server's own hub token and forwarded to the kernel only once the service has
acknowledged it. No acknowledgement within ``audit_timeout``: the message is
dropped and the client gets an error reply saying the audit trail is unavailable.
When the reply to an execution comes back, an ``execute_reply`` event (status,
duration, bytes sent to the browser) is posted without holding anything up, batched
with the other replies of the next 0.2 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from traitlets import Float, Integer, Unicode, default

from datahavn.audit_schema import CODE_MSG_TYPES

from . import limits
from .audit_client import AuditRefused, channel_for, post_later, post_quietly
from .budget import NOTIFY, PASS, OutputBudget
from .frames import MalformedFrame, check_v1_frame
from .meter import meter

V1 = "v1.kernel.websocket.jupyter.org"
UNAVAILABLE = "AuditUnavailable"


_budgets: dict[str, OutputBudget] = {}


def code_of(msg_type: str, content: dict) -> str:
    """What a message would make the kernel run, as text."""
    if msg_type == "execute_request":
        return str(content.get("code", ""))
    if msg_type == "input_reply":
        return str(content.get("value", ""))
    return json.dumps(content, sort_keys=True, default=str)


class LowLatencyConnection(ZMQChannelsWebsocketConnection):
    """jupyter-server's kernel websocket with TCP_NODELAY (and nothing else changed).

    Kernel replies are bursts of small frames: without TCP_NODELAY, Nagle holds each
    burst's tail until the proxy's delayed ACK, about 40 ms per cell. It is also the
    baseline ``benchmarks/audit_overhead.py`` measures the audit against.
    """

    def connect(self):
        self.websocket_handler.set_nodelay(True)
        return super().connect()


class AuditedConnection(LowLatencyConnection):
    audit_url = Unicode(
        help="""URL of the datahavn-audit service (its prefix). Empty: no code runs (fail closed).""",
    ).tag(config=True)

    @default("audit_url")
    def _default_audit_url(self):
        return os.environ.get("DATAHAVN_AUDIT_URL", "")

    cell_output_limit = Integer(
        5_000_000,
        help="""Bytes of output (all iopub messages) one cell may send to the browser.""",
    ).tag(config=True)

    max_frame_bytes = Integer(
        10 * 1024 * 1024,
        help="""Largest frame accepted from the browser; a larger one closes the connection (and is recorded).""",
    ).tag(config=True)

    audit_timeout = Float(
        5.0,
        help="""Seconds to wait for the audit service to acknowledge a message before refusing it.""",
    ).tag(config=True)

    # --- incoming: browser -> kernel -------------------------------------

    def handle_incoming_message(self, incoming_msg) -> None:
        if len(incoming_msg) > self.max_frame_bytes:
            self.log.warning("datahavn: kernel websocket frame of %d bytes: closing the connection", len(incoming_msg))
            asyncio.ensure_future(post_quietly({"kind": "denied", "kernel_id": self.kernel_id, "outcome": "closed",
                "detail": f"oversized kernel websocket frame: {len(incoming_msg)} bytes"}))  # fmt: skip
            self.websocket_handler.close(1009, "message too big")
            return
        if not hasattr(self, "_inbox"):
            self._inbox: asyncio.Queue = asyncio.Queue()
            self._pending: dict[str, tuple[float, int, dict]] = {}
            self._worker = asyncio.ensure_future(self._drain())
        self._inbox.put_nowait(incoming_msg)

    async def _drain(self) -> None:
        while True:
            raw = await self._inbox.get()
            try:
                await self._audit_then_forward(raw)
            except Exception:
                self.log.exception("datahavn: dropped a kernel message that could not be handled")

    def _parse(self, raw) -> tuple[str, dict, dict]:
        """(channel, header, content) of a frame; MalformedFrame if it is not a kernel message."""
        try:
            if self.subprotocol == V1:
                check_v1_frame(raw)
                channel, parts = deserialize_msg_from_ws_v1(raw)
                header, content = self.session.unpack(parts[0]), self.session.unpack(parts[3])
            else:
                msg = deserialize_binary_message(raw) if isinstance(raw, bytes) else json.loads(raw)
                channel, header, content = msg.get("channel") or "shell", msg["header"], msg.get("content") or {}
            if not (isinstance(channel, str) and isinstance(header, dict) and isinstance(content, dict)):
                raise TypeError("not a kernel message")
            if not isinstance(header.get("msg_type"), str):
                raise TypeError("no msg_type")
        except Exception as e:
            raise MalformedFrame(f"{type(e).__name__}: {str(e)[:200]}") from None
        return channel, header, content

    async def _audit_then_forward(self, raw) -> None:
        if not self.channels:
            return
        try:
            channel, header, content = self._parse(raw)
        except MalformedFrame as e:
            # a client that sends garbage loses its connection, not the server
            self.log.warning("datahavn: malformed kernel websocket frame (%s): closing the connection", e)
            await post_quietly({"kind": "denied", "kernel_id": self.kernel_id, "outcome": "closed",
                                "detail": f"malformed kernel websocket frame: {e}"})  # fmt: skip
            self.websocket_handler.close(1003, "malformed kernel message")
            return
        msg_type = header.get("msg_type", "")
        allowed = self.multi_kernel_manager.allowed_message_types
        if allowed and msg_type not in allowed:
            # e.g. debug_request: the debugger's evaluate runs code without an execute_request
            await self._deny(channel, header, f"message type {msg_type!r} is not allowed in Datahavn")
            return
        if msg_type in CODE_MSG_TYPES:
            try:
                seq = await self._record(channel, header, content)
            except AuditRefused as e:
                self.log.error("datahavn: refused %s %s: %s", msg_type, header.get("msg_id"), e)
                self._refuse(channel, header, str(e))
                return
            if msg_type == "execute_request":
                self._pending[header.get("msg_id", "")] = (time.monotonic(), seq, header)
                if getattr(self, "_limits_seen", None) is None:
                    self._limits_seen = limits.counters()  # then read at each reply, not twice per cell
        super().handle_incoming_message(raw)

    async def _deny(self, channel: str, header: dict, why: str) -> None:
        """Refuse a message and record the refusal (a refusal nobody records is not a refusal)."""
        self.log.warning("datahavn: %s", why)
        event = {"kind": "denied", "kernel_id": self.kernel_id, "msg_id": header.get("msg_id"),
                 "msg_type": header.get("msg_type"), "channel": channel, "detail": why}  # fmt: skip
        try:
            await self._post(event, self.audit_timeout)
        except AuditRefused as e:
            self.log.error("datahavn: denial not recorded: %s", e)
        self._stderr(header, f"Refused: {why}.")

    def _stderr(self, header: dict, text: str) -> None:
        """A line on the cell's stderr, as the reply to ``header``'s message."""
        self._send(
            "iopub", self.session.msg("stream", {"name": "stderr", "text": text + "\n"}, parent={"header": header})
        )

    async def _path(self) -> str | None:
        # looked up once per connection: listing sessions costs milliseconds per cell
        if getattr(self, "_notebook_path", None) is None:
            self._notebook_path = await self._lookup_path()
        return self._notebook_path

    async def _lookup_path(self) -> str | None:
        sm = self.websocket_handler.settings.get("session_manager")
        if sm is None:
            return None
        try:
            for s in await sm.list_sessions():
                if s.get("kernel", {}).get("id") == self.kernel_id:
                    return s.get("path")
        except Exception:
            return None
        return None

    async def _post(self, event: dict, timeout: float) -> dict:
        if not self.audit_url:
            raise AuditRefused("no audit service is configured")
        return await channel_for(self.audit_url).record(event, timeout)

    async def _record(self, channel: str, header: dict, content: dict) -> int:
        msg_type = header.get("msg_type", "")
        event = {
            "kind": "execute",
            "kernel_id": self.kernel_id,
            "session": header.get("session"),
            "msg_id": header.get("msg_id"),
            "msg_type": msg_type,
            "channel": channel,
            "path": await self._path(),
            "code": code_of(msg_type, content),
        }
        reply = await self._post(event, self.audit_timeout)
        return int(reply["seq"])

    def _send(self, channel: str, msg: dict) -> None:
        if self.subprotocol == V1:
            self.write_message(serialize_msg_to_ws_v1(msg, channel, self.session.pack), binary=True)
        else:
            msg["channel"] = channel
            self.write_message(json.dumps(msg, default=str))

    def _refuse(self, channel: str, header: dict, why: str) -> None:
        """Tell the client, in the protocol it speaks, that the message did not run and why."""
        text = f"Not run: the audit trail is unavailable ({why}). Nothing runs unless it is recorded."
        parent = {"header": header}
        if header.get("msg_type") == "execute_request":
            error = {"ename": UNAVAILABLE, "evalue": text, "traceback": [f"{UNAVAILABLE}: {text}"]}
            self._send("iopub", self.session.msg("status", {"execution_state": "busy"}, parent=parent))
            self._send("iopub", self.session.msg("error", error, parent=parent))
            self._send("iopub", self.session.msg("status", {"execution_state": "idle"}, parent=parent))
            reply = {"status": "error", "execution_count": None, **error}
            self._send("shell", self.session.msg("execute_reply", reply, parent=parent))
        else:
            self._stderr(header, text)

    # --- outgoing: kernel -> browser ---------------------------------------

    def handle_outgoing_message(self, stream, outgoing_msg) -> None:
        try:
            _, parts = self.session.feed_identities(outgoing_msg)
            header, parent = self.session.unpack(parts[1]), self.session.unpack(parts[2])
        except Exception:
            self.log.warning("datahavn: dropped an unreadable message from the kernel")
            return
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        msg_type, cell = header.get("msg_type", ""), parent.get("msg_id")
        size = sum(len(p) for p in parts[1:])
        verdict = self.budget.admit(channel, msg_type, cell, size, meter.exhausted())
        if verdict == PASS:
            self._near_budget(parent, msg_type)
            super().handle_outgoing_message(stream, outgoing_msg)
        # after the message has gone: the reply's bookkeeping is not on the cell's path
        self._account(msg_type, cell, size, parts)
        if verdict == NOTIFY:
            why = self.budget.cut.get(cell)
            self._stderr(parent, self.budget.notice(cell, meter.refusal(why) if why != "cell" else ""))
            detail = {"budget": why, "message_bytes": size, "cell_limit": self.budget.cell_limit}
            if why != "cell":
                detail.update(used={w: meter.used(w) for w in ("hour", "day")}, limits=meter.limits)
            event = {"kind": "egress_alert", "kernel_id": self.kernel_id, "msg_id": cell, "msg_type": msg_type,
                     "outcome": "output cut", "detail": detail}  # fmt: skip
            asyncio.ensure_future(post_quietly(event))

    def _near_budget(self, parent: dict, msg_type: str) -> None:
        """Past 80 % of the workspace's budget: one notice per window, in the cell that crossed it."""
        window = meter.nearly()
        if window is None or window in meter.notified or msg_type != "execute_reply":
            if window is None:
                meter.notified.clear()
            return
        meter.notified.add(window)
        self._stderr(parent, meter.notice(window))

    @property
    def budget(self) -> OutputBudget:
        """The kernel's per-cell budget, shared by every connection to it (reconnecting does not reset it)."""
        if self.kernel_id not in _budgets:
            _budgets[self.kernel_id] = OutputBudget(self.cell_output_limit)
        return _budgets[self.kernel_id]

    def _account(self, msg_type: str, cell: str | None, size: int, parts) -> None:
        """Bytes per cell, and the execute_reply event when the cell is done."""
        pending = getattr(self, "_pending", None)
        if not pending or cell not in pending:
            return
        self._bytes = getattr(self, "_bytes", {})
        self._bytes[cell] = self._bytes.get(cell, 0) + size
        if msg_type == "execute_reply":
            t0, seq, header = pending.pop(cell)
            self._tell_limits(header)
            content = self.session.unpack(parts[4])
            event = {
                "kind": "execute_reply", "kernel_id": self.kernel_id, "msg_id": cell,
                "msg_type": "execute_reply", "status": content.get("status"),
                "duration_ms": round((time.monotonic() - t0) * 1000, 3),
                "output_bytes": self._bytes.pop(cell, 0), "detail": {"execute_seq": seq},
            }  # fmt: skip
            post_later(event)

    def _tell_limits(self, header: dict | None) -> None:
        """A notice in the cell, and a record, for each resource limit the workspace hit since the last look."""
        before = getattr(self, "_limits_seen", None)
        now = limits.counters()
        self._limits_seen = now
        if before is None:
            return
        told = self.__dict__.setdefault("_limits_told", set())
        for kind, text in limits.notices(before, now):
            if kind == "cpu" and kind in told:
                continue  # slowed once is said once
            told.add(kind)
            if header is not None:
                self._stderr(header, text)
            asyncio.ensure_future(post_quietly({"kind": "resource_limit", "kernel_id": self.kernel_id,
                                                "outcome": kind, "detail": text}))  # fmt: skip

    def on_kernel_restarted(self):
        # the kernel died (out of memory, most often): say why in the cell that was running
        running = [h for _, _, h in getattr(self, "_pending", {}).values()]
        self._tell_limits(running[-1] if running else None)
        return super().on_kernel_restarted()

    def close(self):
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.cancel()
        return super().close()
