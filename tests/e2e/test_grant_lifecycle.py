"""Grants end: expiry, revocation and membership removed on the admin page stop running workspaces."""

import datetime as dt
import json
import pwd
import time

from datahavn.grants import isoformat
from datahavn.hub_config.spawners.provision import account_pids
from datahavn.names import account_name

LIMIT = 60  # the promise: a lapsed grant stops the running workspace within 60 s


def setup_member(hub, cli, unique, *grant_args):
    user, project = unique("u"), unique("p")
    assert cli("user", "add", user).returncode == 0
    assert cli("project", "create", project).returncode == 0
    r = cli("grant", user, project, *grant_args)
    assert r.returncode == 0, r.stderr
    return user, project


def grant_of(cli, user, project):
    (g,) = json.loads(cli("grants", "--project", project, "--user", user, "--json").stdout)
    return g


def assert_nothing_left_running(user, project):
    uid = pwd.getpwnam(account_name(user, project)).pw_uid
    assert account_pids(uid) == [], f"processes of {account_name(user, project)} survive"


def test_expired_grant_stops_the_server_and_refuses_spawns(hub, cli, unique):
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=25)
    user, project = setup_member(hub, cli, unique, "--until", isoformat(expiry))
    hub.start(user, project)
    assert grant_of(cli, user, project)["status"] == "active"

    time.sleep(max(0, (expiry - dt.datetime.now(dt.UTC)).total_seconds()))
    took = hub.wait_stopped(user, project, timeout=LIMIT)
    print(f"stopped {took:.1f} s after expiry")
    assert_nothing_left_running(user, project)

    r = hub.rest("POST", f"/users/{user}/servers/{project}")
    assert r.status_code == 403 and "expired" in r.json()["message"]
    assert grant_of(cli, user, project)["status"] == "expired"


def test_revoke_stops_the_running_server(hub, cli, unique):
    user, project = setup_member(hub, cli, unique, "--reason", "pilot")
    hub.start(user, project)
    r = cli("revoke", user, project)
    assert r.returncode == 0, r.stderr
    hub.wait_stopped(user, project, timeout=LIMIT)
    assert_nothing_left_running(user, project)
    g = grant_of(cli, user, project)
    assert (g["status"], g["reason"], g["revoked_by"]) == ("revoked", "pilot", "datahavn-admin")
    r = hub.rest("POST", f"/users/{user}/servers/{project}")
    assert r.status_code == 403 and "revoked" in r.json()["message"]


def test_membership_changed_on_the_admin_page_is_honoured(hub, cli, unique):
    user, project = unique("u"), unique("p")
    assert cli("user", "add", user).returncode == 0
    assert cli("project", "create", project).returncode == 0
    # what the JupyterHub admin page does: plain group membership
    hub.rest("POST", f"/groups/{project}/users", json={"users": [user]}).raise_for_status()
    assert grant_of(cli, user, project)["status"] == "active"
    hub.start(user, project)

    hub.rest("DELETE", f"/groups/{project}/users", json={"users": [user]}).raise_for_status()
    took = hub.wait_stopped(user, project, timeout=LIMIT)
    print(f"stopped {took:.1f} s after removal on the admin page")
    assert_nothing_left_running(user, project)
    # membership was the whole grant: nothing is left to list
    assert json.loads(cli("grants", "--project", project, "--json").stdout) == []
    assert hub.rest("POST", f"/users/{user}/servers/{project}").status_code == 403
