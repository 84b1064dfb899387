"""The kernel's box as data (builders against literal expectations), Landlock for real, the cgroup paths."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from datahavn.extensions import landlock
from datahavn.extensions.sandbox import (
    KernelBox,
    Relay,
    bwrap_argv,
    kernel_command,
    kernel_env,
    parse_relays,
    passwd_lines,
)
from datahavn.hub_config.settings import Settings, SettingsError
from datahavn.hub_config.spawners import cgroups

ENV = "/opt/datahavn/user-env"
P = "/srv/datahavn/projects/brca"
WS = f"{P}/work/alice"
KD = "/run/datahavn/1500/k-1234"
BOX = KernelBox(user_env=ENV, project_dir=P, workspace=WS, tmp="/srv/datahavn/tmp/1500", kernel_dir=KD,
                cwd=f"{P}/shared", account="dh-brca-alice", uid=1500, gid=1400, group="dh-brca",
                relays=(Relay("gateway.example", 8000, f"{KD}/net-0.sock"),),
                cgroups={"memory": "/sys/fs/cgroup/memory/datahavn/dh-brca-alice"})  # fmt: skip


def test_the_kernel_command_is_ours_and_isolated():
    assert kernel_command(BOX) == [
        f"{ENV}/bin/python", "-I", "-m", "datahavn.kernels.launch", "-f", f"{KD}/kernel.json",
        "--HistoryManager.hist_file=:memory:",
    ]  # fmt: skip


def test_the_kernel_environment_is_an_allow_list():
    server = {
        "JUPYTERHUB_API_TOKEN": "secret", "JPY_API_TOKEN": "secret", "JUPYTERHUB_API_URL": "http://127.0.0.1:8081",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:4321/user/alice/brca/", "DATAHAVN_AUDIT_URL": "http://x",
        "PYTHONPATH": f"{WS}/evil", "PYTHONSTARTUP": f"{WS}/evil.py", "LD_PRELOAD": f"{WS}/evil.so",
        "LANG": "C.UTF-8", "DATAHAVN_PROJECT": "brca", "DATAHAVN_PROJECT_DIR": P, "DATAHAVN_WORKSPACE": WS,
        "DATAHAVN_DASK_WORKERS": "0", "NUMBA_CACHE_DIR": f"{WS}/.cache/numba", "HOME": "/elsewhere",
    }  # fmt: skip
    assert kernel_env(server, BOX) == {
        "LANG": "C.UTF-8",
        "DATAHAVN_PROJECT": "brca",
        "DATAHAVN_PROJECT_DIR": P,
        "DATAHAVN_WORKSPACE": WS,
        "DATAHAVN_DASK_WORKERS": "0",
        "NUMBA_CACHE_DIR": f"{WS}/.cache/numba",
        "PATH": f"{ENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": WS,
        "USER": "dh-brca-alice",
        "LOGNAME": "dh-brca-alice",
        "SHELL": "/bin/bash",
        "TERM": "xterm-256color",
        "PYTHONNOUSERSITE": "1",
        "IPYTHONDIR": f"{ENV}/etc/datahavn/ipython",
        "DASK_CONFIG": f"{ENV}/etc/datahavn/dask",
        "JUPYTER_CONFIG_DIR": f"{ENV}/etc/datahavn/jupyter",
        "MPLCONFIGDIR": f"{KD}/matplotlib",
        "JUPYTER_RUNTIME_DIR": KD,
        "DATAHAVN_RELAYS": f"8000={KD}/net-0.sock",
    }


def test_the_box_holds_this_project_and_workspace_only():
    argv = bwrap_argv(BOX, ["python", "-c", "pass"], usr_links=("bin", "lib"))
    assert argv == [
        "/usr/bin/bwrap",
        "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--hostname", "datahavn",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--ro-bind", "/etc", "/etc",
        "--ro-bind", f"{KD}/passwd", "/etc/passwd",
        "--ro-bind", f"{KD}/group", "/etc/group",
        "--ro-bind", ENV, ENV,
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/run", "--dir", "/run/lock",
        "--bind", "/srv/datahavn/tmp/1500/tmp", "/tmp",
        "--bind", "/srv/datahavn/tmp/1500/var-tmp", "/var/tmp",
        "--bind", KD, KD,
        "--ro-bind", f"{P}/data", f"{P}/data",
        "--bind", f"{P}/shared", f"{P}/shared",
        "--bind", WS, WS,
        "--ro-bind", f"{KD}/empty", f"{WS}/.config/dask",
        "--ro-bind", "/sys/fs/cgroup/memory/datahavn/dh-brca-alice", "/sys/fs/cgroup/memory",
        "--chdir", f"{P}/shared", "--", "python", "-c", "pass",
    ]  # fmt: skip
    # no other project, no hub state, no other runtime folder is named
    named = {a for a in argv if a.startswith("/srv/")}
    assert all(a.startswith((P, "/srv/datahavn/tmp/1500")) for a in named), named


def test_passwd_names_only_this_account():
    passwd, group = passwd_lines(BOX)
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["root", "dh-brca-alice", "nobody"]
    assert "dh-brca-alice:x:1500:1400:datahavn:" + WS + ":/bin/bash" in passwd
    assert [line.split(":")[0] for line in group.splitlines()] == ["root", "dh-brca", "nogroup"]


def test_the_allow_list():
    assert parse_relays("", KD) == ()
    assert parse_relays("gw.example:8000, [::1]:443", KD) == (
        Relay("gw.example", 8000, f"{KD}/net-0.sock"),
        Relay("::1", 443, f"{KD}/net-1.sock"),
    )
    for bad in ("gw.example", ":80", "gw:0", "gw:99999", "gw:http"):
        with pytest.raises(ValueError, match="host:port"):
            parse_relays(bad, KD)


def test_landlock_for_real():
    """In a child: bind only ephemeral ports, no signal to its parent; ABI 7 on this machine's Linux."""
    assert landlock.abi() >= landlock.NEEDED_ABI
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        results = []
        try:
            landlock.restrict((0,))
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            results.append("bind0")
            try:
                socket.socket().bind(("127.0.0.1", 45678))
                results.append("bind45678")
            except PermissionError:
                pass
            try:
                os.kill(os.getppid(), 0)
                results.append("signal")
            except PermissionError:
                pass
        finally:
            os.write(w, ",".join(results).encode())
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 100).decode() == "bind0"
    os.kill(os.getpid(), 0)  # this process is not restricted


