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


def links_script() -> str:
    """Shell lines creating the links of :data:`WORKSPACE_LINKS` in ``$ws`` where missing."""
    return "".join(
        f'if [ ! -e "$ws/{name}" ] && [ ! -L "$ws/{name}" ]; then ln -s "{target}" "$ws/{name}"; fi\n'
        for name, target in WORKSPACE_LINKS.items()
    )
