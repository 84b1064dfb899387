"""``project.dask()`` on a real Slurm through dask-gateway: jobs as the workspace, isolation, revocation, refusals.

One hub of this module runs with ``DATAHAVN_DASK_ENGINE=slurm`` (the gateway as its service
``datahavn-dask``) on this machine's Slurm (``scripts/slurm.sh``). Its users are the demo's
(alice, bob, carol in brca and cardio): the accounts are machine-wide, so the session hub's
workspaces of those pairs are stopped first and this hub's at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from datahavn import admin
from datahavn.names import account_name

from ..hubs import ARTIFACTS, REPO, free_port, wait_for
from .test_browser import browser, open_notebook, page, run_cell  # noqa: F401 (the browser's fixtures)
from .test_genomics import reference_counts

PAIRS = [("alice", "brca"), ("bob", "cardio"), ("carol", "cardio"), ("carol", "brca")]
CTLD_PID = Path("/run/slurm-datahavn/slurmctld.pid")

#: kernel code: call the gateway directly with the workspace's own token, as any code in the kernel may
GATEWAY = """
import asyncio, concurrent.futures, os
from dask_gateway import Gateway, JupyterHubAuth

def gw(call):
    async def go():
        async with Gateway(os.environ['DATAHAVN_DASK_GATEWAY'], proxy_address=os.environ['DATAHAVN_DASK_PROXY'],
                           asynchronous=True, auth=JupyterHubAuth(api_token=os.environ['DATAHAVN_DASK_TOKEN'])) as g:
            return await call(g)
    try:
        return repr(concurrent.futures.ThreadPoolExecutor(1).submit(asyncio.run, go()).result(60))
    except Exception as e:
        return f'{type(e).__name__}: {e}'
"""


def slurm_up() -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "slurm.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"scripts/slurm.sh failed:\n{proc.stderr[-2000:]}"


def jobs(account: str | None = None) -> list[dict]:
    """Slurm's jobs, as root sees them (PrivateData=jobs hides them from other accounts)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%u|%g|%T|%j"], capture_output=True, text=True, timeout=20).stdout
    rows = [dict(zip(("id", "user", "group", "state", "name"), line.split("|"), strict=True))
            for line in out.splitlines() if line.strip()]  # fmt: skip
    return [r for r in rows if account is None or r["user"] == account]


def kinds(hub, start: int, *wanted: str) -> list[dict]:
    return [e for e in hub.events(after_seq=start) if e["kind"] in wanted]


@pytest.fixture(scope="module")
def slurm_hub(hub):
    slurm_up()
    ours = {account_name(u, p) for u, p in PAIRS}
    for j in jobs():  # an earlier run's, if it died: these accounts are this module's
        if j["user"] in ours:
            subprocess.run(["scancel", j["id"]], capture_output=True, timeout=20)
    for user, project in PAIRS:  # the session hub's workspaces of the same accounts
        if hub.server(user, project):
            hub.stop(user, project)
            hub.wait_stopped(user, project, 60)
    from ..hubs import Hub

    ports = {f"DATAHAVN_GATEWAY_{k}_PORT": str(free_port()) for k in ("API", "HTTP", "TCP")}
    # the hub re-reads grants every 30 s, the gateway every 5 s: the gateway's own watch is seen acting
    h = Hub("slurm", {"DATAHAVN_DASK_ENGINE": "slurm", "DATAHAVN_GRANT_CHECK_PERIOD": "5",
                      "DATAHAVN_POLL_INTERVAL": "30", **ports})  # fmt: skip
    yield h
    h.shutdown()
    left = wait_for(lambda: not [j for j in jobs() if j["user"] in ours], 30, otherwise=True)
    stray = [j for j in jobs() if j["user"] in ours]
    for j in stray:  # whatever failed, this module's accounts leave no job behind
        subprocess.run(["scancel", j["id"]], capture_output=True, timeout=20)
    assert left, f"jobs left behind: {stray}"


