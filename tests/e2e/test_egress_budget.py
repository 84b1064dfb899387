"""One egress budget per (user, project): everything a workspace sends to the browser counts, and it does not reset.

The project ``budgetp`` has a researcher's budget on every test hub (25 MB an hour, 40 MB a day); each
test takes a fresh member, whose budget starts at zero.
"""

from __future__ import annotations

import json
import secrets

import requests

from datahavn import admin

from ..hubs import BUDGET_PROJECT, await_for, wait_for

MB = 1_000_000


def member(hub) -> str:
    user = f"b{secrets.token_hex(3)}"
    admin.add_user(hub.api, user)
    admin.create_project(hub.api, BUDGET_PROJECT, "egress budget tests", exist_ok=True)
    admin.grant(hub.api, user, BUDGET_PROJECT)
    return user


def used(hub, user: str) -> dict:
    rows = [r for r in hub.audit("/egress").json() if r["user"] == user and r["project"] == BUDGET_PROJECT]
    return rows[0] if rows else {"hour": 0, "day": 0}


WRITE_NOTEBOOKS = """
import json
for i in range({n}):
    nb = {{"cells": [{{"cell_type": "markdown", "metadata": {{}}, "source": {payload}}}], "metadata": {{}},
          "nbformat": 4, "nbformat_minor": 5}}
    json.dump(nb, open(f"nb{{i}}.ipynb", "w"))
print("written")
"""


def fetch(hub, user: str, token: str, name: str) -> tuple[int, int, str]:
    r = requests.get(f"{hub.url}/user/{user}/{BUDGET_PROJECT}/api/contents/{name}",
                     headers={"Authorization": f"token {token}"}, timeout=120)  # fmt: skip
    return r.status_code, len(r.content), (r.json().get("message", "") if r.status_code != 200 else "")


async def test_notebooks_stop_at_the_budget_and_each_read_is_recorded(hub, kernel):
    user = member(hub)
    k = await kernel(user, BUDGET_PROJECT)
    r = await k.execute(WRITE_NOTEBOOKS.format(n=6, payload="'x' * 12_000_000"), timeout=120)
    assert "written" in r.stdout, r.error
    token = hub.user_token(user)
    start = hub.events()[-1]["seq"]
    results = [fetch(hub, user, token, f"nb{i}.ipynb") for i in range(6)]
    delivered = sum(size for status, size, _ in results if status == 200)
    assert [s for s, _, _ in results] == [200, 200, 403, 403, 403, 403], results
    assert 24 * MB <= delivered <= 25 * MB
    assert "may send" in results[2][2] and "MB" in results[2][2]  # the user sees why
    reads = await await_for(lambda: hub.events(kind="content_read", user=user, after_seq=start), timeout=10)
    assert [e["path"] for e in reads] == ["nb0.ipynb", "nb1.ipynb"]
    assert all(e["detail"]["bytes"] >= 12 * MB for e in reads)
    alerts = await await_for(lambda: hub.events(kind="egress_alert", user=user, after_seq=start), timeout=10)
    assert alerts[0]["project"] == BUDGET_PROJECT and alerts[0]["outcome"] == "content refused"
    # the budget's keeper knows it, and the researcher is told in the next cell: past 80 %
    wait_for(lambda: used(hub, user)["hour"] >= 24 * MB, timeout=10, message="the usage reported")
    note = await k.execute("print('next')")
    assert "of what it may send to the browser" in note.stderr, note.stderr


async def test_a_dataset_wrapped_in_notebooks_cannot_be_fetched_whole(hub, kernel):
    user = member(hub)
    k = await kernel(user, BUDGET_PROJECT)
    # what a researcher would try: the project's data (here 60 MB), base64, in 10 MB notebooks
    r = await k.execute(
        "import base64, os, json\n"
        "blob = os.urandom(45_000_000)\n"  # stands for a dataset read from data/
        "text = base64.b64encode(blob).decode()\n"
        "parts = [text[i:i + 10_000_000] for i in range(0, len(text), 10_000_000)]\n"
        "for i, p in enumerate(parts):\n"
        "    json.dump({'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': p}], 'metadata': {},"
        " 'nbformat': 4, 'nbformat_minor': 5}, open(f'part{i}.ipynb', 'w'))\n"
        "print(len(parts), len(text))",
        timeout=120,
    )  # fmt: skip
    n, size = map(int, r.stdout.split())
    token = hub.user_token(user)
    got = [fetch(hub, user, token, f"part{i}.ipynb") for i in range(n)]
    delivered = sum(s for status, s, _ in got if status == 200)
    assert delivered <= 25 * MB < size, (delivered, size)
    assert any(status == 403 for status, _, _ in got)


