"""A workspace, whichever machine runs it: its environment and its links (pure).

One rule for the single machine (:mod:`.spawners.local`) and for Kubernetes
(:mod:`.kube.pods`): the same variables, the same paths, the same links.
"""

from __future__ import annotations

from datahavn.paths import Layout, runtime_dir

#: Links in every workspace to its project's folders: name -> target, relative to the workspace.
WORKSPACE_LINKS = {"data": "../../data", "shared": "../../shared"}


def project_env(layout: Layout, user: str, project: str, account: str) -> dict[str, str]:
    """What a kernel or a Dask worker of (user, project) sees of its project."""
    ws = layout.workspace(project, user)
    return {
        "HOME": str(ws),
        "USER": account,
        "SHELL": "/usr/sbin/nologin",
        "PYTHONNOUSERSITE": "1",
        "DATAHAVN_PROJECT": project,
        "DATAHAVN_PROJECT_DIR": str(layout.project(project)),
        "DATAHAVN_WORKSPACE": str(ws),
        # numba (scikit-allel, sgkit) and matplotlib cache beside their packages: read-only
        "NUMBA_CACHE_DIR": str(ws / ".cache" / "numba"),
        "MPLCONFIGDIR": str(ws / ".cache" / "matplotlib"),
    }


def server_env(layout: Layout, user: str, project: str, account: str, uid: int, audit_url: str,
               airlock_url: str = "") -> dict[str, str]:  # fmt: skip
    """The server's environment: the project's, the root-owned Jupyter config, the audit and airlock services."""
    ws = layout.workspace(project, user)
    env = project_env(layout, user, project, account)
    env.update(
        # root-owned config; env paths win over the (ignored) user's
        JUPYTER_CONFIG_DIR=str(layout.jupyter_config),
        JUPYTER_PREFER_ENV_PATH="1",
        JUPYTERLAB_SETTINGS_DIR=str(ws / ".jupyter" / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(ws / ".jupyter" / "lab" / "workspaces"),
        JUPYTER_RUNTIME_DIR=runtime_dir(uid),
        DATAHAVN_AUDIT_URL=audit_url.rstrip("/") + "/services/datahavn-audit/",
    )
    if airlock_url:
        env["DATAHAVN_AIRLOCK_URL"] = airlock_url.rstrip("/") + "/services/datahavn-airlock/"
    return env


#: How ``project.dask()`` runs a cluster; the administrator's choice, the researcher's code is the same.
DASK_ENGINES = ("local", "slurm", "kubernetes")


def dask_env(engine: str, gateway_url: str = "", proxy_address: str = "", token: str = "") -> dict[str, str]:
    """What a kernel needs for ``project.dask()``: the engine and, for a gateway, its addresses and token.

    The token is the workspace's Dask token (:data:`datahavn.tokens.DASK_SCOPE`): it opens the
    gateway for this (user, project) and nothing else.
    """
    if engine not in DASK_ENGINES:
        raise ValueError(f"unknown Dask engine {engine!r}; choose one of {', '.join(DASK_ENGINES)}")
    env = {"DATAHAVN_DASK_ENGINE": engine}
    if engine != "local":
        if not gateway_url or not proxy_address or not token:
            raise ValueError(f"the {engine} engine needs the gateway's address, its proxy's and a token")
        env.update(DATAHAVN_DASK_GATEWAY=gateway_url, DATAHAVN_DASK_PROXY=proxy_address, DATAHAVN_DASK_TOKEN=token)
    return env


def host_port(address: str) -> str:
    """``host:port`` of a URL or address (``http://h:1``, ``tls://h:2``, ``h:3``)."""
    return address.split("://", 1)[-1].split("/", 1)[0]


def links_script() -> str:
    """Shell lines creating the links of :data:`WORKSPACE_LINKS` in ``$ws`` where missing."""
    return "".join(
        f'if [ ! -e "$ws/{name}" ] && [ ! -L "$ws/{name}" ]; then ln -s "{target}" "$ws/{name}"; fi\n'
        for name, target in WORKSPACE_LINKS.items()
    )
