# Datahavn's JupyterHub configuration.
#
# Values come from the environment (see datahavn/hub_config/settings.py);
# `datahavn demo` sets them. Run by hand:
#     DATAHAVN_STATE_DIR=/srv/datahavn jupyterhub -f jupyterhub_config.py
import os
import sys
from importlib.resources import files

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

from datahavn.hub_config import audit_hub
from datahavn.hub_config.audit_service import AUDIT_SCOPE, open_store
from datahavn.hub_config.projects import user_projects
from datahavn.hub_config.provision import ensure_state
from datahavn.hub_config.roles import hub_roles
from datahavn.hub_config.settings import Settings
from datahavn.hub_config.spawner import ProjectSpawner

c = get_config()  # noqa: F821

s = Settings.from_env()
lay = s.layout
ensure_state(lay)

# -- state: everything under the state dir; hub/ is root-only (0700), its files 0600
c.JupyterHub.db_url = f"sqlite:///{lay.hub_db}"
c.JupyterHub.cookie_secret_file = str(lay.cookie_secret)
c.JupyterHub.pid_file = str(lay.hub / "jupyterhub.pid")

# -- network: the public proxy, the hub and the proxy's API on loopback
c.JupyterHub.bind_url = f"http://{s.ip}:{s.port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s.hub_port
c.JupyterHub.proxy_class = "configurable-http-proxy"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = str(lay.hub / "proxy.pid")
c.ConfigurableHTTPProxy.debug = False

# -- authentication. The demo uses shared passwords; production plugs in PAM, LDAP
#    or OAuth (oauthenticator) here, with MFA at the identity provider.
c.JupyterHub.authenticator_class = audit_hub.with_audited_logout(SharedPasswordAuthenticator)
c.SharedPasswordAuthenticator.user_password = s.user_password or None
c.SharedPasswordAuthenticator.admin_password = s.admin_password or None
c.Authenticator.admin_users = {"admin"}
# Only users an administrator added may log in (`datahavn user add`).
c.Authenticator.allow_all = False
c.Authenticator.allow_existing_users = True

# -- one server per (user, project): server name = project name
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.spawner_class = ProjectSpawner
c.JupyterHub.default_url = "/hub/home"
c.JupyterHub.redirect_to_server = False
c.ProjectSpawner.state_dir = str(lay.root)
c.ProjectSpawner.python_env = s.user_env
# a new workspace starts with the example notebook (allele frequencies, SFS, PCA, association)
c.ProjectSpawner.workspace_seed = [str(files("datahavn.kernels") / "example.ipynb")]
c.Spawner.disable_user_config = True
# The grant is re-checked at every poll: a revoked or expired grant stops the server.
c.Spawner.poll_interval = s.poll_interval
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 30
c.Spawner.default_url = "/lab"

# -- the home page lists the user's projects
c.JupyterHub.template_paths = [
    os.path.join(os.path.dirname(sys.modules[ProjectSpawner.__module__].__file__), "templates")
]
c.JupyterHub.template_vars = {
    # called for every page, the login page too (user is None there)
    "datahavn_projects": lambda user: user_projects(user.db, user.name) if user else [],
}

# -- the audit trail: a managed service owns the store (hub/audit.sqlite, or $DATAHAVN_AUDIT_DB_URL);
#    the hub records its own events (logins, spawns, grants, denials) into the same sequence
audit_url = f"http://127.0.0.1:{s.audit_port}"
c.JupyterHub.custom_scopes = {AUDIT_SCOPE: {"description": "Read and verify the Datahavn audit trail."}}
c.JupyterHub.services = [
    {
        "name": "datahavn-audit",
        "url": audit_url,
        "command": [sys.executable, "-m", "datahavn.hub_config.audit_service"],
        "environment": {"DATAHAVN_STATE_DIR": str(lay.root), "DATAHAVN_AUDIT_DB_URL": s.audit_db_url},
        "oauth_no_confirm": True,
        # the page's OAuth token carries the auditor scope of users who hold it
        "oauth_client_allowed_scopes": [AUDIT_SCOPE],
    }
]
# roles (roles.py): researchers cannot mint API tokens; admin reads the audit trail
c.JupyterHub.load_roles = hub_roles(auditors=["admin"])
c.ProjectSpawner.environment = {"DATAHAVN_AUDIT_URL": f"{audit_url}/services/datahavn-audit/"}
audit_hub.configure(open_store(lay, s.audit_db_url))
c.JupyterHub.tornado_settings = {"log_function": audit_hub.log_function}

# -- the administrators' scripting token (DATAHAVN_ADMIN_TOKEN), as a service's token
if s.admin_token:
    c.JupyterHub.services.append({"name": "datahavn-admin", "api_token": s.admin_token})
    c.JupyterHub.load_roles = hub_roles(auditors=["admin"], auditor_services=["datahavn-admin"])
    c.JupyterHub.load_roles.append({"name": "admin", "services": ["datahavn-admin"]})

# -- site additions: a config file of the administrator's, loaded last
if os.environ.get("DATAHAVN_HUB_EXTRA_CONFIG"):
    load_subconfig(os.environ["DATAHAVN_HUB_EXTRA_CONFIG"])  # noqa: F821
