"""Reading a requested file out of a workspace, safely, as root (the airlock service's I/O).

The workspace belongs to the researcher's account, and its kernel can change it at any moment:
swap a file for a symlink, a FIFO or a hard link to something it cannot read. So every component
of the path is opened with ``O_NOFOLLOW`` from the folder before it (never resolved by name), the
last one must be a regular file with one link, and what is read is what was checked. Paths are
relative to the workspace root; ``shared/...`` is the project's shared folder (the workspace's
root-owned link to it); ``data/...`` (the datasets) never leaves.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from datahavn.paths import Layout


class PathRefused(ValueError):
    """A path the airlock will not read, with a reason the researcher can act on."""


@dataclass(frozen=True)
class Read:
    path: str  # as requested, normalised
    data: bytes


def check_path(path: object) -> list[str]:
    """The components of a requested path, or :class:`PathRefused`."""
    if not isinstance(path, str) or not path:
        raise PathRefused("a file is a non-empty path relative to the workspace")
    if "\0" in path or "\\" in path:
        raise PathRefused(f"{path!r}: not a valid path")
    if path.startswith("/"):
        raise PathRefused(f"{path!r}: paths are relative to your workspace, not absolute")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PathRefused(f"{path!r}: no '..', '.' or empty parts; name the file inside your workspace")
    if parts[0] == "data":
        raise PathRefused(f"{path!r}: the project's datasets do not leave the airlock; export results made from them")
    return parts


def _open_under(root: str, parts: list[str], shown: str) -> int:
    """An fd of the regular file ``parts`` below ``root``, following no link on the way."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                raise PathRefused(f"{shown}: no such file") from None
            except OSError as e:
                # ELOOP: a symlink; ENOTDIR: a link or a file where a folder should be
                raise PathRefused(f"{shown}: not a plain file or folder of your workspace (links are refused)") from e
            os.close(fd)
            fd = nxt
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(f"{shown}: not a regular file")
        if st.st_nlink != 1:
            raise PathRefused(f"{shown}: a hard link; copy the file instead")
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_request_file(layout: Layout, user: str, project: str, path: str, max_bytes: int) -> Read:
    """The bytes of ``path`` in (user, project)'s workspace, at most ``max_bytes``, or :class:`PathRefused`."""
    parts = check_path(path)
    if parts[0] == "shared" and len(parts) > 1:
        root, parts = str(layout.shared(project)), parts[1:]
    else:
        root = str(layout.workspace(project, user))
    fd = _open_under(root, parts, path)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise PathRefused(f"{path}: {size:,} bytes is more than the airlock's limit of {max_bytes:,} bytes a file")
        chunks, total = [], 0
        while total <= max_bytes:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            chunks.append(block)
            total += len(block)
        if total > max_bytes:  # it grew while read
            raise PathRefused(f"{path}: more than the airlock's limit of {max_bytes:,} bytes a file")
        return Read(path, b"".join(chunks))
    finally:
        os.close(fd)


def strip_outputs(data: bytes) -> bytes:
    """A notebook with its code cells' outputs and counts removed (the code and text stay)."""
    try:
        nb = json.loads(data)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError):
        raise PathRefused("not a notebook that can be read") from None
    if not isinstance(cells, list):
        raise PathRefused("not a notebook that can be read")
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
