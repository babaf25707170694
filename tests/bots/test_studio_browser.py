"""The studio in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser), against the studio served by uvicorn on 127.0.0.1 inside a running service.

The main paths an operator takes: log in with the printed address, chat and see the reply
stream in, import a card by dropping it, approve a post on the calendar, see a job finish.
A screenshot of every page is saved under ``build/screenshots/studio/`` (or
``$VCHAR_SCREENSHOTS``): the README's pictures come from there.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bots.studio_support import TOKEN, studio_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("VCHAR_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots" / "studio"))
# Playwright starts it headless with a fresh profile of its own; these keep it off the network
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("VCHAR_TEST_STRICT") == "1":
            pytest.fail("Chromium is required (VCHAR_TEST_STRICT=1): scripts/system-deps.sh installs Debian's chromium")
        pytest.skip("no Chromium here (scripts/system-deps.sh installs it)")


@pytest_asyncio.fixture
async def served(tmp_path, embedder):
    """The service with its studio served on a free port: ``(studio, url with token)``."""
    from bots.service import Service
    from bots.studio import Studio

    _need_chromium()
    url = f"sqlite+aiosqlite:///{tmp_path / 'vchar.db'}"
    settings = studio_settings(tmp_path, url)
    async with Service(settings, embedder=embedder) as svc:
        web = await Studio(settings, svc, token=TOKEN).start()
        try:
            yield web, web.url
        finally:
            await web.stop()


@pytest_asyncio.fixture
async def page(served, tmp_path):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            tab = await context.new_page()
            tab.set_default_timeout(60_000)
            yield tab
        finally:
            await browser.close()


async def _shot(tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


async def test_log_in_chat_import_approve_and_watch_a_job_in_chromium(served, page, tmp_path):
    web, url = served
    base = url.split("?")[0].rstrip("/")
    refused = []  # anything the Content-Security-Policy blocked: the pages must need none of it
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)

    # a page without the login: the login page, nothing else
    await page.goto(base + "/chat/mira")
    assert await page.locator("input[name=secret]").count() == 1
    await _shot(page, "login")

    # the printed address logs in, and the token leaves the address bar
    await page.goto(url)
    await page.wait_for_selector("#compose textarea")
    assert "token=" not in page.url

    # chat: the reply streams into the page and stays after a reload
    await page.fill("#compose textarea", "Hi Mira! My name is Sam and I love astronomy.")
    await page.press("#compose textarea", "Enter")
    reply = page.locator(".msg.assistant:not(.pending) .text").last
    await reply.wait_for()
    said = (await reply.inner_text()).strip()
    assert said
    await page.reload()
    await page.wait_for_selector(f".msg.assistant .text >> text={said[:20]}")
    await _shot(page, "chat")

    # regenerate: a second answer, with the swipe counter
    await page.click(".msg.assistant button.regen")
    await page.wait_for_selector(".msg.assistant .tools >> text=2/2")

    # import a card by dropping it on the personas page's drop zone (the file input behind it)
    card = tmp_path / "nova.json"
    card.write_text(json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Nova", "description": "A cheerful astronaut who grew up on the moon.", "personality": "curious",
        "scenario": "", "first_mes": "Hello from orbit!", "mes_example": "", "creator_notes": "", "system_prompt": "",
        "post_history_instructions": "", "alternate_greetings": [], "tags": [], "creator": "", "character_version": "",
        "extensions": {}}}))
    await page.goto(base + "/personas")
    await page.locator(".dropzone input[type=file]").set_input_files(str(card))
    await page.wait_for_selector('.card[data-persona="nova"]')
    assert (web.settings.resolved_personas_dir / "nova.yaml").is_file()
    await _shot(page, "personas")

    # a malformed card: the same by-field error beside the drop zone
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": {"description": "no name"}}))
    await page.goto(base + "/personas")
    await page.locator(".dropzone input[type=file]").set_input_files(str(bad))
    error = page.locator("#import-error")
    await error.wait_for()
    assert "broken.json" in await error.inner_text() and "name" in await error.inner_text()

    # the character picker in the header
    await page.goto(base + "/chat/mira")
    await page.select_option("form.persona-pick select", "nova")
    await page.wait_for_url("**/chat/nova")
    await page.wait_for_selector("#compose textarea")

    await page.goto(base + "/personas/mira/edit")
    await page.wait_for_selector("#preview >> text=Mira")  # the live preview, drawn by htmx on load
    await _shot(page, "persona-editor")

    # approve a post on the calendar
    persona = web.svc.manager.registry.get("mira")
    due = datetime.now(timezone.utc) + timedelta(hours=2)
    post = await web.app.state.ctx.planner.add(persona, "telegram:@mira_news", due, text="Stargazing tonight! Who's in?")
    await page.goto(base + "/posts/mira")
    await page.wait_for_selector(f'.calendar .post[data-post="{post.id}"] .badge.pending')
    await _shot(page, "calendar")
    await page.click(f'.calendar .post[data-post="{post.id}"]')
    await page.wait_for_selector("text=Stargazing tonight")
    await page.click("button:has-text('Approve')")
    await page.wait_for_selector(".badge.approved")
    assert (await web.app.state.ctx.posts.get(post.id)).status == "approved"

    # a job: a selfie asked for in the chat, watched to the end on the jobs page (live, no reload)
    await page.goto(base + "/chat/mira")
    await page.fill("#compose textarea", "/selfie at the observatory")
    await page.press("#compose textarea", "Enter")
    await page.goto(base + "/jobs")
    await page.wait_for_selector("#jobs-body .badge.done", timeout=120_000)
    await page.wait_for_selector("#jobs-depth >> text=Nothing waiting or running")  # the queue box follows too
    await _shot(page, "jobs")
    await page.goto(base + "/chat/mira")
    await page.wait_for_selector(".msg.assistant img")
    await _shot(page, "chat-media")

    for section in ("people", "stats"):
        await page.goto(base + f"/{section}/mira")
        await page.wait_for_selector("main .panel")
        await _shot(page, section)
    assert not refused, refused
