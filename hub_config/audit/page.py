"""The audit trail page of datahavn-audit (``GET /``): one self-contained HTML document.

The markup is ``templates/audit.html`` (Jinja2, autoescaping on: every value that comes
from a record or a query is untrusted, and none is marked safe). Python keeps what a
template should not: the chart's geometry and the shortening of long values. No scripts
and no fetched assets, so the page works in an air-gapped deployment and its
Content-Security-Policy can forbid every script.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import jinja2

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

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
)


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
        return f"{value} {unit}"
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


def chart_geometry(counts: Counter[tuple[str, str]]) -> dict:
    """Stacked bars: one bar per day from the first to the last, one segment per project."""
    projects = sorted({p for p, _ in counts}, key=lambda p: (p == HUB, p))
    colours = _colours(projects)
    first = date.fromisoformat(min(d for _, d in counts))
    last = date.fromisoformat(max(d for _, d in counts))
    n_days = (last - first).days + 1  # days without events keep their place on the axis
    totals: Counter[str] = Counter()
    per_project: Counter[str] = Counter()
    for (project, day), n in counts.items():
        totals[day] += n
        per_project[project] += n
    step = _nice_step(max(totals.values()))
    top = step * math.ceil(max(totals.values()) / step)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    base = TOP + plot_h
    slot = plot_w / n_days
    bar_w = min(slot * 0.8, MAX_BAR)
    grid = []
    for v in range(0, top + 1, step):
        y = base - v / top * plot_h
        grid.append({"x1": LEFT, "x2": W - RIGHT, "y": f"{y:.2f}", "label_x": LEFT - 6,
                     "label_y": f"{y + 3:.2f}", "label": f"{v:,}"})  # fmt: skip
    every = math.ceil(n_days / X_LABELS)
    days = [{"x": f"{LEFT + (i + 0.5) * slot:.2f}", "y": H - 10, "label": str(first + timedelta(days=i))}
            for i in range(0, n_days, every)]  # fmt: skip
    bars = []
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
            bars.append({"x": f"{x:.2f}", "y": f"{y:.2f}", "w": f"{bar_w:.2f}", "h": f"{h:.2f}", "count": n,
                         "colour": colours[project], "project": project, "day": day,
                         "title": _plural(n, "event")})  # fmt: skip
    legend = [{"project": p, "colour": colours[p], "count": f"{per_project[p]:,}"} for p in projects]
    return {"width": W, "height": H, "first": first, "last": last, "grid": grid, "days": days, "bars": bars,
            "legend": legend}  # fmt: skip


# -- table ----------------------------------------------------------------------------------


def _detail_value(value: object) -> tuple[str, str]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clip(text)


def _event(row: Mapping) -> dict:
    """What the template shows of one record."""
    kind, user, actor = row.get("kind"), row.get("user"), row.get("actor")
    project = row.get("project")
    out = {
        "seq": row.get("seq"), "time": row.get("time"), "kind": kind,
        "alert": isinstance(kind, str) and kind in ALERT_KINDS,
        "who": user if user is not None else actor,
        "by": actor if actor is not None and user is not None and actor != user else None,
        "project": None if project in (None, "") else project,
        "pairs": [], "text": None,
    }  # fmt: skip
    if kind == "execute":
        code = row.get("code")
        out["code"], out["code_note"] = _clip(str(code)) if code is not None else (None, "")
        out["sha"] = str(row["code_sha256"]) if row.get("code_sha256") else ""
        out["meta"] = [f"{key.replace('_', ' ')} {row[key]}" for key in ("msg_type", "kernel_id", "path")
                       if row.get(key) is not None]  # fmt: skip
    elif kind == "execute_reply":
        units = {"status": None, "duration_ms": ("duration", "ms"), "output_bytes": ("output", "bytes")}
        for key, unit in units.items():
            if row.get(key) is not None:
                label, value = (key, row[key]) if unit is None else (unit[0], _number(row[key], unit[1]))
                out["pairs"].append((label, value, ""))
    else:
        out["pairs"] = [(key, row[key], "") for key in ("outcome", "status") if row.get(key) is not None]
        detail = row.get("detail")
        if isinstance(detail, Mapping):
            out["pairs"] += [(key, *_detail_value(value)) for key, value in detail.items()]
        elif detail is not None:
            out["text"] = _detail_value(detail)
    return out


# -- page -----------------------------------------------------------------------------------


def _egress_rows(usage) -> list[dict]:
    out = []
    for u in usage or ():
        limits = u.get("limits") or {}
        cells = {}
        for window in ("hour", "day"):
            used, limit = u.get(window, 0), limits.get(window)
            share = f" ({100 * used / limit:.0f} %)" if limit else ""
            shown = f"{used / 1e6:,.1f} MB"
            cells[window] = f"{shown} of {limit / 1e6:,.0f} MB{share}" if limit else shown
            cells[window + "_over"] = bool(limit and used >= limit)
        out.append({"user": u.get("user"), "project": u.get("project"), **cells})
    return out


class FilterError(ValueError):
    """A filter value the page cannot use (answered with 400 and this message)."""


def check_filters(get) -> dict:
    """The page's filters from ``get(name)`` (a request's arguments), checked; raises :class:`FilterError`."""
    from datahavn.names import InvalidName, check_project, check_user

    from .store import format_time

    args = {name: (get(name) or "").strip() or None for name, _, _ in FILTERS}
    for name, check in (("user", check_user), ("project", check_project)):
        if args[name] is not None:
            try:
                check(args[name])
            except InvalidName as e:
                raise FilterError(f"{name.capitalize()}: {e}") from None
    if args["kind"] is not None and args["kind"] not in KINDS:
        raise FilterError(f"Kind: {args['kind']!r} is not an event kind (one of {', '.join(sorted(KINDS))})")
    for name in ("since", "until"):
        if args[name] is not None:
            try:
                format_time(args[name].replace("Z", "+00:00"))
            except ValueError:
                raise FilterError(f"{name.capitalize()}: {args[name]!r} is not a date or time "
                                  "(use 2026-11-01 or 2026-11-01T08:00Z)") from None  # fmt: skip
    return args


def render_page(rows: list[dict], filters: dict, viewer: str, prefix: str, usage=(), *,
                counts: Mapping | None = None, older: int | None = None, paged: bool = False,
                hub_home: str = "/hub/home") -> str:  # fmt: skip
    """The audit trail page: header, filter form, egress per workspace, per-day chart per project, events.

    ``rows``: the page's events in seq order. ``counts`` ((project, day) -> n): the chart of the whole
    filtered set, counted by the store (else the rows are counted); ``older``: the seq below which the
    next page starts, if there is one; ``paged``: this is not the newest page.
    """
    filters = filters or {}
    undated = 0
    if counts is not None:
        chart_counts = Counter({(HUB if p in (None, "") else str(p), d): n for (p, d), n in counts.items()})
    else:
        chart_counts = Counter()
        for row in rows:
            day = _day(row.get("time"))
            if day is None:
                undated += 1
            else:
                chart_counts[(_project(row), day)] += 1
    total = sum(chart_counts.values()) + undated
    query = "&".join(f"{k}={quote(str(v))}" for k, v in filters.items() if v)
    page_link = f"{prefix}?{query}&" if query else f"{prefix}?"
    return _env.get_template("audit.html").render(
        rows=rows,
        viewer=viewer,
        prefix=prefix,
        hub=HUB,
        kinds=sorted(KINDS),
        filters=[
            {"name": n, "label": label, "placeholder": ph, "value": filters.get(n) or ""} for n, label, ph in FILTERS
        ],  # fmt: skip
        chart=chart_geometry(chart_counts) if chart_counts else None,
        undated=_plural(undated, "event") if undated else "",
        total=total,
        older_link=f"{page_link}before={older}" if older is not None else "",
        newest_link=prefix + (f"?{query}" if query else "") if paged else "",
        hub_home=hub_home,
        # rows come in seq order; auditors want the latest first
        events=[_event(r) for r in reversed(rows)],
        egress=_egress_rows(usage),
    )
