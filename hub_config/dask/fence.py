"""On one machine, a workspace account's traffic stays on the machine: an nftables fence for its Dask jobs.

Scheduler and workers share the node's network (their peers must reach them), so code run on a
worker could listen on, or connect out through, the machine's own interfaces. The gateway (root)
puts each account that runs a cluster into the set of its table: every packet that account's
sockets send out of an interface other than loopback is rejected. The cluster, the gateway and
the hub stay reachable (they listen on loopback), nothing else is: not the site's network, not
the researcher's own laptop. The table is the gateway's (named by its state folder) and goes
with it.

A Slurm cluster of many nodes needs the site's firewall instead (a network zone per project):
see the README's "Deploy".
"""

from __future__ import annotations

import hashlib
import subprocess

NFT = "/usr/sbin/nft"


class FenceError(RuntimeError):
    pass


def table_name(state_dir: str) -> str:
    return "datahavn_dask_" + hashlib.sha256(state_dir.encode()).hexdigest()[:12]


def table_script(table: str) -> str:
    """The fence's table: a set of uids, and one rule rejecting whatever they send beyond loopback."""
    return (
        f"table inet {table} {{\n"
        "  set accounts { typeof meta skuid; }\n"
        "  chain out {\n"
        "    type filter hook output priority filter; policy accept;\n"
        '    meta skuid @accounts oifname != "lo" counter reject\n'
        "  }\n"
        "}\n"
    )


def _nft(args: list[str], script: str | None = None, timeout: float = 10) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([NFT, *args], input=script, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FenceError(f"nft cannot run: {e}") from None


def fence(table: str, uid: int) -> None:
    """Add ``uid`` to the fence (made on first use); raise :class:`FenceError` if it cannot be."""
    if _nft(["list", "set", "inet", table, "accounts"]).returncode != 0:
        made = _nft(["-f", "-"], table_script(table))
        if made.returncode != 0:
            raise FenceError(f"cannot create the nftables table {table}: {made.stderr.strip()}")
    added = _nft(["add", "element", "inet", table, "accounts", f"{{ {int(uid)} }}"])
    if added.returncode != 0:
        raise FenceError(f"cannot fence uid {uid}: {added.stderr.strip()}")


def remove(table: str) -> None:
    _nft(["delete", "table", "inet", table])