async def test_workers_are_slurm_jobs_of_the_workspace_and_count_like_numpy(slurm_hub, kernel):
    hub = slurm_hub
    start = hub.events()[-1]["seq"]
    k = await kernel("alice", "brca", on_hub=hub)
    r = await k.execute(
        "import os, json, allel\n"
        "from distributed import get_task_stream\n"
        "c = project.dask(workers=2)\n"
        "who = c.run(lambda: (os.getuid(), os.getgid(), os.getgroups(), os.environ.get('SLURM_JOB_ID')))\n"
        "g = project.genotypes('cohort')\n"
        "with get_task_stream(client=c) as ts:\n"
        "    top = int(g.max().compute())  # scikit-allel's own scan overflows int8 sums: give it the max\n"
        "    dense = allel.GenotypeDaskArray(g.values).count_alleles(max_allele=top).compute()\n"
        "print(json.dumps({'who': list(who.values()), 'workers': sorted(who), 'dense': dense.tolist(),"
        " 'ran_on': sorted({t['worker'] for t in ts.data}), 'address': c.scheduler.address}))",
        timeout=240,
    )
    assert r.status == "ok", r.error
    out = json.loads(r.stdout)
    account = account_name("alice", "brca")
    mine = jobs(account)
    # the scheduler and two workers: Slurm jobs of the workspace's account, in its project's group
    assert len(mine) == 3 and all(j["group"] == "dh-brca" and j["state"] == "RUNNING" for j in mine), mine
    entry = __import__("pwd").getpwnam(account)
    assert len(out["who"]) == 2
    assert all(w[:3] == [entry.pw_uid, entry.pw_gid, [entry.pw_gid]] for w in out["who"]), out["who"]
    assert {w[3] for w in out["who"]} <= {j["id"] for j in mine}
    # the counts, computed by those workers, are numpy's
    _, ref = reference_counts(hub, "brca")
    assert np.array_equal(np.array(out["dense"]), ref.count_alleles())
    assert out["ran_on"] and set(out["ran_on"]) <= set(out["workers"])
    assert out["address"].startswith("gateway://127.0.0.1:")  # TLS through the gateway's proxy, by SNI
    # recorded: start (requested, then the scheduler's job), scale (requested, each worker's job)
    events = kinds(hub, start, "dask_cluster_start", "dask_cluster_scale")
    submitted = {e["detail"]["job_id"] for e in events if e["outcome"] in ("submitted", "worker_submitted")}
    assert submitted == {j["id"] for j in mine}
    assert all(e["user"] == "alice" and e["project"] == "brca" for e in events)
    assert any(e["kind"] == "dask_cluster_scale" and e["detail"].get("count") == 2 for e in events)

    # the workers' box: this project's folders only, a /tmp of their own
    marker = Path("/tmp") / f"dh-host-{os.getpid()}"
    marker.touch()
    r = await k.execute(
        "import os, json\n"
        f"cardio = {str(hub.layout.data('cardio') / 'cohort.vcz')!r}\n"
        "def probe():\n"
        "    out = {'projects': sorted(os.listdir(os.path.dirname(os.environ['DATAHAVN_PROJECT_DIR'])))}\n"
        "    try:\n"
        "        os.listdir(cardio); out['cardio'] = 'read'\n"
        "    except OSError as e:\n"
        "        out['cardio'] = type(e).__name__\n"
        "    open('/tmp/dh-worker-probe', 'w').write('x'); out['tmp'] = os.listdir('/tmp')\n"
        "    return out\n"
        "print(json.dumps(list(c.run(probe).values())))",
        timeout=60,
    )
    assert r.status == "ok", r.error
    for w in json.loads(r.stdout):
        assert w["projects"] == ["brca"] and w["cardio"] in ("FileNotFoundError", "PermissionError"), w
        assert "dh-worker-probe" in w["tmp"] and marker.name not in w["tmp"], w  # nothing of the machine's /tmp
    assert not Path("/tmp/dh-worker-probe").exists()
    marker.unlink()

    # closed from the notebook: the jobs go, and the stop is recorded with the scheduler's job
    r = await k.execute("c.close()", timeout=60)
    assert r.status == "ok", r.error
    wait_for(lambda: not jobs(account), 30, message="alice's jobs gone after close()")
    stops = kinds(hub, start, "dask_cluster_stop")
    assert {e["outcome"] for e in stops} >= {"stopped", "cancelled"}, stops


