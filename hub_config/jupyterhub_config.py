# Datahavn's JupyterHub configuration on one machine.
#
# Values come from the environment (see datahavn/hub_config/settings.py);
# `datahavn demo` sets them. Run by hand:
#     DATAHAVN_STATE_DIR=/srv/datahavn jupyterhub -f jupyterhub_config.py
# What every deployment shares (named servers, the grant rule, roles, the audit
# trail) is hub_config/configure.py's; this file adds the single machine's parts.
import os
import sys
from importlib.resources import files

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

from datahavn.hub_config.audit import hub as audit_hub
from datahavn.hub_config.audit.store import open_store
from datahavn.hub_config.configure import HUB_STORE_TIMEOUT, airlock_service, audit_service, configure, python_module
from datahavn.hub_config.dask.service import GATEWAY_SETTINGS, SERVICE, gateway_service
from datahavn.hub_config.roles import dask_gateway_role
from datahavn.hub_config.settings import Settings
from datahavn.hub_config.spawners.local import ProjectSpawner
from datahavn.hub_config.spawners.provision import ensure_state

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

# -- the audit service (hub/audit.sqlite, or $DATAHAVN_AUDIT_DB_URL), started and restarted by the hub;
#    the administrators' scripting token (DATAHAVN_ADMIN_TOKEN) as a service's token, admin and auditor
audit_url = f"http://127.0.0.1:{s.audit_port}"
audit = audit_service(
    audit_url,
    command=python_module("datahavn.hub_config.audit.service"),
    environment={
        "DATAHAVN_STATE_DIR": str(lay.root),
        "DATAHAVN_AUDIT_DB_URL": s.audit_db_url,
        # each workspace's egress budget (bytes per hour and day; per project as JSON)
        **{
            k: os.environ[k]
            for k in (
                "DATAHAVN_EGRESS_HOUR",
                "DATAHAVN_EGRESS_DAY",
                "DATAHAVN_EGRESS_PROJECTS",
                "DATAHAVN_AUDIT_EVENT_RATE",
            )
            if os.environ.get(k)
        },
    },
)
# -- the airlock (root: it copies requested files out of workspaces into the root-only airlock/ store)
airlock = airlock_service(
    f"http://127.0.0.1:{s.airlock_port}",
    command=python_module("datahavn.hub_config.airlock.service"),
    environment={"DATAHAVN_STATE_DIR": str(lay.root), "DATAHAVN_AUDIT_DB_URL": s.audit_db_url},
)
admin_services = [{"name": "datahavn-admin", "api_token": s.admin_token}] if s.admin_token else []
# -- Dask on Slurm: dask-gateway as a hub service (root: PrivateData=jobs), reading grants and nothing else
dask_services, dask_roles = [], []
if s.dask_engine == "slurm":
    dask_services = [gateway_service(sys.executable, str(lay.root), s.gateway_ports, DATAHAVN_USER_ENV=s.user_env,
                                     DATAHAVN_AUDIT_DB_URL=s.audit_db_url,
                                     **{k: os.environ.get(k, "") for k in GATEWAY_SETTINGS})]  # fmt: skip
    dask_roles = [dask_gateway_role(SERVICE)]
configure(
    c,
    spawner_class=ProjectSpawner,
    poll_interval=s.poll_interval,
    store=open_store(lay, s.audit_db_url, busy_timeout=HUB_STORE_TIMEOUT),
    audit=audit,
    auditors=["admin"],
    auditor_services=[x["name"] for x in admin_services],
    services=admin_services + dask_services,
    roles=([{"name": "admin", "services": ["datahavn-admin"]}] if admin_services else []) + dask_roles,
    airlock=airlock,
    checkers=s.checkers,
)

# -- workspaces: local processes as (user, project) accounts
c.ProjectSpawner.state_dir = str(lay.root)
c.ProjectSpawner.python_env = s.user_env
c.ProjectSpawner.audit_url = audit_url
c.ProjectSpawner.airlock_url = airlock["url"]
# a new workspace starts with the example notebook (allele frequencies, SFS, PCA, association)
c.ProjectSpawner.workspace_seed = [str(files("datahavn.kernels") / "example.ipynb")]
# every workspace's resources (cgroups) and its kernels' box; per project: c.ProjectSpawner.project_limits
c.ProjectSpawner.mem_limit = s.mem_limit
c.ProjectSpawner.cpu_limit = s.cpu_limit
c.ProjectSpawner.pids_limit = s.pids_limit
# -- project.dask(): in the kernel's box, or on Slurm through the gateway (its proxy's two addresses, allow-listed)
c.ProjectSpawner.dask_engine = s.dask_engine
if s.dask_engine == "slurm":
    c.ProjectSpawner.dask_gateway_url = f"http://127.0.0.1:{s.gateway_ports[1]}"
    c.ProjectSpawner.dask_gateway_proxy = f"tls://127.0.0.1:{s.gateway_ports[2]}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 30

# -- site additions: a config file of the administrator's, loaded last
if os.environ.get("DATAHAVN_HUB_EXTRA_CONFIG"):
    load_subconfig(os.environ["DATAHAVN_HUB_EXTRA_CONFIG"])  # noqa: F821
