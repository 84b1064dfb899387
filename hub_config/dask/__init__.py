"""Dask on a cluster through dask-gateway: what every gateway engine (Slurm, Kubernetes) shares.

- :mod:`.auth`: who may use the gateway (a workspace's Dask token, a current grant);
- :mod:`.limits`: the options a researcher may set, within the project's limits (pure);
- :mod:`.audit`: ``dask_cluster_start|scale|stop`` records and the grant watch, for any backend;
- :mod:`.slurm`: the Slurm backend run as the workspace's account; :mod:`.service` runs it as a hub service.

Kubernetes' own builders are :mod:`..kube.dask` and its gateway config :mod:`..kube.gateway`.
"""
