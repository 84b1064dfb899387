"""People in Chromium: a researcher runs a cell in JupyterLab; the audit page is for admins only."""

import os
import re
import signal

import pytest
import requests

from ..hubs import ARTIFACTS, await_for

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser, request):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    pg = await context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    await pg.screenshot(path=str(ARTIFACTS / f"browser-{request.node.name}.png"))
    await context.close()


async def log_in(hub, page, user):
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", user)
    await page.fill("#password_input", hub.admin_password if user == "admin" else hub.password)
    await page.click("#login_submit")
    await page.wait_for_url("**/hub/home")


async def open_notebook(hub, page, user, project, not_listed=()):
    # from the home page, as a person would; other tests may have left the server running
    hub.stop(user, project)
    hub.wait_stopped(user, project, 60)
    await log_in(hub, page, user)
    for other in not_listed:
        assert await page.locator(f"#start-{other}").count() == 0, f"{other} offered to {user}"
    await page.click(f"#start-{project}")
    await page.wait_for_url(f"**/user/{user}/{project}/lab**")
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    # a cell run before the kernel is connected is silently dropped: wait for Idle
    await page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for()


async def run_cell(page, code: str) -> str:
    cells = page.locator(".jp-Notebook .jp-Cell")
    # pinned by index: Shift+Enter appends a new last cell
    cell = cells.nth(await cells.count() - 1)
    await cell.locator(".cm-content").click()
    await page.keyboard.type(code)
    await page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output").first
    await output.wait_for()
    return await output.inner_text()


async def test_alice_starts_brca_and_runs_a_cell(hub, page):
    start = hub.events()[-1]["seq"]  # other tests' refusals of alice's server are theirs
    await open_notebook(hub, page, "alice", "brca", not_listed=["cardio"])
    out = await run_cell(page, "import os; print('answer', 6 * 7, os.environ['DATAHAVN_PROJECT'])")
    assert "answer 42 brca" in out
    # and save it: the notebook lands in alice's brca workspace, output included
    await page.keyboard.press("Control+s")
    # JupyterLab asks for a name at the first save of an untitled notebook
    await page.locator(".jp-Dialog .jp-mod-accept").click()
    workspace = hub.layout.workspace("brca", "alice")
    await await_for(lambda: [p for p in workspace.glob("Untitled*.ipynb") if "answer 42 brca" in p.read_text()],
                    timeout=10, message="the notebook was not saved")  # fmt: skip
    # the egress guard refused nothing the lab needs (it asks for export formats: refused by design)
    refused = [e["detail"] for e in hub.events(kind="denied", user="alice", after_seq=start)
               if e.get("server") == "alice/brca"]  # fmt: skip
    assert all("/api/nbconvert" in d for d in refused), refused


async def test_researcher_sees_why_nothing_runs_while_the_audit_is_down(hub, page):
    await open_notebook(hub, page, "carol", "cardio")
    assert "ok 1" in await run_cell(page, "print('ok', 1)")
    pid = hub.audit_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        out = await run_cell(page, "print('ran while audit was down')")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "AuditUnavailable" in out and "audit trail is unavailable" in out
    assert "ran while audit was down" not in out
    assert "back 2" in await run_cell(page, "print('back', 2)")


async def test_admin_browses_the_audit_page_and_a_researcher_is_refused(hub, page, browser):
    await log_in(hub, page, "admin")
    await page.goto(f"{hub.url}/services/datahavn-audit/?kind=login")
    await page.locator("#events").wait_for()
    kinds = await page.locator("#events tr.event td:nth-child(3)").all_inner_texts()
    assert kinds and all(k.strip() == "login" for k in kinds)
    await page.goto(f"{hub.url}/services/datahavn-audit/")
    assert await page.locator("#activity-chart rect[data-project='brca']").count() >= 1
    # newest first: the admin's own login is the latest login shown (the hub_api
    # record of the page's OAuth token exchange may come after it)
    logins = page.locator("#events tr.event").filter(
        has=page.locator("td:nth-child(3)", has_text=re.compile(r"^\s*login\s*$"))
    )
    newest = logins.first
    assert "admin" in await newest.inner_text()
    # the chart counts every matching event (the store's count), the page shows one page of them
    total = int((await page.locator("#event-total").inner_text()).replace(",", ""))
    charted = sum(int(c) for c in await page.locator("#activity-chart rect").evaluate_all(
        "rs => rs.map(r => r.dataset.count)"))  # fmt: skip
    assert total == charted >= int((await page.locator("#event-count").inner_text()).replace(",", ""))
    assert await page.locator("#hub-link").get_attribute("href") == "/hub/home"
    # a bad filter is a 400 that says which and why, not a bare 500
    resp = await page.goto(f"{hub.url}/services/datahavn-audit/?since=yesterday")
    assert resp.status == 400
    assert "Since: 'yesterday' is not a date or time" in await page.locator("#filter-error").inner_text()

    researcher = await browser.new_context()
    rpage = await researcher.new_page()
    await log_in(hub, rpage, "bob")
    resp = await rpage.goto(f"{hub.url}/services/datahavn-audit/")
    # the hub itself refuses: bob's identity does not reach the service at all
    assert resp.status == 403
    assert await rpage.locator("#events").count() == 0
    assert "Datahavn audit trail" not in await rpage.content()
    await researcher.close()


