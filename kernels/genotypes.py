"""Genotypes of a project's store as scikit-allel arrays on Dask, with today's stack fixed.

``ProjectGenotypes`` is an ``allel.GenotypeDaskArray`` over ``call_genotype``.
Its ``count_alleles`` reads the store's allele index (``datahavn.allele_index``)
instead of expanding every genotype when it can (the whole array, any subset of
samples), and otherwise falls back to scikit-allel with ``max_allele`` set from
the store: scikit-allel 1.3.13 on numpy 2 overflows when it has to guess it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import allel
import dask
import dask.array as da
import numcodecs
import numpy as np

from datahavn import allele_index as ai


class _Stored:
    """One array of the allele index, read straight from its zarr v2 chunk files.

    The index is read in slices that do not follow its chunks; going through zarr
    costs several times the decompression itself, so the chunks are decoded here,
    each once per reader.
    """

    def __init__(self, path: Path):
        meta = json.loads((path / ".zarray").read_text())
        if meta.get("zarr_format") != 2 or meta.get("filters") or meta.get("order", "C") != "C":
            raise ValueError(f"{path}: not an allele index array")
        self.path, self.shape, self.chunks = path, tuple(meta["shape"]), tuple(meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        self.codec = numcodecs.get_codec(meta["compressor"]) if meta["compressor"] else None
        self.sep = meta.get("dimension_separator", ".")
        self._decoded: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _chunk(self, i: int) -> np.ndarray:
        with self._lock:
            hit = self._decoded.get(i)
        if hit is not None:
            return hit
        key = self.sep.join([str(i)] + ["0"] * (len(self.chunks) - 1))
        if self.codec is None:  # raw: map the file, nothing to decode or copy
            arr = np.memmap(self.path / key, dtype=self.dtype, mode="r", shape=self.chunks)
        else:
            arr = np.frombuffer(self.codec.decode((self.path / key).read_bytes()), dtype=self.dtype)
            arr = arr.reshape(self.chunks)
        with self._lock:
            self._decoded[i] = arr
        return arr

    def __getitem__(self, sel: slice) -> np.ndarray:
        lo, hi, _ = sel.indices(self.shape[0])
        if hi <= lo:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        n = self.chunks[0]
        parts = [self._chunk(i)[max(lo - i * n, 0) : hi - i * n] for i in range(lo // n, (hi - 1) // n + 1)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class AlleleIndex:
    """The allele index of one store, read lazily (rows once, payload per block)."""

    def __init__(self, path: Path, n_samples: int, ploidy: int, variants_chunks: tuple[int, ...], max_allele: int):
        self.path = path
        self.n_samples, self.ploidy = n_samples, ploidy
        self.chunks = variants_chunks
        self.max_allele = max_allele
        self._rows = None

    @classmethod
    def of(cls, store: Path, calls, variants_chunks: tuple[int, ...]):
        path = store / ai.GROUP
        try:
            attrs = json.loads((path / ".zattrs").read_text())
        except (OSError, ValueError):
            return None
        if attrs.get("format_version") != ai.FORMAT_VERSION:
            return None
        return cls(path, calls.shape[1], calls.shape[2], variants_chunks, int(attrs["max_allele"]))

    @property
    def rows(self) -> dict:
        if self._rows is None:
            self._haplotypes, self._bits = _Stored(self.path / "haplotypes"), _Stored(self.path / "bits")
            self._rows = {name: _Stored(self.path / name)[:] for name in ai.ROW_ARRAYS}
        return self._rows

    def _block(self, first: int, stop: int, mask, n_called: int, max_allele: int) -> np.ndarray:
        rows = self.rows
        r0, r1 = np.searchsorted(rows["row_variant"], [first, stop])
        block = {k: v[r0:r1] for k, v in rows.items()}
        haplotypes = bits = np.zeros(0, dtype=np.uint8)
        if mask is not None:  # for all samples the rows' counts are the answer: no payload to read
            kind, start, count = block["row_kind"], block["row_start"].copy(), block["row_count"]
            listed = kind != ai.BITS
            if listed.any():
                ends = start[listed] + np.where(kind[listed] == ai.LIST, count[listed], len(mask) - count[listed])
                lo, hi = int(start[listed].min()), int(ends.max())
                haplotypes = self._haplotypes[lo:hi]
                start[listed] -= lo
            if (~listed).any():
                lo, hi = int(start[~listed].min()), int(start[~listed].max()) + 1
                bits = self._bits[lo:hi]
                start[~listed] -= lo
            block["row_start"] = start
        counts = ai.count_rows(block, haplotypes, bits, mask)
        return ai.allele_counts(block, counts, first, stop - first, n_called, max_allele)

    def count_alleles(self, max_allele: int, samples=None) -> allel.AlleleCountsDaskArray:
        mask = None if samples is None else ai.haplotype_mask(samples, self.n_samples, self.ploidy)
        n_called = self.n_samples * self.ploidy if mask is None else int(mask.sum())
        blocks, first = [], 0
        for size in self.chunks:
            # pure=False: a pure key would hash self, with every chunk it has decoded
            part = dask.delayed(self._block, pure=False)(first, first + size, mask, n_called, max_allele)
            blocks.append(da.from_delayed(part, shape=(size, max_allele + 1), dtype=np.int32))
            first += size
        return allel.AlleleCountsDaskArray(da.concatenate(blocks, axis=0))


class ProjectGenotypes(allel.GenotypeDaskArray):
    """``allel.GenotypeDaskArray`` whose allele counts use the store's index when they can."""

    _index: AlleleIndex | None = None  # slices and derived arrays do not carry it: they count the usual way
    _max_allele: int | None = None

    def count_alleles(self, max_allele=None, subpop=None):
        if max_allele is None:
            max_allele = self._max_allele if self._max_allele is not None else int(self.max().compute())
        max_allele = int(max_allele)
        samples = None if subpop is None else np.asarray(subpop, dtype=np.int64).ravel()
        usable = self._index is not None and self.mask is None
        if usable and samples is not None:
            unique = samples.size == np.unique(samples).size
            usable = unique and samples.size > 0 and samples.min() >= 0 and samples.max() < self.shape[1]
        if usable and max_allele >= self._index.max_allele:
            return self._index.count_alleles(max_allele, samples)
        return super().count_alleles(max_allele=max_allele, subpop=subpop)

    def count_alleles_subpops(self, subpops, max_allele=None):
        # scikit-allel's own first scans the whole matrix for max_allele; the store knows it
        return {k: self.count_alleles(max_allele=max_allele, subpop=v) for k, v in subpops.items()}


def locate_unlinked(gn, size: int = 100, step: int = 20, threshold: float = 0.1, blen=None) -> np.ndarray:
    """LD pruning block by block: ``allel.locate_unlinked`` fails on Dask arrays.

    ``gn``: alternate-allele counts (variants x samples), numpy or Dask. Each block
    of variants is pruned on its own (pairs across block edges are not compared,
    a small loss for blocks of thousands of variants). Returns a numpy bool mask.
    """
    if isinstance(gn, da.Array):
        gn = gn.rechunk({1: -1})
        return gn.map_blocks(
            lambda b: allel.locate_unlinked(np.asarray(b), size=size, step=step, threshold=threshold),
            drop_axis=1, dtype=bool,
        ).compute()
    return allel.locate_unlinked(np.asarray(gn), size=size, step=step, threshold=threshold, blen=blen)
