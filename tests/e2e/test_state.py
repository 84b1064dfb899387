"""The state dir has the modes DESIGN §3 asks for; what a server must not change is root's."""

import os
import stat

from ..hubs import host_pids, proc_env, refused


def mode(path):
    st = os.stat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_hub_state_is_private(hub):
    lay = hub.layout
    assert mode(lay.hub) == (0, 0o700)
    assert mode(lay.secrets) == (0, 0o700)
    for f in (lay.hub_db, lay.cookie_secret, *lay.secrets.iterdir()):
        assert mode(f) == (0, 0o600), f
    assert mode(lay.projects) == (0, 0o711)
    assert mode(lay.jupyter_config) == (0, 0o755)


def test_project_folders(hub):
    import grp

    lay = hub.layout
    gid = grp.getgrnam("dh-brca").gr_gid
    for path, want in ((lay.data("brca"), 0o2750), (lay.shared("brca"), 0o2770), (lay.work("brca"), 0o710)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, want), path


async def test_server_config_cannot_be_changed_from_a_kernel(hub, kernel):
    k = await kernel("bob", "cardio")
    # the server runs with user config off (its environment, read as root: the kernel has none of it)
    (server,) = host_pids("dh-cardio-bob", b"jupyterhub-singleuser")
    env = proc_env(server)
    assert (env["JUPYTERHUB_DISABLE_USER_CONFIG"], env["PYTHONNOUSERSITE"]) == ("1", "1")
    r = await k.execute("import os, sys; print(os.environ['PYTHONNOUSERSITE'], sys.flags.isolated)")
    assert r.stdout.split() == ["1", "1"]
    for target in (
        hub.layout.jupyter_config / "jupyter_server_config.py",
        hub.layout.jupyter_config / "migrated",
        "/opt/datahavn/user-env/etc/jupyter/jupyter_server_config.py",
        "/opt/datahavn/user-env/lib/python3.11/site-packages/datahavn/__init__.py",
    ):
        r = await k.execute(f"open({str(target)!r}, 'a').write('c.ServerApp.x = 1')")
        assert refused(r.error), f"{target}: {r.error}"
