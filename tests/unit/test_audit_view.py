"""The audit trail page (datahavn.hub_config.audit.page.render_page): a pure function, so no hub is needed."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from datahavn.hub_config.audit.page import CODE_PREVIEW, HUB, render_page

PREFIX = "/services/datahavn-audit/"
SVG = "{http://www.w3.org/2000/svg}"
# Breaks out of text, attributes, <pre>, <title>, <svg> and CDATA if anything is left unescaped.
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)></pre></title></svg>]]>&amp;"
SAFE_TAGS = {
    "html", "head", "meta", "link", "title", "style", "body", "header", "main", "span", "b", "h1", "p", "form",
    "label", "input", "button", "a", "datalist", "option", "figure", "figcaption", "svg", "line", "text", "rect",
    "ul", "li", "table", "caption", "thead", "tbody", "tr", "th", "td", "div", "pre", "code",
}  # fmt: skip
VOID = {"meta", "link", "input", "br", "img", "option"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    def find(self, tag: str, **attrs: str) -> Node | None:
        return next((n for n in self.iter(tag) if all(n.attrs.get(k) == v for k, v in attrs.items())), None)


class TreeBuilder(HTMLParser):
    """Just enough of a DOM to look at the page as a browser would (entities decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.tags.append((tag, node.attrs))
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(page: str) -> TreeBuilder:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder


def svg_of(page: str) -> ET.Element:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def bars(page: str) -> dict[tuple[str, str], int]:
    found = {}
    for rect in svg_of(page).iter(f"{SVG}rect"):
        key = (rect.get("data-project"), rect.get("data-day"))
        assert key not in found, key
        found[key] = int(rect.get("data-count"))
    return found


def event(seq: int, time: str, kind: str = "login", **fields) -> dict:
    return {"seq": seq, "time": time, "kind": kind, "user": "alice", **fields}


def test_complete_page_with_header():
    rows = [event(1, "2026-11-29T14:03:46.123456Z", project="brca"), event(2, "2026-11-29T15:00:00.000000Z")]
    page = render_page(rows, {}, "admin", PREFIX)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    doc = parse(page).root
    assert doc.find("meta", charset="utf-8") is not None
    assert "Datahavn audit trail" in doc.find("h1").text()
    assert doc.find("b", id="viewer").text() == "admin"
    assert doc.find("span", id="event-count").text() == "2"
    assert "newest first" in doc.find("p", id="summary").text()
    page.encode("utf-8")  # no lone surrogates or the like


def test_hostile_content_is_inert_in_every_field_and_filter():
    every_field = {
        key: HOSTILE
        for key in ("user", "actor", "project", "server", "kernel_id", "msg_type", "path", "code", "code_sha256",
                    "status", "duration_ms", "output_bytes", "outcome", "hash")
    }  # fmt: skip
    rows = [
        {"seq": HOSTILE, "time": HOSTILE, "kind": HOSTILE, "detail": HOSTILE, **every_field},
        {"seq": 2, "time": "2026-11-29T10:00:00Z", "kind": "execute", **every_field},
        {"seq": 3, "time": "2026-11-29T11:00:00Z", "kind": "execute_reply", **every_field},
        {"seq": 4, "time": "2026-11-29T12:00:00Z", "kind": "denied", "detail": {HOSTILE: HOSTILE}, **every_field},
        {"seq": 5, "time": "2026-11-29T13:00:00Z", "kind": "egress_alert", "detail": [HOSTILE], **every_field},
    ]
    filters = dict.fromkeys(("user", "project", "kind", "since", "until", "grep"), HOSTILE)
    page = render_page(rows, filters, HOSTILE, PREFIX + HOSTILE)

    assert "<script" not in page.lower() and "<img" not in page.lower()
    tree = parse(page)
    assert {tag for tag, _ in tree.tags} <= SAFE_TAGS
    for _, attrs in tree.tags:
        assert not any(name.startswith("on") for name in attrs)
    doc = tree.root
    # The hostile text is shown as text, exactly, where it belongs.
    assert doc.find("b", id="viewer").text() == HOSTILE
    form = doc.find("form", id="filters")
    assert form.attrs["action"] == PREFIX + HOSTILE
    assert all(i.attrs["value"] == HOSTILE for i in form.iter("input"))
    assert len(list(doc.iter("tr"))) == 1 + len(rows)
    assert HOSTILE in doc.find("pre").text()
    # The chart is still well-formed XML and carries the project name intact.
    chart = svg_of(page)
    assert {r.get("data-project") for r in chart.iter(f"{SVG}rect")} == {HOSTILE}
    titles = [r.find(f"{SVG}title").text for r in chart.iter(f"{SVG}rect")]
    assert titles == [f"{HOSTILE} 2026-11-29: 4 events"]
    assert doc.find("li", **{"data-project": HOSTILE}) is not None


def test_chart_has_one_bar_per_project_and_day_with_its_count():
    rows = [
        *(event(i, f"2026-11-29T0{i}:00:00.000000Z", project="brca") for i in range(1, 4)),
        event(4, "2026-11-29T09:00:00Z", project="cardio"),
        event(5, "2026-11-29T23:59:59.999999Z", project="cardio"),
        event(6, "2026-11-30T08:00:00Z", project="brca"),
        event(7, "2026-11-30T08:00:00Z", project=None),
        event(8, "2026-12-01T01:00:00+02:00"),  # 23:00 UTC the day before
        event(9, "2026-12-03T12:00:00Z", kind="spawn", project="brca"),  # 12-02 has no events
        event(10, "not a time", project="brca"),  # listed, not charted
    ]
    page = render_page(rows, {}, "admin", PREFIX)
    assert bars(page) == {
        ("brca", "2026-11-29"): 3,
        ("cardio", "2026-11-29"): 2,
        ("brca", "2026-11-30"): 1,
        (HUB, "2026-11-30"): 2,
        ("brca", "2026-12-03"): 1,
    }
    chart = svg_of(page)
    assert chart.get("id") == "activity-chart"
    rects = list(chart.iter(f"{SVG}rect"))
    for rect in rects:
        n = int(rect.get("data-count"))
        word = "event" if n == 1 else "events"
        assert rect.find(f"{SVG}title").text == f"{rect.get('data-project')} {rect.get('data-day')}: {n} {word}"
    # Stacked: a day's segments share x, heights are proportional to counts, and they do not overlap.
    scale = {round(float(r.get("height")) / int(r.get("data-count")), 1) for r in rects}
    assert len(scale) == 1
    day29 = sorted((r for r in rects if r.get("data-day") == "2026-11-29"), key=lambda r: float(r.get("y")))
    assert len({r.get("x") for r in day29}) == 1
    assert float(day29[0].get("y")) + float(day29[0].get("height")) <= float(day29[1].get("y")) + 0.01
    # The axis keeps days without events in their place: 12-03 is four slots after 11-29.
    x = {r.get("data-day"): float(r.get("x")) for r in rects}
    slot = x["2026-11-30"] - x["2026-11-29"]
    assert abs(x["2026-12-03"] - x["2026-11-29"] - 4 * slot) < 0.05

    doc = parse(page).root
    legend = doc.find("ul", id="activity-legend")
    assert [li.attrs["data-project"] for li in legend.iter("li")] == ["brca", "cardio", HUB]
    assert "1 event without a readable time" in page
    assert doc.find("span", id="event-count").text() == "10"


def test_a_year_of_days_stays_inside_the_chart():
    rows = [
        event(i + 1, f"{day}T12:00:00Z", project=("brca", "cardio")[i % 2])
        for i, day in enumerate(f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29))
    ] + [event(400, "2026-12-31T23:00:00Z", project="brca")]
    page = render_page(rows, {}, "admin", PREFIX)
    chart = svg_of(page)
    width = float(chart.get("viewBox").split()[2])
    rects = list(chart.iter(f"{SVG}rect"))
    assert len(rects) == len(rows)
    xs = [float(r.get("x")) for r in sorted(rects, key=lambda r: r.get("data-day"))]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert all(0 < float(r.get("width")) and float(r.get("x")) + float(r.get("width")) <= width for r in rects)
    day_labels = [t for t in chart.iter(f"{SVG}text") if t.text and t.text.startswith("2026-")]
    assert 2 <= len(day_labels) <= 12
    assert len(page) < 400_000


