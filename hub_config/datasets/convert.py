"""VCF/BCF to a Zarr store in the VCF Zarr layout (what bio2zarr writes and sgkit reads).

One pass over the file: BGZF blocks are inflated, records parsed and indexed, and
chunks compressed, all in a pool of threads (each stage releases the GIL), while
the main thread keeps the order. The big arrays' chunks are written as zarr v2
files directly (their SHA-256 taken on the way, for the manifest); the small
per-variant arrays go through zarr at the end. ``convert`` writes into a new
folder and never leaves a half-written store behind a clean error: the caller
moves the folder into place only when it returns (:mod:`.manage`).

Imported: CHROM, POS, ID, REF, ALT, QUAL, FILTER and every sample's GT (with its
phasing). Not imported: INFO and FORMAT fields other than GT.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from datahavn.names import DATASET_MANIFEST

from . import vcf
from .source import RawFile, SourceError, is_bgzf, line_chunks, ordered_map, text_stream
from .writer import Progress, StoreWriter, VariantColumns, index_records


def keep_freed_memory() -> None:
    """Let glibc reuse freed large buffers instead of returning them to the kernel.

    Every block is a fresh tens-of-MiB buffer; mapping and faulting its pages anew
    costs more than parsing it on these machines (measured: 64 MiB copy 15 ms vs 9 ms).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 1)  # M_ARENA_MAX: threads' arenas cannot grow past 64 MiB, the main heap can
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: only slower
        pass


def _parse_and_index(args):
    """In a worker: parse a block and index it; or the record error."""
    parts, n_lines, n_samples, ploidy = args
    try:
        records = vcf.parse_block(parts, n_lines, n_samples, ploidy)
    except vcf.RecordError as e:
        return e
    return records, *index_records(records)


class _IsBcf(Exception):
    pass


def _records_start(pieces):
    """The header, its number of lines, and the counted pieces from the first record on."""
    text = b""
    pieces = iter(pieces)
    for piece, _count in pieces:
        text += piece
        if text.startswith(b"BCF\x02"):
            raise _IsBcf
        lines, start = vcf.split_header(text)
        if start >= 0:
            rest = text[start:]
            return vcf.parse_header(lines), len(lines), itertools.chain([(rest, rest.count(b"\n"))], pieces)
        if not text.startswith(b"#"):
            break
    if text[:2] == b"\x1f\x8b" or not text.startswith(b"#"):
        raise SourceError("not a VCF file: it does not start with a ##fileformat=VCF header")
    raise SourceError("not a VCF file: no #CHROM header line")


def convert(source: str | os.PathLike, store: str | os.PathLike, workers: int = 2, progress: bool = False,
            about: dict | None = None) -> dict:
    """Write the store for ``source`` (VCF, .vcf.gz, bgzipped VCF or BCF) into the new folder ``store``.

    Returns the manifest (also written as ``manifest.json`` in the store), with ``about`` added to it. Raises
    ``SourceError`` with a one-line reason for input that is not a valid VCF; the
    folder is then removed.
    """
    store = Path(store)
    if store.exists():
        raise FileExistsError(f"{store} exists")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    keep_freed_memory()
    started = time.monotonic()
    raw = RawFile(str(source))
    try:
        store.mkdir(parents=True)
        with ThreadPoolExecutor(workers, thread_name_prefix="vcz-import") as pool:
            try:
                manifest = _convert_vcf(raw, store, pool, workers, progress)
            except _IsBcf:
                raw.close()
                raw = RawFile(str(source))
                from .bcf import convert_bcf

                manifest = convert_bcf(raw, store, pool, workers, progress)
    except BaseException:
        raw.close()
        shutil.rmtree(store, ignore_errors=True)
        raise
    raw.close()
    manifest["seconds"] = round(time.monotonic() - started, 3)
    manifest.update(about or {})
    (store / DATASET_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _convert_vcf(raw: RawFile, store: Path, pool, workers: int, progress: bool) -> dict:
    kind = "vcf.bgzf" if is_bgzf(raw.peek(64)) else "vcf.gz" if raw.peek(2) == b"\x1f\x8b" else "vcf"
    header, header_lines, pieces = _records_start(
        text_stream(raw, pool, depth=2 * workers, count=vcf.count_newlines)
    )
    first, first_count = next(pieces, (b"", 0))
    if not first:
        raise SourceError("the VCF has no records: nothing to import")
    pieces = itertools.chain([(first, first_count)], pieces)
    ploidy = vcf.first_ploidy(first, 0)
    n_samples = len(header.samples)
    out = StoreWriter(store, n_samples, ploidy, pool, depth=workers)
    variants = VariantColumns(header)
    bar = Progress(raw.total, progress)
    blocks = ((parts, n, n_samples, ploidy) for parts, n in line_chunks(pieces, out.variants_chunk))
    line = header_lines + 1
    for result in ordered_map(pool, _parse_and_index, blocks, workers + 1):
        if isinstance(result, vcf.RecordError):
            raise SourceError(result.where(line))
        records, index, mask = result
        variants.add(records, line)
        out.add(records, index, mask)
        line += len(records.pos)
        bar.update(raw.size, out.n_variants)
    bar.update(raw.size, out.n_variants, final=True)
    return out.finish(variants, {"format": kind, "bytes": raw.size, "sha256": raw.sha256.hexdigest()})
