"""Datahavn's jupyter-server extensions, loaded in every single-user server.

Enabled by ``etc/jupyter/jupyter_server_config.json`` in the users' (root-owned)
environment, which also installs the audited kernel websocket connection class
(:mod:`datahavn.extensions.connection`), turns terminals off, puts kernels on ipc and
allow-lists the kernel message types.
"""


def _jupyter_server_extension_points():
    return [{"module": "datahavn.extensions"}]


def _not_dumpable() -> None:
    """The server runs as the researcher's uid, as its kernels do: without this, a kernel could
    ptrace the server and switch the guard off in memory. Kernels (after exec) stay dumpable."""
    import ctypes

    PR_SET_DUMPABLE = 4
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _load_jupyter_server_extension(serverapp):
    _not_dumpable()
    from .connection import AuditedConnection

    # Fail closed: whatever configuration won, kernel websockets go through the audit. The
    # handlers read the class from the settings; a subclass keeps the audit, a base class would not.
    used = serverapp.web_app.settings.get("kernel_websocket_connection_class")
    if not (isinstance(used, type) and issubclass(used, AuditedConnection)):
        serverapp.log.warning("datahavn: forcing the audited kernel websocket connection")
        serverapp.kernel_websocket_connection_class = AuditedConnection
        serverapp.web_app.settings["kernel_websocket_connection_class"] = AuditedConnection
    serverapp.log.info("datahavn: audit of kernel messages is on")
    from . import airlock, dask_dashboard, egress, meter, provisioner
    from .audit_client import post_quietly, report_egress

    # fail closed here too: whatever kernel spec is asked for, its kernel starts in the box
    provisioner.force(serverapp)
    # one egress budget for the workspace, counted below every route, kept by the audit service
    meter.install(report_egress)
    egress.install(serverapp, egress.denial_recorder(serverapp, post_quietly))
    # the one way out: export requests to the airlock, with the server's token
    airlock.install(serverapp)
    # the dashboard of the workspace's own Dask clusters (plots only), through this server and its meter
    dask_dashboard.install(serverapp)


async def _unload_jupyter_server_extension(serverapp):
    # replies still waiting for their batch are sent before the server goes
    from .audit_client import send_later

    await send_later()
