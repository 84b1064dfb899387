"""A minimal kernel websocket client (the legacy JSON protocol), as a browser speaks it."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

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


class KernelClient:
    def __init__(self, ws):
        self.ws = ws
        self.session = uuid.uuid4().hex

    @classmethod
    async def connect(cls, server_url: str, kernel_id: str, token: str) -> KernelClient:
        ws_url = server_url.replace("http", "ws", 1).rstrip("/") + f"/api/kernels/{kernel_id}/channels"
        req = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
        ws = await websocket_connect(req, max_message_size=64 * 1024 * 1024)
        ws.protocol.set_nodelay(True)  # as a browser does: no Nagle delay on small frames
        return cls(ws)

    async def execute(self, code: str, timeout: float = 60) -> Result:
        msg = _msg("execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        }, self.session)  # fmt: skip
        await self.ws.write_message(json.dumps(msg))
        msg_id = msg["header"]["msg_id"]
        result, replied, idle = Result(), False, False
        async with asyncio.timeout(timeout):
            while not (replied and idle):
                raw = await self.ws.read_message()
                if raw is None:
                    raise ConnectionError("kernel websocket closed")
                if isinstance(raw, bytes):
                    continue
                reply = json.loads(raw)
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
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
        return result

    def close(self):
        self.ws.close()
