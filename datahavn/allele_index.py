"""The allele index kept beside ``call_genotype``: which haplotypes carry which allele.

Most variants in a cohort are rare, so listing the few haplotypes that carry an
allele is far smaller than the dense genotype matrix (this is what makes plink2's
format fast). The index lives in the store's ``allele_index`` subgroup (xarray and
sgkit ignore subgroups) and has one *row* per (variant, allele) present:

- ``row_variant`` (int32), ``row_allele`` (int8: 1, 2, ... or -1 for "no call": missing
  or absent, e.g. haploid calls in a diploid file), ``row_count`` (int32: haplotypes
  carrying it), ``row_kind`` (int8) and ``row_start`` (int64), where kind is
  0 ``LIST``: ``haplotypes[row_start : row_start + row_count]`` carry it,
  1 ``COMPLEMENT``: ``haplotypes[row_start : row_start + H - row_count]`` do *not*,
  2 ``BITS``: ``bits[row_start]`` is a bitset over the H haplotypes (bit h of byte h // 8).
- ``haplotypes`` (uint16 when H < 65 536, else uint32) and ``bits`` (uint8, rows × a
  multiple of 8 bytes).

Haplotype ``h`` is sample ``h // ploidy``, copy ``h % ploidy``. The reference allele
has no rows: its count is the called haplotypes minus the other alleles' counts.
Allele counts for any subset of samples then need only the rows, never the matrix.
"""

from __future__ import annotations

import numpy as np

GROUP = "allele_index"
FORMAT_VERSION = 1
LIST, COMPLEMENT, BITS = 0, 1, 2
NO_CALL = -1
#: the row arrays, in the column order of the builder's rows, and their dtypes
ROW_ARRAYS = {"row_variant": "i4", "row_allele": "i1", "row_count": "i4", "row_kind": "i1", "row_start": "i8"}


def sparse_limit(n_haplotypes: int) -> int:
    """Counts below this are kept as lists (2 bytes a carrier is less than the H/8 bytes of a bitset)."""
    return max(1, n_haplotypes // 16)


def bits_width(n_haplotypes: int) -> int:
    return (n_haplotypes + 63) // 64 * 8


def haplotype_dtype(n_haplotypes: int):
    return np.uint16 if n_haplotypes < 1 << 16 else np.uint32


def haplotype_mask(samples, n_samples: int, ploidy: int) -> np.ndarray:
    """uint8 mask over haplotypes for a set of sample indices (None: all samples)."""
    if samples is None:
        return np.ones(n_samples * ploidy, dtype=np.uint8)
    m = np.zeros((n_samples, ploidy), dtype=np.uint8)
    m[np.asarray(samples, dtype=np.int64)] = 1
    return m.ravel()


def count_rows(rows: dict, haplotypes: np.ndarray, bits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """How many haplotypes in ``mask`` (None: all) carry each row's allele.

    ``haplotypes`` and ``bits`` are the payload of exactly these rows (``rows["row_start"]``
    made relative to them): lists follow each other in row order and the last one ends
    with ``haplotypes``, so each list's sum is one segment of a single ``reduceat``.
    """
    count = rows["row_count"].astype(np.int64)
    if mask is None:
        return count
    kind, start = rows["row_kind"], rows["row_start"]
    out = np.empty(len(kind), dtype=np.int64)
    listed = kind != BITS
    if listed.any():
        length = np.where(kind == LIST, count, len(mask) - count)[listed]
        inside = np.zeros(len(length), dtype=np.int64)
        some = length > 0  # a complement list is empty when every haplotype carries the allele
        if some.any():
            inside[some] = np.add.reduceat(mask[haplotypes], start[listed][some], dtype=np.int64)
        out[listed] = np.where(kind[listed] == LIST, inside, int(mask.sum()) - inside)
    dense = ~listed
    if dense.any():
        packed = np.packbits(mask, bitorder="little")
        words = np.zeros(bits.shape[1], dtype=np.uint8)
        words[: len(packed)] = packed
        at = start[dense]
        # bit rows are stored in row order: usually one slice, no copy
        rows_bits = bits[at[0] : at[-1] + 1] if at[-1] - at[0] + 1 == len(at) else bits[at]
        selected = np.bitwise_and(rows_bits.view(np.uint64), words.view(np.uint64))
        out[dense] = np.bitwise_count(selected).sum(axis=1, dtype=np.int64)
    return out


def allele_counts(
    rows: dict, counts: np.ndarray, first_variant: int, n_variants: int, n_called: int, max_allele: int
) -> np.ndarray:
    """(n_variants, max_allele + 1) int32 allele counts from per-row counts.

    ``n_called``: haplotypes in the subset; "no call" rows are taken from it, the
    reference gets what no other allele has.
    """
    ac = np.zeros((n_variants, max_allele + 1), dtype=np.int32)
    variant = rows["row_variant"] - first_variant
    allele = rows["row_allele"].astype(np.int64)
    alt = allele > 0
    if (allele[alt] > max_allele).any():
        raise ValueError(f"max_allele={max_allele} is below the largest allele in the data")
    # one row per (variant, allele): plain assignment, no accumulation needed
    ac[variant[alt], allele[alt]] = counts[alt]
    missing = np.zeros(n_variants, dtype=np.int64)
    missing[variant[~alt]] = counts[~alt]
    ac[:, 0] = n_called - missing - ac[:, 1:].sum(axis=1)
    return ac