def test_cgroup_paths_nest_under_the_hubs_own():
    proc = "12:pids:/\n4:memory:/process_api/abc\n3:cpu,cpuacct:/\n2:freezer:/\n0::/\n"
    assert cgroups.paths("dh-brca-alice", proc, Path("/cg")) == {
        "memory": Path("/cg/memory/process_api/abc/datahavn/dh-brca-alice"),
        "cpu": Path("/cg/cpu/datahavn/dh-brca-alice"),
        "pids": Path("/cg/pids/datahavn/dh-brca-alice"),
        "freezer": Path("/cg/freezer/datahavn/dh-brca-alice"),
    }


def test_limit_settings_are_checked(tmp_path):
    base = {"DATAHAVN_STATE_DIR": str(tmp_path)}
    s = Settings.from_env({**base, "DATAHAVN_MEM_LIMIT": "1.5G", "DATAHAVN_CPU_LIMIT": "0.5",
                           "DATAHAVN_PIDS_LIMIT": "300"})  # fmt: skip
    assert (s.mem_limit, s.cpu_limit, s.pids_limit) == (int(1.5 * (1 << 30)), 0.5, 300)
    assert Settings.from_env(base).mem_limit == 4 << 30
    for name, value, message in [
        ("DATAHAVN_MEM_LIMIT", "lots", "not a size"),
        ("DATAHAVN_MEM_LIMIT", "10M", "below 64M"),
        ("DATAHAVN_CPU_LIMIT", "fast", "not a number"),
        ("DATAHAVN_CPU_LIMIT", "0", "out of range"),
        ("DATAHAVN_PIDS_LIMIT", "5", "out of range"),
    ]:
        with pytest.raises(SettingsError, match=message):
            Settings.from_env({**base, name: value})