async def test_other_workspaces_cannot_list_reach_or_stop_a_cluster(slurm_hub, kernel):
    hub = slurm_hub
    alice = await kernel("alice", "brca", on_hub=hub)
    r = await alice.execute(
        GATEWAY + "c = project.dask(workers=1)\nname = c.datahavn_cluster.name\nprint(name)", timeout=180
    )
    assert r.status == "ok", r.error
    name = r.stdout.strip()
    carol_brca = await kernel("carol", "brca", on_hub=hub)
    r = await carol_brca.execute("cb = project.dask(); print(cb.datahavn_cluster.name)", timeout=180)
    assert r.status == "ok", r.error
    carols = r.stdout.strip()
    start = hub.events()[-1]["seq"]
    # another project, a colleague in the same project, the same person in another project:
    # a cluster is one (user, project)'s
    for user, project, target in (("bob", "cardio", name), ("carol", "cardio", name), ("carol", "brca", name),
                                  ("carol", "cardio", carols), ("alice", "brca", carols)):  # fmt: skip
        k = await kernel(user, project, on_hub=hub)
        r = await k.execute(
            GATEWAY + "import json\n"
            "print(json.dumps({\n"
            "  'list': gw(lambda g: g.list_clusters()),\n"
            f"  'get': gw(lambda g: g.get_cluster({target!r})),\n"
            f"  'connect': gw(lambda g: g.connect({target!r})),\n"
            f"  'scale': gw(lambda g: g.scale_cluster({target!r}, 3)),\n"
            f"  'stop': gw(lambda g: g.stop_cluster({target!r})),\n"
            "}))",
            timeout=120,
        )
        assert r.status == "ok", r.error
        out = json.loads(r.stdout)
        own = {("carol", "brca"): carols, ("alice", "brca"): name}.get((user, project))
        assert out["list"] == "[]" or (own and own in out["list"] and target not in out["list"]), (user, project, out)
        for verb in ("get", "connect", "scale", "stop"):
            assert "403" in out[verb] or "lacks permissions" in out[verb], (user, project, verb, out[verb])
    # alice's cluster is untouched, and every refusal was recorded with who tried
    r = await alice.execute("print(len(c.scheduler_info()['workers']), c.status)", timeout=60)
    assert r.stdout.split() == ["1", "running"], (r.stdout, r.error)
    denied = kinds(hub, start, "denied")
    assert {(e["user"], e["project"]) for e in denied if e.get("actor") == "datahavn-dask"} >= {
        ("bob", "cardio"),
        ("carol", "cardio"),
        ("carol", "brca"),
    }

    # TLS to alice's scheduler through the proxy, with another cluster's credentials: refused
    bob = await kernel("bob", "cardio", on_hub=hub)
    r = await bob.execute(
        "from distributed import Client\n"
        "mine = project.dask()\n"
        "addr = mine.scheduler.address.rsplit('/', 1)[0] + '/' + " + repr(name) + "\n"
        "try:\n"
        "    Client(addr, security=mine.security, timeout='10s'); print('connected')\n"
        "except Exception as e:\n"
        "    print('refused', type(e).__name__)\n"
        "mine.close()",
        timeout=180,
    )
    assert r.status == "ok", r.error
    assert r.stdout.startswith("refused"), r.stdout
    for k, var in ((alice, "c"), (carol_brca, "cb")):
        r = await k.execute(f"{var}.close()", timeout=60)
        assert r.status == "ok", r.error


