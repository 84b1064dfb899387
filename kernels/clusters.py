"""The Dask clusters behind ``project.dask()``: one API, the engine the administrator chose.

- ``local`` (``$DATAHAVN_DASK_ENGINE`` unset or ``local``): a ``LocalCluster`` in the kernel's box;
- ``slurm``, ``kubernetes``: dask-gateway (``$DATAHAVN_DASK_GATEWAY``, ``$DATAHAVN_DASK_PROXY``) with the
  workspace's own Dask token (``$DATAHAVN_DASK_TOKEN``), which opens the gateway for this (user,
  project) and nothing else. The gateway pins the project and bounds the sizes; this module only
  asks, and turns every refusal or silence into one clear error within ``$DATAHAVN_DASK_TIMEOUT``
  seconds (a batch scheduler that does not answer is an error, never a hang).

Gateway calls run on a loop of their own, in a thread: the synchronous dask-gateway client can
hang inside an ipykernel after a refused request, the asynchronous one does not.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading

GIB = 1 << 30


class DaskError(RuntimeError):
    """A cluster that cannot be started, scaled or reached, with why."""


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise DaskError(f"${name}={raw!r} is not a number") from None


def memory_gib(memory) -> float | None:
    """``memory`` as GiB: a number of GiB, or a size such as ``"4GiB"`` or ``"512MB"``."""
    if memory is None or isinstance(memory, int | float) and not isinstance(memory, bool):
        return memory
    if isinstance(memory, str):
        from dask.utils import parse_bytes

        try:
            return parse_bytes(memory) / GIB
        except ValueError:
            pass
    raise DaskError(f"memory={memory!r}: give GiB as a number (2) or a size ('2GiB')")


def local_client(workers=None, cores=None, memory=None, processes=None):
    """A ``distributed.Client`` to a LocalCluster in this kernel (defaults: the server's $DATAHAVN_DASK_*)."""
    from distributed import Client, LocalCluster

    if processes is None:
        processes = env_number("DATAHAVN_DASK_PROCESSES", 0) == 1
    workers = int(workers or env_number("DATAHAVN_DASK_WORKERS", 0) or (2 if processes else 1))
    threads = int(cores or env_number("DATAHAVN_DASK_THREADS", 0) or max(1, (os.cpu_count() or 1)
                                                                       // (workers if processes else 1)))  # fmt: skip
    limit = memory if isinstance(memory, str) else (f"{memory}GiB" if memory else None)
    limit = limit or os.environ.get("DATAHAVN_DASK_MEMORY") or "auto"
    kwargs = {"dashboard_address": None, "n_workers": workers, "threads_per_worker": threads,
              "processes": processes, "memory_limit": limit}  # fmt: skip
    if not processes:
        return Client(LocalCluster(**kwargs))
    from distributed.security import Security

    security = Security.temporary()
    # an ephemeral port for the dashboard: the box refuses any chosen one (Dask would call 8787 "in use")
    kwargs.update(host="127.0.0.1", protocol="tls://", security=security, dashboard_address="127.0.0.1:0")
    return Client(LocalCluster(**kwargs), security=security)


class GatewayClusters:
    """This workspace's clusters on its gateway (see the module's docstring)."""

    def __init__(self, env=None):
        env = os.environ if env is None else env
        try:
            self.address, self.proxy = env["DATAHAVN_DASK_GATEWAY"], env["DATAHAVN_DASK_PROXY"]
            self.token = env["DATAHAVN_DASK_TOKEN"]
        except KeyError as e:
            raise DaskError(
                f"this workspace has no Dask gateway (${e.args[0]} is not set); ask an administrator"
            ) from None
        self.engine = env.get("DATAHAVN_DASK_ENGINE", "gateway")
        self.timeout = env_number("DATAHAVN_DASK_TIMEOUT", 120)
        self._loop = None
        self._gateway = None
        self.name = None

    # --- the loop of the gateway's calls --------------------------------------------------

    def _call(self, what: str, make, timeout: float | None = None):
        """Run ``make()`` (a coroutine) on the gateway's loop; any failure or silence is a DaskError."""
        from aiohttp import ClientError, ClientResponseError
        from dask_gateway import GatewayClusterError, GatewayServerError

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True, name="datahavn-dask-gateway").start()
        timeout = self.timeout if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(make(), timeout), self._loop)
        try:
            return future.result(timeout + 5)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise DaskError(f"{what}: no answer within {timeout:g} s. The {self.engine} cluster may be busy or "
                            "down; try again later, or ask an administrator.") from None  # fmt: skip
        except ClientResponseError as e:
            raise DaskError(f"{what}: the gateway refused ({e.status}): {e.message}") from None
        except (ClientError, OSError) as e:
            raise DaskError(f"{what}: the gateway cannot be reached ({e})") from None
        except (GatewayClusterError, GatewayServerError, ValueError, TypeError) as e:
            raise DaskError(f"{what}: {e}") from None

    async def _gw(self):
        if self._gateway is None:
            from dask_gateway import Gateway, JupyterHubAuth

            self._gateway = Gateway(self.address, proxy_address=self.proxy, asynchronous=True,
                                    auth=JupyterHubAuth(api_token=self.token))  # fmt: skip
        return self._gateway

    # --- a cluster ------------------------------------------------------------------------------

    def start(self, workers=None, cores=None, memory=None):
        """A ``distributed.Client`` to a new cluster of ``workers`` workers of ``cores`` and ``memory`` each."""
        from distributed import Client

        memory = memory_gib(memory)
        wanted = {"worker_cores": cores, "worker_memory": memory, "workers": workers}

        async def submit():
            gw = await self._gw()
            options = await gw.cluster_options()
            for field, value in wanted.items():
                if value is not None:
                    options[field] = value  # checked against the project's limits here, and by the gateway
            return await gw.submit(options)

        self.name = self._call("Starting a Dask cluster", submit)
        atexit.register(self.close)
        report = self._call("Starting a Dask cluster", lambda: self._running(self.name))
        n = workers if workers is not None else 0
        if n:
            self._call("Scaling the Dask cluster", lambda: self._scale(n))
        cluster = self

        class GatewayClient(Client):
            """A client whose ``close()`` also stops its cluster on the gateway."""

            def close(self, *args, **kwargs):
                try:
                    return super().close(*args, **kwargs)
                finally:
                    cluster.close()

            @property
            def dashboard_link(self):
                # through the workspace's own server (the lab's "Dask dashboard"), not the gateway
                prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
                return f"{prefix.rstrip('/')}/datahavn/dask/{cluster.name}/status"

        client = GatewayClient(report.scheduler_address, security=report.security, timeout=f"{self.timeout}s")
        client.datahavn_cluster = self
        if n:
            try:
                client.wait_for_workers(n, timeout=self.timeout)
            except TimeoutError:
                joined = len(client.scheduler_info(n_workers=-1)["workers"])
                raise DaskError(f"only {joined} of {n} workers joined within {self.timeout:g} s: the {self.engine} "
                                "cluster may be busy or down (the cluster keeps trying; client.close() stops it)"
                                ) from None  # fmt: skip
        return client

    async def _running(self, name):
        from dask_gateway.client import ClusterStatus

        gw = await self._gw()
        while True:
            report = await gw.get_cluster(name)
            if report.status == ClusterStatus.RUNNING:
                return report
            if report.status in (ClusterStatus.FAILED, ClusterStatus.STOPPED):
                raise DaskError(f"the cluster {report.status.name.lower()} while starting "
                                "(the gateway's log says why; ask an administrator)")  # fmt: skip
            await asyncio.sleep(0.3)

    async def _scale(self, n):
        gw = await self._gw()
        await gw.scale_cluster(self.name, n)

    def scale(self, n: int) -> None:
        self._call("Scaling the Dask cluster", lambda: self._scale(n))

    def close(self) -> None:
        """Stop this kernel's cluster (also when the kernel ends)."""
        if self.name is None:
            return
        name, self.name = self.name, None

        async def stop():
            gw = await self._gw()
            await gw.stop_cluster(name)

        try:
            self._call("Stopping the Dask cluster", stop, timeout=min(self.timeout, 20))
        except DaskError:
            pass  # the gateway stops idle clusters itself
