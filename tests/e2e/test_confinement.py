"""A kernel is a sealed box: every way out, tried from a real kernel as a hostile researcher would.

Each attack runs as a cell in a real workspace (through the proxy, audited), is asserted to
fail, and its code is asserted to be in the audit trail. Listeners the kernels try to reach
run here, as root, on the host.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from ..hubs import await_for, host_pids, service_port, wait_for


class RootListeners:
    """TCP and UDP listeners on 127.0.0.1 and ::1, run by the test (root); they record what reaches them."""

    def __init__(self):
        self.received: list[tuple[str, bytes]] = []
        self.socks = []
        self.ports = {}
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            for kind, name in ((socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")):
                s = socket.socket(family, kind)
                s.bind((host, 0))
                if kind == socket.SOCK_STREAM:
                    s.listen()
                self.socks.append((name, s))
                self.ports[(name, host)] = s.getsockname()[1]
        for name, s in self.socks:
            threading.Thread(target=self._serve, args=(name, s), daemon=True).start()

    def _serve(self, name, s):
        try:
            while True:
                if name == "tcp":
                    conn, _ = s.accept()
                    self.received.append((name, conn.recv(1 << 20)))
                    conn.close()
                else:
                    self.received.append((name, s.recvfrom(65536)[0]))
        except OSError:
            pass

    def close(self):
        for _, s in self.socks:
            s.close()


def recorded(hub, user: str, marker: str) -> bool:
    """Is the cell carrying ``marker`` in the audit trail (the attempt is recorded, not only refused)?"""
    return any(marker in (e.get("code") or "") for e in hub.events(kind="execute", user=user))


async def attempt(hub, k, user: str, name: str, code: str) -> dict:
    """Run an attack in a kernel: the cell prints JSON {"ok": bool, "why": str}; return it once it is recorded."""
    marker = f"# attack: {name}"
    wrapped = (f"{marker}\nimport json as _j\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
               + "    _r = {'ok': True, 'why': ''}\nexcept Exception as _e:\n"
               "    _r = {'ok': False, 'why': type(_e).__name__ + ': ' + str(_e)}\nprint(_j.dumps(_r))")  # fmt: skip
    r = await k.execute(wrapped, timeout=60)
    assert r.status == "ok", f"{name}: {r.error}"
    result = json.loads(r.stdout.strip().splitlines()[-1])
    await await_for(lambda: recorded(hub, user, marker), timeout=10, message=f"{name} recorded")
    return result


@pytest.fixture
def listeners():
    ls = RootListeners()
    yield ls
    ls.close()


async def test_the_network_is_closed(hub, kernel, listeners):
    k = await kernel("alice", "brca")
    audit_port = service_port(hub.audit_pid())
    attacks = {
        f"tcp to root {host}": f"s = socket.create_connection(({host!r}, {listeners.ports[('tcp', host)]}),"
                               " timeout=3)\ns.sendall(b'x' * (1 << 20))"
        for host in ("127.0.0.1", "::1")
    }  # fmt: skip
    for host in ("127.0.0.1", "::1"):
        family = "socket.AF_INET6" if ":" in host else "socket.AF_INET"
        attacks[f"udp to root {host}"] = (
            f"u = socket.socket({family}, socket.SOCK_DGRAM)\n"
            f"u.sendto(b'leak', ({host!r}, {listeners.ports[('udp', host)]}))\n"
            "import time; time.sleep(0.2)\n"
            "raise OSError('sent, but to nothing outside the box')"
        )
    attacks["name resolution"] = "socket.getaddrinfo('pypi.org', 443)"
    attacks["the internet"] = "socket.create_connection(('1.1.1.1', 443), timeout=3)"
    attacks["the hub"] = f"socket.create_connection(('127.0.0.1', {hub.port}), timeout=3)"
    for name, code in attacks.items():
        result = await attempt(hub, k, "alice", name, f"import socket\n{code}")
        assert not result["ok"], f"{name} worked"
    time.sleep(0.5)
    assert listeners.received == [], "something reached a listener outside the box"
    # and the audit service, which a kernel would flood with forged events given the chance
    post = ("import urllib.request\n"
            f"urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{audit_port}/services/datahavn-audit/"
            "api/events', data=b'{\"kind\": \"execute\"}', method='POST'), timeout=3)")  # fmt: skip
    assert not (await attempt(hub, k, "alice", "post to the audit service", post))["ok"]


PAIRS = [(("alice", "brca"), ("bob", "cardio")), (("carol", "brca"), ("carol", "cardio"))]


@pytest.mark.parametrize("a, b", PAIRS, ids=["alice-brca_bob-cardio", "carol-brca_carol-cardio"])
async def test_two_workspaces_share_nothing(hub, kernel, a, b):
    ka, kb = await kernel(*a), await kernel(*b)
    tag = os.urandom(4).hex()
    # b leaves things where a shared machine would let a find them
    setup = f"""
