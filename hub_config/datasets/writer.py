"""The store's arrays, written block by block, for the VCF and BCF readers alike.

``StoreWriter`` takes parsed records (``vcf.Records``) with their allele index and
writes ``call_genotype``, its mask and phasing and the allele index as zarr v2
chunk files (:mod:`.chunks`), then the small per-variant arrays through zarr,
and returns the manifest. ``VariantColumns`` gathers the per-variant columns in
order; ``Progress`` is the one-line progress bar.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numcodecs import Blosc

from datahavn import allele_index

from . import index_build, vcf
from .chunks import ChunkWriter, array_digest
from .source import SourceError

VCF_ZARR_VERSION = "0.4"
#: Genotype-like arrays: bit-shuffled zstd level 1: encodes 6x faster than bio2zarr's zstd 7 (import time);
#: the whole matrix decodes ~35% slower (benchmarks/genotype_bench.py floor rows), a trade for the import.
CALLS_CODEC = {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": Blosc.BITSHUFFLE, "blocksize": 0}
INDEX_CODEC = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": Blosc.SHUFFLE, "blocksize": 0}
#: The allele index's payload (carrier lists, bitsets) is stored raw: it compresses by a third at most, and
#: counting for a subset of samples then reads it from the page cache without decoding (measured: decoding
#: took half of the time of a subset's allele counts at 5 000 x 487 000).
PAYLOAD_CODEC = None
SMALL_CODEC = {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": Blosc.SHUFFLE, "blocksize": 0}
CHUNK_BYTES = 64 << 20
SAMPLES_CHUNK = 10_000


def variants_chunk(n_samples: int, ploidy: int) -> int:
    """Variants per chunk: about 64 MiB of calls, a multiple of 1 000, between 1 000 and 100 000."""
    per_variant = min(n_samples, SAMPLES_CHUNK) * ploidy
    return int(min(100_000, max(1_000, CHUNK_BYTES // per_variant // 1000 * 1000)))


@dataclass
class Progress:
    """One line on stderr, redrawn: bytes read of the file, variants so far."""

    total: int
    enabled: bool
    started: float = field(default_factory=time.monotonic)
    last: float = 0.0

    def update(self, done: int, variants: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and not final):
            return
        self.last = now
        pct = 100.0 * done / self.total if self.total else 100.0
        width = 30
        bar = "#" * int(width * pct / 100)
        rate = done / max(now - self.started, 1e-9) / 1e6
        end = "\n" if final else ""
        sys.stderr.write(
            f"\r  [{bar:<{width}}] {pct:5.1f}%  {variants:,} variants  {rate:.0f} MB/s  {now - self.started:.0f} s{end}"
        )
        sys.stderr.flush()


class VariantColumns:
    """The per-variant columns, gathered in order, block by block."""

    def __init__(self, header: vcf.Header):
        self.contigs = {name: i for i, name in enumerate(header.contigs)}
        self.filters = {name: i for i, name in enumerate(header.filters)}
        self.header = header
        self.position, self.contig, self.ids, self.ref, self.alt, self.quality, self.filter = ([] for _ in range(7))

    def add(self, records: vcf.Records, first_line: int) -> None:
        cols = records.columns
        self.position.append(records.pos)
        for name in dict.fromkeys(cols["CHROM"]):
            if name not in self.contigs:
                self.contigs[name] = len(self.contigs)
                self.header.contigs[name] = None
        self.contig.append(np.fromiter(map(self.contigs.__getitem__, cols["CHROM"]), np.int32, len(cols["CHROM"])))
        self.ids.extend(cols["ID"])
        self.ref.extend(cols["REF"])
        self.alt.extend(cols["ALT"])
        qual = np.array(cols["QUAL"], dtype=object)
        qual[qual == "."] = "nan"
        try:
            self.quality.append(qual.astype(np.float32))
        except ValueError:
            bad = next(n for n, q in enumerate(cols["QUAL"]) if q != "." and not _is_float(q))
            raise SourceError(f"line {first_line + bad}: QUAL is not a number") from None
        column = np.array(cols["FILTER"], dtype=object)
        filters = []
        for value in dict.fromkeys(cols["FILTER"]):
            names = () if value == "." else value.split(";")
            for name in names:
                if name not in self.filters:
                    self.filters[name] = len(self.filters)
                    self.header.filters[name] = ""
            filters.append((column == value, [self.filters[name] for name in names]))
        self.filter.append(filters)

    def arrays(self) -> dict:
        """name -> (data, dims) of the per-variant, per-contig, per-filter and per-sample arrays."""
        header = self.header
        n = len(self.ids)
        if any("," in a for a in self.alt):
            alts = [[] if a == "." else a.split(",") for a in self.alt]
            allele = np.full((n, 1 + max(map(len, alts))), "", dtype=object)
            allele[:, 0] = self.ref
            for i, a in enumerate(alts):
                allele[i, 1 : 1 + len(a)] = a
        else:
            allele = np.empty((n, 2), dtype=object)
            allele[:, 0] = self.ref
            allele[:, 1] = self.alt
            allele[allele[:, 1] == ".", 1] = ""
        filters = np.zeros((n, len(header.filters)), dtype=bool)
        start = 0
        for block in self.filter:
            for rows, columns in block:
                sub = filters[start : start + len(rows)]
                for c in columns:
                    sub[rows, c] = True
            start += len(block[0][0]) if block else 0
        ids = np.array(self.ids, dtype=object)
        contig = np.concatenate(self.contig)
        return {
            "variant_position": (np.concatenate(self.position).astype("i4"), ("variants",)),
            "variant_contig": (contig.astype("i1" if len(header.contigs) < 128 else "i2"), ("variants",)),
            "variant_allele": (allele, ("variants", "alleles")),
            "variant_id": (ids, ("variants",)),
            "variant_id_mask": (ids == ".", ("variants",)),
            "variant_quality": (np.concatenate(self.quality), ("variants",)),
            "variant_filter": (filters, ("variants", "filters")),
            "contig_id": (np.array(list(header.contigs), dtype=object), ("contigs",)),
            "contig_length": (np.array([x or -1 for x in header.contigs.values()], dtype="i8"), ("contigs",)),
            "filter_id": (np.array(list(header.filters), dtype=object), ("filters",)),
            "filter_description": (np.array(list(header.filters.values()), dtype=object), ("filters",)),
            "sample_id": (np.array(header.samples, dtype=object), ("samples",)),
        }


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def index_records(records: vcf.Records):
    """The block's allele index and its missing-call mask (None when nothing is missing: a constant chunk)."""
    index = index_build.build(records.g)
    no_calls = (index.rows[:, 1] == allele_index.NO_CALL).any()
    return index, records.g < 0 if no_calls else None


