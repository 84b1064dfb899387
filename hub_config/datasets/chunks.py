"""Zarr v2 arrays written chunk by chunk, by hand: the format is small and fixed, and writing its files
directly lets the importer compress in its own threads and take each chunk's SHA-256 as it goes.

An array is a folder with ``.zarray`` (shape, chunks, dtype, compressor), ``.zattrs`` (``_ARRAY_DIMENSIONS``
for xarray) and one file per chunk named ``i.j.k``; edge chunks are stored at full size (zarr v2's rule).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from pathlib import Path

import numpy as np
from numcodecs import Blosc


class ChunkWriter:
    """An array written chunk by chunk along its first axis, as zarr v2 files (SHA-256 of each)."""

    def __init__(self, root: Path, name: str, tail: tuple, chunks: tuple, dtype, codec: dict, dims, pool, depth):
        self.path = root / name
        self.path.mkdir(parents=True)
        self.name, self.tail, self.chunks = name, tuple(tail), tuple(chunks)
        self.dtype, self.codec, self.dims = np.dtype(dtype), codec, dims
        self.pool, self.inflight, self.depth = pool, deque(), depth
        self.compressor = Blosc(**{k: v for k, v in codec.items() if k != "id"}) if codec else None
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.length = 0
        self.chunk_index = 0
        self.sums: dict[str, str] = {}
        self.constants: dict = {}

    def append(self, block: np.ndarray) -> None:
        if len(block) == 0:
            return
        self.pending.append(block)
        self.pending_rows += len(block)
        self.length += len(block)
        while self.pending_rows >= self.chunks[0]:
            self._flush(self.chunks[0])

    def append_constant(self, n: int, value) -> None:
        """n rows all equal to value (a mask with no missing call, all-phased calls): encoded once."""
        if self.pending_rows or n != self.chunks[0]:
            self.append(np.full((n, *self.tail), value, dtype=self.dtype))
            return
        self.length += n
        self._submit(self._write_constant, value)

    def _write_constant(self, i: int, value) -> None:
        if value not in self.constants:
            self.constants[value] = self._encode(np.full((self.chunks[0], *self.tail), value, dtype=self.dtype))
        for key, encoded in self.constants[value]:
            self._store(f"{i}.{key}" if key else str(i), encoded)

    def _take(self, n: int) -> np.ndarray:
        joined = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        out, rest = joined[:n], joined[n:]
        self.pending = [rest] if len(rest) else []
        self.pending_rows = len(rest)
        return out

    def _flush(self, n: int) -> None:
        data = self._take(n)
        if n < self.chunks[0]:  # zarr v2 stores edge chunks at full size
            full = np.zeros((self.chunks[0], *self.tail), dtype=self.dtype)
            full[:n] = data
            data = full
        self._submit(self._write_chunk, data)

    def _submit(self, fn, arg) -> None:
        self.inflight.append(self.pool.submit(fn, self.chunk_index, arg))
        self.chunk_index += 1
        while len(self.inflight) > self.depth:
            self.inflight.popleft().result()

    def _encode(self, data: np.ndarray) -> list[tuple[str, bytes]]:
        """(key within the row of chunks, encoded bytes) for each chunk along the other axes."""
        ranges = [range(0, size, chunk) for size, chunk in zip(self.tail, self.chunks[1:], strict=True)]
        out = []
        for starts in np.ndindex(*[len(r) for r in ranges]) if ranges else [()]:
            sel = tuple(slice(r[s], r[s] + c) for r, s, c in zip(ranges, starts, self.chunks[1:], strict=True))
            part = data[(slice(None), *sel)]
            if part.shape[1:] != self.chunks[1:]:
                padded = np.zeros(self.chunks, dtype=self.dtype)
                padded[tuple(slice(0, k) for k in part.shape)] = part
                part = padded
            raw = np.ascontiguousarray(part)
            out.append((".".join(map(str, starts)), self.compressor.encode(raw) if self.compressor else raw.tobytes()))
        return out

    def _write_chunk(self, i: int, data: np.ndarray) -> None:
        for key, encoded in self._encode(data):
            self._store(f"{i}.{key}" if key else str(i), encoded)

    def _store(self, key: str, encoded: bytes) -> None:
        with open(self.path / key, "wb") as f:
            f.write(encoded)
        self.sums[key] = hashlib.sha256(encoded).hexdigest()

    def close(self) -> dict:
        if self.pending_rows:
            self._flush(self.pending_rows)
        while self.inflight:
            self.inflight.popleft().result()
        meta = {
            "zarr_format": 2,
            "shape": [self.length, *self.tail],
            "chunks": list(self.chunks),
            "dtype": self.dtype.str,
            "compressor": self.codec,
            "fill_value": None,
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
        }
        (self.path / ".zarray").write_text(json.dumps(meta, indent=2))
        (self.path / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": list(self.dims)}))
        return {
            "shape": meta["shape"],
            "chunks": meta["chunks"],
            "dtype": meta["dtype"],
            "codec": self.codec,
            "sha256": digest(self.sums),
        }


def digest(sums: dict[str, str]) -> str:
    """One SHA-256 over an array's chunk files (key and SHA-256 of each, in key order)."""
    h = hashlib.sha256()
    for key in sorted(sums):
        h.update(f"{key} {sums[key]}\n".encode())
    return h.hexdigest()


def array_digest(path: Path) -> str:
    """The digest of an array folder's chunk files, as written (for arrays written through zarr, and to verify)."""
    sums = {}
    for f in sorted(path.iterdir()):
        if not f.name.startswith("."):
            sums[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digest(sums)
