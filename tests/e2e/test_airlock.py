"""The airlock on a real hub: requests from a workspace's server, two-person review, release, download.

The requester's files are written by their own kernel; requests go through their server's
``datahavn/api/airlock/requests`` (as the lab's "Request export…" does); people act with their own
hub tokens on the airlock's API. Every allowed step leaves a record, every refused one a ``denied``
or ``airlock_refused`` record, and a refused request leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from urllib.parse import urlparse

import pytest
import requests

from datahavn import admin
from datahavn.names import account_name

from ..hubs import host_pids, login, proc_env, wait_for
from ..kernel_client import KernelClient

PROJECT = "brca"  # the demo's project with a dataset (sample ids, chunks)
AIRLOCK = "/services/datahavn-airlock/api"


class People:
    """Fresh people on the session hub: a requester and another member of brca, two checkers, a non-member."""

    def __init__(self, hub, cli):
        tag = secrets.token_hex(2)
        short = {"requester": "req", "member": "mem", "checker1": "chk", "checker2": "chl"}
        self.names = {role: f"{s}{tag}" for role, s in short.items()}
        for role, name in self.names.items():
            admin.add_user(hub.api, name)
            if role in ("requester", "member"):
                admin.grant(hub.api, name, PROJECT, reason="airlock tests")
        for role in ("checker1", "checker2"):
            done = cli("airlock", "checker", "add", self.names[role])
            assert done.returncode == 0, done.stderr
        self.names["nonmember"] = "bob"
        self.tokens = {role: hub.user_token(name) for role, name in self.names.items()}
        self.tokens["admin"] = hub.token  # the administrators' token: admin and auditor, not a checker
        self.names["admin"] = "datahavn-admin"
        self.hub = hub
        self.server = hub.start(self.names["requester"], PROJECT)

    def api(self, role: str, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.tokens[role]}"}
        return requests.request(method, f"{self.hub.url}{AIRLOCK}{path}", headers=headers, timeout=60, **kw)

    def submit(self, files, justification="allele frequency summary for the paper", **extra) -> requests.Response:
        body = {"files": files, "justification": justification, **extra}
        headers = {"Authorization": f"token {self.tokens['requester']}"}
        return requests.post(f"{self.server}datahavn/api/airlock/requests", json=body, headers=headers, timeout=90)


@pytest.fixture(scope="module")
def people(hub):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "datahavn.cli", *args], env=hub.env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    return People(hub, cli)


@pytest.fixture(scope="module")
async def requester_kernel(hub, people):
    token = people.tokens["requester"]
    r = requests.post(f"{people.server}api/kernels", headers={"Authorization": f"token {token}"}, json={}, timeout=60)
    r.raise_for_status()
    client = await KernelClient.connect(people.server, r.json()["id"], token, "json")
    yield client
    client.close()
    requests.delete(f"{people.server}api/kernels/{r.json()['id']}", headers={"Authorization": f"token {token}"},
                    timeout=30)  # fmt: skip


async def run(kernel, code: str) -> str:
    result = await kernel.execute(code, timeout=120)
    assert result.status == "ok", result.error or result.stderr
    return result.stdout


async def write_tables(kernel, n: int, prefix: str = "t") -> list[str]:
    """``n`` small aggregate tables with different contents (an open request's files cannot be requested twice)."""
    await run(
        kernel,
        f"""
import csv, secrets
for i in range({n}):
    with open(f"{prefix}{{i}}.csv", "w", newline="") as f:
        w = csv.writer(f); w.writerow(["group", "cases", "tag"])
        w.writerow(["A", 120 + i, secrets.token_hex(4)]); w.writerow(["B", 140, "x"])
""",
    )
    return [f"{prefix}{i}.csv" for i in range(n)]


def events(hub, kind: str, after: int, **match) -> list[dict]:
    rows = hub.events(kind=kind, after_seq=after)
    detail = lambda e: e["detail"] if isinstance(e.get("detail"), dict) else {}  # noqa: E731
    return [e for e in rows if all(detail(e).get(k, e.get(k)) == v for k, v in match.items())]


def head(hub, after: int = 0) -> int:
    """The newest record's seq (reading only what came after ``after``, a seq known to be older)."""
    rows = hub.events(after_seq=after)
    return rows[-1]["seq"] if rows else after


def state_of(people, request_id: str) -> str:
    return people.api("checker1", "GET", f"/requests/{request_id}").json()["state"]


def new_request(people, path: str) -> str:
    r = people.submit([path])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def approved(people, path: str) -> str:
    rid = new_request(people, path)
    for checker in ("checker1", "checker2"):
        assert people.api(checker, "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    return rid


def released(people, path: str) -> str:
    rid = approved(people, path)
    assert people.api("checker1", "POST", f"/requests/{rid}/release", json={}).status_code == 200
    return rid


ROLES = ("requester", "member", "nonmember", "checker1", "checker2", "admin")
ALLOWED = {
    "view": {"requester", "checker1", "checker2", "admin"},  # the admin holds the auditor role
    "approve": {"checker1", "checker2"},
    "reject": {"checker1", "checker2"},
    "return": {"checker1", "checker2"},
    "release": {"checker1", "checker2"},
    "download": {"requester", "checker1", "checker2"},
}
RECORD = {"view": "airlock_view", "approve": "airlock_review", "reject": "airlock_review",
          "return": "airlock_review", "release": "airlock_release", "download": "airlock_download"}  # fmt: skip


async def test_permission_matrix_every_cell(hub, people, requester_kernel):
    n_tables = sum(len(ALLOWED[a]) + (0 if a in ("view", "download") else len(ROLES) - len(ALLOWED[a]))
                   for a in ALLOWED) + 4  # fmt: skip
    tables = iter(await write_tables(requester_kernel, n_tables, prefix="m"))
    shared = {"view": new_request(people, next(tables)), "download": released(people, next(tables))}
    before = head(hub)
    for action in ALLOWED:
        for role in ROLES:
            # a request in the state where the action is possible, fresh where the action changes it
            if action in shared:
                rid = shared[action]
            elif action == "release":
                rid = approved(people, next(tables))
            else:
                rid = new_request(people, next(tables))
            before = head(hub, before)
            if action == "view":
                r = people.api(role, "GET", f"/requests/{rid}")
            elif action == "download":
                r = people.api(role, "GET", f"/requests/{rid}/files/0")
            else:
                r = people.api(role, "POST", f"/requests/{rid}/{action}", json={"comment": "matrix"})
            allowed = role in ALLOWED[action]
            assert r.status_code == (200 if allowed else 403), (action, role, r.status_code, r.text)
            kind = RECORD[action] if allowed else "denied"
            found = wait_for(lambda k=kind, b=before, i=rid: events(hub, k, b, request=i), timeout=10,
                             message=f"no {kind} record for {role} {action}")  # fmt: skip
            assert found[-1]["actor"] == people.names[role]
            if not allowed:
                assert found[-1]["detail"]["action"] == action and found[-1]["outcome"] == "refused"


async def test_two_approvals_from_two_checkers_and_never_the_requesters_own(hub, people, requester_kernel):
    (path,) = await write_tables(requester_kernel, 1, prefix="two")
    rid = new_request(people, path)
    assert people.api("checker1", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    again = people.api("checker1", "POST", f"/requests/{rid}/approve", json={})
    assert again.status_code == 409 and "already approved" in again.json()["message"]
    assert state_of(people, rid) == "under_review"
    own = people.api("requester", "POST", f"/requests/{rid}/approve", json={})
    assert own.status_code == 403 and "your own request" in own.json()["message"]
    # the release waits for the second checker
    early = people.api("checker1", "POST", f"/requests/{rid}/release", json={})
    assert early.status_code == 409
    assert people.api("checker2", "POST", f"/requests/{rid}/approve", json={}).status_code == 200
    body = people.api("checker1", "GET", f"/requests/{rid}").json()
    assert body["state"] == "approved" and body["approvals"] == sorted([people.names["checker1"],
                                                                        people.names["checker2"]])  # fmt: skip


async def test_the_snapshot_is_what_leaves_and_a_tampered_one_is_refused(hub, people, requester_kernel):
    (path,) = await write_tables(requester_kernel, 1, prefix="snap")
    original = (hub.layout.workspace(PROJECT, people.names["requester"]) / path).read_bytes()
    rid = approved(people, path)
    # the researcher edits the file after asking: the request keeps what was asked for
    await run(requester_kernel, f"open({path!r}, 'w').write('group,cases\\nA,1\\n')")
    assert people.api("checker1", "POST", f"/requests/{rid}/release", json={}).status_code == 200
    got = people.api("requester", "GET", f"/requests/{rid}/files/0")
    assert got.status_code == 200 and got.content == original
    show = people.api("checker1", "GET", f"/requests/{rid}").json()
    assert show["files"][0]["sha256"] == hashlib.sha256(original).hexdigest()
    # the store altered on disk: refused at download, and recorded
    snapshot = hub.layout.airlock / rid / "0"
    os.chmod(snapshot, 0o600)
    snapshot.write_bytes(original.replace(b"A", b"Z"))
    before = head(hub)
    bad = people.api("requester", "GET", f"/requests/{rid}/files/0")
    assert bad.status_code == 500 and "does not match its SHA-256" in bad.json()["message"]
    assert original.replace(b"A", b"Z") not in bad.content  # the altered bytes are not sent
    wait_for(lambda: events(hub, "airlock_refused", before, request=rid), timeout=10, message="no refusal record")


async def test_automatic_checks_flag_sample_ids_and_small_cells_and_refuse_a_dataset_copy(hub, people,
                                                                                       requester_kernel):  # fmt: skip
    await run(
        requester_kernel,
        """
import csv, zarr, glob, shutil, os
store = sorted(glob.glob("data/*.vcz"))[0]
ids = [str(s) for s in zarr.open_group(store, mode="r")["sample_id"][:]]
with open("ids.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["sample", "pc1"])
    for i, s in enumerate(ids): w.writerow([s, i * 0.01])
with open("small.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["genotype", "cases", "controls"])
    w.writerow(["AA", 3, 140]); w.writerow(["AB", 150, 160])
chunk = max((p for p in glob.glob(store + "/call_genotype/**", recursive=True)
             if os.path.isfile(p) and not os.path.basename(p).startswith(".")), key=os.path.getsize)
shutil.copyfile(chunk, "chunk.txt")
shutil.copyfile(chunk, "chunk.csv")
""",
    )
    r = people.submit(["ids.csv", "small.csv"], output_type="table")
    assert r.status_code == 201, r.text
    files = {f["path"]: {c["name"]: c for c in f["checks"]} for f in r.json()["files"]}
    assert files["ids.csv"]["sample_ids"]["verdict"] == "flag"
    assert files["ids.csv"]["row_count"]["verdict"] == "flag"
    assert files["small.csv"]["min_cell_count"]["verdict"] == "flag"
    assert files["small.csv"]["sample_ids"]["verdict"] == "pass"
    # an ACRO crosstab with a cell below ACRO's threshold: ACRO's own verdict travels with the request
    await run(
        requester_kernel,
        """
import pandas as pd
from acro import ACRO
df = pd.DataFrame({"group": ["case"] * 60 + ["control"] * 60, "genotype": ["AA"] * 57 + ["BB"] * 3 + ["AA"] * 60})
acro = ACRO(suppress=False)
acro.crosstab(df.group, df.genotype)
acro.finalise("acro_small", "json")
""",
    )
    r = people.submit(["acro_small/output_0_0.csv", "acro_small/results.json"], output_type="table")
    assert r.status_code == 201, r.text
    table = {c["name"]: c for c in r.json()["files"][0]["checks"]}
    assert table["acro"]["verdict"] == "flag" and "threshold" in table["acro"]["detail"].lower()
    before = head(hub)
    for copy in ("chunk.txt", "chunk.csv"):
        refused = people.submit([copy])
        assert refused.status_code == 400 and "a copy of the dataset file" in refused.json()["message"], refused.text
    found = events(hub, "airlock_refused", before)
    assert len(found) >= 2 and all("dataset" in e["detail"]["reason"] for e in found[-2:])


def _airlock_entries(hub) -> set[str]:
    staging = hub.layout.airlock / ".staging"
    return {p.name for p in hub.layout.airlock.iterdir()} | {p.name for p in staging.iterdir()}


async def test_bad_input_gets_a_clear_error_and_leaves_nothing_behind(hub, people, requester_kernel):
    (good,) = await write_tables(requester_kernel, 1, prefix="bad")
    ws = hub.layout.workspace(PROJECT, people.names["requester"])
    await run(
        requester_kernel,
        f"""
import os
os.symlink({good!r}, "link.csv")
os.makedirs("sub", exist_ok=True); os.symlink("..", "sub/up")
open("big.txt", "wb").write(b"x" * 21_000_000)
open("blob.bin", "wb").write(os.urandom(1000))
open("fake.png", "w").write("group,cases\\nA,120\\n")
os.mkfifo("pipe.csv")
""",
    )
    cases = {
        "a symlink": ({"files": ["link.csv"]}, 400, "links are refused"),
        "a symlinked folder": ({"files": ["sub/up/" + good]}, 400, "links are refused"),
        "..": ({"files": ["../" + people.names["member"] + "/x.csv"]}, 400, "'..'"),
        "an absolute path": ({"files": [str(ws / good)]}, 400, "relative"),
        "the datasets": ({"files": ["data/x.csv"]}, 400, "datasets"),
        "no such file": ({"files": ["nope.csv"]}, 400, "no such file"),
        "an oversized file": ({"files": ["big.txt"]}, 400, "limit"),
        "an unknown type": ({"files": ["blob.bin"]}, 400, "not a type"),
        "content not matching its name": ({"files": ["fake.png"]}, 400, "not a type"),
        "a FIFO": ({"files": ["pipe.csv"]}, 400, "regular file"),
        "an empty justification": ({"files": [good], "justification": "  "}, 400, "justification"),
        "no files": ({"files": []}, 400, "files"),
        "a file twice": ({"files": [good, good]}, 400, "twice"),
        "an unknown field": ({"files": [good], "user": "carol"}, 400, "unknown fields"),
        "an unknown output type": ({"files": [good], "output_type": "zip"}, 400, "output_type"),
    }
    before_entries = _airlock_entries(hub)
    before_rows = len(people.api("checker1", "GET", "/requests").json()["requests"])
    before = head(hub)
    for what, (body, status, words) in cases.items():
        body = {"justification": "summary for the paper", **body}
        r = people.submit(**{"files": body.pop("files"), **body})
        assert r.status_code == status, (what, r.status_code, r.text)
        assert words in r.json()["message"], (what, r.json()["message"])
    # not JSON at all, and a JSON that is not an object
    headers = {"Authorization": f"token {people.tokens['requester']}"}
    url = f"{people.server}datahavn/api/airlock/requests"
    assert requests.post(url, data=b"{not json", headers=headers, timeout=30).status_code == 400
    assert requests.post(url, json=["x.csv"], headers=headers, timeout=30).status_code == 400
    # nothing behind: no snapshot, no staging, no request; every refusal recorded
    assert _airlock_entries(hub) == before_entries
    assert len(people.api("checker1", "GET", "/requests").json()["requests"]) == before_rows
    refusals = events(hub, "airlock_refused", before)
    assert len(refusals) >= len(cases) + 1
    # a double submission: the second is refused while the first is open
    first = people.submit([good])
    assert first.status_code == 201
    second = people.submit([good], justification="again")
    assert second.status_code == 409 and first.json()["id"] in second.json()["message"]
    # unknown ids
    for method, path in (("GET", "/requests/20990101-deadbeef"), ("POST", "/requests/20990101-deadbeef/approve")):
        r = people.api("checker1", method, path, json={} if method == "POST" else None)
        assert r.status_code == 404 and "no export request" in r.json()["message"]
    # a person's token: only a workspace's server submits, and the attempt is recorded
    before = head(hub)
    r = people.api("checker1", "POST", "/requests", json={"files": [good], "justification": "x"})
    assert r.status_code == 403
    denied = events(hub, "denied", before, action="request")
    assert denied and denied[-1]["actor"] == people.names["checker1"]


async def test_the_requesters_kernel_cannot_reach_the_airlock_or_its_store(hub, people, requester_kernel):
    """The airlock's credential, port and snapshots are out of the kernel's reach: only its server asks."""
    (path,) = await write_tables(requester_kernel, 1, prefix="reach")
    rid = new_request(people, path)
    account = account_name(people.names["requester"], PROJECT)
    (server_pid,) = host_pids(account, b"jupyterhub-singleuser")
    port = urlparse(proc_env(server_pid)["DATAHAVN_AIRLOCK_URL"]).port
    out = await run(
        requester_kernel,
        f"""
import os, socket
print("env", sorted(k for k in os.environ if "TOKEN" in k or "AIRLOCK" in k))
for host in ("127.0.0.1", "::1"):
    try:
        socket.create_connection((host, {port}), timeout=3); print("connected", host)
    except OSError as e:
        print("refused", host, type(e).__name__)
for p in ({str(hub.layout.airlock)!r}, {str(hub.layout.airlock / rid / "0")!r}):
    try:
        print("read", p, len(open(p, "rb").read()) if os.path.isfile(p) else os.listdir(p))
    except OSError as e:
        print("refused", p, type(e).__name__)
""",
    )
    assert "env []" in out, out
    assert "connected" not in out and out.count("refused 127.0.0.1") == 1 and out.count("refused ::1") == 1
    assert "read " not in out and out.count("refused /") == 2, out


async def test_the_cli_lists_shows_reviews_and_downloads(hub, people, requester_kernel, cli, tmp_path):
    (path,) = await write_tables(requester_kernel, 1, prefix="cli")
    rid = new_request(people, path)
    listed = cli("airlock", "list", "--state", "requested", "--json")
    assert listed.returncode == 0 and rid in [r["id"] for r in json.loads(listed.stdout)]
    shown = json.loads(cli("airlock", "show", rid, "--json").stdout)
    assert shown["files"][0]["path"] == path and len(shown["files"][0]["sha256"]) == 64
    assert {c["name"] for c in shown["files"][0]["checks"]} >= {"size", "sample_ids"}
    # the admin's token is not a checker's
    refused = cli("airlock", "approve", rid, "--comment", "ok")
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr and "not allowed" in refused.stderr
    for checker in ("checker1", "checker2"):
        env = {**hub.env, "DATAHAVN_ADMIN_TOKEN": people.tokens[checker]}
        done = cli("airlock", "approve", rid, "--comment", "fine", env=env)
        assert done.returncode == 0, done.stderr
    env1 = {**hub.env, "DATAHAVN_ADMIN_TOKEN": people.tokens["checker1"]}
    assert "released" in cli("airlock", "release", rid, env=env1).stdout
    out = tmp_path / "out"
    out.mkdir()
    got = cli("airlock", "download", rid, "--output", str(out), env=env1)
    assert got.returncode == 0, got.stderr
    assert (out / path).read_bytes() == people.api("requester", "GET", f"/requests/{rid}/files/0").content
    again = cli("airlock", "download", rid, "--output", str(out), env=env1)
    assert again.returncode == 1 and "not overwriting" in again.stderr
    no_comment = cli("airlock", "reject", rid)
    assert no_comment.returncode == 2 and "--comment" in no_comment.stderr
    # checkers come and go by CLI
    assert cli("airlock", "checker", "remove", people.names["checker2"]).returncode == 0
    env2 = {**hub.env, "DATAHAVN_ADMIN_TOKEN": people.tokens["checker2"]}
    (other,) = await write_tables(requester_kernel, 1, prefix="cli2")
    rid2 = new_request(people, other)
    gone = cli("airlock", "approve", rid2, env=env2)
    assert gone.returncode == 1
    assert cli("airlock", "checker", "add", people.names["checker2"]).returncode == 0
    assert cli("airlock", "approve", rid2, env=env2).returncode == 0


async def test_the_requester_sees_states_in_the_lab_endpoint_and_on_the_home_page(hub, people, requester_kernel):
    (path,) = await write_tables(requester_kernel, 1, prefix="home")
    rid = new_request(people, path)
    headers = {"Authorization": f"token {people.tokens['requester']}"}
    mine = requests.get(f"{people.server}datahavn/api/airlock/requests", headers=headers, timeout=30).json()
    assert {r["id"]: r["state"] for r in mine["requests"]}[rid] == "requested"
    page = login(hub, people.names["requester"]).get(f"{hub.url}/hub/home", timeout=30)
    assert page.status_code == 200 and f'data-id="{rid}"' in page.text and 'data-state="requested"' in page.text
