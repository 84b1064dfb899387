"""The box a kernel runs in: its command, its environment and its view of the machine (pure builders).

On one machine a kernel and all it starts run under bubblewrap (``bwrap``) in new user,
network, pid, ipc, uts and mount namespaces (:func:`bwrap_argv`):

- **network**: a namespace of its own with only loopback. Nothing outside is reachable (no
  route, no name server), and what the kernel listens on is reachable from nothing outside.
  The allow-list (empty by default) is a relay per destination: a unix socket the server
  forwards to that one address, which the kernel reaches at ``127.0.0.1:<port>``;
- **files**: a root of its own with only ``/usr``, ``/etc`` (with ``passwd`` and ``group``
  naming just this account), the users' environment, the project's data (read-only), its
  shared folder and this workspace, the workspace's own ``/tmp`` and ``/var/tmp``, a fresh
  ``/dev/shm`` and ``/run``, and this kernel's runtime folder (its connection file and ipc
  sockets). No other project, workspace, runtime folder or log is there to name;
- **processes**: ``/proc`` shows the kernel's own processes only; it cannot name, signal or
  trace its server (Landlock scopes signals too, :mod:`.landlock`); no nested user namespaces;
  it dies with its server.

In a Kubernetes pod the pod is the box (its own network policy, ``/tmp`` and volumes); the
kernel still gets the same environment, command and Landlock rules.

What the kernel runs is fixed here (:func:`kernel_command`), never taken from a kernel spec:
``python -I`` (no working directory, user site or ``PYTHON*`` variables on its path), the
IPython profile and Dask config from root-owned folders, and its environment from an
allow-list (:func:`kernel_env`): no hub token, no audit address.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BWRAP = "/usr/bin/bwrap"
#: Variables of the server's environment a kernel keeps (the project's, the locale's)
KEEP = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "DATAHAVN_PROJECT", "DATAHAVN_PROJECT_DIR", "DATAHAVN_WORKSPACE",
        "DATAHAVN_DASK_WORKERS", "DATAHAVN_DASK_THREADS", "DATAHAVN_DASK_PROCESSES", "DATAHAVN_DASK_MEMORY",
        "NUMBA_CACHE_DIR", "JPY_SESSION_NAME",
        # project.dask() on a gateway: its addresses, and the workspace's token that opens it and nothing else
        "DATAHAVN_DASK_ENGINE", "DATAHAVN_DASK_GATEWAY", "DATAHAVN_DASK_PROXY", "DATAHAVN_DASK_TOKEN",
        "DATAHAVN_DASK_TIMEOUT",
        # the server's path (not a secret): the dashboard's link in a notebook
        "JUPYTERHUB_SERVICE_PREFIX")  # fmt: skip
#: Addresses a kernel reaches through its relays (at 127.0.0.1 and the same port)
RELAYED = ("DATAHAVN_DASK_GATEWAY", "DATAHAVN_DASK_PROXY")
#: Folders of the home a tool reads configuration from even when told otherwise (Dask adds ~/.config/dask
#: to $DASK_CONFIG): covered by an empty read-only folder in the box
HOME_CONFIG = (".config/dask",)
#: Debian's merged /usr: these are links into it
USR_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")


@dataclass(frozen=True)
class Relay:
    """One allowed destination: the kernel reaches ``host:port`` at ``127.0.0.1:port`` through ``socket``."""

    host: str
    port: int
    socket: str


@dataclass(frozen=True)
class KernelBox:
    """Everything a kernel's box is made of (paths are the host's, and the same inside)."""

    user_env: str  # the users' environment (read-only)
    project_dir: str  # projects/<p>
    workspace: str  # projects/<p>/work/<user>
    tmp: str  # the workspace's own folder for /tmp and /var/tmp
    kernel_dir: str  # this kernel's runtime folder: connection file, ipc sockets, logs
    cwd: str
    account: str
    uid: int
    gid: int
    group: str
    relays: tuple[Relay, ...] = ()
    #: cgroup folders of the workspace, shown read-only so Dask sees its limits
    cgroups: Mapping[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return os.path.join(self.user_env, "bin", "python")

    @property
    def connection_file(self) -> str:
        return os.path.join(self.kernel_dir, "kernel.json")

    @property
    def ipc_base(self) -> str:
        return os.path.join(self.kernel_dir, "ipc")

    @property
    def mpl_dir(self) -> str:
        return os.path.join(self.kernel_dir, "matplotlib")


def parse_relays(text: str, kernel_dir: str) -> tuple[Relay, ...]:
    """``host:port,host:port`` (the spawner's ``DATAHAVN_NET_ALLOW``) as relays of this kernel."""
    relays = []
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"network allow-list entry {item!r} is not host:port")
        relays.append(Relay(host.strip("[]"), int(port), os.path.join(kernel_dir, f"net-{len(relays)}.sock")))
    return tuple(relays)


