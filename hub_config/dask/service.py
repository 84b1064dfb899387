"""``datahavn-dask``: dask-gateway on this machine's Slurm, started and restarted by the hub.

Run as root (``PrivateData=jobs``: only root or SlurmUser see every account's jobs). Its settings come
from the hub's service entry (:func:`gateway_service`); its records go into the audit store.
Addresses: the gateway's API (``$DATAHAVN_GATEWAY_API``, reached by the clusters' schedulers), its
proxy (``$DATAHAVN_GATEWAY_HTTP``: the API and dashboards; ``$DATAHAVN_GATEWAY_TCP``: schedulers, by
TLS SNI), the only two a workspace's kernels may reach.
"""

from __future__ import annotations

import logging
import os
import sys

from traitlets.config import Config

from datahavn.paths import DEFAULT_USER_ENV, Layout

from ..audit import hub as audit_hub
from ..audit.store import open_store
from .auth import configure_auth
from .slurm import parse_limits

log = logging.getLogger("datahavn.dask")

#: the service's name in the hub (its role reads groups: the grants)
SERVICE = "datahavn-dask"
#: the hub's environment the gateway takes as it is (all optional)
GATEWAY_SETTINGS = ("DATAHAVN_DASK_LIMITS", "DATAHAVN_SLURM_PARTITION", "DATAHAVN_GRANT_CHECK_PERIOD",
                    "DATAHAVN_GATEWAY_API_URL", "DATAHAVN_DASK_BIND_HOST", "DATAHAVN_DASK_FENCE")  # fmt: skip


def gateway_service(python: str, state_dir: str, ports: tuple[int, int, int], **environment) -> dict:
    """The hub's entry for the gateway: ``ports`` are its API's, its HTTP proxy's and its TLS proxy's."""
    api, http, tcp = ports
    return {
        "name": SERVICE,
        "command": [python, "-m", "datahavn.hub_config.dask.service"],
        "environment": {
            "DATAHAVN_STATE_DIR": state_dir,
            "DATAHAVN_GATEWAY_API": f"127.0.0.1:{api}",
            "DATAHAVN_GATEWAY_HTTP": f"127.0.0.1:{http}",
            "DATAHAVN_GATEWAY_TCP": f"127.0.0.1:{tcp}",
            **{k: v for k, v in environment.items() if v},
        },
    }


def gateway_config(env) -> Config:
    """The gateway's configuration, from the service's environment."""
    c = Config()
    configure_auth(c)
    c.DaskGateway.backend_class = "datahavn.hub_config.dask.slurm.DatahavnSlurmBackend"
    c.DaskGateway.address = env["DATAHAVN_GATEWAY_API"]
    c.Proxy.address = env["DATAHAVN_GATEWAY_HTTP"]
    c.Proxy.tcp_address = env["DATAHAVN_GATEWAY_TCP"]
    b = c.DatahavnSlurmBackend
    b.state_dir = env["DATAHAVN_STATE_DIR"]
    b.user_env = env.get("DATAHAVN_USER_ENV") or DEFAULT_USER_ENV
    b.partition = env.get("DATAHAVN_SLURM_PARTITION", "")
    b.default_host = env.get("DATAHAVN_DASK_BIND_HOST") or "127.0.0.1"
    # Slurm on this machine (the default): the clusters' accounts are fenced to loopback
    b.fence = env.get("DATAHAVN_DASK_FENCE", "1") != "0"
    b.limits_json = env.get("DATAHAVN_DASK_LIMITS", "")
    parse_limits(b.limits_json)  # a bad value stops the service with its message, not the first cluster
    # where the clusters' schedulers reach the gateway (a compute node's route to it, in production)
    b.api_url = env.get("DATAHAVN_GATEWAY_API_URL") or f"http://{env['DATAHAVN_GATEWAY_API']}/api"
    if env.get("DATAHAVN_GRANT_CHECK_PERIOD"):
        b.grant_check_period = float(env["DATAHAVN_GRANT_CHECK_PERIOD"])
    # a stopped gateway leaves no jobs behind
    b.stop_clusters_on_shutdown = True
    return c


def main() -> None:
    from dask_gateway_server.app import DaskGateway

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    env = os.environ
    try:
        config = gateway_config(env)
    except (KeyError, ValueError) as e:
        sys.exit(f"{SERVICE}: cannot start: {e}")
    layout = Layout.from_env(env)
    audit_hub.configure(open_store(layout, env.get("DATAHAVN_AUDIT_DB_URL", ""), busy_timeout=5))
    app = DaskGateway(config=config)
    app.initialize([])
    app.start()


if __name__ == "__main__":
    main()
