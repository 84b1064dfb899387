"""What the hub's configuration is on every deployment, one machine or Kubernetes.

``jupyterhub_config.py`` (one machine) and ``kube_config.py`` (loaded by
zero-to-jupyterhub after its own) both call :func:`configure` and add only what
their platform needs. Lists and dicts that zero-to-jupyterhub may already have
filled (services, roles, scopes, tornado settings) are extended, never replaced.
"""

from __future__ import annotations

import os
import sys

from datahavn.tokens import AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE, CHECKER_GROUP, CUSTOM_SCOPES

from . import grants_api
from .airlock.home import exports_of
from .audit import hub as audit_hub
from .audit.store import AuditStore
from .projects import user_projects
from .roles import hub_roles

#: the hub's own writes wait this long for the store's lock, then fail (closed) rather than hang the hub
HUB_STORE_TIMEOUT = 5.0
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def existing(c, name: str, kind: type):
    """The value already set for ``JupyterHub.<name>`` (a list or dict), as a new one to add to."""
    hub = c.JupyterHub
    value = hub[name] if name in hub else kind()
    return kind(value) if isinstance(value, kind) else kind()


def audit_service(url: str, **fields) -> dict:
    """The ``datahavn-audit`` service entry: its page's OAuth token carries the auditor scope of who holds it."""
    return {"name": "datahavn-audit", "url": url, "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [AUDIT_SCOPE], **fields}  # fmt: skip


def airlock_service(url: str, **fields) -> dict:
    """The ``datahavn-airlock`` service entry: its page's OAuth token carries the checker and auditor scopes."""
    return {"name": "datahavn-airlock", "url": url, "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE], **fields}  # fmt: skip


def configure(c, *, spawner_class, poll_interval: int, store: AuditStore, audit: dict, auditors,
              auditor_services=(), services=(), roles=(), airlock: dict | None = None,
              checkers=()) -> None:  # fmt: skip
    """Datahavn's hub: one server per (user, project), the grant rule, the home page, roles, the audit trail.

    ``audit`` is the ``datahavn-audit`` service entry (:func:`audit_service`), ``airlock`` the
    ``datahavn-airlock`` one (:func:`airlock_service`, with ``checkers`` named in config);
    ``services`` and ``roles`` are the platform's own additions.
    """
    hub = c.JupyterHub
    # -- one server per (user, project): server name = project name
    hub.allow_named_servers = True
    hub.named_server_limit_per_user = 0
    hub.spawner_class = spawner_class
    hub.default_url = "/hub/home"
    hub.redirect_to_server = False
    c.Spawner.disable_user_config = True
    c.Spawner.default_url = "/lab"
    # The grant is re-checked at every poll: a revoked or expired grant stops the server.
    c.Spawner.poll_interval = poll_interval

    # -- the home page lists the user's projects
    hub.template_paths = [TEMPLATES]
    hub.template_vars = {
        # called for every page, the login page too (user is None there)
        "datahavn_projects": lambda user: user_projects(user.db, user.name) if user else [],
        # the user's export requests and their states (the airlock's tables, beside the audit store)
        "datahavn_exports": lambda user: exports_of(store.engine, user.name) if user and airlock else [],
    }

    # -- roles (roles.py): researchers cannot mint tokens; tokens come only from the hub, one per server
    hub.custom_scopes = {**existing(c, "custom_scopes", dict), **CUSTOM_SCOPES}
    hub.load_roles = [*existing(c, "load_roles", list),
                      *hub_roles(auditors, auditor_services, list(checkers) if airlock else None), *roles]  # fmt: skip
    if airlock:
        # the checkers' group, for `datahavn airlock checker add|remove` (strictly added: members stay)
        hub.load_groups = {**existing(c, "load_groups", dict), CHECKER_GROUP: {"users": []}}

    # -- grants in one step (no lost update between two administrators), recorded before they are made
    hub.extra_handlers = [*existing(c, "extra_handlers", list), (grants_api.ROUTE, grants_api.ProjectGrantHandler)]

    # -- the audit trail: a service owns the store; the hub records its own events into the same sequence,
    #    and a change the store cannot take is not made (503)
    hub.services = [*existing(c, "services", list), audit, *([airlock] if airlock else []), *services]
    audit_hub.configure(store)
    audit_hub.install_fail_closed()
    hub.tornado_settings = {**existing(c, "tornado_settings", dict), "log_function": audit_hub.log_function}


def python_module(module: str) -> list[str]:
    """The command running ``module`` with the hub's own Python."""
    return [sys.executable, "-m", module]
