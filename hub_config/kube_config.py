# Datahavn's JupyterHub configuration on Kubernetes, on top of zero-to-jupyterhub's.
#
# The chart mounts this file as jupyterhub_config.d/datahavn.py, with its settings
# (datahavn.json: projects, volumes, Dask limits, addresses) beside it; zero-to-jupyterhub
# loads it after its own configuration, so what is set here wins. The hub image must
# hold the datahavn package ([hub] extra) and jupyterhub-kubespawner.
#
# What single machine and Kubernetes share is not repeated here: the spawn and poll
# checks (ProjectSpawner.check_allowed, projects.check_grant), the identity rule
# (names.account_name), the home page, the audit store and its service.
import os
import sys

from datahavn.hub_config import audit_hub
from datahavn.hub_config.audit_service import AUDIT_SCOPE, open_store
from datahavn.hub_config.kube_spawner import DEFAULT_SETTINGS, KubeProjectSpawner, load_settings
from datahavn.hub_config.projects import user_projects
from datahavn.hub_config.roles import hub_roles

c = get_config()  # noqa: F821

# fail at hub start, with one clear message, rather than at the first spawn
settings_path = os.environ.get("DATAHAVN_SETTINGS", DEFAULT_SETTINGS)
settings = load_settings(settings_path)
hub = c.JupyterHub


def _set(name, kind):
    """zero-to-jupyterhub's value of a JupyterHub list or dict setting, to add to (not replace)."""
    value = hub[name] if name in hub else kind()
    return kind(value) if isinstance(value, kind) else kind()


# -- one server per (user, project): server name = project name, a pod of the pair's own identity
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.spawner_class = KubeProjectSpawner
c.KubeProjectSpawner.datahavn_settings = settings_path
c.JupyterHub.default_url = "/hub/home"
c.JupyterHub.redirect_to_server = False
c.Spawner.disable_user_config = True
c.Spawner.default_url = "/lab"
# The grant is re-checked at every poll: a revoked or expired grant stops the pod.
c.Spawner.poll_interval = int(os.environ.get("DATAHAVN_POLL_INTERVAL", "10"))
# no Kubernetes API credentials in any user pod (server_spec sets it too, per pod)
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.service_account = None

# -- the home page lists the user's projects
templates = os.path.join(os.path.dirname(sys.modules[KubeProjectSpawner.__module__].__file__), "templates")
c.JupyterHub.template_paths = [templates]
c.JupyterHub.template_vars = {
    "datahavn_projects": lambda user: user_projects(user.db, user.name) if user else [],
}

# -- roles (hub_config/roles.py): researchers cannot mint tokens; tokens come only from the hub,
#    one per server, and the audit service and dask-gateway accept only those.
hub.custom_scopes = {
    **_set("custom_scopes", dict),
    AUDIT_SCOPE: {"description": "Read and verify the Datahavn audit trail."},
}
roles = _set("load_roles", list)
roles.extend(hub_roles(settings.auditors))

# -- the audit trail: the service runs in its own pod (the chart's audit Deployment); the hub
#    records its own events into the same PostgreSQL store, with the key from the chart's Secret
services = _set("services", list)
services.extend(
    [
        {
            "name": "datahavn-audit",
            "url": settings.audit_url,
            "api_token": os.environ["DATAHAVN_AUDIT_API_TOKEN"],
            "oauth_no_confirm": True,
            # the page's OAuth token carries the auditor scope of users who hold it
            "oauth_client_allowed_scopes": [AUDIT_SCOPE],
        }
    ]
)
audit_hub.configure(open_store(settings.layout, os.environ["DATAHAVN_AUDIT_DB_URL"]))
hub.tornado_settings = {**_set("tornado_settings", dict), "log_function": audit_hub.log_function}

# -- dask-gateway: registered by the chart as the hub service "dask-gateway" (token from the hub's
#    Secret); reachable at /services/dask-gateway/, and allowed to read projects' grants
if settings.gateway is not None:
    for service in services:
        if service.get("name") == "dask-gateway":
            service.setdefault("url", settings.gateway.service_url)
    roles.append({"name": "datahavn-dask-gateway", "scopes": ["read:groups"], "services": ["dask-gateway"]})
hub.services = services
hub.load_roles = roles
