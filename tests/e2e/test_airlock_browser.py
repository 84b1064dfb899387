"""The airlock in Chromium: alice asks from the lab, two checkers approve on the airlock page, alice downloads."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys

from datahavn import admin

from ..hubs import ARTIFACTS, await_for
from .test_browser import browser, log_in, open_notebook, page, run_cell  # noqa: F401 (fixtures)

MAKE_RESULTS = r"""
import os, numpy as np, pandas as pd, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from acro import ACRO
rng = np.random.default_rng(7)
g = rng.integers(0, 3, size=(120, 400)).astype(float)
g -= g.mean(axis=0)
u, s, vt = np.linalg.svd(g, full_matrices=False)
plt.figure(figsize=(4, 4)); plt.scatter(u[:, 0] * s[0], u[:, 1] * s[1], s=8); plt.title("PCA")
fig = plt.gcf()
df = pd.DataFrame({"group": rng.choice(["case", "control"], 400), "genotype": rng.choice(["AA", "AB", "BB"], 400)})
acro = ACRO(suppress=False)
acro.crosstab(df.group, df.genotype)
acro.finalise("export", "json")  # a folder of its own: ACRO will not write into one that exists
fig.savefig("export/pca.png", dpi=80)
print("results ready", sorted(os.listdir("export")))
"""


def shot(pg, name):
    return pg.screenshot(path=str(ARTIFACTS / f"airlock-{name}.png"), full_page=True)


async def test_alice_exports_a_plot_and_an_acro_table_through_two_checkers(hub, page, browser):  # noqa: F811
    second = f"dana{secrets.token_hex(2)}"
    admin.add_user(hub.api, second)
    for checker in ("carol", second):
        done = subprocess.run([sys.executable, "-m", "datahavn.cli", "airlock", "checker", "add", checker],
                              env=hub.env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
    start = hub.events()[-1]["seq"]

    # alice makes her results in the lab and asks for their export from the file browser
    await open_notebook(hub, page, "alice", "brca")
    await run_cell(page, f"exec({MAKE_RESULTS!r})")  # ACRO logs first; the listing comes last
    ready = page.locator(".jp-OutputArea-output", has_text="results ready")
    await ready.wait_for()
    assert "output_0_0.csv" in await ready.inner_text()
    # the file browser is the lab's open left panel (clicking its tab would close it)
    await page.locator('.jp-DirListing-item[data-isdir="true"]', has_text="export").dblclick()
    names = ("pca.png", "output_0_0.csv", "results.json")
    item = {n: page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=n)).first
            for n in names}  # fmt: skip
    await item[names[0]].click()
    for n in names[1:]:
        await item[n].click(modifiers=["Control"])
    await item[names[0]].click(button="right")
    await page.locator('.lm-Menu-item[data-command="datahavn:request-export"]').click()
    dialog = page.locator(".jp-Dialog .dh-airlock-dialog")
    await dialog.wait_for()
    assert await dialog.locator(".dh-airlock-file").count() == 3
    await dialog.locator('textarea[name="justification"]').fill("Figure 2 and Table 1 of the brca paper")
    await dialog.locator('select[name="output_type"]').select_option("figure")
    await shot(page, "1-request-dialog")
    await page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    toast = page.locator(".Toastify__toast", has_text="sent for review")
    await toast.wait_for()
    mine = await await_for(
        lambda: [r for r in hub.api.airlock("GET", "/requests", params={"project": "brca"}).json()["requests"]
                 if r["user"] == "alice" and {f["path"] for f in r["files"]} == {f"export/{n}" for n in names}],
        timeout=20, message="the request did not reach the airlock",
    )  # fmt: skip
    rid = mine[0]["id"]
    await page.locator('.jp-SideBar .lm-TabBar-tab[data-id="datahavn-airlock-panel"]').click()
    await page.locator(f'.dh-airlock-request[data-id="{rid}"][data-state="requested"]').wait_for()
    await shot(page, "2-lab-panel")

    # two checkers review on the airlock page: files rendered, checks beside them
    for n, checker in enumerate(("carol", second)):
        ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
        cp = await ctx.new_page()
        await log_in(hub, cp, checker)
        await cp.goto(f"{hub.url}/services/datahavn-airlock/requests/{rid}")
        await cp.locator("#summary").wait_for()
        assert await cp.locator("img.preview").count() == 1
        table = cp.locator('section.file[data-path="export/output_0_0.csv"]')
        assert await table.locator("table.preview").count() == 1
        assert await table.locator('tr.check[data-name="acro"]').count() == 1
        await cp.locator("#do-approve").click()
        await cp.locator("#summary").wait_for()
        if n == 1:
            assert await cp.locator("#summary").get_attribute("data-state") == "approved"
            await cp.locator("#do-release").click()
            await cp.locator('#summary[data-state="released"]').wait_for()
        await shot(cp, f"3-review-{n + 1}")
        await ctx.close()

    # alice downloads both, byte for byte the snapshots (and what she asked for)
    await page.goto(f"{hub.url}/services/datahavn-airlock/requests/{rid}")
    await page.locator('#summary[data-state="released"]').wait_for()
    await shot(page, "4-released")
    request = hub.api.airlock("GET", f"/requests/{rid}").json()
    workspace = hub.layout.workspace("brca", "alice")
    for f in request["files"][:2]:
        async with page.expect_download() as info:
            await page.locator(f'section.file[data-n="{f["n"]}"] a.download').click()
        download = await info.value
        got = open(await download.path(), "rb").read()
        assert hashlib.sha256(got).hexdigest() == f["sha256"]
        assert got == (hub.layout.airlock / rid / str(f["n"])).read_bytes() == (workspace / f["path"]).read_bytes()

    # leave alice's lab as a new one (its layout is kept in her workspace): the launcher, no panel
    await page.goto(f"{hub.url}/user/alice/brca/lab?reset")
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first.wait_for()

    # the audit page shows every step
    ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
    ap = await ctx.new_page()
    await log_in(hub, ap, "admin")
    await ap.goto(f"{hub.url}/services/datahavn-audit/?grep={rid}")
    await ap.locator("#events").wait_for()
    kinds = {k.strip() for k in await ap.locator("#events tr.event td:nth-child(3)").all_inner_texts()}
    assert {"airlock_request", "airlock_check", "airlock_review", "airlock_release", "airlock_download"} <= kinds
    await shot(ap, "5-audit")
    await ctx.close()
    recorded = [
        e
        for e in hub.events(after_seq=start)
        if isinstance(e.get("detail"), dict) and e["detail"].get("request") == rid
    ]
    reviews = [e["actor"] for e in recorded if e["kind"] == "airlock_review"]
    assert sorted(reviews) == sorted(["carol", second])
