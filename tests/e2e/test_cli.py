"""The administration commands: what they do, and that bad input changes nothing."""

import json

import pytest

from ..hubs import free_port

BAD_NAMES = ["Alice", "a/b", "..", "", "x" * 100]


def snapshot(hub):
    users = {u["name"]: sorted(u["groups"]) for u in hub.api.users()}
    groups = {g["name"]: (sorted(g["users"]), json.dumps(g["properties"], sort_keys=True)) for g in hub.api.groups()}
    return users, groups


def bad_calls(unique):
    """(description, argv) of calls that must fail without changing anything."""
    calls = []
    for bad in BAD_NAMES:
        calls += [
            (f"user add {bad!r}", ["user", "add", bad]),
            (f"project create {bad!r}", ["project", "create", bad]),
            (f"grant {bad!r} brca", ["grant", bad, "brca"]),
            (f"grant alice {bad!r}", ["grant", "alice", bad]),
            (f"revoke {bad!r} brca", ["revoke", bad, "brca"]),
            (f"revoke alice {bad!r}", ["revoke", "alice", bad]),
            (f"grants --project {bad!r}", ["grants", "--project", bad]),
            (f"grants --user {bad!r}", ["grants", "--user", bad]),
        ]
    ghost_user, ghost_project = unique("ghost"), unique("ghost")
    calls += [
        ("grant unknown user", ["grant", ghost_user, "brca"]),
        ("grant unknown project", ["grant", "alice", ghost_project]),
        ("revoke unknown user", ["revoke", ghost_user, "brca"]),
        ("revoke unknown project", ["revoke", "alice", ghost_project]),
        ("revoke a grant never given", ["revoke", "alice", "cardio"]),
        ("grants of unknown project", ["grants", "--project", ghost_project]),
        ("grants of unknown user", ["grants", "--user", ghost_user]),
        ("user add existing", ["user", "add", "alice"]),
        ("project create existing", ["project", "create", "brca"]),
        ("grant with past expiry", ["grant", "bob", "brca", "--until", "2020-01-01"]),
        ("grant with garbled expiry", ["grant", "bob", "brca", "--until", "next tuesday"]),
        ("grant with zoneless time", ["grant", "bob", "brca", "--until", "2099-01-01T10:00:00"]),
        ("unknown command", ["frobnicate"]),
        ("audit query unknown kind", ["audit", "query", "--kind", "nope"]),
        ("audit query garbled time", ["audit", "query", "--since", "yesterday"]),
        ("audit query bad user", ["audit", "query", "--user", "Bob/.."]),
        ("audit export unknown format", ["audit", "export", "--format", "xml"]),
        ("audit export without format", ["audit", "export"]),
        ("audit export into a missing folder", ["audit", "export", "--format", "csv", "--output", "/no/x.csv"]),
        ("missing argument", ["grant", "alice"]),
        # an unknown name is an error in every command, not an empty answer
        ("audit query unknown user", ["audit", "query", "--user", ghost_user]),
        ("audit query unknown project", ["audit", "query", "--project", ghost_project]),
        ("airlock list unknown project", ["airlock", "list", "--project", ghost_project]),
        ("airlock checker remove unknown user", ["airlock", "checker", "remove", ghost_user]),
    ]
    return calls


def assert_one_line_failure(proc, what):
    assert proc.returncode != 0, f"{what}: exit 0\n{proc.stdout}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected one line, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_bad_input_fails_in_one_line_and_changes_nothing(hub, cli, unique):
    before = snapshot(hub)
    for what, argv in bad_calls(unique):
        line = assert_one_line_failure(cli(*argv), what)
        assert "error" in line or "invalid" in line or "required" in line, f"{what}: {line}"
    assert snapshot(hub) == before