async def test_a_cluster_ends_with_its_kernel(slurm_hub, kernel):
    hub = slurm_hub
    k = await kernel("bob", "cardio", on_hub=hub)
    r = await k.execute("c = project.dask(workers=1); print(c.datahavn_cluster.name)", timeout=180)
    assert r.status == "ok", r.error
    name = r.stdout.strip()
    account = account_name("bob", "cardio")
    assert len(jobs(account)) == 2
    start = hub.events()[-1]["seq"]
    url, auth = f"{hub.url}/user/bob/cardio/api/kernels", {"Authorization": f"token {hub.user_token('bob')}"}
    for kernel_model in requests.get(url, headers=auth, timeout=30).json():  # shut down as the lab does
        requests.delete(f"{url}/{kernel_model['id']}", headers=auth, timeout=60).raise_for_status()
    wait_for(lambda: not jobs(account), 60, message="bob's jobs gone after his kernel shut down")
    assert [e for e in kinds(hub, start, "dask_cluster_stop") if e["detail"]["cluster"] == name]


async def test_no_workspace_starts_a_cluster_for_another_project(slurm_hub, kernel):
    hub = slurm_hub
    k = await kernel("bob", "cardio", on_hub=hub)
    start = hub.events()[-1]["seq"]
    r = await k.execute(
        GATEWAY + "import json\n"
        "attempts = {}\n"
        "for opts in ({'project': 'brca'}, {'environment': {'DATAHAVN_PROJECT': 'brca'}},"
        " {'staging_directory': '/tmp'}, {'worker_cmd': ['/bin/sh']}, {'DATAHAVN_USER': 'alice'}):\n"
        "    attempts[json.dumps(opts)] = gw(lambda g: g.submit(**opts))\n"
        "print(json.dumps(attempts))",
        timeout=120,
    )
    assert r.status == "ok", r.error
    for opts, outcome in json.loads(r.stdout).items():
        assert outcome.startswith("ValueError") and "Unknown fields" in outcome, (opts, outcome)
    assert not jobs(account_name("bob", "brca")) and not jobs(account_name("bob", "cardio"))
    assert len([e for e in kinds(hub, start, "denied") if e["user"] == "bob"]) >= 5
    # a person's own token (not the workspace's Dask token) opens nothing at the gateway
    gateway = proc_gateway(hub)
    person_token = hub.user_token("bob")
    person = requests.get(f"{gateway}/api/v1/clusters/", headers={"Authorization": f"jupyterhub {person_token}"},
                          timeout=30)  # fmt: skip
    assert person.status_code == 403 and "Dask token" in person.json()["error"]
    # and the Dask token opens nothing but the gateway: not the hub's API, not the workspace's server
    r = await k.execute("import os; print(os.environ['DATAHAVN_DASK_TOKEN'])")
    dask_token = r.stdout.strip()
    model = hub.rest("GET", "/users/bob", token=dask_token)
    print("the Dask token's view of its user:", model.status_code, model.text[:300])
    # JupyterHub always lets a token name its owner (and the owner's own groups); nothing more
    assert model.status_code == 403 or set(model.json()) <= {"kind", "name", "admin", "groups", "user_info"}
    for method, path in (("POST", "/users/bob/servers/cardio"), ("DELETE", "/users/bob/servers/cardio"),
                         ("POST", "/users/bob/tokens"), ("GET", "/groups/cardio"), ("GET", "/users")):  # fmt: skip
        assert hub.rest(method, path, token=dask_token).status_code in (403, 404), (method, path)
    server = requests.get(f"{hub.url}/user/bob/cardio/api/contents", timeout=30,
                          headers={"Authorization": f"token {dask_token}"})  # fmt: skip
    assert server.status_code == 403


def proc_gateway(hub) -> str:
    """The gateway's public (proxy) address, from the hub's environment."""
    return f"http://127.0.0.1:{hub.env['DATAHAVN_GATEWAY_HTTP_PORT']}"


