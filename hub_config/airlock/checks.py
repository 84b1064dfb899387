"""The airlock's automatic checks: pure functions of a file's bytes and the project's context (only
:func:`load_context` reads the disk). They inform the review; they refuse a dataset file's copy and unreadable input.

- type: an allowed suffix with content of that type (:func:`file_kind`), else refused. size: a flag over 5 MiB.
- dataset_copy: refused if byte-identical (SHA-256) to a dataset file of 16+ bytes, or holding a copy of one of 256+
  bytes: 3 anchors in one alignment spanning 1 KiB (half the file if smaller). Anchors: winnowed hashes of 32-byte
  windows, one in every 64 at least; up to 65 536 per dataset file (a sample by content); any seen 9 times is ignored.
- sample_ids: a table column with 5 distinct sample ids, or whose non-empty cells are half sample ids; a header naming
  5; any sample id (not a plain number) in a text, notebook or SVG. row_count: a table with 80% as many rows as the
  largest dataset has samples (up to 1e6 read). min_cell_count: integer cells 0 < n < ``min_cell_count`` in columns
  whose numbers are all integers >= 0 (NA, <10... aside), no word of whose name is in ``NOT_COUNTS`` (ids, positions,
  dates, ages, p-values...). image: type by magic bytes, pixels and bytes; a flag over ``max_image_pixels``, for bytes
  after its end, 4 KiB of text metadata, an SVG with scripts, data: URIs, handlers, foreign objects, entities or
  external links; a damaged PNG, JPEG or GIF is refused. acro: ACRO's verdict (fail and review: flags) and summary.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import os
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zarr

from datahavn.names import DATASET_SUFFIX, check_project

PASS, FLAG, REFUSE = "pass", "flag", "refuse"
K, W = 32, 64  # anchor window in bytes; winnowing window in anchor windows (a power of two)
MIN_IDENTITY, MIN_CONTAIN, MIN_COPY, MIN_HITS = 16, 256, 1024, 3
PER_FILE, COMMON, BLOCK = 1 << 16, 8, 1 << 20
ID_HITS, ID_SHARE, ROW_SHARE, META_BYTES = 5, 0.5, 0.8, 4096
NOT_COUNTS = frozenset(
    """id ids iid fid sample samples name names pos position positions start end stop bp chr chrom
