"""The airlock's pages (Jinja2, autoescaped; no scripts): the list, one request, a message.

What a checker reviews is rendered here, never run: tables as tables (the first rows), text as
text, notebooks as their cells' sources, images through the preview route (its own CSP).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jinja2

from .rules import REVIEW_ACTIONS, TRANSITIONS, Actor, may

__all__ = ["render_detail", "render_list", "render_message"]

PREVIEW_ROWS = 200
PREVIEW_CHARS = 200_000
LABELS = {"requested": "Requested", "under_review": "Under review", "approved": "Approved",
          "released": "Released", "rejected": "Rejected", "returned": "Returned for changes",
          "withdrawn": "Withdrawn"}  # fmt: skip

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
)


def _render(**values) -> str:
    values.setdefault("labels", LABELS)
    return _env.get_template("airlock.html").render(**values)


def render_list(rows: list[dict], actor: Actor, state: str | None, prefix: str) -> str:
    return _render(mode="list", rows=rows, viewer=actor.name, checker=actor.checker, state=state or "",
                   prefix=prefix, states=list(LABELS))  # fmt: skip


def actions_for(request: dict, actor: Actor) -> list[str]:
    """The buttons to show: what this actor may do to this request in its state."""
    return [a for a in (*REVIEW_ACTIONS, "release", "withdraw")
            if may(actor, request["user"], a) and (request["state"], a) in TRANSITIONS
            and not (a == "approve" and actor.name in request["approvals"])]  # fmt: skip


def _table(data: bytes, path: str) -> dict:
    text = data.decode("utf-8-sig", "replace")
    rows = []
    for i, row in enumerate(csv.reader(io.StringIO(text), delimiter="\t" if path.lower().endswith(".tsv") else ",")):
        if i > PREVIEW_ROWS:
            break
        rows.append(row)
    return {"kind": "table", "head": rows[0] if rows else [], "rows": rows[1:PREVIEW_ROWS + 1],
            "more": len(rows) > PREVIEW_ROWS}  # fmt: skip


def _notebook(data: bytes) -> dict:
    try:
        cells = [(c.get("cell_type", ""), "".join(c.get("source") or "")) for c in json.loads(data)["cells"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"kind": "text", "text": data[:PREVIEW_CHARS].decode("utf-8", "replace")}
    return {"kind": "notebook", "cells": cells}


def preview(f: dict, data: bytes | None) -> dict | None:
    if data is None:
        return {"kind": "image"} if f["kind"] == "image" else None
    if f["kind"] == "table":
        return _table(data, f["path"])
    if f["kind"] == "notebook":
        return _notebook(data)
    return {"kind": "text", "text": data[:PREVIEW_CHARS].decode("utf-8", "replace")}


def render_detail(request: dict, actor: Actor, previews: dict[int, bytes], prefix: str, xsrf: str) -> str:
    shown = may(actor, request["user"], "preview")
    files = [{**f, "preview": preview(f, previews.get(f["n"])) if shown else None} for f in request["files"]]
    return _render(mode="detail", r=request, files=files, viewer=actor.name, prefix=prefix, xsrf=xsrf,
                   actions=actions_for(request, actor),
                   can_download=request["state"] == "released" and may(actor, request["user"], "download"))  # fmt: skip


def render_message(status: int, message: str, prefix: str) -> str:
    return _render(mode="message", status=status, message=message, viewer="", prefix=prefix)
