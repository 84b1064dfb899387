"""The first code of every Datahavn kernel, before any of the researcher's: ``python -I -m datahavn.kernels.launch``.

Started by the server's sandbox provisioner inside the kernel's box. It closes the two
doors Python tools leave open in a writable working directory, starts the allow-list's
relays, then runs ipykernel with ``project`` preloaded:

- matplotlib reads ``./matplotlibrc`` before any other configuration when it is first
  imported: that import runs from a root-owned folder, so a file planted beside a notebook
  (``shared/`` is written by every member) is never read;
- the working directory is not on ``sys.path`` (``-I``), so a ``numpy.py`` or a
  ``datahavn/`` planted there shadows nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import socket
import sys
import threading

SAFE_DIR = sys.prefix  # the users' environment: root-owned


class _RootOwnedCwd(importlib.abc.MetaPathFinder):
    """Runs the first import of each listed package with a root-owned working directory."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        self.names.discard(name)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_elsewhere(module):
            cwd = os.getcwd()
            os.chdir(SAFE_DIR)
            try:
                exec_module(module)
            finally:
                os.chdir(cwd)

        spec.loader.exec_module = exec_elsewhere
        return spec


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(port: int, path: str) -> None:
    """127.0.0.1:port inside the box, to the server's unix socket for one allowed destination."""
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(path)
        except OSError:
            conn.close()
            continue
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def start_relays(spec: str) -> None:
    """``port=/path,port=/path`` ($DATAHAVN_RELAYS, set by the provisioner)."""
    for item in filter(None, spec.split(",")):
        port, _, path = item.partition("=")
        threading.Thread(target=_relay, args=(int(port), path), daemon=True, name=f"relay-{port}").start()


def main(argv: list[str] | None = None) -> None:
    # out of memory, the kernel (and what it starts) goes before its server
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("500")
    except OSError:
        pass
    sys.meta_path.insert(0, _RootOwnedCwd(["matplotlib"]))
    start_relays(os.environ.get("DATAHAVN_RELAYS", ""))
    from ipykernel.kernelapp import IPKernelApp

    args = list(sys.argv[1:] if argv is None else argv)
    IPKernelApp.launch_instance(argv=[*args, "--IPKernelApp.exec_lines=from datahavn.kernels import project"])


if __name__ == "__main__":
    main()
