"""Projects and grants read from the hub's own database (the hub side of the grant rule)."""

from __future__ import annotations

from jupyterhub import orm

from datahavn.grants import Grant, grant_status, project_record


def project_group(db, project: str) -> orm.Group | None:
    """The project's JupyterHub group, or None."""
    return db.query(orm.Group).filter_by(name=project).one_or_none()


def check_grant(db, username: str, project: str) -> Grant:
    """Does ``username`` hold a current grant for ``project``? Read from the hub DB."""
    group = project_group(db, project)
    if group is None:
        return grant_status(project, None, set(), username)
    return grant_status(project, group.properties, {u.name for u in group.users}, username)


def project_users(db, project: str) -> set[str]:
    """Everyone the project knows: its members and whoever its grant record names (revoked too)."""
    group = project_group(db, project)
    if group is None:
        return set()
    record = project_record(group.properties) or {}
    return {u.name for u in group.users} | set(record.get("grants") or {})


def user_projects(db, username: str) -> list[dict]:
    """The projects a user is a member of, with their grant, for the home page."""
    user = orm.User.find(db, username)
    if user is None:
        return []
    out = []
    for group in sorted(user.groups, key=lambda g: g.name):
        record = project_record(group.properties)
        if record is None:
            continue
        grant = grant_status(group.name, group.properties, {u.name for u in group.users}, username)
        out.append({"name": group.name, "description": record.get("description", ""), "grant": grant})
    return out