async def test_sizes_beyond_the_limits_and_unknown_options_are_refused_clearly(slurm_hub, kernel):
    k = await kernel("carol", "brca", on_hub=slurm_hub)
    cases = {
        "project.dask(workers=1000)": "workers",
        "project.dask(cores=64)": "worker_cores",
        "project.dask(memory='1TiB')": "worker_memory",
        "project.dask(memory='lots')": "memory='lots'",
        "project.dask(workers=4, cores=2)": "exceed project brca's limits",
        "project.dask(project='cardio')": "unexpected keyword argument 'project'",
        "project.dask(processes=True)": "processes= is for the local engine",
    }
    for code, says in cases.items():
        t = time.monotonic()
        r = await k.execute(code, timeout=90)
        assert r.status == "error", f"{code}: {r.stdout}"
        assert says in r.error, f"{code}: {r.error}"
        assert time.monotonic() - t < 60, code
    assert not jobs(account_name("carol", "brca"))


async def test_a_revoked_grant_stops_the_clusters_and_their_jobs(slurm_hub, kernel, cli):
    hub = slurm_hub
    k = await kernel("carol", "brca", on_hub=hub)
    r = await k.execute("c = project.dask(workers=1); print(c.datahavn_cluster.name)", timeout=180)
    assert r.status == "ok", r.error
    name = r.stdout.strip()
    account = account_name("carol", "brca")
    assert len(jobs(account)) == 2
    start = hub.events()[-1]["seq"]
    t = time.monotonic()
    revoked = cli("revoke", "carol", "brca", env=hub.env)
    assert revoked.returncode == 0, revoked.stderr
    try:
        wait_for(lambda: not jobs(account), 60, message="carol's brca jobs gone within 60 s of the revoke")
        print(f"revocation reached Slurm in {time.monotonic() - t:.1f} s")
        stops = wait_for(lambda: [e for e in kinds(hub, start, "dask_cluster_stop") if e["detail"]["cluster"] == name],
                         30)  # fmt: skip
        assert any(e["detail"].get("reason", "").startswith("grant") or e["outcome"] == "cancelled" for e in stops)
        assert all(e["user"] == "carol" and e["project"] == "brca" for e in stops)
    finally:
        admin.grant(hub.api, "carol", "brca")


async def test_the_gateway_stops_the_clusters_of_a_lapsed_grant_itself(slurm_hub, kernel):
    """A member removed from the project outside datahavn: the workspace still runs (the hub notices at its
    next poll), the gateway's own watch stops the cluster and cancels its jobs, and says why."""
    hub = slurm_hub
    k = await kernel("carol", "brca", on_hub=hub)
    r = await k.execute("c = project.dask(workers=1); print(c.datahavn_cluster.name)", timeout=180)
    assert r.status == "ok", r.error
    name = r.stdout.strip()
    account = account_name("carol", "brca")
    start = hub.events()[-1]["seq"]
    hub.rest("DELETE", "/groups/brca/users", json={"users": ["carol"]}).raise_for_status()
    try:
        wait_for(lambda: not jobs(account), 60, message="carol's brca jobs gone after her removal")
        stop = wait_for(lambda: [e for e in kinds(hub, start, "dask_cluster_stop")
                                 if e["detail"]["cluster"] == name and e["outcome"] == "stopped"], 30)  # fmt: skip
        assert stop[0]["detail"]["reason"] == "grant revoked" and stop[0]["actor"] == "datahavn-dask", stop
    finally:
        admin.grant(hub.api, "carol", "brca")


