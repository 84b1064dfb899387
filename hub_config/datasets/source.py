"""Reading a VCF's bytes: plain, gzip or BGZF (bgzip), checked as they are read.

BGZF files are a series of independent gzip members (each at most 64 KiB of text),
so they are decompressed in parallel; plain gzip only sequentially. Every member's
CRC-32 and length are checked, and a BGZF file must end with the empty end-of-file
member bgzip writes: a file cut at a block boundary is otherwise undetectable.
The SHA-256 of the file's bytes is computed on the way, for the manifest.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor

try:  # ISA-L inflates 2-3x faster than zlib, with the same results; optional
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal has wheels for the platforms we run on
    _inflater = zlib

GZIP_MAGIC = b"\x1f\x8b"
#: The empty member bgzip ends a file with (SAM/BAM specification §4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
READ_SIZE = 8 << 20
#: Blocks per decompression task (~16 MiB of text).
BATCH_BLOCKS = 256


class SourceError(ValueError):
    """The input is not a readable VCF (the message says why, in one line)."""


def ordered_map(pool: Executor, fn: Callable, items: Iterable, depth: int) -> Iterator:
    """``map`` over a pool with at most ``depth`` tasks in flight, results in order."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class RawFile:
    """The file's bytes in large reads, hashed as they go."""

    def __init__(self, path: str):
        self.path = path
        self.sha256 = hashlib.sha256()
        self.size = 0
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from None

    def read(self, n: int = READ_SIZE) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    @property
    def total(self) -> int:
        """The file's size in bytes."""
        return os.fstat(self._f.fileno()).st_size

    def peek(self, n: int) -> bytes:
        pos = self._f.tell()
        data = self._f.read(n)
        self._f.seek(pos)
        return data

    def close(self) -> None:
        self._f.close()


def is_bgzf(head: bytes) -> bool:
    """A gzip member whose extra field holds a ``BC`` subfield (the block size)."""
    if len(head) < 18 or head[:2] != GZIP_MAGIC or not head[3] & 4:
        return False
    (xlen,) = struct.unpack_from("<H", head, 10)
    return _bsize(head, 12, xlen) is not None


def _bsize(buf, start: int, xlen: int) -> int | None:
    pos, end = start, start + xlen
    while pos + 4 <= end:
        si1, si2, slen = buf[pos], buf[pos + 1], struct.unpack_from("<H", buf, pos + 2)[0]
        if si1 == 66 and si2 == 67 and slen == 2:
            return struct.unpack_from("<H", buf, pos + 4)[0]
        pos += 4 + slen
    return None


def _bgzf_batches(raw: RawFile) -> Iterator[tuple[bytes, list[tuple[int, int]]]]:
    """(buffer, [(data offset, data length)]) for batches of whole BGZF blocks."""
    buf = b""
    saw_eof = False
    while True:
        chunk = raw.read()
        if chunk:
            buf = buf + chunk if buf else chunk
        pos, blocks = 0, []
        while True:
            if len(buf) - pos < 18:
                break
            if buf[pos : pos + 4] != b"\x1f\x8b\x08\x04":
                raise SourceError(f"damaged BGZF block at byte {raw.size - len(buf) + pos} (bad header)")
            (xlen,) = struct.unpack_from("<H", buf, pos + 10)
            bsize = _bsize(buf, pos + 12, xlen) if len(buf) - pos >= 12 + xlen else None
            if bsize is None:
                if len(buf) - pos >= 12 + xlen:
                    raise SourceError(f"damaged BGZF block at byte {raw.size - len(buf) + pos} (no block size)")
                break
            total = bsize + 1
            if len(buf) - pos < total:
                break
            saw_eof = buf[pos : pos + total] == BGZF_EOF
            blocks.append((pos + 12 + xlen, total - 12 - xlen))
            pos += total
            if len(blocks) >= BATCH_BLOCKS:
                yield buf, blocks
                blocks = []
        if blocks:
            yield buf, blocks
        buf = buf[pos:]
        if not chunk:
            break
    if buf:
        raise SourceError(f"truncated file: {len(buf)} bytes of an incomplete BGZF block at the end")
    if not saw_eof:
        raise SourceError("truncated file: no BGZF end-of-file block (was the copy cut short?)")


