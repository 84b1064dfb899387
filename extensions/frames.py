"""Frames of the kernel websocket, checked before anything trusts them (pure)."""

from __future__ import annotations


class MalformedFrame(ValueError):
    pass


def check_v1_frame(raw) -> None:
    """Refuse a v1 frame whose offset table does not fit in it.

    jupyter-server's own parser trusts the first 8 bytes as a count of offsets and
    loops that many times: a few garbage bytes would spin the server's event loop.
    """
    if not isinstance(raw, bytes) or len(raw) < 8:
        raise MalformedFrame("a v1 frame is binary and at least 8 bytes long")
    count = int.from_bytes(raw[:8], "little")
    if not 5 <= count <= 64 or 8 * (count + 1) > len(raw):
        raise MalformedFrame(f"a v1 frame with {count} offsets in {len(raw)} bytes")
    offsets = [int.from_bytes(raw[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[-1] > len(raw) or offsets[0] < 8 * (count + 1):
        raise MalformedFrame("a v1 frame whose offsets point outside it")
