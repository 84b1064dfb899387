"""Who a (user, project) is on Kubernetes: numeric ids derived from the names (pure).

A pod has no ``/etc/passwd`` to allocate from, so the ids are derived, stably,
from the names:

- uid = ``UID_MIN + sha256("datahavn <project>/<user>") mod UID_SPAN``: one per
  (user, project), the same on every start and in every pod of that pair (its
  server, its Dask scheduler and workers);
- gid = the project's ``gid`` from the chart, else ``GID_MIN + sha256("dh-<project>")
  mod GID_SPAN``, the project's group and the pods' only group.

A derived id can collide. The rule is therefore checked where a collision
would matter: gids across the configured projects when the settings load
(:meth:`.settings.KubeSettings.from_dict`), a uid against every other user the
project knows when a server starts (:func:`uid_clashes`); either refuses rather
than share an identity. The names themselves are :mod:`datahavn.names`' rule,
the same as on one machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from datahavn.names import account_gecos, account_name, check_project, check_user, project_group

#: Per-(user, project) uids: [UID_MIN, UID_MIN + UID_SPAN), below 2**31.
UID_MIN = 1_000_000
UID_SPAN = 1 << 30
#: Derived project gids: [GID_MIN, GID_MIN + GID_SPAN), apart from the uids.
GID_MIN = 100_000
GID_SPAN = 900_000


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def derived_gid(project: str) -> int:
    """The project's gid when the chart pins none."""
    return GID_MIN + _digest(project_group(project)) % GID_SPAN


def workspace_uid(user: str, project: str) -> int:
    """The uid of ``user``'s workspace (server and Dask) in ``project``."""
    return UID_MIN + _digest(account_gecos(check_user(user), check_project(project))) % UID_SPAN


@dataclass(frozen=True)
class Identity:
    """Who a (user, project) pod runs as."""

    user: str
    project: str
    account: str
    uid: int
    gid: int


def identity(user: str, project: str, gid: int) -> Identity:
    return Identity(user, project, account_name(user, project), workspace_uid(user, project), gid)


def uid_clashes(user: str, project: str, others: Iterable[str]) -> list[str]:
    """The other users of ``project`` whose workspace uid equals ``user``'s (should be none)."""
    uid = workspace_uid(user, project)
    return sorted(o for o in set(others) if o != user and workspace_uid(o, project) == uid)
