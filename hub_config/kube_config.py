# Datahavn's JupyterHub configuration on Kubernetes, on top of zero-to-jupyterhub's.
#
# The chart mounts this file as jupyterhub_config.d/datahavn.py, with its settings
# (datahavn.json: projects, volumes, Dask limits, addresses) beside it; zero-to-jupyterhub
# loads it after its own configuration, so what is set here wins, and what it set
# (services, roles, scopes, tornado settings) is extended, not replaced. The hub image
# must hold the datahavn package ([hub] extra) and jupyterhub-kubespawner.
#
# What every deployment shares (named servers, the grant rule, roles, the audit trail)
# is hub_config/configure.py's; this file adds the cluster's parts.
import os

from datahavn.hub_config.audit.store import open_store
from datahavn.hub_config.configure import HUB_STORE_TIMEOUT, airlock_service, audit_service, configure
from datahavn.hub_config.roles import dask_gateway_role
from datahavn.hub_config.settings import poll_interval
from datahavn.hub_config.spawners.kube import DEFAULT_SETTINGS, KubeProjectSpawner, load_settings

c = get_config()  # noqa: F821

# fail at hub start, with one clear message, rather than at the first spawn
settings_path = os.environ.get("DATAHAVN_SETTINGS", DEFAULT_SETTINGS)
settings = load_settings(settings_path)

# dask-gateway: registered by the chart as the hub service "dask-gateway" for its API token (from the
# hub's Secret), allowed to read projects' grants. No URL: the hub does not proxy it, so neither it nor
# its clusters' dashboards can be reached from outside the cluster (a Dask token copied out opens nothing)
extra_roles = []
if settings.gateway is not None:
    extra_roles.append(dask_gateway_role("dask-gateway"))

# the airlock (the chart's airlock Deployment, unless airlock.enabled is false): the one reviewed way
# out of a project, at /services/datahavn-airlock/, its token from the chart's datahavn-airlock Secret;
# output checkers are airlock.checkers and the members of the checkers' group (`datahavn airlock checker add`)
airlock = None
if settings.airlock_url is not None:
    airlock = airlock_service(settings.airlock_url, api_token=os.environ["DATAHAVN_AIRLOCK_API_TOKEN"])

# the audit service runs in its own pod (the chart's audit Deployment); the hub records its own
# events into the same PostgreSQL store, with the key from the chart's Secret
configure(
    c,
    spawner_class=KubeProjectSpawner,
    poll_interval=poll_interval(),
    store=open_store(settings.layout, os.environ["DATAHAVN_AUDIT_DB_URL"], busy_timeout=HUB_STORE_TIMEOUT),
    audit=audit_service(settings.audit_url, api_token=os.environ["DATAHAVN_AUDIT_API_TOKEN"]),
    auditors=list(settings.auditors),
    roles=extra_roles,
    airlock=airlock,
    checkers=settings.checkers,
)
c.KubeProjectSpawner.datahavn_settings = settings_path
# no Kubernetes API credentials in any user pod (server_spec sets it too, per pod)
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.service_account = None
