"""Landlock, from Python (ctypes): what a kernel may bind and whom it may signal or reach.

Applied to a kernel before it execs (in the launch's ``preexec_fn``), so nothing the
kernel runs can lift it. The rules:

- where the kernel shares its network with its server (a Kubernetes pod), TCP ``bind`` only to
  port 0 (an ephemeral port the kernel does not choose) and to the allow-list relays' ports: it
  can never take a chosen port, such as its server's. In a box with a network namespace of its
  own, every port is its own and none is its server's: no bind rule there (tornado binds IPv6
  to the port IPv4 was given, which a port-0 rule would refuse);
- signals only to processes of its own Landlock domain (ABI 6 scope): never its server;
- abstract unix sockets only of its own domain (ABI 6 scope).

Linux's ABI numbers: 4 added TCP rules, 6 the scopes. x86_64 and aarch64 syscall numbers.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
CREATE_RULESET_VERSION = 1
RULE_NET_PORT = 2
ACCESS_NET_BIND_TCP = 1 << 0
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
PR_SET_NO_NEW_PRIVS = 38
#: the ABI this module's rules need (TCP rules and scopes)
NEEDED_ABI = 6


class LandlockError(OSError):
    pass


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _call(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(errno, f"{what}: {os.strerror(errno)}")
    return result


def abi() -> int:
    """The running kernel's Landlock ABI version (0: none)."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    version = _libc.syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(version), 0)


def restrict(bind_ports=(0,)) -> None:
    """Restrict this process (and all it starts) for good; ``bind_ports`` None: no TCP rule, scopes only.

    Safe between fork and exec (nothing of note is allocated)."""
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    net = 0 if bind_ports is None else ACCESS_NET_BIND_TCP
    attr = _RulesetAttr(0, net, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    fd = _call(_libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)),
               "landlock_create_ruleset")  # fmt: skip
    try:
        for port in bind_ports or ():
            rule = _NetPortAttr(ACCESS_NET_BIND_TCP, port)
            _call(_libc.syscall(add_rule, ctypes.c_int(fd), ctypes.c_int(RULE_NET_PORT), ctypes.byref(rule),
                                ctypes.c_uint32(0)), "landlock_add_rule")  # fmt: skip
        _call(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _call(_libc.syscall(restrict_self, ctypes.c_int(fd), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(fd)
