"""``datahavn-sandbox``: the kernel provisioner that starts every kernel in its box (:mod:`.sandbox`).

Registered as a ``jupyter_client.kernel_provisioners`` entry point, named by the Datahavn kernel
spec, and forced for every kernel by the extension (:func:`force`), so a kernel spec planted
anywhere cannot start a kernel outside the box. It runs in the server, as the workspace's account:

- each kernel gets a runtime folder of its own (``/run/datahavn/<uid>/k-<kernel id>``, 0700):
  its connection file, its ipc sockets, its log, its ``/etc/passwd``, a fresh matplotlib folder;
- the command and the environment are the box's, never the kernel spec's;
- before the kernel's first instruction: Landlock (:mod:`.landlock`), then bubblewrap on one
  machine (``DATAHAVN_SANDBOX=bwrap``, the default) or nothing more in a Kubernetes pod
  (``DATAHAVN_SANDBOX=pod``, where the pod is the box); every file descriptor but 0-2 closed,
  stdin from /dev/null, output to the kernel's own log;
- the allow-list's relays (``DATAHAVN_NET_ALLOW``, empty by default) are served here, in the
  server, which alone may open a connection to those addresses.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jupyter_client.provisioning import LocalProvisioner
from traitlets import Unicode, default

from datahavn.names import project_group

from . import landlock
from .sandbox import BWRAP, USR_LINKS, KernelBox, bwrap_argv, kernel_command, kernel_env, parse_relays, passwd_lines

NAME = "datahavn-sandbox"
MECHANISMS = ("bwrap", "pod")


class SandboxError(RuntimeError):
    """A kernel that cannot be boxed is not started."""


class SandboxProvisioner(LocalProvisioner):
    """Start the kernel in the workspace's box; refuse to start it otherwise."""

    mechanism = Unicode(
        help="""How the box is made: "bwrap" (one machine: bubblewrap namespaces) or "pod" (Kubernetes: the pod
        is the box). Defaults to $DATAHAVN_SANDBOX, else "bwrap". Anything else refuses to start kernels.""",
    ).tag(config=True)

    @default("mechanism")
    def _default_mechanism(self):
        return os.environ.get("DATAHAVN_SANDBOX", "bwrap")

    bwrap = Unicode(BWRAP, help="""The bubblewrap binary (Debian's package bubblewrap).""").tag(config=True)

    def box(self, cwd: str | None = None) -> KernelBox:
        """This kernel's box, from what the spawner put in the server's environment."""
        env = os.environ
        try:
            project, workspace = env["DATAHAVN_PROJECT"], env["DATAHAVN_WORKSPACE"]
            project_dir = env["DATAHAVN_PROJECT_DIR"]
        except KeyError as e:
            raise SandboxError(f"not a Datahavn workspace (${e.args[0]} is not set)") from None
        runtime = env.get("JUPYTER_RUNTIME_DIR") or f"/run/datahavn/{os.getuid()}"
        kernel_dir = os.path.join(runtime, f"k-{self.kernel_id}")
        cgroups = {c: env[f"DATAHAVN_CGROUP_{c.upper()}"] for c in ("memory", "cpu")
                   if env.get(f"DATAHAVN_CGROUP_{c.upper()}")}  # fmt: skip
        return KernelBox(
            user_env=sys.prefix, project_dir=project_dir, workspace=workspace,
            tmp=env.get("DATAHAVN_TMP") or os.path.join(runtime, "tmp"), kernel_dir=kernel_dir,
            cwd=str(cwd or workspace), account=env.get("USER") or str(os.getuid()), uid=os.getuid(),
            gid=os.getgid(), group=project_group(project),
            relays=parse_relays(env.get("DATAHAVN_NET_ALLOW", ""), kernel_dir), cgroups=cgroups,
        )  # fmt: skip

    async def pre_launch(self, **kwargs):
        if self.mechanism not in MECHANISMS:
            raise SandboxError(f"unknown sandbox {self.mechanism!r}: kernels are not started")
        if self.mechanism == "bwrap" and not os.access(self.bwrap, os.X_OK):
            raise SandboxError(f"{self.bwrap} is missing (Debian package bubblewrap): kernels are not started")
        self._box = box = self.box(kwargs.get("cwd"))
        self._prepare_dir(box)
        km = self.parent
        km.connection_file = box.connection_file
        if km.transport == "ipc":
            km.ip = box.ipc_base
        kwargs = await super().pre_launch(**kwargs)
        kwargs["cmd"] = kernel_command(box)
        kwargs["env"] = kernel_env(kwargs.get("env") or os.environ, box)
        return kwargs

    def _prepare_dir(self, box: KernelBox) -> None:
        os.makedirs(os.path.join(box.kernel_dir, "empty"), mode=0o500, exist_ok=True)
        os.chmod(box.kernel_dir, 0o700)
        for sub in ("tmp", "var-tmp"):
            os.makedirs(os.path.join(box.tmp, sub), mode=0o700, exist_ok=True)
        passwd, group = passwd_lines(box)
        Path(box.kernel_dir, "passwd").write_text(passwd)
        Path(box.kernel_dir, "group").write_text(group)
        # a fresh matplotlib folder for every start, with the font cache built at install
        shutil.rmtree(box.mpl_dir, ignore_errors=True)
        os.makedirs(box.mpl_dir, mode=0o700)
        for cache in glob.glob(os.path.join(box.user_env, "etc", "datahavn", "matplotlib", "fontlist-*.json")):
            shutil.copy(cache, box.mpl_dir)

    async def launch_kernel(self, cmd, **kwargs):
        box = self._box
        boxed = self.mechanism == "bwrap"
        # sharing its server's network (a pod), the kernel may bind ephemeral ports and its relays' only
        ports = None if boxed else (0, *(r.port for r in box.relays))
        scoped = True
        if landlock.abi() < landlock.NEEDED_ABI:
            if boxed:
                raise SandboxError(f"this Linux has Landlock ABI {landlock.abi()}, {landlock.NEEDED_ABI} is needed")
            self.log.warning("datahavn: no Landlock (ABI %d): the kernel is not scoped", landlock.abi())
            scoped = False
        if self.mechanism == "bwrap":
            links = [name for name in USR_LINKS if os.path.islink(f"/{name}")]
            cmd = bwrap_argv(box, cmd, links, self.bwrap)
        await self._start_relays(box)

        def preexec():
            try:
                if scoped:
                    landlock.restrict(ports)
            except BaseException as e:  # into the kernel's log: subprocess only says "preexec_fn failed"
                os.write(2, f"datahavn: cannot box the kernel: {e!r}\n".encode())
                raise

        log = open(os.path.join(box.kernel_dir, "kernel.log"), "ab")
        try:
            self.process = subprocess.Popen(
                cmd, env=kwargs["env"], cwd=box.kernel_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                close_fds=True, start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip
        finally:
            log.close()
        self.pid = self.pgid = self.process.pid
        self.cwd = box.cwd
        return self.connection_info

    async def _start_relays(self, box: KernelBox) -> None:
        self._relays = []
        for relay in box.relays:
            if os.path.exists(relay.socket):
                os.unlink(relay.socket)
            server = await asyncio.start_unix_server(_forwarder(relay.host, relay.port), path=relay.socket)
            self._relays.append(server)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        for server in getattr(self, "_relays", ()):
            server.close()
        box = getattr(self, "_box", None)
        if box is not None and not restart:
            shutil.rmtree(box.kernel_dir, ignore_errors=True)

    def resolve_path(self, path_str: str) -> str | None:
        # the lab asks where a traceback's file is: answer inside the workspace only
        path = super().resolve_path(path_str)
        box = getattr(self, "_box", None)
        if path is None or box is None:
            return None
        real = os.path.realpath(path)
        inside = (box.workspace, os.path.join(box.project_dir, "shared"))
        return path if any(real == d or real.startswith(d + os.sep) for d in inside) else None


def _forwarder(host: str, port: int):
    """A unix-socket client of the relay, piped to ``host:port``: the one connection the allow-list allows."""

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(kernel_reader, kernel_writer):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            kernel_writer.close()
            return
        await asyncio.gather(pipe(kernel_reader, writer), pipe(reader, kernel_writer))

    return handle


def force(serverapp) -> None:
    """Every kernel of this server starts through :class:`SandboxProvisioner`, whatever its kernel spec says."""
    from jupyter_client.provisioning import KernelProvisionerFactory

    factory = KernelProvisionerFactory.instance(parent=serverapp.kernel_manager)
    if getattr(factory, "_datahavn_forced", False):
        return
    create = factory.create_provisioner_instance

    def create_sandboxed(kernel_id, kernel_spec, parent):
        kernel_spec.metadata = {**(kernel_spec.metadata or {}), "kernel_provisioner": {"provisioner_name": NAME}}
        return create(kernel_id, kernel_spec, parent)

    factory.create_provisioner_instance = create_sandboxed
    factory.default_provisioner_name = NAME
    factory._datahavn_forced = True
