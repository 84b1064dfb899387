"""Grants without races: ``PUT`` and ``DELETE /hub/api/datahavn/projects/<project>/grants/<user>``.

A grant is two things in JupyterHub: the group's membership and the record in its properties
(until, reason, who). Written by a client as two requests around a read of the whole
properties, two administrators granting at once could each write back the other's old
record: a time-limited grant lost its expiry, and a member without a record holds an
open-ended one. Here both change in one step of the hub's own event loop, with no await
between the read and the commit, so no other change can come between them; and the audit
record is written before the commit, so a grant the trail cannot record is not made.

The CLI (``datahavn grant``, ``datahavn revoke``) uses these; JupyterHub's own membership
routes (the admin page) still work and are recorded as they were.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from datahavn import grants as g
from datahavn.names import InvalidName, check_project, check_user

from .audit import hub as audit_hub

ROUTE = r"/api/datahavn/projects/([^/]+)/grants/([^/]+)"


class ProjectGrantHandler(APIHandler):
    def _find(self, group_name: str, user_name: str):
        from jupyterhub import orm

        try:
            check_project(group_name)
            check_user(user_name)
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None
        group = self.db.query(orm.Group).filter_by(name=group_name).one_or_none()
        if group is None or g.project_record(group.properties) is None:
            raise web.HTTPError(404, f"no such project {group_name!r}")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no such user {user_name!r}")
        return group, user

    def _commit_recorded(self, kind: str, **fields) -> None:
        try:
            audit_hub.record(kind, strict=True, **fields)
        except web.HTTPError:
            self.db.rollback()
            raise
        self.db.commit()

    @needs_scope("groups")
    async def put(self, group_name: str, member: str):
        """Grant (or renew) ``member`` access to ``group_name``: ``{"until": ..., "reason": ...}``.

        (``member``, not ``user_name``: the scope ``groups`` is checked on the group alone.)
        """
        body = self.get_json_body() or {}
        if not isinstance(body, dict) or set(body) - {"until", "reason"}:
            raise web.HTTPError(400, 'a grant is {"until": "YYYY-MM-DD or ISO time", "reason": "..."}')
        try:
            until = g.parse_until(body["until"]) if body.get("until") else None
        except g.InvalidGrant as e:
            raise web.HTTPError(400, str(e)) from None
        reason = str(body.get("reason") or "")[:1000]
        group, user = self._find(group_name, member)
        actor = self.current_user.name
        # read, change and commit in one step of the event loop: nothing can come in between
        group.properties = g.with_grant(group.properties, user.name, until, reason, by=actor)
        orm_user = user.orm_user if hasattr(user, "orm_user") else user
        if orm_user not in group.users:
            group.users.append(orm_user)
        grant = g.grant_status(group.name, group.properties, {u.name for u in group.users}, user.name)
        self._commit_recorded("grant", user=user.name, project=group.name, actor=actor,
                              detail={"until": grant.until, "reason": grant.reason})  # fmt: skip
        self.write(json.dumps(vars(grant)))

    @needs_scope("groups")
    async def delete(self, group_name: str, member: str):
        """Revoke the grant and stop the user's workspace of that project."""
        group, user = self._find(group_name, member)
        members = {u.name for u in group.users}
        before = g.grant_status(group.name, group.properties, members, user.name)
        if before.status == g.NONE or (before.status == g.REVOKED and user.name not in members):
            raise web.HTTPError(404, f"user {user.name!r} holds no grant for project {group.name!r}")
        actor = self.current_user.name
        orm_user = user.orm_user if hasattr(user, "orm_user") else user
        if orm_user in group.users:
            group.users.remove(orm_user)
        group.properties = g.with_revocation(group.properties, user.name, by=actor)
        self._commit_recorded("revoke", user=user.name, project=group.name, actor=actor,
                              detail={"was": before.status, "until": before.until})  # fmt: skip
        spawner = user.spawners.get(group.name) if hasattr(user, "spawners") else None
        if spawner is not None and (spawner.active or spawner.ready):
            await self.stop_single_user(user, group.name)
        after = g.grant_status(group.name, group.properties, {u.name for u in group.users}, user.name)
        self.write(json.dumps(vars(after)))