async def test_the_budget_survives_new_kernels_and_a_server_restart_and_counts_every_reply(hub, kernel):
    user = member(hub)
    k = await kernel(user, BUDGET_PROJECT)
    await k.execute(WRITE_NOTEBOOKS.format(n=3, payload="'x' * 9_000_000"), timeout=120)
    token = hub.user_token(user)
    assert fetch(hub, user, token, "nb0.ipynb")[0] == 200
    # the server is restarted (all its kernels with it): the workspace's total is where it was
    hub.stop(user, BUDGET_PROJECT)
    hub.wait_stopped(user, BUDGET_PROJECT, 60)
    k = await kernel(user, BUDGET_PROJECT)
    before = wait_for(lambda: used(hub, user)["hour"] >= 9 * MB and used(hub, user), timeout=10)
    # replies that are not output count too: history (a cell's code comes back), completions, inspection
    big = "y = '" + "z" * 1_500_000 + "'"  # a large cell (the audit service takes 2 MB of code at most)
    assert (await k.execute(big)).status == "ok"
    received = 0
    for msg_type, content in (("history_request", {"hist_access_type": "tail", "n": 5, "raw": True, "output": False}),
                              ("complete_request", {"code": "import o", "cursor_pos": 8}),
                              ("inspect_request", {"code": "y", "cursor_pos": 1, "detail_level": 0})):
        msg = k.message(msg_type, content)
        await k.send(msg)
        reply_type = msg_type.replace("request", "reply")
        while True:
            reply = await k.receive()
            if reply and reply["msg_type"] == reply_type:
                received += len(json.dumps(reply["content"]))
                break
    assert received > 1_500_000  # the history of that cell
    wait_for(lambda: used(hub, user)["hour"] >= before["hour"] + received, timeout=15,
             message="replies counted in the workspace's budget")  # fmt: skip
    assert fetch(hub, user, token, "nb1.ipynb")[0] == 200  # 9 + 1.5 + 9 = 19.5 MB
    status, _, why = fetch(hub, user, token, "nb2.ipynb")
    assert status == 403 and "may send" in why


async def test_jupyterlab_storage_cannot_carry_data(hub, kernel):
    user = member(hub)
    k = await kernel(user, BUDGET_PROJECT)
    r = await k.execute(
        "import os, json\n"
        "for var, name in (('JUPYTERLAB_WORKSPACES_DIR', 'big.jupyterlab-workspace'),"
        " ('JUPYTERLAB_SETTINGS_DIR', '@jupyterlab/notebook-extension/tracker.jupyterlab-settings')):\n"
        "    sub = 'workspaces' if 'WORK' in var else 'user-settings'\n"
        "    d = os.path.join(os.environ['HOME'], '.jupyter', 'lab', sub)\n"
        "    path = os.path.join(d, name)\n"
        "    os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "    json.dump({'data': {'x': 'w' * 30_000_000}, 'metadata': {'id': 'big'}}, open(path, 'w'))\n"
        "print('planted')"
    )  # fmt: skip
    assert "planted" in r.stdout, r.error
    token = hub.user_token(user)
    base = f"{hub.url}/user/{user}/{BUDGET_PROJECT}/"
    headers = {"Authorization": f"token {token}"}
    for path in ("lab/api/workspaces", "lab/api/workspaces/big", "lab/api/settings",
                 "lab/api/settings/@jupyterlab/notebook-extension:tracker"):  # fmt: skip
        got = requests.get(base + path, headers=headers, timeout=60)
        assert got.status_code == 403 and len(got.content) < 10_000, (path, got.status_code, len(got.content))
    put = requests.put(base + "lab/api/workspaces/other", headers=headers, timeout=60,
                       data=json.dumps({"data": {"x": "v" * 5_000_000}, "metadata": {"id": "other"}}))  # fmt: skip
    assert put.status_code == 403
