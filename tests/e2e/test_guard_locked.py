"""A researcher cannot switch the guard off from inside the workspace, even across a server restart."""

import json
import re

import requests

from ..hubs import host_pids, refused

ATTACK = r"""
import json, os, pathlib, subprocess, sys
home = pathlib.Path(os.environ["HOME"])
cfg = home / ".jupyter"
(cfg / "labconfig").mkdir(parents=True, exist_ok=True)
stock = "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection"
(cfg / "jupyter_server_config.py").write_text(
    "c.ServerApp.jpserver_extensions = {'datahavn.extensions': False}\n"
    f"c.ServerApp.kernel_websocket_connection_class = '{stock}'\n"
    "c.ServerApp.terminals_enabled = True\n"
)
(cfg / "jupyter_server_config.json").write_text(json.dumps(
    {"ServerApp": {"jpserver_extensions": {"datahavn.extensions": False}, "kernel_websocket_connection_class": stock}}))
(cfg / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {}}))
os.environ["JUPYTER_PREFER_ENV_PATH"] = "0"
os.environ["JUPYTERHUB_DISABLE_USER_CONFIG"] = "0"
# a package named like the extension, as a wheel, installed with pip install --user
import zipfile
wheel = home / "datahavn-99.0-py3-none-any.whl"
with zipfile.ZipFile(wheel, "w") as z:
    z.writestr("datahavn/__init__.py", "")
    z.writestr("datahavn/extensions/__init__.py",
               "def _jupyter_server_extension_points():\n    return [{'module': 'datahavn.extensions'}]\n"
               "def _load_jupyter_server_extension(app):\n    app.log.warning('FAKE DATAHAVN LOADED')\n")
    z.writestr("datahavn-99.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: datahavn\nVersion: 99.0\n")
    z.writestr("datahavn-99.0.dist-info/WHEEL",
               "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("datahavn-99.0.dist-info/RECORD", "")
r = subprocess.run([sys.executable, "-m", "pip", "install", "--user", "--no-deps", "--no-index", str(wheel)],
                   capture_output=True, text=True)

print("pip", "refused" if r.returncode else "installed")
# where pip --user would have put it, and the workspace root (the server's working directory)
for target in (home / ".local" / "lib" / "python3.11" / "site-packages", home):
    target.mkdir(parents=True, exist_ok=True)
    zipfile.ZipFile(wheel).extractall(target)
print("planted", sorted(p.name for p in home.glob("**/datahavn/extensions/__init__.py")).__len__())
"""


async def test_user_config_and_user_packages_do_not_switch_the_guard_off(hub, kernel):
    k = await kernel("bob", "cardio")
    r = await k.execute(ATTACK)
    assert r.status == "ok", r.error
    assert "planted 2" in r.stdout, r.stdout  # the files are in place, whatever pip said
    for target in ("/opt/datahavn/user-env/etc/jupyter/jupyter_server_config.json",
                   "/opt/datahavn/user-env/etc/jupyter/labconfig/page_config.json"):  # fmt: skip
        w = await k.execute(f"open({target!r}, 'w')")
        assert refused(w.error), w.error

    hub.stop("bob", "cardio")
    hub.wait_stopped("bob", "cardio", 60)
    k2 = await kernel("bob", "cardio")
    token = hub.user_token("bob")
    base = f"{hub.url}/user/bob/cardio/"
    headers = {"Authorization": f"token {token}"}
    # still guarded: downloads and terminals refused
    assert requests.get(f"{base}files/datahavn-99.0-py3-none-any.whl", headers=headers, timeout=30).status_code == 403
    assert requests.post(f"{base}api/terminals", headers=headers, timeout=30).status_code in (403, 404)
    # still audited: the cell is in the trail
    assert (await k2.execute("print('audited after restart')")).stdout == "audited after restart\n"
    assert hub.events(grep="audited after restart", kind="execute")
    # the lab still has no download
    page = requests.get(f"{base}lab", headers=headers, timeout=30).text
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  page, re.S).group(1))  # fmt: skip
    disabled = config.get("disabledExtensions", [])
    assert "@jupyterlab/docmanager-extension:download" in disabled, disabled
    # the planted package never ran in the server
    log = (hub.layout.logs / "dh-cardio-bob.log").read_text()
    assert "FAKE DATAHAVN LOADED" not in log
    assert log.count("datahavn: egress guard on") >= 2  # before and after the restart


async def test_a_kernel_cannot_ptrace_its_server(hub, kernel):
    k = await kernel("alice", "brca")
    (server,) = host_pids("dh-brca-alice", b"jupyterhub-singleuser")  # its pid on the machine, as root sees it
    r = await k.execute(
        "import ctypes, ctypes.util, os\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
        f"rc = libc.ptrace(16, {server}, None, None)  # PTRACE_ATTACH\n"
        "print(rc, ctypes.get_errno())"
    )
    rc, errno = r.stdout.split()
    assert rc == "-1" and errno in ("1", "3"), r.stdout  # EPERM, or ESRCH: not even a pid in the kernel's box
    mem = await k.execute(f"open('/proc/{server}/mem', 'rb')")
    assert refused(mem.error), mem.error