def kernel_command(box: KernelBox) -> list[str]:
    """The kernel's command: always ours, isolated mode, audited startup only."""
    return [
        box.python, "-I", "-m", "datahavn.kernels.launch", "-f", box.connection_file,
        # history in memory: the profile folder is read-only, and a history file is no place for data
        "--HistoryManager.hist_file=:memory:",
    ]  # fmt: skip


def kernel_env(server_env: Mapping[str, str], box: KernelBox) -> dict[str, str]:
    """The kernel's environment: an allow-list of the server's, and what the box defines. No credential."""
    env = {k: server_env[k] for k in KEEP if k in server_env}
    etc = os.path.join(box.user_env, "etc", "datahavn")
    env.update(
        PATH=f"{box.user_env}/bin:/usr/local/bin:/usr/bin:/bin",
        HOME=box.workspace,
        USER=box.account,
        LOGNAME=box.account,
        SHELL="/bin/bash",
        TERM="xterm-256color",
        PYTHONNOUSERSITE="1",
        # root-owned: a startup file or a config written in the workspace is never read
        IPYTHONDIR=os.path.join(etc, "ipython"),
        DASK_CONFIG=os.path.join(etc, "dask"),
        JUPYTER_CONFIG_DIR=os.path.join(etc, "jupyter"),
        # fresh for every kernel (its font cache copied in): a matplotlibrc left there is never read again
        MPLCONFIGDIR=box.mpl_dir,
        JUPYTER_RUNTIME_DIR=box.kernel_dir,
        DATAHAVN_RELAYS=",".join(f"{r.port}={r.socket}" for r in box.relays),
    )
    for name in RELAYED:
        if name in env:
            env[name] = relayed(env[name], box.relays)
    return env


def relayed(address: str, relays: Iterable[Relay]) -> str:
    """``address`` as the kernel reaches it: through its relay at ``127.0.0.1:<port>`` when it has one."""
    scheme, sep, rest = address.rpartition("://")
    netloc, slash, path = rest.partition("/")
    host, _, port = netloc.rpartition(":")
    for r in relays:
        if port.isdigit() and int(port) == r.port and host.strip("[]") == r.host:
            return f"{scheme}{sep}127.0.0.1:{port}{slash}{path}"
    return address


def passwd_lines(box: KernelBox) -> tuple[str, str]:
    """``/etc/passwd`` and ``/etc/group`` as the kernel sees them: root, nobody and itself, no other account."""
    passwd = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
              f"{box.account}:x:{box.uid}:{box.gid}:datahavn:{box.workspace}:/bin/bash\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")  # fmt: skip
    group = f"root:x:0:\n{box.group}:x:{box.gid}:\nnogroup:x:65534:\n"
    return passwd, group


def bwrap_argv(box: KernelBox, command: Iterable[str], usr_links: Iterable[str] = USR_LINKS,
               bwrap: str = BWRAP, network: bool = False) -> list[str]:  # fmt: skip
    """bubblewrap's command line for ``command`` in ``box`` (``usr_links``: the root's links into /usr).

    ``network``: keep the host's network (a Dask scheduler or worker, which its peers must reach).
    """
    data = os.path.join(box.project_dir, "data")
    shared = os.path.join(box.project_dir, "shared")
    argv = [
        bwrap,
        "--unshare-user", "--unshare-ipc", "--unshare-pid", *(() if network else ("--unshare-net",)),
        "--unshare-uts", "--unshare-cgroup-try",
        "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--hostname", "datahavn",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for name in usr_links:
        argv += ["--symlink", f"usr/{name}", f"/{name}"]
    argv += [
        "--ro-bind", "/etc", "/etc",
        "--ro-bind", os.path.join(box.kernel_dir, "passwd"), "/etc/passwd",
        "--ro-bind", os.path.join(box.kernel_dir, "group"), "/etc/group",
        "--ro-bind", box.user_env, box.user_env,
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/dev/shm",
        "--tmpfs", "/run",
        "--dir", "/run/lock",
        "--bind", os.path.join(box.tmp, "tmp"), "/tmp",
        "--bind", os.path.join(box.tmp, "var-tmp"), "/var/tmp",
        "--bind", box.kernel_dir, box.kernel_dir,
        "--ro-bind", data, data,
        "--bind", shared, shared,
        "--bind", box.workspace, box.workspace,
    ]  # fmt: skip
    # configuration tools read from the home folder whatever their variables say: empty and read-only here
    for sub in HOME_CONFIG:
        argv += ["--ro-bind", os.path.join(box.kernel_dir, "empty"), os.path.join(box.workspace, sub)]
    for controller, path in sorted(box.cgroups.items()):
        argv += ["--ro-bind", path, f"/sys/fs/cgroup/{controller}"]
    argv += ["--chdir", box.cwd, "--", *command]
    return argv
