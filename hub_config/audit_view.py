"""The audit trail page of datahavn-audit (``GET /``), rendered as one self-contained HTML document.

Pure and offline on purpose: no templates, no scripts, no fetched assets, so the page works in
an air-gapped deployment and its Content-Security-Policy can forbid every script. Every value
that comes from a record or a query is untrusted (user code, names, free text) and reaches the
markup only through :func:`_e`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from html import escape

from datahavn.audit_schema import KINDS

__all__ = ["render_page"]

HUB = "(hub)"  # the chart series (and project cell) of records that belong to no project
CODE_PREVIEW = 400  # characters of code (or of a long detail) shown inline
ALERT_KINDS = frozenset({"login_failed", "spawn_refused", "denied", "egress_alert"})
FILTERS = (
    ("user", "User", ""),
    ("project", "Project", ""),
    ("kind", "Kind", ""),
    ("since", "Since", "2026-11-01 or 2026-11-01T08:00Z"),
    ("until", "Until", "exclusive, UTC"),
    ("grep", "Text", "substring, any field"),
)
# Distinct at a glance and still readable for the common forms of colour blindness;
# the legend, titles and data-* attributes carry the same information as text anyway.
PALETTE = ("#3b6ea5", "#e07b39", "#4a9d5b", "#c0504d", "#8064a2",
           "#2a9fb8", "#9c6b30", "#d16ba5", "#7f9c2e", "#2f4b7c")  # fmt: skip
HUB_COLOUR = "#a0a0a0"

# Chart geometry, in viewBox units; the SVG scales to the page width.
W, H = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 28
MAX_BAR = 48  # a few days should not become a few slabs
X_LABELS = 10

CSS = """
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#333;background:#fff}
header.bar{display:flex;justify-content:space-between;align-items:center;padding:8px 16px;
 border-bottom:1px solid #e7e7e7;background:#f8f8f8}
.brand{font-weight:600;font-size:16px}
main{max-width:1200px;margin:0 auto;padding:0 16px 32px}
h1{font-size:24px;font-weight:500;margin:20px 0 4px}
.muted{color:#777}
form.filters{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:flex-end;margin:12px 0 16px;
 padding:10px 12px;background:#f5f5f5;border:1px solid #e3e3e3;border-radius:4px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
form.filters input{font:inherit;padding:4px 6px;border:1px solid #ccc;border-radius:3px;width:11em}
form.filters a{align-self:center}
button{font:inherit;padding:5px 14px;color:#fff;background:#f37524;border:1px solid #e16511;border-radius:3px}
figure{margin:0 0 16px}
ul.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:#777;padding:4px 0}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-top:1px solid #ddd}
thead th{border-bottom:2px solid #ddd;border-top:0}
tbody tr:nth-of-type(odd){background:#f9f9f9}
td.seq,td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
.kind.alert{color:#a94442;font-weight:600}
pre{margin:0;padding:6px;max-height:16em;overflow:auto;background:#f5f5f5;border:1px solid #ddd;
 border-radius:3px;font-size:12px;white-space:pre-wrap;word-break:break-all}
.kv{margin-right:10px}
.kv b{font-weight:600;color:#555}
"""


def _e(value: object) -> str:
    """Text or attribute value, escaped (quotes too: every attribute is double-quoted)."""
    return "" if value is None else escape(str(value), quote=True)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _project(row: Mapping) -> str:
    project = row.get("project")
    return HUB if project is None or project == "" else str(project)


def _day(value: object) -> str | None:
    """The UTC date of a record's time, or None when it has none we can read."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    try:  # naive times are UTC, as the store reads them
        return (t.astimezone(UTC) if t.tzinfo else t).date().isoformat()
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        return None


def _clip(text: str, limit: int = CODE_PREVIEW) -> tuple[str, str]:
    """(shown text, note): long values are cut so one huge record cannot swamp the page."""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"first {limit:,} of {len(text):,} characters"


def _number(value: object, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{_e(value)} {unit}"
    return f"{value:,} {unit}"


# -- chart ----------------------------------------------------------------------------------


def _nice_step(peak: int) -> int:
    """1, 2 or 5 times a power of ten, giving at most five gridlines above zero."""
    power = 1
    while True:
        for m in (1, 2, 5):
            if peak <= 5 * m * power:
                return m * power
        power *= 10


def _colours(projects: Iterable[str]) -> dict[str, str]:
    named = [p for p in projects if p != HUB]
    colours = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(named)}
    colours[HUB] = HUB_COLOUR
    return colours


def _chart(counts: Counter[tuple[str, str]]) -> str:
    """Stacked bars: one bar per day from the first to the last, one segment per project."""
    projects = sorted({p for p, _ in counts}, key=lambda p: (p == HUB, p))
    colours = _colours(projects)
    first = date.fromisoformat(min(d for _, d in counts))
    last = date.fromisoformat(max(d for _, d in counts))
    n_days = (last - first).days + 1  # days without events keep their place on the axis
    totals: Counter[str] = Counter()
    for (_, day), n in counts.items():
        totals[day] += n
    step = _nice_step(max(totals.values()))
    top = step * math.ceil(max(totals.values()) / step)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    base = TOP + plot_h
    slot = plot_w / n_days
    bar_w = min(slot * 0.8, MAX_BAR)

    out = [
        f'<svg id="activity-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" '
        f'role="img" aria-labelledby="activity-chart-title" font-size="10" fill="#555">',
        f'<title id="activity-chart-title">Events per day and project, {first} to {last} (UTC)</title>',
    ]
    for v in range(0, top + 1, step):
        y = base - v / top * plot_h
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.2f}" y2="{y:.2f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 3:.2f}" text-anchor="end">{v:,}</text>')
    every = math.ceil(n_days / X_LABELS)
    for i in range(0, n_days, every):
        x = LEFT + (i + 0.5) * slot
        out.append(f'<text x="{x:.2f}" y="{H - 10}" text-anchor="middle">{first + timedelta(days=i)}</text>')
    # Only days with events are drawn: a year of sparse activity stays a small document.
    for day in sorted(totals):
        x = LEFT + (date.fromisoformat(day) - first).days * slot + (slot - bar_w) / 2
        y = base
        for project in projects:
            n = counts.get((project, day))
            if not n:
                continue
            h = n / top * plot_h
            y -= h
            p = _e(project)
            out.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" fill="{colours[project]}" '
                f'data-project="{p}" data-day="{day}" data-count="{n}">'
                f"<title>{p} {day}: {_plural(n, 'event')}</title></rect>"
            )
    out.append("</svg>")

    per_project: Counter[str] = Counter()
    for (project, _), n in counts.items():
        per_project[project] += n
    legend = "".join(
        f'<li data-project="{_e(p)}"><span class="swatch" style="background:{colours[p]}"></span>'
        f'{_e(p)} <span class="muted">({per_project[p]:,})</span></li>'
        for p in projects
    )
    return "\n".join(out) + f'\n<ul class="legend" id="activity-legend">{legend}</ul>'


# -- table ----------------------------------------------------------------------------------


def _detail_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    shown, note = _clip(text)
    return _e(shown) + (f' <span class="muted">({note})</span>' if note else "")


def _detail(row: Mapping) -> str:
    kind = row.get("kind")
    parts: list[str] = []
    if kind == "execute":
        code = row.get("code")
        if code is None:
            parts.append('<span class="muted">(no code recorded)</span>')
        else:
            shown, note = _clip(str(code))
            parts.append(f"<pre>{_e(shown)}</pre>")
            if note:
                parts.append(f'<div class="muted note">{note}</div>')
        meta = []
        if row.get("code_sha256"):
            sha = str(row["code_sha256"])
            meta.append(f'sha256 <code title="{_e(sha)}">{_e(sha[:12])}</code>')
        for key in ("msg_type", "kernel_id", "path"):
            if row.get(key) is not None:
                meta.append(f"{key.replace('_', ' ')} {_e(row[key])}")
        if meta:
            parts.append(f'<div class="muted">{" · ".join(meta)}</div>')
    elif kind == "execute_reply":
        if row.get("status") is not None:
            parts.append(f'<span class="kv"><b>status</b> {_e(row["status"])}</span>')
        if row.get("duration_ms") is not None:
            parts.append(f'<span class="kv"><b>duration</b> {_number(row["duration_ms"], "ms")}</span>')
        if row.get("output_bytes") is not None:
            parts.append(f'<span class="kv"><b>output</b> {_number(row["output_bytes"], "bytes")}</span>')
    else:
        for key in ("outcome", "status"):
            if row.get(key) is not None:
                parts.append(f'<span class="kv"><b>{key}</b> {_e(row[key])}</span>')
        detail = row.get("detail")
        if isinstance(detail, Mapping):
            for key, value in detail.items():
                parts.append(f'<span class="kv"><b>{_e(key)}</b> {_detail_value(value)}</span>')
        elif detail is not None:
            parts.append(f'<span class="detail">{_detail_value(detail)}</span>')
    return "".join(parts)


def _row(row: Mapping) -> str:
    kind = row.get("kind")
    alert = " alert" if isinstance(kind, str) and kind in ALERT_KINDS else ""
    user, actor = row.get("user"), row.get("actor")
    who = _e(user if user is not None else actor)
    if actor is not None and user is not None and actor != user:
        who += f'<div class="muted">by {_e(actor)}</div>'
    project = row.get("project")
    project_cell = _e(project) if project not in (None, "") else f'<span class="muted">{HUB}</span>'
    return (
        f'<tr class="event" data-seq="{_e(row.get("seq"))}">'
        f'<td class="seq">{_e(row.get("seq"))}</td>'
        f'<td class="time">{_e(row.get("time"))}</td>'
        f'<td><span class="kind{alert}">{_e(kind)}</span></td>'
        f"<td>{who}</td><td>{project_cell}</td><td>{_detail(row)}</td></tr>"
    )


# -- page -----------------------------------------------------------------------------------


def _form(filters: Mapping, prefix: str) -> str:
    fields = []
    for name, label, placeholder in FILTERS:
        extra = f' placeholder="{placeholder}"' if placeholder else ""
        if name == "kind":
            extra += ' list="kinds"'  # suggestions without a script
        fields.append(f'<label>{label}<input type="text" name="{name}" value="{_e(filters.get(name))}"{extra}></label>')
    kinds = "".join(f'<option value="{k}">' for k in sorted(KINDS))
    return (
        f'<form class="filters" id="filters" method="get" action="{_e(prefix)}">{"".join(fields)}'
        f'<button type="submit">Filter</button><a href="{_e(prefix)}">Clear</a>'
        f'<datalist id="kinds">{kinds}</datalist></form>'
    )


def render_page(rows: list[dict], filters: dict, viewer: str, prefix: str) -> str:
    """The audit trail page: header, filter form, per-day chart per project, events newest first."""
    filters = filters or {}
    counts: Counter[tuple[str, str]] = Counter()
    undated = 0
    for row in rows:
        day = _day(row.get("time"))
        if day is None:
            undated += 1
        else:
            counts[(_project(row), day)] += 1

    if not rows:
        body = '<p id="no-events">No events match.</p>'
    else:
        chart = _chart(counts) if counts else ""
        if undated:
            chart += f'<p class="muted">{_plural(undated, "event")} without a readable time not charted.</p>'
        events = "\n".join(_row(r) for r in reversed(rows))  # rows come in seq order; auditors want the latest
        body = (
            f'<figure id="activity"><figcaption class="muted">Events per day (UTC) and project</figcaption>'
            f"{chart}</figure>\n"
            '<table id="events"><caption>Newest first.</caption>\n'
            "<thead><tr><th>Seq</th><th>Time (UTC)</th><th>Kind</th><th>User / actor</th><th>Project</th>"
            "<th>Detail</th></tr></thead>\n"
            f"<tbody>\n{events}\n</tbody></table>"
        )

    signed_in = f'<span>Signed in as <b id="viewer">{_e(viewer)}</b></span>'
    count = f'<span id="event-count">{len(rows):,}</span> {"event" if len(rows) == 1 else "events"}'
    summary = f"{count} shown, newest first." if rows else f"{count} shown."
    # The CSP is defence in depth: the page needs no script, so none may run even if escaping failed.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
img-src data:; form-action 'self'; base-uri 'none'">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Datahavn audit trail</title>
<style>{CSS}</style>
</head>
<body>
<header class="bar"><span class="brand">Datahavn</span>{signed_in}</header>
<main>
<h1>Datahavn audit trail</h1>
<p class="muted" id="summary">{summary}</p>
{_form(filters, prefix)}
{body}
</main>
</body>
</html>
"""