import os, socket, threading
from distributed import LocalCluster, Client
paths = ['/tmp/leak-{tag}', '/var/tmp/leak-{tag}', '/dev/shm/leak-{tag}', '/run/lock/leak-{tag}']
for p in paths:
    open(p, 'w').write('secret')
tcp = socket.create_server(('127.0.0.1', 0)); tcp_port = tcp.getsockname()[1]
abstract = socket.socket(socket.AF_UNIX); abstract.bind('\\0leak-{tag}'); abstract.listen()
unix = socket.socket(socket.AF_UNIX); unix.bind('/tmp/leak-{tag}.sock'); unix.listen()
cluster = LocalCluster(n_workers=1, threads_per_worker=1)  # TCP without TLS: what a researcher may start
client = Client(cluster)
print(tcp_port, cluster.scheduler_address, list(client.run(os.getuid).values())[0] == os.getuid())
"""
    r = await kb.execute(setup, timeout=120)
    assert r.status == "ok", r.error
    tcp_port, scheduler, proof = r.stdout.split()[-3:]
    assert proof == "True"  # the cluster is real: it runs b's code as b
    from datahavn.names import account_name

    b_pid = host_pids(account_name(*b), b"datahavn.kernels.launch")[0]
    user = a[0]
    attacks = {
        "read b's /tmp": f"open('/tmp/leak-{tag}').read()",
        "read b's /var/tmp": f"open('/var/tmp/leak-{tag}').read()",
        "read b's /dev/shm": f"open('/dev/shm/leak-{tag}').read()",
        "read b's /run/lock": f"open('/run/lock/leak-{tag}').read()",
        "b's loopback listener": f"import socket; socket.create_connection(('127.0.0.1', {tcp_port}), timeout=3)",
        "b's abstract socket": f"import socket; socket.socket(socket.AF_UNIX).connect('\\0leak-{tag}')",
        "b's unix socket file": f"import socket; socket.socket(socket.AF_UNIX).connect('/tmp/leak-{tag}.sock')",
        "b's LocalCluster": f"import os, distributed\ndistributed.Client({scheduler!r}, timeout=5).run(os.getuid)",
        "b's process": f"import os; os.kill({b_pid}, 0)",
    }
    for name, code in attacks.items():
        result = await attempt(hub, ka, user, f"{name} ({a} -> {b})", code)
        assert not result["ok"], f"{name}: {a} reached {b}"
    # a's /proc shows a's own processes only: none of b's account, none of another uid
    r = await ka.execute("import os\nprint(sorted({int(open(f'/proc/{p}/status').read().split('Uid:')[1].split()[0])"
                         " for p in os.listdir('/proc') if p.isdigit()}))")  # fmt: skip
    assert json.loads(r.stdout) == [int(json.loads((await ka.execute("import os; print(os.getuid())")).stdout))]
    await kb.execute("client.close(); cluster.close()")


async def test_the_server_and_its_credentials_are_out_of_reach(hub, kernel):
    k = await kernel("alice", "brca")
    (pid,) = host_pids("dh-brca-alice", b"jupyterhub-singleuser")
    port = service_port(pid)
    attacks = {
        "signal the server": f"import os; os.kill({pid}, 0)",
        "read the server's environment": f"open('/proc/{pid}/environ', 'rb').read()",
        "read the server log": f"open({str(hub.layout.logs / 'dh-brca-alice.log')!r}, 'a')",
        "list the hub's state": f"import os; os.listdir({str(hub.layout.hub)!r})",
    }
    for name, code in attacks.items():
        assert not (await attempt(hub, k, "alice", name, code))["ok"], f"{name} worked"
    # the server's port, taken in the box, is the box's own: the proxy and the machine still reach the server
    hijack = (f"import socket, threading\ns = socket.create_server(('127.0.0.1', {port}))\n"
              "def serve():\n    while True:\n        c, _ = s.accept()\n"
              "        c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhijacked'); c.close()\n"
              "threading.Thread(target=serve, daemon=True).start()")  # fmt: skip
    assert (await attempt(hub, k, "alice", "bind the server's port", hijack))["ok"]
    token = hub.user_token("alice")
    through_proxy = requests.get(f"{hub.url}/user/alice/brca/api/status", timeout=30,
                                 headers={"Authorization": f"token {token}"})  # fmt: skip
    assert through_proxy.status_code == 200 and "hijacked" not in through_proxy.text
    with socket.create_connection(("127.0.0.1", port), timeout=10) as direct:
        direct.sendall(b"GET /user/alice/brca/api/status HTTP/1.0\r\n\r\n")
        assert b"hijacked" not in direct.recv(4096)
    # no file descriptor but the kernel's own: nothing open on a log, the hub or another workspace
    r = await k.execute("import os\nfor fd in os.listdir('/proc/self/fd'):\n"
                        "    try: print(os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError: pass")  # fmt: skip
    targets = [t for t in r.stdout.split() if t.startswith("/")]
    assert not [t for t in targets if "/hub/" in t or t.endswith(".log") and "/k-" not in t], targets
    # no credential in the environment: every value tried as a hub token
    r = await k.execute("import os, json; print(json.dumps(dict(os.environ)))")
    env = json.loads(r.stdout)
    assert not {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "DATAHAVN_AUDIT_URL"} & set(env)
    for value in env.values():
        answer = requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {value}"}, timeout=30)
        assert answer.status_code in (401, 403), f"{value[:8]}... is a hub token"


async def test_planted_code_and_config_never_run(hub, kernel):
    lay = hub.layout
    hub.start("alice", "brca")  # the workspace exists; its next kernels start after the planting
    # where both members' kernels could write, and the host can see: had planted code run, it would be here
    marker = lay.shared("brca") / f"planted-ran-{os.urandom(3).hex()}"
    # planting is done by the researchers themselves, from their kernels: as root here, with their ownership
    plant = f"import sys; open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for where in (lay.workspace("brca", "alice"), lay.shared("brca")):
        (where / "datahavn").mkdir(exist_ok=True)
        (where / "datahavn" / "__init__.py").write_text(plant)
        (where / "numpy.py").write_text(plant)
        (where / "matplotlibrc").write_text("backend: module://numpy\nfont.size: 99\n")
    startup = lay.workspace("brca", "alice") / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-evil.py").write_text(plant)
    dask_cfg = lay.workspace("brca", "alice") / ".config" / "dask"
    dask_cfg.mkdir(parents=True, exist_ok=True)
    (dask_cfg / "evil.yaml").write_text("distributed:\n  scheduler:\n    preload: [numpy]\n")
    check = ("import numpy, datahavn, matplotlib, dask, os, sys\n"
             "print(numpy.__file__.startswith(sys.prefix), datahavn.__file__.startswith(sys.prefix),"
             " matplotlib.rcParams['font.size'], dask.config.get('distributed.scheduler.preload', []),"
             " os.getcwd(), project.name)")  # fmt: skip
    k = await kernel("alice", "brca")
    r = await k.execute(check)
    assert r.status == "ok", r.error
    np_real, dh_real, font, preload, cwd, name = r.stdout.split()
    assert (np_real, dh_real, font, preload, name) == ("True", "True", "10.0", "[]", "brca"), r.stdout
    # carol, with a notebook in shared/: her kernel's working directory is where alice planted
    token = hub.user_token("carol")
    url = hub.start("carol", "brca")
    session = requests.post(f"{url}api/sessions", headers={"Authorization": f"token {token}"}, timeout=60,
                            json={"path": "shared/analysis.ipynb", "type": "notebook", "name": "",
                                  "kernel": {"name": "datahavn-genomics"}}).json()  # fmt: skip
    from ..kernel_client import KernelClient

    kc = await KernelClient.connect(url, session["kernel"]["id"], token)
    try:
        r = await kc.execute(check)
        assert r.status == "ok", r.error
        np_real, dh_real, font, preload, cwd, name = r.stdout.split()
        assert cwd == str(lay.shared("brca")), cwd
        assert (np_real, dh_real, font, name) == ("True", "True", "10.0", "brca"), r.stdout
    finally:
        kc.close()
    assert not marker.exists(), marker.read_text()


async def test_a_shell_works_inside_the_box(hub, kernel):
    k = await kernel("alice", "brca")
    r = await k.execute("import subprocess\nprint(subprocess.run(['ls'], capture_output=True, text=True).stdout)\n"
                        "print(get_ipython().getoutput('ls'))\n"
                        "print(get_ipython().getoutput('echo $SHELL; id -un'))")  # fmt: skip
    assert r.status == "ok", r.error
    assert r.stdout.count("example.ipynb") >= 2 and "/bin/bash" in r.stdout and "dh-brca-alice" in r.stdout


async def _latency(k, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert (await k.execute("1+1")).status == "ok"
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.parametrize("what", ["memory", "fork"])
async def test_limits_stop_one_workspace_and_spare_the_others(hub, kernel, what):
    alice, bob = await kernel("alice", "brca"), await kernel("bob", "cardio")
    idle = await _latency(bob)
    if what == "memory":
        attack = "hog = b'x' * (3 << 30)"  # past the test hub's 1.5 GiB: the kernel is stopped
        notice, kind = "memory limit", "memory"
    else:
        # children that exit at once and are never reaped: each holds a process slot, hardly any memory
        attack = ("import os\nkids = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                  "            os._exit(0)\n        kids += 1\nexcept OSError as e:\n"
                  "    print('fork refused after', kids, e)")  # fmt: skip
        notice, kind = "processes", "processes"
    start = hub.events()[-1]["seq"]
    task = asyncio.ensure_future(alice.execute(attack, timeout=120, until=notice))
    await asyncio.sleep(1.0)
    during = await _latency(bob)
    r = await task
    assert during <= 2 * idle + 0.05, f"bob's cell took {during * 1000:.0f} ms under attack, {idle * 1000:.0f} idle"
    text = r.stdout + r.stderr + r.error
    assert notice in text, text
    events = await await_for(lambda: [e for e in hub.events(kind="resource_limit", after_seq=start)
                                      if e["user"] == "alice" and e["outcome"] == kind], timeout=10)  # fmt: skip
    assert events[0]["project"] == "brca"
    # the workspace's processes end with it
    hub.stop("alice", "brca")
    hub.wait_stopped("alice", "brca", 60)


async def test_revocation_outruns_a_fork_loop(hub, kernel, cli):
    import pwd

    user, project = hub.new_member()
    k = await kernel(user, project)
    # each process forks a child that goes on forking, and waits for it: a chain no single pass can end
    loop = ("import os, time\nwhile True:\n    try:\n        pid = os.fork()\n        if pid:\n"
            "            os.waitpid(pid, 0)\n    except OSError:\n        time.sleep(0.01)\n")  # fmt: skip
    start = f"import subprocess, sys\nfor _ in range(4):\n    subprocess.Popen([sys.executable, '-c', {loop!r}])\n"
    r = await k.execute(start + "print('looping')")
    assert "looping" in r.stdout, r.error
    from datahavn.names import account_name

    uid = pwd.getpwnam(account_name(user, project)).pw_uid

    def alive():
        out = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if f"Uid:\t{uid}\t" in Path(f"/proc/{entry.name}/status").read_text():
                        out.append(int(entry.name))
                except OSError:
                    pass
        return out

    assert len(alive()) > 4
    t0 = time.monotonic()
    assert cli("revoke", user, project).returncode == 0
    wait_for(lambda: not alive(), timeout=60, message="processes of the revoked workspace")
    print(f"revocation cleared the workspace in {time.monotonic() - t0:.1f} s")


EXTRA = str(Path(__file__).with_name("hub_extra.py"))


async def test_the_allow_list_opens_one_address_and_no_other(make_hub, kernel, listeners):
    allowed, other = listeners.ports[("tcp", "127.0.0.1")], listeners.ports[("tcp", "::1")]
    h = make_hub("relay", DATAHAVN_HUB_EXTRA_CONFIG=EXTRA, DATAHAVN_TEST_ALLOW=f"127.0.0.1:{allowed}")
    user, project = h.new_member()
    k = await kernel(user, project, on_hub=h)
    ok = await attempt(h, k, user, "the allowed address",
                       f"import socket\ns = socket.create_connection(('127.0.0.1', {allowed}), timeout=5)\n"
                       "s.sendall(b'through the relay'); s.close()")  # fmt: skip
    assert ok["ok"], ok
    wait_for(lambda: ("tcp", b"through the relay") in listeners.received, timeout=10, message="relayed bytes")
    for name, code in {
        "another port": f"socket.create_connection(('127.0.0.1', {other}), timeout=3)",
        "the same port over IPv6": f"socket.create_connection(('::1', {allowed}), timeout=3)",
    }.items():
        assert not (await attempt(h, k, user, name, f"import socket\n{code}"))["ok"], name


async def test_in_a_pod_landlock_alone_keeps_the_server_out_of_reach(make_hub, kernel):
    """Kubernetes mode (``DATAHAVN_SANDBOX=pod``): no namespaces of ours, the pod is the box; still no signal,
    no chosen port, no credential."""
    from datahavn.names import account_name

    h = make_hub("pod", DATAHAVN_HUB_EXTRA_CONFIG=EXTRA, DATAHAVN_TEST_SANDBOX="pod")
    user, project = h.new_member()
    k = await kernel(user, project, on_hub=h)
    (pid,) = host_pids(account_name(user, project), b"jupyterhub-singleuser")
    for name, code in {
        "signal the server": f"import os; os.kill({pid}, 0)",
        "bind the server's port": f"import socket; socket.socket().bind(('127.0.0.1', {service_port(pid)}))",
        "read the server's environment": f"open('/proc/{pid}/environ', 'rb').read()",
    }.items():
        assert not (await attempt(h, k, user, name, code))["ok"], f"{name} worked"
    env = json.loads((await k.execute("import os, json; print(json.dumps(dict(os.environ)))")).stdout)
    assert not [v for v in env.values() if requests.get(f"{h.url}/hub/api/user", timeout=30,
                                                        headers={"Authorization": f"token {v}"}).ok]  # fmt: skip
