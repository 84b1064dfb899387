"""What administrators do, over the hub's REST API: users, projects, grants.

Shared by the CLI and the demo. Every function validates its arguments and
checks that what it refers to exists before it changes anything, so a bad
call changes nothing.
"""

from __future__ import annotations

import datetime as dt

from . import grants as g
from .hubclient import HubClient, HubError
from .names import check_project, check_user


class AdminError(RuntimeError):
    """A request an administrator made that cannot be carried out as asked."""


def add_user(hub: HubClient, name: str, exist_ok: bool = False) -> bool:
    """Add a hub user; returns False if it existed (and ``exist_ok``)."""
    check_user(name)
    if hub.user(name) is not None:
        if exist_ok:
            return False
        raise AdminError(f"user {name!r} already exists")
    hub.add_user(name)
    return True


def get_project(hub: HubClient, name: str) -> dict:
    check_project(name)
    group = hub.group(name)
    if group is None or g.project_record(group.get("properties")) is None:
        raise AdminError(f"no such project {name!r}")
    return group


def _user(hub: HubClient, name: str) -> dict:
    check_user(name)
    user = hub.user(name)
    if user is None:
        raise AdminError(f"no such user {name!r}")
    return user


def create_project(hub: HubClient, name: str, description: str = "", exist_ok: bool = False) -> bool:
    """Create a project (a JupyterHub group carrying a Datahavn record).

    Its unix group and folders are made by the hub when its first workspace starts.
    """
    check_project(name)
    group = hub.group(name)
    if group is not None:
        if g.project_record(group.get("properties")) is not None and exist_ok:
            return False
        what = "project" if g.project_record(group.get("properties")) else "JupyterHub group (not a project)"
        raise AdminError(f"a {what} named {name!r} already exists")
    hub.create_group(name, g.new_project_properties(description, by=hub.whoami()))
    return True


def list_projects(hub: HubClient) -> list[dict]:
    out = []
    for group in sorted(hub.groups(), key=lambda x: x["name"]):
        record = g.project_record(group.get("properties"))
        if record is None:
            continue
        current = [x for x in g.project_grants(group["name"], group["properties"], group["users"]) if x.current]
        out.append({
            "name": group["name"],
            "description": record.get("description", ""),
            "members": len(current),
            "created_by": record.get("created_by", ""),
            "created_at": record.get("created_at", ""),
        })  # fmt: skip
    return out


def grant(
    hub: HubClient,
    user: str,
    project: str,
    until: dt.datetime | None = None,
    reason: str = "",
) -> g.Grant:
    """Grant (or renew) ``user`` access to ``project``; the record names the acting admin.

    One request: the hub changes the membership and the record together, and records it.
    """
    _user(hub, user)
    get_project(hub, project)
    return g.Grant(**hub.put_grant(project, user, g.isoformat(until) if until else None, reason))


def revoke(hub: HubClient, user: str, project: str) -> g.Grant:
    """Revoke a grant and stop the user's running workspace for that project."""
    _user(hub, user)
    get_project(hub, project)
    try:
        return g.Grant(**hub.delete_grant(project, user))
    except HubError as e:
        if "HTTP 404" in str(e) and "holds no grant" in str(e):
            raise AdminError(f"user {user!r} holds no grant for project {project!r}") from None
        raise


def user_exists(hub: HubClient, name: str) -> bool:
    try:
        _user(hub, name)
    except AdminError:
        return False
    return True


def project_exists(hub: HubClient, name: str) -> bool:
    try:
        get_project(hub, name)
    except AdminError:
        return False
    return True


def list_grants(hub: HubClient, project: str | None = None, user: str | None = None) -> list[g.Grant]:
    if user is not None:
        _user(hub, user)
    groups = [get_project(hub, project)] if project is not None else hub.groups()
    out = []
    for group in groups:
        for entry in g.project_grants(group["name"], group.get("properties"), group.get("users", [])):
            if g.project_record(group.get("properties")) and (user is None or entry.user == user):
                out.append(entry)
    return sorted(out, key=lambda x: (x.project, x.user))


__all__ = [
    "AdminError",
    "HubError",
    "add_user",
    "create_project",
    "grant",
    "list_grants",
    "list_projects",
    "revoke",
]