async def test_the_lab_offers_no_download_export_or_news(hub, page):
    await open_notebook(hub, page, "bob", "cardio")
    assert "ok" in await run_cell(page, "print('ok')")
    forbidden = ("Download", "Export", "Copy Download Link", "Open in New Browser Tab", "Print")

    await page.locator(".lm-MenuBar-itemLabel", has_text="File").click()
    file_menu = await page.locator(".lm-Menu").last.inner_text()
    assert "Save" in file_menu  # the menu is there
    await page.keyboard.press("Escape")

    await page.locator(".jp-DirListing-item", has_text="Untitled").first.click(button="right")
    context_menu = await page.locator(".lm-Menu").last.inner_text()
    assert "Rename" in context_menu
    await page.keyboard.press("Escape")
    for item in forbidden:
        assert item not in file_menu, f"File menu offers {item}"
        assert item not in context_menu, f"file browser offers {item}"
    # nor does the command palette know a print command
    await page.keyboard.press("Control+Shift+C")
    await page.keyboard.type("Print")
    palette = await page.locator(".lm-CommandPalette-content").inner_text()
    assert "Print" not in palette, palette
    await page.keyboard.press("Escape")
    assert await page.get_by_text("official Jupyter news").count() == 0
    # and the server behind it has no terminals
    token = hub.user_token("bob")
    r = requests.post(
        f"{hub.url}/user/bob/cardio/api/terminals", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code in (403, 404)


async def test_a_3_mb_notebook_within_the_budget_opens_and_its_read_is_recorded(hub, page):
    await open_notebook(hub, page, "carol", "brca")
    start = hub.events()[-1]["seq"]
    code = ("import nbformat as nbf, os; nb = nbf.v4.new_notebook(); "
            "nb.cells = [nbf.v4.new_markdown_cell('# big-notebook-marker'), "
            "nbf.v4.new_code_cell(chr(10).join('# ' + 'x' * 70 for _ in range(42000)))]; "
            "nbf.write(nb, 'big.ipynb'); print('written', os.path.getsize('big.ipynb'))")  # fmt: skip
    out = await run_cell(page, code)
    size = int(out.split("written")[1].split()[0])
    assert size > 3_000_000
    await page.goto(f"{hub.url}/user/carol/brca/lab/tree/big.ipynb")
    await page.locator(".jp-RenderedMarkdown h1", has_text="big-notebook-marker").wait_for()
    reads = await await_for(
        lambda: [e for e in hub.events(kind="content_read", user="carol", after_seq=start) if e["path"] == "big.ipynb"],
        timeout=10, message="the notebook's read was not recorded",
    )  # fmt: skip
    # the wire carries the notebook as compact JSON, smaller than the indented file
    assert reads[0]["detail"]["bytes"] >= 3_000_000


async def test_the_lab_says_which_project_and_what_is_protected(hub, page):
    # a fresh member in a fresh project: no other test's lab layout (and its dialogs) comes back
    user, project = hub.new_member()
    await log_in(hub, page, user)
    await page.click(f"#start-{project}")
    await page.wait_for_url(f"**/user/{user}/{project}/lab**")
    await page.locator("#dh-project-label").wait_for()
    assert await page.title() == f"{project} \u2014 Datahavn"
    assert await page.locator("#dh-project-label").inner_text() == f"{project} \u2014 Datahavn"
    # a notebook another test left open may bring a dialog (its kernel): close what comes, then the menu
    for _ in range(10):
        if await page.locator(".jp-Dialog").count():
            await page.keyboard.press("Escape")
        try:
            await page.locator(".lm-MenuBar-itemLabel", has_text="Help").click(timeout=3000)
            break
        except Exception:  # intercepted by a dialog that came meanwhile
            continue
    await page.locator(".lm-Menu-itemLabel", has_text="Datahavn: what is protected and how to export").click()
    help_page = page.locator(".dh-help")
    await help_page.wait_for()
    text = await help_page.inner_text()
    assert f"what is protected in {project}" in text and "Request export" in text and "pd.read_csv(" in text
    assert await page.title() == f"{project} \u2014 Datahavn"  # still, with another tab in front
