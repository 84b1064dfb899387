"""What the airlock does, whoever asks (page, API, CLI): submit, review, release, download.

Synchronous and free of HTTP, so one set of rules serves every route. Each step is checked
against :mod:`.rules`, committed together with its audit records (:mod:`.store`), and a step
that is refused is itself recorded: ``denied`` for who may not, ``airlock_refused`` for what
cannot be (a state, a path, a copied dataset file).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from datahavn.paths import Layout

from ..audit.store import AuditStore
from . import checks as checks_mod
from .rules import Actor, Refused, check_role, next_state
from .snapshot import PathRefused, read_request_file, strip_outputs
from .store import RequestStore, SnapshotMismatch, files_digest, new_id, now

OUTPUT_TYPES = ("figure", "table", "text", "notebook", "other")
MAX_JUSTIFICATION = 5000


@dataclass
class Limits:
    max_files: int = 20
    max_file_bytes: int = 20_000_000
    max_request_bytes: int = 50_000_000
    notebook_outputs: bool = False  # notebooks leave with their outputs stripped unless configured
    min_cell_count: int = 10
    context_seconds: float = 300.0  # how long a project's sample ids and chunk index are reused


@dataclass
class Desk:
    layout: Layout
    audit: AuditStore
    requests: RequestStore
    limits: Limits = field(default_factory=Limits)
    load_context: Callable = checks_mod.load_context
    _contexts: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- records

    def _event(self, kind: str, request: dict, actor: str, outcome: str = "ok", **detail) -> dict:
        files = [{"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in request.get("files", [])]
        return {"schema": 1, "kind": kind, "user": request.get("user"), "actor": actor,
                "project": request.get("project"), "outcome": outcome,
                "detail": {"request": request.get("id"), "files": files, **detail}}  # fmt: skip

    def refuse(self, kind: str, request: dict, actor: str, error: Refused | PathRefused, action: str) -> None:
        """Record a refusal (``denied`` or ``airlock_refused``); raises if the trail cannot take it."""
        status = getattr(error, "status", 400)
        self.audit.append(self._event(kind, request, actor, "refused", action=action, reason=str(error),
                                      status=status))  # fmt: skip

    def _denied(self, actor: Actor, request: dict, action: str, error: Refused) -> Refused:
        self.refuse("denied" if error.status == 403 else "airlock_refused", request, actor.name, error, action)
        return error

    # -- submit (a workspace's server, with its own token: who and where come from the token)

    def _context(self, project: str):
        with self._lock:
            hit = self._contexts.get(project)
            if hit and time.monotonic() - hit[0] < self.limits.context_seconds:
                return hit[1]
        ctx = self.load_context(self.layout, project, min_cell_count=self.limits.min_cell_count)
        with self._lock:
            self._contexts[project] = (time.monotonic(), ctx)
        return ctx

    def submit(self, user: str, project: str, payload: object) -> dict:
        base = {"user": user, "project": project, "id": None, "files": []}
        try:
            paths, justification, output_type = self._payload(payload)
            blobs = self._read(user, project, paths)
        except (Refused, PathRefused) as e:
            self.refuse("airlock_refused", base, user, e, "request")
            raise Refused(getattr(e, "status", 400), str(e)) from None
        files = self._checked(blobs, self._context(project))
        error = refusal(files)
        if error is not None:
            self.refuse("airlock_refused", {**base, "files": files}, user, error, "request")
            raise error
        request_id = new_id()
        t = now()
        row = {"id": request_id, "user": user, "project": project, "state": "requested",
               "justification": justification, "output_type": output_type,
               "digest": files_digest((f["path"], f["sha256"]) for f in files), "created": t, "updated": t}  # fmt: skip
        request = {**row, "files": files}
        staging = self.requests.stage(request_id, [d for _, d in blobs])
        try:
            with self.audit.write_transaction() as conn:
                dup = self.requests.open_duplicate(conn, user, project, row["digest"])
                if dup:
                    raise Refused(409, f"these files are already requested for export as {dup}")
                self.requests.create(conn, row, files, staging)
                events = [self._event("airlock_request", request, user, state="requested",
                                      justification=justification, output_type=output_type)]  # fmt: skip
                events += [self._event("airlock_check", {**request, "files": [f]}, "datahavn-airlock",
                                       checks=f["checks"]) for f in files]  # fmt: skip
                self.audit.append_many(events, conn=conn)
        except Refused as e:
            self.requests.discard(staging)
            self.refuse("airlock_refused", request, user, e, "request")
            raise
        except BaseException:
            # nothing is left behind: not the staged files, not a snapshot whose rows did not commit
            self.requests.discard(staging)
            self.requests.discard(self.requests.folder / request_id)
            raise
        return self.requests.get(request_id)

    def _payload(self, payload: object) -> tuple[list[str], str, str]:
        if not isinstance(payload, dict):
            raise Refused(400, 'a request is a JSON object: {"files": [...], "justification": "..."}')
        unknown = set(payload) - {"files", "justification", "output_type"}
        if unknown:
            raise Refused(400, f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
        paths = payload.get("files")
        if not isinstance(paths, list) or not paths:
            raise Refused(400, "files is a list of one or more paths relative to your workspace")
        if len(paths) > self.limits.max_files:
            raise Refused(400, f"at most {self.limits.max_files} files a request")
        if len({str(p) for p in paths}) != len(paths):
            raise Refused(400, "a file is named twice")
        justification = payload.get("justification")
        if not isinstance(justification, str) or not justification.strip():
            raise Refused(400, "a justification is required: say what the files are and why they may leave")
        if len(justification) > MAX_JUSTIFICATION:
            raise Refused(400, f"the justification is longer than {MAX_JUSTIFICATION} characters")
        output_type = payload.get("output_type", "other")
        if output_type not in OUTPUT_TYPES:
            raise Refused(400, f"output_type is one of {', '.join(OUTPUT_TYPES)}")
        return paths, justification.strip(), output_type

    def _read(self, user: str, project: str, paths: list[str]) -> list[tuple[str, bytes]]:
        out, total = [], 0
        for path in paths:
            data = read_request_file(self.layout, user, project, path, self.limits.max_file_bytes).data
            if not self.limits.notebook_outputs and checks_mod.file_kind(path, data) == "notebook":
                data = strip_outputs(data)
            total += len(data)
            if total > self.limits.max_request_bytes:
                raise PathRefused(f"the files come to more than {self.limits.max_request_bytes:,} bytes a request")
            out.append((path, data))
        return out

    @staticmethod
    def _checked(blobs: list[tuple[str, bytes]], ctx) -> list[dict]:
        """Each file as stored: its hash, type and automatic checks (ACRO's verdicts if its results came along)."""
        acro = next((r for _, d in blobs if (r := checks_mod.acro_results(d)) is not None), None)
        files = []
        for path, data in blobs:
            kind = checks_mod.file_kind(path, data)
            found = checks_mod.check_file(path, data, kind, ctx, acro=acro)
            files.append({"n": len(files), "path": path, "size": len(data), "kind": kind or "",
                          "sha256": hashlib.sha256(data).hexdigest(),
                          "checks": [c.as_dict() for c in found]})  # fmt: skip
        return files

    # -- people: view, review, release, download

    def _get(self, actor: Actor, request_id: str, action: str) -> dict:
        request = self.requests.get(request_id) if isinstance(request_id, str) else None
        if request is None:
            error = Refused(404, f"no export request {request_id!r}")
            self.refuse("airlock_refused", {"id": str(request_id)}, actor.name, error, action)
            raise error
        try:
            check_role(actor, request["user"], action)
        except Refused as e:
            raise self._denied(actor, request, action, e) from None
        return request

    def view(self, actor: Actor, request_id: str) -> dict:
        request = self._get(actor, request_id, "view")
        self.audit.append(self._event("airlock_view", request, actor.name, state=request["state"]))
        return request

    def visible(self, actor: Actor, project: str | None = None, state: str | None = None) -> list[dict]:
        """The requests ``actor`` may see: their own; every one for checkers and auditors."""
        mine_only = not (actor.checker or actor.auditor)
        return self.requests.list(user=actor.name if mine_only else None, project=project, state=state)

    def act(self, actor: Actor, request_id: str, action: str, comment: str = "") -> dict:
        if not isinstance(comment, str):
            comment = ""
        request = self._get(actor, request_id, action)
        try:
            with self.audit.write_transaction() as conn:
                current = self.requests.get(request_id, conn=conn, lock=True)
                after = next_state(current["state"], action, actor, current["user"], current["approvals"], comment)
                self.requests.move(conn, request_id, after, actor.name, action, comment.strip())
                kind = "airlock_release" if action == "release" else "airlock_review"
                self.audit.append_many([self._event(kind, current, actor.name, action=action, comment=comment.strip(),
                                                    state=after, before=current["state"])], conn=conn)  # fmt: skip
        except Refused as e:
            raise self._denied(actor, request, action, e) from None
        return self.requests.get(request_id)

    def file(self, actor: Actor, request_id: str, n: object, purpose: str) -> tuple[dict, bytes]:
        """A snapshot file: ``purpose`` "download" (released requests) or "preview" (checkers, to review)."""
        request = self._get(actor, request_id, purpose)
        try:
            if purpose == "download" and request["state"] != "released":
                raise Refused(409, f"a request that is {request['state'].replace('_', ' ')} cannot be downloaded")
            try:
                f = request["files"][int(n)]
            except (ValueError, TypeError, IndexError):
                raise Refused(404, f"request {request_id} has no file {n!r}") from None
        except Refused as e:
            raise self._denied(actor, request, purpose, e) from None
        try:
            data = self.requests.read_snapshot(request, f["n"])
        except SnapshotMismatch as e:
            self.refuse("airlock_refused", {**request, "files": [f]}, actor.name, Refused(500, str(e)), purpose)
            raise Refused(500, f"{e}: the download is refused, and this is recorded") from None
        if purpose == "download":
            self.audit.append(self._event("airlock_download", {**request, "files": [f]}, actor.name))
        return f, data


#: the checks that refuse a request outright, the most telling reason first
REFUSING = {
    "dataset_copy": "{path}: a copy of the dataset file ({detail}); datasets do not leave the project",
    "type": "{path}: not a type the airlock takes (images, PDF, CSV/TSV, text, Markdown, JSON, notebooks), "
    "or its content does not match its name ({detail})",
}


def refusal(files: list[dict]) -> Refused | None:
    """Why the automatic checks refuse these files, or None."""
    found = [(f, c) for f in files for c in f["checks"] if c["verdict"] == "refuse"]
    if not found:
        return None
    order = list(REFUSING)
    f, c = min(found, key=lambda fc: order.index(fc[1]["name"]) if fc[1]["name"] in order else len(order))
    text = REFUSING.get(c["name"], "{path}: refused by the automatic checks: {detail}")
    return Refused(400, text.format(path=f["path"], detail=c["detail"]))