def test_no_rows():
    page = render_page([], {"user": None, "kind": "logout"}, "admin", PREFIX)
    doc = parse(page).root
    assert doc.find("p", id="no-events").text() == "No events match."
    assert "<svg" not in page
    assert not any(tr.attrs.get("class") == "event" for tr in doc.iter("tr"))
    assert doc.find("span", id="event-count").text() == "0"
    assert doc.find("form", id="filters") is not None


def test_rows_without_times_get_a_table_but_no_chart():
    page = render_page([{"seq": 1, "kind": "login"}, {}], {}, "admin", PREFIX)
    assert "<svg" not in page
    assert len([tr for tr in parse(page).root.iter("tr") if tr.attrs.get("class") == "event"]) == 2
    assert "2 events without a readable time" in page


def test_form_is_a_get_to_the_prefix_prefilled_with_the_filters():
    filters = {"user": "alice", "project": "brca", "kind": "execute", "since": "2026-11-01", "until": None,
               "grep": 'pd.read_csv("x & y")'}  # fmt: skip
    doc = parse(render_page([], filters, "admin", PREFIX)).root
    form = doc.find("form", id="filters")
    assert form.attrs["method"] == "get" and form.attrs["action"] == PREFIX
    values = {i.attrs["name"]: i.attrs["value"] for i in form.iter("input")}
    assert values == {**filters, "until": ""}
    assert form.find("button", type="submit") is not None
    # Missing filters are empty inputs, not "None".
    values = {i.attrs["name"]: i.attrs["value"] for i in parse(render_page([], {}, "a", PREFIX)).root.iter("input")}
    assert set(values.values()) == {""} and len(values) == 6


