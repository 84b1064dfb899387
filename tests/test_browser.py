"""A researcher in Chromium: log in, start a project from the home page, run a cell in JupyterLab."""

import pytest

from .conftest import ARTIFACTS

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


async def test_alice_starts_brca_and_runs_a_cell(hub, browser):
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        await run_a_cell(hub, page)
    finally:
        await page.screenshot(path=str(ARTIFACTS / "browser-alice-brca.png"))


async def run_a_cell(hub, page):
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", "alice")
    await page.fill("#password_input", hub.password)
    await page.click("#login_submit")

    await page.wait_for_url("**/hub/home")
    assert await page.locator("#start-cardio").count() == 0
    await page.click("#start-brca")
    await page.wait_for_url("**/user/alice/brca/lab**")

    await page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    # a cell run before the kernel is connected is silently dropped: wait for Idle
    await page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for()
    await page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    await page.keyboard.type("import os; print('answer', 6 * 7, os.environ['DATAHAVN_PROJECT'])")
    await page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    await output.wait_for()
    assert "answer 42 brca" in await output.inner_text()
