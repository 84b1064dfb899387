"""The hub's roles, one list for one machine and Kubernetes alike.

Researchers hold JupyterHub's ``self`` without ``tokens``: they cannot mint an API
token naming another of their workspaces (``access:servers!user`` covers all of a
person's servers, across projects) and carry it into this one's kernel. Tokens
come only from the hub, one per server.
"""

from __future__ import annotations

from datahavn.tokens import AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE, CHECKER_GROUP, DASK_SCOPE

USER_SCOPES = [
    "read:users!user",
    "users:activity!user",
    "servers!user",
    "access:servers!user",
    "read:shares!user",
    "users:shares!user",
    # held so the hub may mint each workspace's Dask token (!server=<user>/<project>); no one else mints it
    f"{DASK_SCOPE}!user",
]
#: with an airlock, the researchers' way to its page: their own export requests, downloads once released
AIRLOCK_ACCESS = "access:services!service=datahavn-airlock"


def dask_gateway_role(service: str) -> dict:
    """The gateway's role: the projects' grants and whether each workspace runs (its clusters die with it).
    The tokens it checks it asks the hub about with themselves."""
    return {"name": f"datahavn-{service}" if not service.startswith("datahavn-") else service,
            "scopes": ["read:groups", "read:servers"], "services": [service]}  # fmt: skip


def hub_roles(auditors, auditor_services=(), checkers=None) -> list[dict]:
    """``user`` (researchers), the services' (no scopes), ``datahavn-auditor``, and with an airlock
    (``checkers`` not None) ``datahavn-airlock-checker``."""
    roles = [
        {
            "name": "user",
            "description": "Researchers: their own servers, no API tokens of their own",
            "scopes": [*USER_SCOPES, *([AIRLOCK_ACCESS] if checkers is not None else [])],
        },
        # least privilege: the service identifies tokens through the hub and needs no scopes of its own
        {"name": "datahavn-audit", "scopes": [], "services": ["datahavn-audit"]},
        {
            "name": "datahavn-auditor",
            "scopes": [AUDIT_SCOPE, "access:services!service=datahavn-audit"],
            "users": list(auditors),
            "services": list(auditor_services),
        },
    ]
    if checkers is not None:
        roles += [
            {"name": "datahavn-airlock", "scopes": [], "services": ["datahavn-airlock"]},
            {
                "name": "datahavn-airlock-checker",
                "description": "Output checkers: review airlock export requests",
                "scopes": [AIRLOCK_REVIEW_SCOPE, AIRLOCK_ACCESS],
                "users": list(checkers),
                "groups": [CHECKER_GROUP],
            },
        ]
    return roles
