"""The hub's roles, one list for one machine and Kubernetes alike.

Researchers hold JupyterHub's ``self`` without ``tokens``: they cannot mint an API
token naming another of their workspaces (``access:servers!user`` covers all of a
person's servers, across projects) and carry it into this one's kernel. Tokens
come only from the hub, one per server.
"""

from __future__ import annotations

from datahavn.tokens import AUDIT_SCOPE

USER_SCOPES = [
    "read:users!user",
    "users:activity!user",
    "servers!user",
    "access:servers!user",
    "read:shares!user",
    "users:shares!user",
]


def hub_roles(auditors, auditor_services=()) -> list[dict]:
    """``user`` (researchers), the audit service's (no scopes) and ``datahavn-auditor``."""
    return [
        {"name": "user", "description": "Researchers: their own servers, no API tokens of their own",
         "scopes": list(USER_SCOPES)},
        # least privilege: the service identifies tokens through the hub and needs no scopes of its own
        {"name": "datahavn-audit", "scopes": [], "services": ["datahavn-audit"]},
        {"name": "datahavn-auditor", "scopes": [AUDIT_SCOPE, "access:services!service=datahavn-audit"],
         "users": list(auditors), "services": list(auditor_services)},
    ]
