"""VCF files for the import tests: simulated (msprime), hand-written edge cases, and damaged copies."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

from datahavn.hub_config.demo import cohorts

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def bgzip(data: bytes, eof: bool = True) -> bytes:
    """BGZF as bgzip writes it: gzip members of at most 64 KiB of input, each with its size in a BC field."""
    out = io.BytesIO()
    for start in range(0, len(data), 0xFF00):
        block = data[start : start + 0xFF00]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = c.compress(block) + c.flush()
        bsize = 12 + 6 + len(deflated) + 8 - 1
        out.write(b"\x1f\x8b\x08\x04" + b"\0" * 4 + b"\0\xff" + struct.pack("<H", 6))
        out.write(b"BC" + struct.pack("<HH", 2, bsize))
        out.write(deflated + struct.pack("<II", zlib.crc32(block), len(block)))
    if eof:
        out.write(BGZF_EOF)
    return out.getvalue()


def simulated_vcf(samples: int = 40, length: float = 4e5, seed: int = 7) -> str:
    # JC69 (msprime's default): some multi-allelic sites
    return cohorts.vcf_text(cohorts.ancestry(samples, length, seed, mutation_rate=2e-8), "chr7")


#: Missing and unphased calls, multi-allelic sites, extra FORMAT fields, a haploid call, a
#: two-digit allele, a site with no ALT, filters and qualities, an undeclared contig.
EDGE_VCF = """##fileformat=VCFv4.3
##contig=<ID=chr1,length=1000>
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="Quality below 10">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\ts4
chr1\t10\trs1\tA\tG\t50\tPASS\t.\tGT\t0|1\t1|1\t0|0\t0|0
chr1\t20\t.\tC\tT,G\t.\tq10\tDP=3\tGT:DP\t1/2:5\t./.:0\t0/1:7\t2|2:9
chr1\t30\trs3\tG\tA\t7.5\tPASS;q10\t.\tGT\t.|1\t0\t1|0\t0|.
chr1\t40\t.\tT\t.\t.\t.\t.\tGT\t0|0\t0|0\t0/0\t0|0
chr2\t5\t.\tA\tC,G,T,AA,AC,AG,AT,CA,CC,CG,CT\t.\tPASS\t.\tGT\t0|11\t10|1\t0|0\t3|4
"""


def write(path: Path, text: str, kind: str) -> Path:
    """The VCF text as ``vcf``, ``gz`` (one gzip stream) or ``bgzf``."""
    data = text.encode()
    if kind == "gz":
        data = gzip.compress(data)
    elif kind == "bgzf":
        data = bgzip(data)
    path.write_bytes(data)
    return path