def _inflate_batch(item) -> list[tuple[bytes, int]]:
    """The text of each BGZF block of a batch, with its number of newlines.

    Not joined: the parser joins whole lines once, and every copy of the text
    costs as much as inflating it on these machines.
    """
    (buf, blocks), count = item
    view = memoryview(buf)
    out = []
    for offset, length in blocks:
        # member = deflate data, CRC-32, uncompressed size
        crc, isize = struct.unpack_from("<II", buf, offset + length - 8)
        try:
            text = _inflater.decompress(view[offset : offset + length - 8], -15)
        except Exception as e:  # zlib.error / isal_zlib.error
            raise SourceError(f"damaged compressed data ({e})") from None
        if len(text) != isize or (_inflater.crc32(text) & 0xFFFFFFFF) != crc:
            raise SourceError("damaged compressed data (checksum mismatch)")
        if text:
            out.append((text, count(text)))
    return out


def _gzip_stream(raw: RawFile) -> Iterator[bytes]:
    """Plain (multi-member) gzip, sequentially; zlib checks each member's CRC and length."""
    d = None  # the member being read
    while chunk := raw.read():
        while chunk:
            if d is None:
                d = zlib.decompressobj(31)
            try:
                text = d.decompress(chunk)
            except zlib.error as e:
                raise SourceError(f"damaged compressed data ({e})") from None
            if text:
                yield text
            chunk = b""
            if d.eof:  # another member may follow
                chunk, d = d.unused_data, None
    if d is not None:
        raise SourceError("truncated file: the compressed stream ends early")


def _plain_stream(raw: RawFile) -> Iterator[bytes]:
    while chunk := raw.read():
        yield chunk


def count_newlines(text: bytes) -> int:
    return text.count(b"\n")


def text_stream(
    raw: RawFile, pool: Executor, depth: int = 4, count: Callable[[bytes], int] = count_newlines
) -> Iterator[tuple[bytes, int]]:
    """The file's decompressed bytes in pieces, in order, each with its number of newlines (by ``count``)."""
    head = raw.peek(64)
    if is_bgzf(head):
        batches = ((batch, count) for batch in _bgzf_batches(raw))
        for pieces in ordered_map(pool, _inflate_batch, batches, depth):
            yield from pieces
    else:
        for piece in _gzip_stream(raw) if head[:2] == GZIP_MAGIC else _plain_stream(raw):
            yield piece, count(piece)


def _nth_line_end(piece: bytes, start: int, n: int) -> int:
    """The offset just after the n-th newline of piece from start (it has at least n)."""
    pos = start - 1
    for _ in range(n):
        pos = piece.index(b"\n", pos + 1)
    return pos + 1


def line_chunks(pieces: Iterable[tuple[bytes, int]], n_lines: int) -> Iterator[tuple[list, int]]:
    """Regroup counted pieces into blocks of exactly ``n_lines`` lines (the last may have fewer).

    A block is a list of parts (bytes or memoryviews) for the consumer to join, and
    its number of lines. A last line without its newline gets one: the parser then
    judges it like any other line.
    """
    parts: list = []
    have = 0
    for piece, count in pieces:
        view, start = memoryview(piece), 0
        while have + count >= n_lines:
            cut = _nth_line_end(piece, start, n_lines - have)
            parts.append(view[start:cut])
            yield parts, n_lines
            count -= n_lines - have
            parts, have, start = [], 0, cut
        if start < len(piece):
            parts.append(view[start:])
            have += count
    if parts:
        if bytes(parts[-1][-1:]) != b"\n":
            parts.append(b"\n")
            have += 1
        yield parts, have
