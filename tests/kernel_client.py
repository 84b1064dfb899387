"""A minimal kernel websocket client, speaking the legacy JSON protocol or ``v1.kernel.websocket.jupyter.org``."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class Result:
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    data: list = field(default_factory=list)


def _msg(msg_type: str, content: dict, session: str, channel: str = "shell") -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "test",
            "session": session,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


V1 = "v1.kernel.websocket.jupyter.org"


class KernelClient:
    def __init__(self, ws, protocol: str = "json"):
        self.ws = ws
        self.protocol = protocol
        self.session = uuid.uuid4().hex

    @classmethod
    async def connect(cls, server_url: str, kernel_id: str, token: str, protocol: str = "json") -> KernelClient:
        ws_url = server_url.replace("http", "ws", 1).rstrip("/") + f"/api/kernels/{kernel_id}/channels"
        req = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
        ws = await websocket_connect(
            req, max_message_size=64 * 1024 * 1024, subprotocols=[V1] if protocol == "v1" else None
        )
        if protocol == "v1" and ws.selected_subprotocol != V1:
            raise ConnectionError(f"server did not accept {V1}")
        ws.protocol.set_nodelay(True)  # as a browser does: no Nagle delay on small frames
        return cls(ws, protocol)

    async def send(self, msg: dict) -> None:
        """Send one message (its "channel" says where) in this client's protocol."""
        if self.protocol == "v1":
            parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
            await self.ws.write_message(serialize_msg_to_ws_v1(parts, msg["channel"]), binary=True)
        else:
            await self.ws.write_message(json.dumps(msg))

    async def receive(self) -> dict | None:
        raw = await self.ws.read_message()
        if raw is None:
            raise ConnectionError("kernel websocket closed")
        if self.protocol == "v1":
            channel, parts = deserialize_msg_from_ws_v1(raw)
            header, parent, _meta, content = (json.loads(p) for p in parts[:4])
            return {"channel": channel, "header": header, "parent_header": parent, "content": content,
                    "msg_type": header["msg_type"]}  # fmt: skip
        if isinstance(raw, bytes):
            return None
        return json.loads(raw)

    def message(self, msg_type: str, content: dict, channel: str = "shell") -> dict:
        return _msg(msg_type, content, self.session, channel)

    async def execute(self, code: str, timeout: float = 60, until: str | None = None) -> Result:
        """Run ``code``; return at its reply and idle status, or as soon as its output shows ``until``."""
        msg = _msg("execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        }, self.session)  # fmt: skip
        await self.send(msg)
        msg_id = msg["header"]["msg_id"]
        result, replied, idle = Result(), False, False
        async with asyncio.timeout(timeout):
            while not (replied and idle):
                reply = await self.receive()
                if reply is None or reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = reply["msg_type"], reply["content"]
                if kind == "stream":
                    setattr(result, content["name"], getattr(result, content["name"]) + content["text"])
                elif kind in ("execute_result", "display_data"):
                    result.data.append(content["data"])
                elif kind == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
                elif kind == "execute_reply":
                    result.status, replied = content["status"], True
                    if content["status"] == "error" and not result.error:
                        result.error = f"{content.get('ename')}: {content.get('evalue')}"
                elif kind == "status" and content["execution_state"] == "idle":
                    idle = True
                if until and until in result.stdout + result.stderr:
                    break
        return result

    def close(self):
        self.ws.close()