def test_unknown_projects_of_the_machine_and_past_dates_say_what_was_typed(hub, cli, unique):
    ghost = unique("ghost")
    line = assert_one_line_failure(cli("dataset", "list", "--project", ghost, "--state-dir", str(hub.layout.root)),
                                   "dataset list of an unknown project")  # fmt: skip
    assert f"no such project {ghost!r}" in line
    line = assert_one_line_failure(cli("grant", "bob", "brca", "--until", "2025-01-02"), "past expiry")
    assert "expiry 2025-01-02 (access until 2025-01-03T00:00:00Z) is already in the past" in line, line
    line = assert_one_line_failure(cli("grant", "bob", "brca", "--until", "2025-01-02T10:00:00Z"), "past time")
    assert "expiry 2025-01-02T10:00:00Z is already in the past" in line, line


async def test_audit_query_shows_a_cells_first_line_and_length_and_all_with_full(hub, cli, kernel, unique):
    marker = unique("m")
    code = f"x_{marker} = 1\ny = 2\nprint('third line {marker}')"
    k = await kernel("alice", "brca")
    r = await k.execute(code)
    assert r.status == "ok", r.error
    short = cli("audit", "query", "--kind", "execute", "--grep", marker)
    assert short.returncode == 0, short.stderr
    assert f"x_{marker} = 1 ... [3 lines, {len(code)} chars]" in short.stdout and "third line" not in short.stdout
    full = cli("audit", "query", "--kind", "execute", "--grep", marker, "--full")
    assert full.returncode == 0, full.stderr
    assert f"    x_{marker} = 1\n    y = 2\n    print('third line {marker}')" in full.stdout, full.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "add", "zed"],
        ["project", "create", "zproj"],
        ["project", "list"],
        ["grant", "alice", "cardio"],
        ["revoke", "alice", "brca"],
        ["grants"],
        ["audit", "query"],
        ["audit", "verify"],
        ["audit", "export", "--format", "jsonl"],
    ],
)
def test_unreachable_hub_or_wrong_token_fails_in_one_line_and_changes_nothing(hub, cli, argv):
    before = snapshot(hub)
    closed = dict(hub.env, DATAHAVN_HUB_URL=f"http://127.0.0.1:{free_port()}")
    line = assert_one_line_failure(cli(*argv, env=closed), "unreachable")
    assert "cannot reach the hub" in line
    wrong = dict(hub.env, DATAHAVN_ADMIN_TOKEN="0" * 64)
    line = assert_one_line_failure(cli(*argv, env=wrong), "wrong token")
    assert "refused the token" in line
    unset = {k: v for k, v in hub.env.items() if k != "DATAHAVN_ADMIN_TOKEN"}
    line = assert_one_line_failure(cli(*argv, env=unset), "no token")
    assert "DATAHAVN_ADMIN_TOKEN" in line
    assert snapshot(hub) == before


def test_admin_commands_round_trip(hub, cli, unique):
    user, project = unique("u"), unique("p")
    assert cli("user", "add", user).returncode == 0
    r = cli("project", "create", project, "--description", "a test project")
    assert r.returncode == 0, r.stderr
    listed = json.loads(cli("project", "list", "--json").stdout)
    assert {"name": project, "description": "a test project", "members": 0}.items() <= next(
        p for p in listed if p["name"] == project
    ).items()

    r = cli("grant", user, project, "--until", "2099-12-31", "--reason", "study 42")
    assert r.returncode == 0, r.stderr
    grants = json.loads(cli("grants", "--project", project, "--json").stdout)
    assert grants == [
        {**grants[0], "project": project, "user": user, "status": "active",
         "until": "2100-01-01T00:00:00Z", "reason": "study 42", "by": "datahavn-admin"}
    ]  # fmt: skip
    assert project in hub.rest("GET", f"/users/{user}").json()["groups"]

    assert cli("revoke", user, project).returncode == 0
    (g,) = json.loads(cli("grants", "--user", user, "--json").stdout)
    assert (g["status"], g["revoked_by"]) == ("revoked", "datahavn-admin")
    assert project not in hub.rest("GET", f"/users/{user}").json()["groups"]
    table = cli("grants", "--project", project).stdout
    assert table.splitlines()[0].split()[:3] == ["PROJECT", "USER", "STATUS"]
    assert f"{project}  {user}" in table and "revoked" in table