contig locus rs rsid snp variant variants allele ref alt year years date time age month day p pval pvalue q qval qvalue
fdr padj index idx rank row order code df dof unnamed label""".split()
)  # words of names that are not counts


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # "pass" | "flag" | "refuse"
    detail: str  # one sentence for the reviewer

    def as_dict(self) -> dict:
        return asdict(self)


def _verdict(name: str, bad: bool, detail: str, otherwise: str, verdict: str = FLAG) -> Check:
    return Check(name, verdict, detail) if bad else Check(name, PASS, otherwise)


# Anchors, vectorised: polynomial hashes of all windows from one prefix sum, window minima by doubling.
_GEAR = np.random.default_rng(0x6A1B).integers(0, 2**63, 256, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_MUL = 0x9E3779B97F4A7C15  # its powers and their inverses modulo 2**64 (numpy's uint64 arithmetic wraps):
_UP, _DOWN = (np.cumprod(np.full(BLOCK + K + W, m, np.uint64), dtype=np.uint64) for m in (_MUL, pow(_MUL, -1, 1 << 64)))


def _slide(a: np.ndarray, op) -> np.ndarray:
    """op (np.minimum or np.maximum) of every W consecutive values: len(a) - W + 1 of them."""
    step = 1
    while step < W:
        a, step = op(a[:-step], a[step:]), step * 2
    return a


def _segment_anchors(seg: bytes, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, offset) of the anchors of the winnowing windows wholly inside ``seg``, which starts at ``base``."""
    b, n = np.frombuffer(seg, np.uint8), len(seg) - K + 1
    if n < W:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    prefix = np.r_[np.uint64(0), np.cumsum(_GEAR[b] * _UP[: len(b)], dtype=np.uint64)]
    h = (prefix[K:] - prefix[:n]) * _DOWN[:n]
    h = (h ^ (h >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    key, pad = (h >> np.uint64(32)).astype(np.uint32), np.zeros(W - 1, np.uint32)  # winnow on 32 bits: faster
    chosen = np.flatnonzero(key == _slide(np.r_[pad, _slide(key, np.minimum), pad], np.maximum))
    if len(chosen) > 1:  # ties (runs, short repeats): the first of consecutive equal anchors only
        chosen = chosen[np.r_[True, (key[chosen[1:]] != key[chosen[:-1]]) | (np.diff(chosen) >= W)]]
    return h[chosen], chosen.astype(np.int64) + base


def _anchors(pieces: bytes | Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The anchors of bytes, or of a stream in pieces; segments overlap by K + W - 2 bytes: no window is lost."""
    if isinstance(pieces, bytes):
        pieces = [pieces[i : i + BLOCK] for i in range(0, len(pieces), BLOCK)]
    hashes, offsets, carry, base = [np.empty(0, np.uint64)], [np.empty(0, np.int64)], b"", 0
    for piece in pieces:
        seg = carry + piece
        h, o = _segment_anchors(seg, base)
        hashes.append(h), offsets.append(o)
        carry = seg[-(K + W - 2) :]
        base += len(seg) - len(carry)
    o, first = np.unique(np.concatenate(offsets), return_index=True)
    return np.concatenate(hashes)[first], o


class ChunkIndex:
    """Dataset files by SHA-256 and by anchors: which one a request file is, or holds a substantial copy of."""

    def __init__(self, names=(), sizes=(), identity=None, hashes=None, files=None, offsets=None):
        self.names, self.sizes, self.identity = list(names), np.asarray(sizes, np.int64), dict(identity or {})
        self.hashes = np.empty(0, np.uint64) if hashes is None else hashes
        self.files, self.offsets = (np.empty(0, np.int64), np.empty(0, np.int64)) if files is None else (files, offsets)

    @classmethod
    def build(cls, files: Iterable, root: str | os.PathLike | None = None) -> ChunkIndex:
        """From dataset files' paths (named relative to ``root`` if given)."""
        names, sizes, identity, parts = [], [], {}, []
        for item in files:
            sha = hashlib.sha256()
            with open(item, "rb") as f:  # in pieces: the SHA-256 and the anchors in one pass
                h, o = _anchors(sha.update(p) or p for p in iter(functools.partial(f.read, BLOCK), b""))
            size, sha = os.stat(item).st_size, sha.hexdigest()
            name = os.path.relpath(item, root) if root is not None else os.fspath(item)
            if size >= MIN_IDENTITY:
                identity.setdefault(sha, name)
            if size >= MIN_CONTAIN and len(h):
                sample = 1 << max(0, int(np.ceil(np.log2(len(h) / PER_FILE))))  # by content: the same on both sides
                kept = ((h >> np.uint64(40)) & np.uint64(sample - 1)) == 0
                parts.append((h[kept], np.full(int(kept.sum()), len(names)), o[kept]))
            names.append(name), sizes.append(size)
        if not parts:
            return cls(names, sizes, identity)
        h, f, o = (np.concatenate(x) for x in zip(*parts, strict=True))
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        keep = np.flatnonzero(counts[inverse] <= COMMON)
        keep = keep[np.argsort(h[keep], kind="stable")]
        return cls(names, sizes, identity, h[keep], f[keep], o[keep])

    def match(self, data: bytes) -> str | None:
        """The dataset file's name if ``data`` is one or holds a substantial copy of one, else None."""
        if (name := self.identity.get(hashlib.sha256(data).hexdigest())) and len(data) >= MIN_IDENTITY:
            return name
        hq, pq = _anchors(data)
        lo, hi = np.searchsorted(self.hashes, hq, "left"), np.searchsorted(self.hashes, hq, "right")
        if not (total := int((n := hi - lo).sum())):
            return None
        entry = np.arange(total) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        f, pos, hh = self.files[entry], np.repeat(pq, n), np.repeat(hq, n)
        diag = self.offsets[entry] - pos  # a copied run: distinct anchors at one offset between the two files
        order = np.lexsort((hh, diag, f))
        f, diag, pos, hh = f[order], diag[order], pos[order], hh[order]
        start = np.flatnonzero(first := np.r_[True, (f[1:] != f[:-1]) | (diag[1:] != diag[:-1])])
        distinct = np.add.reduceat(first | np.r_[True, hh[1:] != hh[:-1]], start)
        span = np.maximum.reduceat(pos, start) - np.minimum.reduceat(pos, start) + K
        good = np.flatnonzero((distinct >= MIN_HITS) & (span >= np.minimum(MIN_COPY, self.sizes[f[start]] // 2)))
        best = good[np.argmax(span[good])] if len(good) else None
        return None if best is None else self.names[f[start[best]]]


@dataclass(frozen=True)
class ProjectContext:
    sample_ids: frozenset[str]  # every sample id of every dataset of the project
    cohort_size: int  # largest dataset's sample count
    chunks: ChunkIndex
    min_cell_count: int = 10
    max_image_pixels: int = 40_000_000
    flag_bytes: int = 5 * 1024 * 1024
    max_table_rows: int = 1_000_000


def load_context(layout, project: str, **limits) -> ProjectContext:
    """The one function that reads the disk: sample ids and files of the project's datasets (VCF Zarr stores)."""
    data = Path(layout.data(check_project(project)))
    ids, cohort, files = set(), 0, []
    stores = sorted(data.glob(f"*{DATASET_SUFFIX}")) if data.is_dir() else []
    for store in (s for s in stores if not s.name.startswith(".") and not s.is_symlink() and s.is_dir()):
        samples = zarr.open_array(store / "sample_id", mode="r")[:]
        ids.update(str(s) for s in samples)
        cohort = max(cohort, len(samples))
        for dirpath, dirs, names in os.walk(store):
            dirs.sort()
            files += [p for n in sorted(names) if not os.path.islink(p := os.path.join(dirpath, n))]
    return ProjectContext(frozenset(ids), cohort, ChunkIndex.build(files, root=data), **limits)


_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".svg": "SVG", ".pdf": "PDF",
             ".csv": "table", ".tsv": "table", ".txt": "text", ".md": "text", ".log": "text", ".json": "JSON",
             ".ipynb": "notebook"}  # fmt: skip
_MAGIC = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "GIF": (b"GIF87a", b"GIF89a"), "PDF": (b"%PDF-",)}
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_SVG_ROOT = re.compile(r"\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^[>]*(\[.*?\])?\s*>\s*)*<svg[\s>]", re.S)


def _text(data: bytes) -> str | None:
    """UTF-8 text (a BOM allowed) without NUL and with under 1% control characters, else None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text or len(_CONTROL.findall(text)) > len(text) // 100 else text


def _detect(path: str, data: bytes) -> tuple[str | None, str]:
    """(kind, what it is), or (None, why it is not allowed)."""
    suffix = os.path.splitext(path)[1].lower()
    if (want := _SUFFIXES.get(suffix)) is None:
        return None, f"'{suffix or os.path.basename(path)}' files are not among the allowed types"
    if want in _MAGIC:
        if not data.startswith(_MAGIC[want]):
            return None, f"its name says {want} but its content is not {want}"
        return ("pdf", "PDF document") if want == "PDF" else ("image", f"{want} image")
    if (text := _text(data)) is None:
        return None, f"its name says {suffix[1:]} but its content is not UTF-8 text"
    if want == "SVG":
        return ("image", "SVG image") if _SVG_ROOT.match(text) else (None, "its name says SVG but it is not an SVG")
    if want in ("JSON", "notebook"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return None, f"its name says {want} but its content is not valid JSON"
        if want == "JSON" or isinstance(doc, dict) and isinstance(doc.get("cells"), list):
            return ("text", "JSON text") if want == "JSON" else ("notebook", "Jupyter notebook")
        return None, "its name says notebook but it has no cells"
    return (want, f"{suffix[1:].upper()} table") if want == "table" else ("text", "UTF-8 text")


def file_kind(path: str, data: bytes) -> str | None:
    """ "image", "pdf", "table", "text", "notebook"; None: not an allowed type, or content not of its suffix."""
    return _detect(path, data)[0]


def _bytes(n: int) -> str:
    return next(
        (f"{n / s:.1f} {u}" for u, s in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)) if n >= s), f"{n} bytes"
    )


def _quote(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(f"'{n}'" for n in names[:limit]) + more


def _text_ids(text: str, ctx: ProjectContext) -> Check:
    chars = re.escape("".join(sorted(set().union(*ctx.sample_ids)))) or "\\x00"  # runs of these: candidate ids
    found = sorted({t for t in re.findall(f"[{chars}]+", text) if t in ctx.sample_ids and not t.isdigit()})
    detail = f"it names {len(found)} of the project's sample ids ({_quote(found)})"
    return _verdict("sample_ids", bool(found), detail, "it names none of the project's sample ids")


@functools.lru_cache(maxsize=65536)
def _number(s: str) -> int | bool | None:
    """An integer >= 0 (its value), another number (False), or not a number (None)."""
    if re.fullmatch(r"\d+(\.0*)?", s):
        return int(s.split(".")[0])
    return False if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s) else None


def _table_checks(path: str, text: str, ctx: ProjectContext) -> list[Check]:
    delimiter = "\t" if path.lower().endswith(".tsv") else max(",;\t|", key=text.split("\n", 1)[0].count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    cols: list[list] = []  # per column: distinct ids, id cells, non-empty cells, small counts, integers, other numbers
    rows, limit = 0, ctx.max_table_rows
    while batch := list(itertools.islice(reader, min(10_000, limit - rows))):
        rows += len(batch)
        for j, column in enumerate(itertools.zip_longest(*batch, fillvalue="")):
            c = cols[j] if j < len(cols) else cols.append([set(), 0, 0, 0, 0, 0]) or cols[j]
            for value, n in Counter(column).items():
                if s := value.strip():
                    number, is_id = _number(s), s in ctx.sample_ids
                    c[0].update([s] * is_id)
                    c[1], c[2], c[5] = c[1] + n * is_id, c[2] + n, c[5] + n * (number is False)
                    if number is not None and number is not False:
                        c[3], c[4] = c[3] + n * (0 < number < ctx.min_cell_count), c[4] + n
    name = [header[j] if j < len(header) and header[j] else f"column {j + 1}" for j in range(len(cols))]
    with_ids = [j for j, c in enumerate(cols) if len(c[0]) >= ID_HITS or c[1] and c[1] >= ID_SHARE * c[2]]
    in_header = [h for h in header if h in ctx.sample_ids]
    if with_ids:
        j = max(with_ids, key=lambda j: len(cols[j][0]))
        more = f", and {len(with_ids) - 1} more column(s) hold some" * (len(with_ids) > 1)
        ids = Check("sample_ids", FLAG, f"column '{name[j]}' holds {len(cols[j][0])} of the project's "
                                        f"{len(ctx.sample_ids)} sample ids{more}")  # fmt: skip
    else:
        ids = _verdict("sample_ids", len(in_header) >= ID_HITS, f"its header names {len(in_header)} sample ids",
                       "no column holds the project's sample ids")  # fmt: skip
    cut = f" (only the first {rows:,} were read)" * (rows >= limit)
    many = f"{rows:,} rows{cut}, at least {ROW_SHARE:.0%} of the cohort's {ctx.cohort_size:,} samples"
    size = _verdict("row_count", bool(ctx.cohort_size) and rows >= ROW_SHARE * ctx.cohort_size,
                    f"{many}: individual-level data is not an aggregate", f"{rows:,} rows")  # fmt: skip
    named = [(header[j] if j < len(header) else "").lower() or "unnamed" for j in range(len(cols))]
    words = [set(re.split(r"[^a-z0-9]+", n)) for n in named]
    counts = [j for j, c in enumerate(cols) if c[4] and not c[5] and not (words[j] & NOT_COUNTS)]
    small, m = [j for j in counts if cols[j][3]], ctx.min_cell_count
    detail = f"{sum(cols[j][3] for j in small)} cell(s) hold counts from 1 to {m - 1}, below the minimum of {m}"
    cells = _verdict("min_cell_count", bool(small), f"{detail}, in {_quote([name[j] for j in small])}",
                     f"no count below {m} in {len(counts)} count-like column(s)")  # fmt: skip
    return [ids, size, cells]


_Unreadable = type("_Unreadable", (Exception,), {"__doc__": "An input that cannot be read: refused."})


def _raster(kind: str, data: bytes) -> tuple[int, int, int, int]:
    """(width, height, text metadata bytes, bytes after the end) of a PNG (every CRC checked), JPEG or GIF."""
    pos, size, meta = (8 if kind == "PNG" else 2), None, 0
    while kind == "PNG" and pos + 12 <= len(data):
        (length,), ctype = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body, crc = data[pos + 8 : pos + 8 + length], data[pos + 8 + length : pos + 12 + length]
        if len(crc) < 4 or zlib.crc32(ctype + body) != struct.unpack(">I", crc)[0]:
            raise _Unreadable("the PNG is truncated or damaged (a chunk fails its checksum)")
        size = struct.unpack(">II", body[:8]) if ctype == b"IHDR" else size
        meta, pos = meta + length * (ctype in (b"tEXt", b"zTXt", b"iTXt", b"eXIf")), pos + 12 + length
        if ctype == b"IEND" and size:
            return *size, meta, len(data) - pos
    while kind == "JPEG" and pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:  # up to the scan
        marker, (length,) = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):
            size = struct.unpack(">HH", data[pos + 5 : pos + 9])[::-1]
        meta, pos = meta + length * (marker in (0xE1, 0xFE)), pos + 2 + length
    if kind == "JPEG" and size and pos + 4 <= len(data) and (end := data.rfind(b"\xff\xd9")) >= pos:
        return *size, meta, len(data) - end - 2
    if kind == "GIF" and len(data) >= 14 and data.endswith(b";"):
        return *struct.unpack("<HH", data[6:10]), 0, 0
    raise _Unreadable(f"the {kind} is truncated or damaged (no end marker, or no size)")


_SVG_ACTIVE = re.compile(
    r"(?i)<script|(?<![\w-])data:|<foreignObject|\son[a-z]+\s*=|<!ENTITY|href\s*=\s*[\"']\s*(https?:|file:|//)"
)


def _image_check(label: str, data: bytes, ctx: ProjectContext) -> Check:
    kind, problems = label.split()[0], []
    if kind == "SVG":
        width, height, text = 0, 0, _text(data) or ""  # vector: no pixels
        if active := sorted({m.group(0).split("=")[0].strip().lower() for m in _SVG_ACTIVE.finditer(text)}):
            problems.append(f"it embeds active content or data ({_quote(active)})")
    else:
        width, height, meta, after = _raster(kind, data)
        problems += [f"{_bytes(after)} follow the end of the image"] * (after > 16)
        problems += [f"it carries {_bytes(meta)} of text metadata"] * (meta > META_BYTES)
    if (pixels := int(width * height)) > ctx.max_image_pixels:
        problems.append(f"it is larger than {ctx.max_image_pixels / 1e6:g} megapixels")
    about = f"{label}, " + f"{width} × {height} pixels ({pixels / 1e6:.2f} megapixels), " * bool(pixels)
    about += _bytes(len(data))
    return _verdict("image", bool(problems), f"{about}: {'; '.join(problems)}", about)


def acro_results(data: bytes) -> dict | None:
    """An ACRO results.json as {output file basename: {status, summary, outcome, ...}}; None if it is not one."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        return None
    out = {}
    for uid, r in doc["results"].items():
        try:
            info = {"uid": uid, "status": str(r.get("status", "")), "summary": str(r.get("summary", "")),
                    "outcome": r.get("outcome"), "exception": str(r.get("exception") or ""),
                    "comments": [str(c) for c in r.get("comments") or []],
                    "method": str((r.get("properties") or {}).get("method", ""))}  # fmt: skip
            names = [os.path.basename(f["name"] if isinstance(f, dict) else f) for f in r["files"]]
        except (AttributeError, KeyError, TypeError):  # not an output record
            continue
        for name in names:
            if name and (name not in out or out[name]["status"] == "pass"):  # the worst verdict wins
                out[name] = info
    return out


def _acro_check(info: dict) -> Check:
    status, method = str(info.get("status") or "unknown"), info.get("method")
    said = " ".join(str(info.get("summary") or "").split()).rstrip(".")
    notes = [f"exception requested: {info['exception']}"] * bool(info.get("exception")) + [*info.get("comments", [])]
    detail = f"ACRO says {status}" + f" ({method})" * bool(method) + f": {said}" * bool(said)
    return Check("acro", PASS if status == "pass" else FLAG, (detail + "".join(f"; {n}" for n in notes))[:600])


def _guard(name: str, fn, *args) -> list[Check]:
    try:
        result = fn(*args)
        return result if isinstance(result, list) else [result]
    except (_Unreadable, csv.Error) as e:  # the service must not accept what nobody can read
        return [Check(name, REFUSE, f"unreadable: {e}")]
    except Exception as e:  # a bug, or an input nobody thought of: the reviewer looks by eye
        return [Check(name, FLAG, f"the check could not run ({type(e).__name__}: {e}); review by eye")]


def check_file(path: str, data: bytes, kind: str | None, ctx: ProjectContext, acro: dict | None = None) -> list[Check]:
    """Every check of one file. ``kind`` is :func:`file_kind`'s answer; the content decides. Never raises."""
    data, size = bytes(data), _bytes(len(data))
    out = [_verdict("size", len(data) > ctx.flag_bytes, f"{size}: large for a result (over {_bytes(ctx.flag_bytes)})",
                    size + ", empty" * (not data))]  # fmt: skip
    try:
        detected, what = _detect(path, data)
    except Exception as e:  # an input nobody thought of
        detected, what = None, f"its content could not be read ({type(e).__name__})"
    other = bool(kind) and kind != detected
    out.append(Check("type", REFUSE, f"not an allowed type: {what}") if detected is None else
               _verdict("type", other, f"{what}, though submitted as {kind}", what))  # fmt: skip
    found = ctx.chunks.match(data)  # numpy on bytes: nothing to raise
    how = "is byte-identical to" if hashlib.sha256(data).hexdigest() in ctx.chunks.identity else "holds a copy of"
    out.append(_verdict("dataset_copy", bool(found), f"the file {how} the dataset file {found}",
                        f"none of the project's {len(ctx.chunks.names)} dataset files is in it", REFUSE))  # fmt: skip
    text = _text(data) if detected in ("table", "text", "notebook") or what == "SVG image" else None
    if detected == "table":
        out += _guard("table", _table_checks, path, text, ctx)
    elif detected == "image":
        out += _guard("image", _image_check, what, data, ctx)
    if text is not None and detected != "table":
        out += _guard("sample_ids", _text_ids, text, ctx)
    if isinstance(info := acro.get(os.path.basename(path)) if isinstance(acro, dict) else None, dict):
        out += _guard("acro", _acro_check, info)
    return out
