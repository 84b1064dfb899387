"""Scheduler preload: where this cluster's dashboard listens, for its workspace's server only.

Written to ``dashboard.json`` in the job's folder (the cluster's staging folder, the account's own,
0700), which the workspace's server reads to show the dashboard in the lab
(:mod:`.dask_dashboard`). Nothing else learns the address from here.
"""

from __future__ import annotations

import json
import os

FILE = "dashboard.json"


def dask_setup(scheduler):
    def write():
        http = getattr(scheduler, "http_server", None)
        port = getattr(http, "port", None) or getattr(scheduler.services.get("dashboard"), "port", None)
        if not port:  # not listening yet
            scheduler.loop.call_later(0.5, write)
            return
        host = scheduler.address.split("://", 1)[-1].rsplit(":", 1)[0]
        tmp = f"{FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"address": f"{host}:{port}", "prefix": os.environ.get("DATAHAVN_DASHBOARD_PREFIX", "")}, f)
        os.replace(tmp, FILE)

    scheduler.loop.add_callback(write)