async def test_a_dead_slurmctld_is_an_error_in_the_notebook_not_a_hang(slurm_hub, kernel):
    k = await kernel("alice", "brca", on_hub=slurm_hub)
    # nothing of ours in flight: a job ending while slurmctld is dead would be left as a ghost in its state
    wait_for(lambda: not jobs(), 60, message="no jobs before slurmctld is killed")
    time.sleep(8)  # and slurmctld's state saved since: a job it ended is not recovered as running
    pid = int(CTLD_PID.read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "slurmctld"
    os.kill(pid, signal.SIGKILL)
    try:
        t = time.monotonic()
        r = await k.execute("project.dask(workers=1)", timeout=180)
        took = time.monotonic() - t
        assert r.status == "error", r.stdout
        assert "DaskError" in r.error and ("failed while starting" in r.error or "no answer" in r.error), r.error
        assert took < 120, took
        print(f"dead slurmctld: error in the notebook after {took:.1f} s")
    finally:
        slurm_up()
    r = await k.execute("c = project.dask(workers=1); print(len(c.scheduler_info()['workers'])); c.close()",
                        timeout=180)  # fmt: skip
    assert r.stdout.strip() == "1", r.error


def hello(address) -> bool:
    try:
        with socket.create_connection(address, timeout=2) as s:
            return s.recv(5) == b"hello"
    except OSError:
        return False


@pytest.fixture
def outside():
    """An address beyond this machine's loopback: a network namespace behind a veth pair, with a listener."""
    tag = f"{os.getpid() % 10000}"
    ns, host_if, ns_if = f"dh-out-{tag}", f"dho{tag}", f"dhi{tag}"
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, timeout=20)  # noqa: E731
    run("ip", "netns", "add", ns)
    listener = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", "198.51.100.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", "198.51.100.2/30", "dev", ns_if)
        run("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                     "import socket; s = socket.create_server(('198.51.100.2', 8765)); "
                                     "[s.accept()[0].sendall(b'hello') for _ in iter(int, 1)]"])  # fmt: skip
        wait_for(lambda: hello(("198.51.100.2", 8765)), 10, message="the outside listener answers")
        yield ("198.51.100.2", 8765)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


async def test_workers_reach_nothing_beyond_the_machine(slurm_hub, kernel, outside):
    """Code on a worker shares the node's network, fenced to loopback: it cannot connect out, and what it
    serves on the machine's interfaces answers nobody outside (root, unfenced, reaches the same address)."""
    host, port = outside
    k = await kernel("alice", "brca", on_hub=slurm_hub)
    r = await k.execute(
        "import socket, json\n"
        "c = project.dask(workers=1)\n"
        "def out():\n"
        "    try:\n"
        f"        return socket.create_connection(({host!r}, {port}), timeout=5).recv(5).decode()\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        "def submit():\n"  # and no way around the gateway: no munge credential in the box, so no sbatch
        "    import subprocess\n"
        "    p = subprocess.run(['sbatch', '--wrap', 'true'], capture_output=True, text=True)\n"
        "    return p.returncode, p.stderr[-200:]\n"
        "print(json.dumps({'worker': list(c.run(out).values()), 'scheduler': c.run_on_scheduler(out),"
        " 'sbatch': list(c.run(submit).values())}))\n"
        "c.close()",
        timeout=180,
    )
    assert r.status == "ok", r.error
    got = json.loads(r.stdout)
    assert got["worker"] == ["ConnectionRefusedError"] and got["scheduler"] == "ConnectionRefusedError", got
    assert all(code != 0 for code, _ in got["sbatch"]), got["sbatch"]
    assert hello((host, port))  # the address itself answers


