"""A member starts a project workspace and runs code; a non-member cannot."""

import html
import re

import requests

from ..hubs import login


async def test_member_runs_a_cell_over_the_kernel_websocket(hub, kernel):
    k = await kernel("alice", "brca")
    r = await k.execute("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getcwd(), 6 * 7)")
    assert r.status == "ok", r.error
    name, cwd, answer = r.stdout.split()
    assert name == "dh-brca-alice"
    assert cwd == str(hub.layout.workspace("brca", "alice"))
    assert answer == "42"


def test_spawn_of_ungranted_project_is_refused_over_rest(hub):
    r = hub.rest("POST", "/users/alice/servers/cardio")
    assert r.status_code == 403
    assert "not been granted access" in r.json()["message"]
    assert "cardio" in r.json()["message"]
    assert hub.server("alice", "cardio") is None


def test_spawn_of_unknown_project_is_refused(hub):
    r = hub.rest("POST", "/users/alice/servers/nosuch")
    assert r.status_code == 403
    assert hub.server("alice", "nosuch") is None


def test_default_server_is_refused_with_how_to_start_a_project(hub):
    r = hub.rest("POST", "/users/alice/server")
    assert r.status_code == 400
    assert "/hub/spawn/alice/<project>" in r.json()["message"]


def test_spawn_page_refuses_ungranted_project_with_a_clear_message(hub):
    s = login(hub, "alice")
    home = s.get(f"{hub.url}/hub/home", timeout=30).text
    assert 'id="start-brca"' in home and "cardio" not in home
    page = s.get(f"{hub.url}/hub/spawn/alice/cardio", timeout=60)
    assert page.status_code == 403
    expected = "Cannot start a workspace for project cardio: you have not been granted access"
    assert expected in html.unescape(page.text)
    assert hub.server("alice", "cardio") is None


def test_unknown_user_cannot_log_in(hub):
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": "mallory", "password": hub.password, "_xsrf": s.cookies.get("_xsrf")},
        timeout=30,
    )
    assert "/hub/login" in r.url or r.status_code == 403
    assert hub.rest("GET", "/users/mallory").status_code == 404


def test_hub_pages_carry_the_datahavn_name_and_no_token_page_for_researchers(hub):
    login_page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert "<title>Datahavn</title>" in login_page and "a secure analysis workspace" in login_page
    alice = login(hub, "alice")
    home = alice.get(f"{hub.url}/hub/home", timeout=30).text
    assert "<title>Datahavn</title>" in home and 'id="nav-token"' not in home
    admin = login(hub, "admin").get(f"{hub.url}/hub/home", timeout=30).text
    assert 'id="nav-token"' in admin  # administrators mint scripting tokens there
    # the open link is JupyterHub's server-link: its home.js hides it when the workspace stops
    hub.start("alice", "brca")
    running = alice.get(f"{hub.url}/hub/home", timeout=30).text
    assert re.search(r'class="server-link btn btn-xs btn-primary"\s+id="open-brca"', running), running
    hub.stop("alice", "brca")
    hub.wait_stopped("alice", "brca", 60)
    stopped = alice.get(f"{hub.url}/hub/home", timeout=30).text
    assert re.search(r'class="server-link btn btn-xs btn-primary hidden"\s+id="open-brca"', stopped)
