"""Bad websocket frames close that connection cleanly; the server keeps serving; the event is logged."""

import asyncio

import pytest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from ..hubs import await_for


@pytest.mark.parametrize(
    "protocol, frame",
    [
        ("json", "this is not json"),
        ("json", '{"header": "not a dict", "channel": "shell"}'),
        ("json", '["a", "list"]'),
        ("v1", b"\x00\x01garbage"),
        ("v1", b"\xff" * 64),
    ],
)
async def test_malformed_frames_close_the_connection_and_are_logged(hub, kernel, protocol, frame):
    k = await kernel("carol", "cardio", protocol=protocol)
    assert (await k.execute("print('before')")).stdout == "before\n"
    start = hub.events()[-1]["seq"]
    await k.ws.write_message(frame, binary=isinstance(frame, bytes))
    async with asyncio.timeout(10):
        while (await k.ws.read_message()) is not None:
            pass  # drain until the server closes it
    logged = await await_for(
        lambda: [e for e in hub.events(kind="denied", after_seq=start) if "malformed" in e.get("detail", "")],
        timeout=4, message="the malformed frame's denial")  # fmt: skip
    assert logged[0]["server"] == "carol/cardio"
    again = await kernel("carol", "cardio", protocol=protocol)
    assert (await again.execute("print('after')")).stdout == "after\n"


async def test_an_oversized_frame_closes_the_connection_and_the_server_keeps_serving(hub, kernel):
    k = await kernel("carol", "cardio")
    start = hub.events()[-1]["seq"]
    try:
        await k.ws.write_message("x" * (11 * 1024 * 1024))
    except (WebSocketClosedError, StreamClosedError):
        pass  # the server closed it mid-frame: that is the point
    async with asyncio.timeout(20):
        while (await k.ws.read_message()) is not None:
            pass
    again = await kernel("carol", "cardio")
    assert (await again.execute("print('still here')")).stdout == "still here\n"
    (event,) = await await_for(
        lambda: [e for e in hub.events(kind="denied", after_seq=start) if "oversized" in e.get("detail", "")],
        timeout=4, message="the oversized frame's denial")  # fmt: skip
    assert event["server"] == "carol/cardio" and "11534336 bytes" in event["detail"]
