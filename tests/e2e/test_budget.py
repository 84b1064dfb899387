"""Output budgets, through the proxy: big outputs are cut with one notice and an alert; ordinary ones pass."""

import json

import pytest
import requests

from datahavn.extensions.budget import DROP, NOTIFY, PASS, OutputBudget

from ..hubs import await_for


def test_budget_rule():
    b = OutputBudget(cell_limit=100)
    assert b.admit("iopub", "stream", "c1", 60) == PASS
    assert b.admit("iopub", "status", "c1", 10_000) == PASS  # state messages are free
    assert b.admit("shell", "execute_reply", "c1", 10_000) == PASS
    assert b.admit("iopub", "display_data", "c1", 60) == NOTIFY  # 120 > 100: cut, once
    assert b.admit("iopub", "stream", "c1", 1) == DROP
    assert b.admit("iopub", "stream", "c2", 90) == PASS
    assert b.admit("shell", "complete_reply", "c2", 90) == PASS  # counted by the workspace's meter
    # the workspace's budget used up: every channel's data stops, the state still passes
    for channel, msg_type in (("iopub", "stream"), ("shell", "inspect_reply"), ("shell", "history_reply")):
        assert b.admit(channel, msg_type, f"c-{msg_type}", 1, workspace="hour") == NOTIFY
        assert b.admit(channel, msg_type, f"c-{msg_type}", 1, workspace="hour") == DROP
    assert b.admit("shell", "execute_reply", "c-stream", 10, workspace="hour") == PASS
    assert b.admit("iopub", "status", "c-stream", 10, workspace="hour") == PASS
    assert "cell" in b.notice("c1") and "50 MB in the last hour" in b.notice("c-stream", "50 MB in the last hour")


async def cut_cell(hub, k, code: str):
    start = hub.events()[-1]["seq"]
    r = await k.execute(code, timeout=120)
    # an alert, if the cell is cut, is recorded just after its notice: wait for it (or for nothing)
    alerts = await await_for(lambda: hub.events(kind="egress_alert", after_seq=start), timeout=4, otherwise=True)
    return r, alerts


@pytest.mark.parametrize(
    "code",
    [
        "print('x' * 10_000_000)",
        "from IPython.display import HTML, display\ndisplay(HTML('<p>' + 'y' * 8_000_000 + '</p>'))",
        "import base64\nfrom IPython.display import Image, display\n"
        "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n' + bytes(7_000_000), format='png'))",
        "for i in range(200):\n    print('z' * 50_000)",
    ],
    ids=["print", "html", "image", "many-prints"],
)
async def test_big_outputs_are_cut_with_a_notice_and_an_alert(hub, kernel, code):
    k = await kernel("carol", "brca")
    r, alerts = await cut_cell(hub, k, code)
    assert r.status == "ok", r.error
    assert r.stderr.count("Output stopped") == 1, r.stderr[:300]
    shown = len(r.stdout) + sum(len(json.dumps(d)) for d in r.data)
    assert shown < 5_000_000
    (alert,) = alerts
    assert (alert["user"], alert["project"], alert["outcome"]) == ("carol", "brca", "output cut")


async def test_ordinary_outputs_pass_untouched(hub, kernel):
    k = await kernel("carol", "brca")
    r, alerts = await cut_cell(
        hub, k,
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt, pandas as pd, numpy as np\n"
        "from IPython.display import display\n"
        "plt.plot(np.arange(100) ** 2); plt.show()\n"
        "display(pd.DataFrame({'a': range(100), 'b': np.random.rand(100)}))",
    )  # fmt: skip
    assert r.status == "ok", r.error
    assert "Output stopped" not in r.stderr
    assert any("image/png" in d for d in r.data) and any("text/html" in d for d in r.data)
    assert not alerts


async def test_a_notebook_saved_with_a_huge_output_is_stored_stripped(hub, kernel):
    await kernel("carol", "brca")
    token = hub.user_token("carol")
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "print(big)",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "g" * 3_000_000}]},
        {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": "1+1",
         "outputs": [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                      "data": {"text/plain": "2"}}]},
    ]}  # fmt: skip
    url = f"{hub.url}/user/carol/brca/api/contents/saved-big.ipynb"
    headers = {"Authorization": f"token {token}"}
    r = requests.put(url, headers=headers, json={"type": "notebook", "content": nb}, timeout=60)
    assert r.status_code in (200, 201), r.text[:300]
    on_disk = json.loads((hub.layout.workspace("brca", "carol") / "saved-big.ipynb").read_text())
    big, small = on_disk["cells"]
    text = "".join(big["outputs"][0]["text"])
    assert len(json.dumps(big["outputs"])) < 1000 and "removed when this notebook was saved" in text
    assert "".join(small["outputs"][0]["data"]["text/plain"]) == "2"
