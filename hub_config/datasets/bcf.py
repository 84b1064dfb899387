"""BCF input, read through htslib (cyvcf2) into the same store writer as VCF text.

BCF is binary and rarer here, so it takes the simple road: one record at a time.
The file's BGZF structure is checked first by our own reader (CRC of every block,
the end-of-file block), because htslib only warns about a truncated file.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from . import vcf
from .source import SourceError, text_stream
from .writer import Progress, StoreWriter, VariantColumns, index_records


def _check_whole(raw, pool, workers: int) -> None:
    for _ in text_stream(raw, pool, depth=2 * workers, count=len):
        pass


def convert_bcf(raw, store, pool, workers: int, progress: bool) -> dict:
    from cyvcf2 import VCF

    _check_whole(raw, pool, workers)
    try:
        reader = VCF(raw.path, gts012=False, strict_gt=False, lazy=True, threads=workers)
    except OSError as e:
        raise SourceError(f"cannot read the BCF: {e}") from None
    lines = reader.raw_header.splitlines(keepends=True)
    header = vcf.parse_header(lines)
    n_samples = len(header.samples)
    records = iter(reader)
    first = next(records, None)
    if first is None:
        raise SourceError("the BCF has no records: nothing to import")
    ploidy = first.genotype.array().shape[1] - 1
    out = StoreWriter(store, n_samples, ploidy, pool, depth=workers)
    variants = VariantColumns(header)
    bar = Progress(0, progress)  # htslib reads the file: only the records are counted
    chunk = out.variants_chunk
    batch: deque = deque([first])
    number = len(lines)
    for record in records:
        batch.append(record)
        if len(batch) == chunk:
            number = _flush(batch, out, variants, ploidy, number)
            bar.update(0, out.n_variants)
    if batch:
        _flush(batch, out, variants, ploidy, number)
    bar.update(0, out.n_variants, final=True)
    return out.finish(variants, {"format": "bcf", "bytes": raw.size, "sha256": raw.sha256.hexdigest()})


def _flush(batch, out, variants, ploidy: int, number: int) -> int:
    n = len(batch)
    n_samples = out.n_samples
    g = np.empty((n, n_samples, ploidy), dtype=np.int8)
    phased = np.empty((n, n_samples), dtype=bool)
    pos = np.empty(n, dtype=np.int64)
    columns = {k: [] for k in ("CHROM", "ID", "REF", "ALT", "QUAL", "FILTER")}
    for i in range(n):
        v = batch.popleft()
        a = v.genotype.array()
        if a.shape[1] - 1 > ploidy:
            raise SourceError(f"record {number + i + 1}: {vcf.ERRORS[7]}")
        calls = a[:, :-1]
        if (calls >= len(v.ALT) + 1).any() or (calls > 127).any():
            raise SourceError(f"record {number + i + 1}: {vcf.ERRORS[8]}")
        g[i, :, : calls.shape[1]] = np.maximum(calls, -2)
        g[i, :, calls.shape[1] :] = -2
        phased[i] = a[:, -1] == 1
        pos[i] = v.POS
        columns["CHROM"].append(v.CHROM)
        columns["ID"].append(v.ID or ".")
        columns["REF"].append(v.REF)
        columns["ALT"].append(",".join(v.ALT) or ".")
        columns["QUAL"].append("." if v.QUAL is None else repr(v.QUAL))
        columns["FILTER"].append(";".join(v.FILTERS) or ".")
    records = vcf.Records(g, phased, pos, columns)
    variants.add(records, number)
    out.add(records, *index_records(records))
    return number + n