class StoreWriter:
    """The arrays of one store, fed block by block (VCF and BCF paths alike)."""

    def __init__(self, store: Path, n_samples: int, ploidy: int, pool, depth: int):
        self.store, self.n_samples, self.ploidy = store, n_samples, ploidy
        v = variants_chunk(n_samples, ploidy)
        s = min(n_samples, SAMPLES_CHUNK)
        self.variants_chunk = v
        self.n_haplotypes = n_samples * ploidy
        (store / ".zgroup").write_text('{"zarr_format": 2}')
        ix = store / allele_index.GROUP
        ix.mkdir()
        (ix / ".zgroup").write_text('{"zarr_format": 2}')
        w = allele_index.bits_width(self.n_haplotypes)
        hap_dtype = allele_index.haplotype_dtype(self.n_haplotypes)

        def writer(name, tail, chunks, dtype, codec, dims, root=store):
            return ChunkWriter(root, name, tail, chunks, dtype, codec, dims, pool, depth)

        self.calls = writer("call_genotype", (n_samples, ploidy), (v, s, ploidy), "i1", CALLS_CODEC,
                            ("variants", "samples", "ploidy"))
        self.mask = writer("call_genotype_mask", (n_samples, ploidy), (v, s, ploidy), "?", CALLS_CODEC,
                           ("variants", "samples", "ploidy"))
        self.phased = writer("call_genotype_phased", (n_samples,), (v, s), "?", CALLS_CODEC, ("variants", "samples"))
        self.rows = {
            name: writer(name, (), (1 << 20,), dtype, INDEX_CODEC, ("rows",), ix)
            for name, dtype in allele_index.ROW_ARRAYS.items()
        }
        self.haplotypes = writer("haplotypes", (), (4 << 20,), hap_dtype, PAYLOAD_CODEC, ("entries",), ix)
        self.bits = writer("bits", (w,), (max(1, (8 << 20) // w), w), "u1", PAYLOAD_CODEC, ("bit_rows", "bytes"), ix)
        self.n_variants = 0
        self.max_allele = 0

    def add(self, records: vcf.Records, index: index_build.IndexBlock, mask: np.ndarray | None) -> None:
        g = records.g
        self.calls.append(g)
        if mask is None:
            self.mask.append_constant(len(g), False)
        else:
            self.mask.append(mask)
        phased = records.phased
        if phased.all() or not phased.any():
            self.phased.append_constant(len(g), bool(phased[0, 0]))
        else:
            self.phased.append(phased)
        rows = index.rows.copy()
        rows[:, 0] += self.n_variants
        listed = rows[:, 3] != allele_index.BITS
        rows[listed, 4] += self.haplotypes.length
        rows[~listed, 4] += self.bits.length
        for j, name in enumerate(allele_index.ROW_ARRAYS):
            self.rows[name].append(rows[:, j].astype(self.rows[name].dtype))
        self.haplotypes.append(index.haplotypes)
        self.bits.append(index.bits)
        self.n_variants += len(g)
        self.max_allele = max(self.max_allele, index.max_allele)

    def finish(self, variants: VariantColumns, source: dict) -> dict:
        import zarr

        arrays = {"call_genotype": self.calls.close(), "call_genotype_mask": self.mask.close(),
                  "call_genotype_phased": self.phased.close()}
        index_arrays = {name: w.close() for name, w in self.rows.items()}
        index_arrays["haplotypes"] = self.haplotypes.close()
        index_arrays["bits"] = self.bits.close()
        header, v, n = variants.header, self.variants_chunk, self.n_variants
        n_contigs = len(header.contigs)
        small = variants.arrays()
        root = zarr.open_group(str(self.store), mode="r+", zarr_format=2)
        for name, (data, dims) in small.items():
            chunks = (v, *data.shape[1:]) if dims[0] == "variants" else data.shape
            kwargs = {"dtype": str if data.dtype == object else data.dtype}
            a = root.create_array(name, shape=data.shape, chunks=tuple(max(1, c) for c in chunks),
                                  compressors=Blosc(**{k: x for k, x in SMALL_CODEC.items() if k != "id"}),
                                  fill_value=None, **kwargs)
            a[...] = data
            a.attrs["_ARRAY_DIMENSIONS"] = list(dims)
            arrays[name] = {"shape": list(data.shape), "chunks": list(a.chunks), "dtype": str(a.dtype),
                            "codec": SMALL_CODEC, "sha256": array_digest(self.store / name)}
        root.attrs.update({
            "vcf_zarr_version": VCF_ZARR_VERSION,
            "source": "datahavn",
            "vcf_header": header.text,
            "vcf_meta_information": header.meta,
        })
        ix = root[allele_index.GROUP]
        ix.attrs.update({"format_version": allele_index.FORMAT_VERSION, "n_haplotypes": self.n_haplotypes,
                         "ploidy": self.ploidy, "max_allele": self.max_allele})
        zarr.consolidate_metadata(str(self.store), zarr_format=2)
        return {
            "format": "datahavn-vcz/1",
            "source": source,
            "counts": {"variants": n, "samples": self.n_samples, "ploidy": self.ploidy,
                       "contigs": n_contigs, "max_allele": self.max_allele},
            "variants_chunk": v,
            "arrays": arrays,
            "allele_index": index_arrays,
        }