def test_table_rows_newest_first_with_kind_specific_detail():
    code = "import pandas as pd\nprint('<b>hi</b>')"
    rows = [
        event(1, "2026-11-29T10:00:00Z", "execute", project="brca", code=code, code_sha256=hashlib.sha256(
            code.encode()).hexdigest(), msg_type="execute_request"),
        event(2, "2026-11-29T10:00:01Z", "execute_reply", project="brca", status="ok", duration_ms=1234,
              output_bytes=56789),
        event(3, "2026-11-29T10:05:00Z", "grant", user="bob", actor="admin", project="brca", outcome="ok",
              detail={"until": "2027-01-01"}),
        event(4, "2026-11-29T10:06:00Z", "login_failed", user="mallory", detail="bad password"),
    ]  # fmt: skip
    doc = parse(render_page(rows, {}, "admin", PREFIX)).root
    trs = [tr for tr in doc.iter("tr") if tr.attrs.get("class") == "event"]
    assert [tr.attrs["data-seq"] for tr in trs] == ["4", "3", "2", "1"]
    cells = {tr.attrs["data-seq"]: [td.text() for td in tr.iter("td")] for tr in trs}
    assert all(len(c) == 6 for c in cells.values())
    assert cells["1"][:3] == ["1", "2026-11-29T10:00:00Z", "execute"]
    assert trs[3].find("pre").text() == code
    assert hashlib.sha256(code.encode()).hexdigest()[:12] in cells["1"][5]
    assert hashlib.sha256(code.encode()).hexdigest()[:13] not in trs[3].find("code").text()
    assert "ok" in cells["2"][5] and "1,234 ms" in cells["2"][5] and "56,789 bytes" in cells["2"][5]
    assert "bob" in cells["3"][3] and "by admin" in cells["3"][3]
    assert "until" in cells["3"][5] and "2027-01-01" in cells["3"][5] and "ok" in cells["3"][5]
    assert cells["4"][4] == HUB and cells["4"][5] == "bad password"


def test_long_code_is_truncated_with_its_full_length():
    code = "x = 1\n" * 1000 + "TAIL"
    rows = [event(1, "2026-11-29T10:00:00Z", "execute", code=code, code_sha256="f" * 64)]
    page = render_page(rows, {}, "admin", PREFIX)
    pre = parse(page).root.find("pre").text()
    assert pre == code[:CODE_PREVIEW]
    assert "TAIL" not in page
    assert f"{len(code):,} characters" in page
    # Short code has no note.
    short = render_page([event(1, "2026-11-29T10:00:00Z", "execute", code="1+1")], {}, "admin", PREFIX)
    assert "characters" not in short


def test_filters_are_checked_and_a_page_links_to_older_events_and_the_hub():
    from datahavn.hub_config.audit.page import FilterError, check_filters

    assert check_filters({"user": "alice", "since": "2026-11-01"}.get)["since"] == "2026-11-01"
    for bad, says in [({"since": "yesterday"}, "Since: 'yesterday' is not a date or time"),
                      ({"until": "2026-13-01"}, "Until: '2026-13-01' is not a date or time"),
                      ({"kind": "nope"}, "Kind: 'nope' is not an event kind"),
                      ({"user": "Bob/.."}, "User: "), ({"project": "x" * 100}, "Project: ")]:  # fmt: skip
        with pytest.raises(FilterError, match=re.escape(says)):
            check_filters(bad.get)
    rows = [event(i, f"2026-11-02T10:00:0{i}.000000Z", project="brca") for i in range(1, 4)]
    page = render_page(rows, {"user": "alice"}, "admin", PREFIX, counts={("brca", "2026-11-02"): 40,
                       (None, "2026-11-03"): 2}, older=1, paged=True, hub_home="/hub/home")  # fmt: skip
    assert 'id="event-total">42<' in page and "all 42 matching" in page
    assert f'id="older-page" href="{PREFIX}?user=alice&amp;before=1"' in page
    assert f'id="newest-page" href="{PREFIX}?user=alice"' in page
    assert 'id="hub-link" href="/hub/home"' in page
    assert 'data-count="40"' in page  # the chart is the store's count, not the three rows shown
