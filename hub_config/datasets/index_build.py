"""Building the allele index (format: ``datahavn.allele_index``) from blocks of genotypes.

Compiled with numba and releasing the GIL: blocks are indexed in parallel threads
while others are parsed and compressed. Rare alleles are found by skipping eight
reference calls at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from datahavn.allele_index import BITS, COMPLEMENT, LIST, NO_CALL, bits_width, haplotype_dtype, sparse_limit


@njit(nogil=True, cache=True)
def _collect(v, words, allele, fill, out, o, complement):
    """Append to out[o:] the haplotypes where v == allele (or != allele); return the new end."""
    n = len(v)
    if complement:
        for w in range(len(words)):
            if words[w] != fill:
                for j in range(w * 8, w * 8 + 8):
                    if v[j] != allele:
                        out[o] = j
                        o += 1
    else:
        for w in range(len(words)):
            if words[w] != fill:
                for j in range(w * 8, w * 8 + 8):
                    if v[j] == allele:
                        out[o] = j
                        o += 1
    for j in range(len(words) * 8, n):
        if (v[j] != allele) if complement else (v[j] == allele):
            out[o] = j
            o += 1
    return o


@njit(nogil=True, cache=True)
def _build(g, limit, rows, haps, bits, status):  # noqa: C901
    """Index every variant of g (K, H) int8. rows: (capacity, 5) int64 (variant, allele, count, kind, start).

    status: [rows used, haplotypes used, bit rows used, max allele, overflow flag].
    """
    k_variants, n = g.shape
    n_words = n // 8
    counts = np.zeros(130, dtype=np.int64)
    r, o, b = 0, 0, 0
    top = 0
    for i in range(k_variants):
        v = g[i]
        words = v[: n_words * 8].view(np.uint64)
        # counts per allele code (-2..127 at index +2); most variants: a quick 0/1/no-call pass
        hi = np.int8(0)
        lo = np.int8(0)
        ones = 0
        for j in range(n):
            x = v[j]
            hi = max(hi, x)
            lo = min(lo, x)
            ones += x == 1
        if hi <= 1 and lo >= 0:
            counts[1] = 0
            counts[3] = ones
        else:
            counts[:] = 0
            for j in range(n):
                counts[v[j] + 2] += 1
            counts[1] += counts[0]  # every negative code is "no call"
        top = max(top, np.int64(hi))
        for a in range(-1, np.int64(hi) + 1):
            if a == 0:
                continue
            c = counts[a + 2]
            if c == 0:
                continue
            if r >= rows.shape[0]:
                status[4] = 1
                return
            rows[r, 0] = i
            rows[r, 1] = a
            rows[r, 2] = c
            if a == NO_CALL and lo < -1:
                # two codes (-1 missing, -2 absent) share the row: list them by sign
                kind = LIST if c < limit else BITS
            elif c < limit:
                kind = LIST
            elif n - c < limit:
                kind = COMPLEMENT
            else:
                kind = BITS
            rows[r, 3] = kind
            if kind == BITS:
                if b >= bits.shape[0]:
                    status[4] = 1
                    return
                row = bits[b]
                row[:] = 0
                for j in range(n):
                    hit = (v[j] < 0) if a == NO_CALL else (v[j] == a)
                    if hit:
                        row[j >> 3] |= np.uint8(1 << (j & 7))
                rows[r, 4] = b
                b += 1
            else:
                need = c if kind == LIST else n - c
                if o + need > len(haps):
                    status[4] = 1
                    return
                rows[r, 4] = o
                if a == NO_CALL:
                    for j in range(n):
                        if v[j] < 0:
                            haps[o] = j
                            o += 1
                else:
                    # words of eight calls that cannot hold a hit are skipped whole
                    fill = np.uint64(0) if kind == LIST else np.uint64(a) * np.uint64(0x0101010101010101)
                    o = _collect(v, words, np.int8(a), fill, haps, o, kind == COMPLEMENT)
            r += 1
    status[0], status[1], status[2], status[3] = r, o, b, top


@dataclass
class IndexBlock:
    """The index rows of one block of variants (row_start relative to this block)."""

    rows: np.ndarray  # (r, 5) int64
    haplotypes: np.ndarray
    bits: np.ndarray
    max_allele: int


def build(g: np.ndarray) -> IndexBlock:
    """Index a block of genotypes (variants, samples, ploidy) int8."""
    k = g.shape[0]
    flat = np.ascontiguousarray(g).reshape(k, -1)
    n = flat.shape[1]
    limit = sparse_limit(n)
    # Room for a typical cohort; on overflow (many common multi-allelic sites), retry with more.
    row_cap, hap_cap, bit_cap = 2 * k + 16, k * limit // 2 + n, k // 2 + 16
    while True:
        rows = np.empty((row_cap, 5), dtype=np.int64)
        haps = np.empty(hap_cap, dtype=haplotype_dtype(n))
        bits = np.empty((bit_cap, bits_width(n)), dtype=np.uint8)
        status = np.zeros(5, dtype=np.int64)
        _build(flat, limit, rows, haps, bits, status)
        if not status[4]:
            r, o, b = int(status[0]), int(status[1]), int(status[2])
            return IndexBlock(rows[:r].copy(), haps[:o].copy(), bits[:b].copy(), int(status[3]))
        row_cap, hap_cap, bit_cap = row_cap * 2, hap_cap * 2 + n * 4, bit_cap * 2 + k
