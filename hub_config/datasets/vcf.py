"""Parsing VCF text: the header in Python, the records' genotypes in one compiled pass.

The compiled pass (numba, releasing the GIL so blocks parse in parallel threads)
reads each record's eight fixed columns only far enough to find them, then every
sample's GT into ``call_genotype``. Any other FORMAT field is skipped; INFO is kept
only as text offsets. A record that breaks the format stops the import with its
line number and what is wrong, never with a partial store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .source import SourceError

#: Error codes of the compiled pass, and their messages.
ERRORS = {
    1: "fewer than 10 tab-separated columns",
    2: "POS is not a positive integer",
    3: "FORMAT does not start with GT",
    4: "a genotype is not of the form 0/1, 0|1, ./. (allele numbers separated by / or |)",
    5: "more samples than the header names",
    6: "fewer samples than the header names",
    7: "more alleles in a genotype than the ploidy of the first record",
    8: "an allele number is above the number of alleles (REF + ALT)",
    9: "an allele number above 127",
}
_META = re.compile(r"^##(\w+)=<(.*)>$")
_KEYVAL = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]*)')
FIXED = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")


@dataclass
class Header:
    text: str
    samples: list[str]
    contigs: dict[str, int | None] = field(default_factory=dict)  # id -> length
    filters: dict[str, str] = field(default_factory=lambda: {"PASS": "All filters passed"})
    meta: list[tuple[str, str]] = field(default_factory=list)


def parse_header(lines: list[str]) -> Header:
    if not lines or not lines[0].startswith("##fileformat=VCF"):
        raise SourceError("not a VCF file: the first line is not ##fileformat=VCF...")
    columns = lines[-1].rstrip("\n").split("\t")
    if tuple(columns[:8]) != FIXED:
        raise SourceError("not a VCF file: the #CHROM header line does not name the eight fixed columns")
    if len(columns) < 10 or columns[8] != "FORMAT":
        raise SourceError("the VCF has no samples (no FORMAT and sample columns): there are no genotypes to import")
    samples = columns[9:]
    if len(set(samples)) != len(samples):
        raise SourceError("the header names a sample twice")
    header = Header(text="".join(lines), samples=samples)
    for line in lines[:-1]:
        line = line.rstrip("\n")
        m = _META.match(line)
        if m and m.group(1) in ("contig", "FILTER"):
            kv = {k: v.strip('"') for k, v in _KEYVAL.findall(m.group(2))}
            if "ID" not in kv:
                raise SourceError(f"header line without an ID: {line[:80]}")
            if m.group(1) == "contig":
                length = kv.get("length")
                header.contigs[kv["ID"]] = int(length) if length and length.isdigit() else None
            else:
                header.filters[kv["ID"]] = kv.get("Description", "")
        elif "=" in line and not m:
            key, _, value = line[2:].partition("=")
            header.meta.append((key, value))
    return header


def split_header(text: bytes) -> tuple[list[str], int]:
    """The header lines at the start of ``text`` (through #CHROM) and where the records start, or ([], -1)."""
    pos, lines = 0, []
    while True:
        end = text.find(b"\n", pos)
        if end < 0:
            return [], -1
        line = text[pos : end + 1]
        if not line.startswith(b"#"):
            raise SourceError("not a VCF file: records start before the #CHROM header line")
        try:
            lines.append(line.decode())
        except UnicodeDecodeError:
            raise SourceError(f"not a VCF file: header line {len(lines) + 1} is not text") from None
        pos = end + 1
        if line.startswith(b"#CHROM"):
            return lines, pos


def first_ploidy(text: bytes, start: int) -> int:
    """The ploidy of the first sample of the first record (at least 1)."""
    end = text.find(b"\n", start)
    cols = text[start : end if end >= 0 else len(text)].split(b"\t", 10)
    if len(cols) < 10:
        raise SourceError(f"record 1: {ERRORS[1]}")
    gt = cols[9].split(b":", 1)[0]
    return max(1, gt.count(b"/") + gt.count(b"|") + 1)


_DIGIT_SEP_DIGIT_TAB = np.uint32(0x09307C30)  # "0|0\t" read little-endian


@njit(nogil=True, inline="always")
def _fixed_width_calls(words, g16, phased, n_alleles):
    """Decode n words "a|b\t" (the last ending in a newline) into g16; False if any is not of that form."""
    n = len(words)
    limit = np.uint32(min(n_alleles, 10))
    top = np.uint32(0)
    seps = np.uint32(0)
    tabs = np.uint32(0)
    for s in range(n):
        x = words[s] ^ _DIGIT_SEP_DIGIT_TAB
        a = x & np.uint32(0xFF)
        b = (x >> np.uint32(16)) & np.uint32(0xFF)
        sep = (x >> np.uint32(8)) & np.uint32(0xFF)  # 0 for '|', 0x53 for '/'
        top = max(top, max(a, b))
        seps |= sep * (sep ^ np.uint32(0x53))  # zero only for '|' and '/'
        tabs |= (x >> np.uint32(24)) * np.uint32(s != n - 1)
        g16[s] = np.uint16(a | (b << np.uint32(8)))
        phased[s] = sep == 0
    last = words[n - 1] >> np.uint32(24)
    return top < limit and seps == 0 and tabs == 0 and last == np.uint32(0x0A)



@njit(nogil=True, cache=True)
def _parse(buf, g, phased, pos, starts, tabs, status):  # noqa: C901 - one pass, kept in one piece
    """Fill g[i], phased[i], pos[i] and tabs[i] (offsets of the first 9 tabs) for every line of buf.

    status[0] = error code (0 = fine), status[1] = line, status[2] = sample.
    """
    n_lines, n, ploidy = g.shape
    p = 0
    for i in range(n_lines):
        starts[i] = p
        # the fixed columns: positions of the first nine tabs
        for f in range(9):
            while buf[p] != 9:
                if buf[p] == 10:
                    status[0], status[1] = 1, i
                    return
                p += 1
            tabs[i, f] = p
            p += 1
        # POS
        value = 0
        q = tabs[i, 0] + 1
        if q == tabs[i, 1]:
            status[0], status[1] = 2, i
            return
        while q < tabs[i, 1]:
            c = buf[q]
            if c < 48 or c > 57:
                status[0], status[1] = 2, i
                return
            value = value * 10 + (c - 48)
            q += 1
        if value == 0:
            status[0], status[1] = 2, i
            return
        pos[i] = value
        # number of alleles: REF + the comma-separated ALT ('.' = none)
        n_alleles = 2
        q = tabs[i, 3] + 1
        if tabs[i, 4] - q == 1 and buf[q] == 46:
            n_alleles = 1
        while q < tabs[i, 4]:
            if buf[q] == 44:
                n_alleles += 1
            q += 1
        # FORMAT must start with GT
        q = tabs[i, 7] + 1
        if tabs[i, 8] - q < 2 or buf[q] != 71 or buf[q + 1] != 84 or (tabs[i, 8] - q > 2 and buf[q + 2] != 58):
            status[0], status[1] = 3, i
            return
        # the samples. Fast path: every call is two one-digit alleles ("0|1\t"): the line
        # is 4 bytes per sample, read as 32-bit words and checked as a whole (vectorised).
        if ploidy == 2 and n_alleles > 0 and p + 4 * n <= len(buf) and buf[p + 4 * n - 1] == 10:
            words = buf[p : p + 4 * n].view(np.uint32)
            if _fixed_width_calls(words, g[i].ravel().view(np.uint16), phased[i], n_alleles):
                p += 4 * n
                continue
        for s in range(n):
            k = 0
            is_phased = True
            while True:
                c = buf[p]
                if c == 46:  # '.'
                    allele = -1
                    p += 1
                elif 48 <= c <= 57:
                    allele = 0
                    while 48 <= buf[p] <= 57:
                        allele = allele * 10 + (buf[p] - 48)
                        if allele > 127:
                            status[0], status[1], status[2] = 9, i, s
                            return
                        p += 1
                    if allele >= n_alleles:
                        status[0], status[1], status[2] = 8, i, s
                        return
                else:
                    status[0], status[1], status[2] = 4, i, s
                    return
                if k >= ploidy:
                    status[0], status[1], status[2] = 7, i, s
                    return
                g[i, s, k] = allele
                k += 1
                c = buf[p]
                if c == 47 or c == 124:
                    if c == 47:
                        is_phased = False
                    p += 1
                    continue
                if c == 58:  # ':' other FORMAT fields: skip them
                    while buf[p] != 9 and buf[p] != 10:
                        p += 1
                    c = buf[p]
                if c != 9 and c != 10:
                    status[0], status[1], status[2] = 4, i, s
                    return
                break
            for j in range(k, ploidy):
                g[i, s, j] = -2  # fewer alleles than the ploidy (e.g. haploid calls on chrX)
            phased[i, s] = is_phased and k > 1
            # after a sample: a tab before the next, the newline after the last
            if buf[p] == 10:
                if s != n - 1:
                    status[0], status[1], status[2] = 6, i, s
                    return
            elif s == n - 1:
                status[0], status[1], status[2] = 5, i, s
                return
            p += 1
    status[0] = 0


@njit(nogil=True, cache=True)
def _newlines(buf):
    n = 0
    for c in buf:
        n += c == 10
    return n


def count_newlines(text: bytes) -> int:
    """Newlines in text, 4x faster than bytes.count here and without the GIL."""
    return int(_newlines(np.frombuffer(text, dtype=np.uint8)))


@njit(nogil=True, cache=True)
def _fixed_columns(buf, starts, ends, out):
    """Copy each line's CHROM..FILTER (starts[i]:ends[i]) into out, one per line; return the length used."""
    o = 0
    for i in range(len(starts)):
        for q in range(starts[i], ends[i]):
            out[o] = buf[q]
            o += 1
        out[o] = 10
        o += 1
    return o


class RecordError(Exception):
    """A record that breaks the format: its line within the block, and why."""

    def __init__(self, line: int, message: str, sample: int | None = None):
        super().__init__(message)
        self.line, self.sample = line, sample

    def where(self, first_line: int) -> str:
        """"line N[, sample S]: message", with the line number in the file."""
        sample = f", sample {self.sample}" if self.sample is not None else ""
        return f"line {first_line + self.line}{sample}: {self}"


@dataclass
class Records:
    """The records of one block of lines."""

    g: np.ndarray  # (n, samples, ploidy) int8
    phased: np.ndarray  # (n, samples) bool
    pos: np.ndarray  # (n,) int64
    columns: dict[str, list[str]]  # CHROM, ID, REF, ALT, QUAL, FILTER


COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER")


def parse_block(parts: list, n_lines: int, n_samples: int, ploidy: int) -> Records:
    """Parse a block of ``n_lines`` whole record lines, given as parts to join.

    Raises ``RecordError`` with the line number within the block.
    """
    block = b"".join(parts)
    buf = np.frombuffer(block, dtype=np.uint8)
    g = np.empty((n_lines, n_samples, ploidy), dtype=np.int8)
    phased = np.empty((n_lines, n_samples), dtype=np.bool_)
    pos = np.empty(n_lines, dtype=np.int64)
    tabs = np.empty((n_lines, 9), dtype=np.int64)
    starts = np.empty(n_lines, dtype=np.int64)
    status = np.zeros(3, dtype=np.int64)
    _parse(buf, g, phased, pos, starts, tabs, status)
    if status[0]:
        sample = int(status[2]) + 1 if status[0] >= 4 else None
        raise RecordError(int(status[1]), ERRORS[int(status[0])], sample)
    ends = tabs[:, 6]
    out = np.empty(int((ends - starts).sum()) + n_lines, dtype=np.uint8)
    used = _fixed_columns(buf, starts, ends, out)
    try:
        text = out[:used].tobytes().decode()
    except UnicodeDecodeError:
        raise RecordError(0, "a fixed column is not text (UTF-8)") from None
    rows = [line.split("\t") for line in text.split("\n")[:-1]]
    columns = dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))
    del columns["POS"]
    return Records(g, phased, pos, columns)
