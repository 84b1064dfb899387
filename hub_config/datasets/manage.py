"""Datasets of a project: importing a VCF/BCF into its data folder, listing, verifying.

Runs on the hub machine as root. An import is written into a root-only folder
inside the project's data folder, recorded in the audit trail, made read-only
to the project's group, and only then renamed into place: researchers never see
a half-written store, a failed import leaves nothing, and no dataset appears
without its audit record (if the record cannot be written, the import fails).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from pathlib import Path

from datahavn.admin import AdminError
from datahavn.grants import isoformat
from datahavn.names import DATASET_MANIFEST, check_project, dataset_store_name
from datahavn.names import DATASET_SUFFIX as SUFFIX
from datahavn.paths import Layout

from ..spawners import provision


class DatasetError(AdminError):
    """An import or listing that cannot be done (one line: why)."""


def store_path(layout: Layout, project: str, name: str) -> Path:
    return layout.data(check_project(project)) / dataset_store_name(name)


def _record(layout: Layout, event: dict, audit_url: str) -> None:
    """Append to the audit trail if this machine has one (its key exists)."""
    if not layout.audit_key.exists():
        return
    from ..audit.store import open_store

    try:
        open_store(layout, audit_url).append(event)
    except Exception as e:
        raise DatasetError(f"the audit trail cannot record the import, so it is not done ({e})") from None


def _lock_down(path: Path, gid: int) -> None:
    """root:<project group>, folders 2750 and files 0640: members read, nobody writes."""
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, 0, gid)
        os.chmod(dirpath, 0o2750)
        for f in files:
            os.chown(os.path.join(dirpath, f), 0, gid)
            os.chmod(os.path.join(dirpath, f), 0o640)


def _remove_abandoned(data: Path) -> None:
    """Staging folders of imports whose process is gone (killed, machine restarted)."""
    for path in data.glob(".import-*-*"):
        try:
            os.kill(int(path.name.split("-")[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def import_dataset(
    layout: Layout,
    project: str,
    name: str,
    source: str | os.PathLike,
    *,
    workers: int = 2,
    progress: bool = False,
    actor: str = "root",
    audit_url: str = "",
) -> dict:
    """Import ``source`` as dataset ``name`` of ``project``; returns its manifest."""
    from .convert import convert
    from .source import SourceError

    final = store_path(layout, project, name)
    source = Path(source)
    if os.geteuid() != 0:
        raise DatasetError("dataset import runs as root on the hub machine (it sets the project's ownership)")
    if final.exists():
        raise DatasetError(f"dataset {name} already exists in {project} (datasets are never overwritten)")
    if not source.is_file():
        raise DatasetError(f"{source}: no such file")
    try:
        gid = provision.ensure_project(layout, project)
    except provision.ProvisionError as e:
        raise DatasetError(str(e)) from None
    _remove_abandoned(layout.data(project))
    staging = layout.data(project) / f".import-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    event = {"kind": "dataset_import", "user": actor, "actor": actor, "project": project}
    try:
        store = staging / final.name
        try:
            about = {"name": name, "project": project, "imported_by": actor,
                     "imported_at": isoformat(dt.datetime.now(dt.UTC))}
            manifest = convert(source, store, workers=workers, progress=progress, about=about)
        except SourceError as e:
            _record(layout, {**event, "outcome": "error", "detail": {"dataset": name, "source": str(source),
                                                                     "error": str(e)}}, audit_url)
            raise DatasetError(f"{source}: {e}") from None
        _lock_down(store, gid)
        counts = manifest["counts"]
        _record(layout, {**event, "outcome": "ok", "detail": {
            "dataset": name, "source": str(source), "sha256": manifest["source"]["sha256"],
            "variants": counts["variants"], "samples": counts["samples"]}}, audit_url)
        try:
            os.rename(store, final)
        except OSError as e:
            raise DatasetError(f"cannot move the dataset into place: {e.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_manifest(store: Path) -> dict | None:
    try:
        return json.loads((store / DATASET_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def list_datasets(layout: Layout, project: str | None = None) -> list[dict]:
    projects = [check_project(project)] if project else sorted(
        p.name for p in layout.projects.iterdir() if p.is_dir()
    ) if layout.projects.is_dir() else []
    rows = []
    for p in projects:
        data = layout.data(p)
        if not data.is_dir():
            continue
        for store in sorted(data.glob(f"*{SUFFIX}")):
            m = read_manifest(store) or {}
            counts = m.get("counts", {})
            rows.append({
                "project": p,
                "name": store.name[: -len(SUFFIX)],
                "variants": counts.get("variants"),
                "samples": counts.get("samples"),
                "imported_at": m.get("imported_at"),
                "imported_by": m.get("imported_by"),
                "source_sha256": m.get("source", {}).get("sha256", "")[:12] or None,
                "manifest": bool(m),
            })
    return rows


def verify_dataset(layout: Layout, project: str, name: str) -> list[str]:
    """Arrays whose files no longer match the manifest's checksums (empty: all match)."""
    from .chunks import array_digest

    store = store_path(layout, project, name)
    m = read_manifest(store)
    if m is None:
        raise DatasetError(f"dataset {name} of {project} has no manifest")
    bad = []
    for group, arrays in (("", m["arrays"]), ("allele_index/", m.get("allele_index", {}))):
        for array, info in arrays.items():
            path = store / group / array
            if not path.is_dir() or array_digest(path) != info["sha256"]:
                bad.append(group + array)
    return bad