async def test_the_dashboard_opens_through_the_workspace_for_its_own_cluster_only(slurm_hub, kernel):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    hub = slurm_hub
    alice = await kernel("alice", "brca", on_hub=hub)
    r = await alice.execute("c = project.dask(workers=1); print(c.datahavn_cluster.name); print(c.dashboard_link)",
                            timeout=180)  # fmt: skip
    assert r.status == "ok", r.error
    name, link = r.stdout.split()
    assert link == f"/user/alice/brca/datahavn/dask/{name}/status"
    bob = await kernel("bob", "cardio", on_hub=hub)
    r = await bob.execute("b = project.dask(); print(b.datahavn_cluster.name)", timeout=180)
    assert r.status == "ok", r.error
    bobs = r.stdout.strip()
    token = hub.user_token("alice")
    auth = {"Authorization": f"token {token}"}
    base = f"{hub.url}/user/alice/brca/datahavn/dask"
    start = hub.events()[-1]["seq"]
    # the index goes straight to the one running cluster; its plots and their code load
    index = requests.get(f"{base}/", headers=auth, timeout=30, allow_redirects=False)
    assert index.status_code == 302 and index.headers["Location"].endswith(f"/{name}/status"), index.text[:300]
    status = requests.get(f"{base}/{name}/status", headers=auth, timeout=30)
    assert status.status_code == 200 and "bokeh" in status.text.lower(), status.text[:300]
    assert status.headers["Content-Security-Policy"] == "frame-ancestors 'self'"  # a lab tab may frame it
    found = __import__("re").findall(r'src="([^"]+\.js(?:\?[^"]*)?)"', status.text)
    scripts = [s for s in found if "/datahavn/dask/" in s]
    assert scripts and all(requests.get(hub.url + s, headers=auth, timeout=30).ok for s in scripts[:3])
    ws = await websocket_connect(HTTPRequest(f"{base.replace('http', 'ws', 1)}/{name}/status/ws", headers=auth))
    ws.close()
    # not another workspace's cluster, not the pages that show logs, stacks or values
    for path in (f"{bobs}/status", f"{name}/info/main/workers.html", f"{name}/json/counts.json",
                 f"{name}/api/v1/retire_workers", f"{name}/metrics", "0" * 32 + "/status"):  # fmt: skip
        refused = requests.get(f"{base}/{path}", headers=auth, timeout=30)
        assert refused.status_code == 403, (path, refused.status_code, refused.text[:200])
    # bob's own server does not show alice's cluster either
    bob_auth = {"Authorization": f"token {hub.user_token('bob')}"}
    other = requests.get(f"{hub.url}/user/bob/cardio/datahavn/dask/{name}/status", headers=bob_auth, timeout=30)
    assert other.status_code == 403

    def refusers():
        return {e["user"] for e in kinds(hub, start, "denied") if "/datahavn/dask/" in str(e["detail"])}

    assert wait_for(lambda: refusers() >= {"alice", "bob"}, 20, otherwise=True), refusers()
    for k, var in ((alice, "c"), (bob, "b")):
        r = await k.execute(f"{var}.close()", timeout=60)
        assert r.status == "ok", r.error


async def test_the_dashboard_opens_in_the_lab(slurm_hub, page):  # noqa: F811 (the browser's fixture)
    """In Chromium: the View menu's "Dask dashboard" shows the workspace's own cluster's plots in a lab tab."""
    await open_notebook(slurm_hub, page, "alice", "brca")
    out = await run_cell(page, "c = project.dask(workers=1); print(c.dashboard_link)")
    assert "/user/alice/brca/datahavn/dask/" in out, out
    await page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    await page.locator(".lm-Menu-itemLabel", has_text="Dask dashboard").click()
    frame = page.frame_locator(f"#{'datahavn-dask-dashboard'} iframe")
    # the status page's plots, drawn by bokeh inside the frame (its scripts and websocket through the server)
    await frame.locator("canvas").first.wait_for(timeout=60_000)
    url = await page.locator("#datahavn-dask-dashboard iframe").evaluate("f => f.contentWindow.location.pathname")
    assert url.startswith("/user/alice/brca/datahavn/dask/") and url.endswith("/status"), url
    await page.screenshot(path=str(ARTIFACTS / "browser-dask-dashboard-in-the-lab.png"))
    await page.locator(".lm-TabBar-tab", has_text="Untitled").first.click()  # back to the notebook
    assert "closed" in await run_cell(page, "c.close(); print('closed')")
