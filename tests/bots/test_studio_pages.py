"""The studio's people, posts, jobs and stats pages, as an operator uses them: data made
through the real paths (a chat, a Telegram message, the planner, the job queue), then what
the pages show and what their buttons change in the database."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import date, datetime, time, timedelta, timezone

from persona.types import IncomingMessage
from tests.bots.studio_support import studio, studio_sqlite  # noqa: F401 - fixtures


def _ctx(web):
    return web.app.state.ctx


def _text(page: str) -> str:
    """What the page says, tags taken out and entities read (as a person reads it)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _row(page: str, marker: str) -> str:
    """The table row that holds ``marker``."""
    i = page.index(marker)
    return page[page.rfind("<tr", 0, i):page.index("</tr>", i)]


def _day_cell(page: str, day: str) -> str:
    m = re.search(rf'<div class="day([^"]*)" data-day="{day}">(.*?)</div>\s*(?=<div class="day|</div>)', page, re.S)
    assert m, f"no calendar cell for {day}"
    return m.group(1) + m.group(2)


async def _telegram(web, text: str, *, user: str = "4242", name: str = "Tess", mid: str = "1"):
    return await web.svc.handle(IncomingMessage(platform="telegram", chat_id=user, user_id=user, text=text,
                                                message_id=mid, persona="mira", user_name=name))


async def _flash_after(client, r) -> str:
    """Follow a form's redirect; the flash message the page shows."""
    assert r.status_code == 303, r.text[:500]
    page = await client.get(r.headers["location"])
    assert page.status_code == 200
    m = re.search(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', page.text, re.S)
    return html.unescape(m.group(1)) if m else ""


# -- people --------------------------------------------------------------------------------

async def test_people_shows_who_the_character_knows_and_forgetting_removes_them(studio):
    web, client = studio
    await web.adapters["mira"].converse("hi, my name is Sam")
    await _telegram(web, "I love astronomy. Do you?")
    await _telegram(web, "Tell me about the stars.", mid="2")
    await web.svc.manager.drain()  # the facts they stated are stored in the background

    r = await client.get("/people")
    assert r.status_code == 303 and r.headers["location"] == "/people/mira"
    page = (await client.get("/people/mira")).text
    assert "Sam" in page and "studio" in page  # the operator, by the name they gave
    tess = _row(page, ">Tess<")
    assert "telegram" in tess and "<td>2</td>" in tess  # two messages
    uid = int(re.search(r'data-user="(\d+)"', tess).group(1))
    assert 'class="progress"' in tess  # affinity as a bar

    person = await client.get(f"/people/mira/{uid}")
    assert person.status_code == 200
    shown = _text(person.text)
    assert "Tess" in shown and "4242" in shown and "loves astronomy" in shown
    assert "fact" in shown and "Forget this person" in person.text and 'class="danger"' in person.text
    sam = re.search(r'href="/people/mira/(\d+)">Sam<', page).group(1)
    assert "name: Sam" in _text((await client.get(f"/people/mira/{sam}")).text)

    pid = await web.svc.manager.persona_db_id("mira")
    assert await web.svc.store.list_memories(pid, uid)
    flash = await _flash_after(client, await client.post(f"/people/mira/{uid}/forget"))
    assert "forgot Tess" in flash and "2 messages" in flash and "memories" in flash
    page = (await client.get("/people/mira")).text
    assert ">Tess<" not in page and ">Sam<" in page
    assert await web.svc.store.list_memories(pid, uid) == []
    assert await web.svc.store.find_user("telegram", "4242") is None
    assert (await client.get(f"/people/mira/{uid}")).status_code == 404
    assert (await client.post(f"/people/mira/{uid}/forget")).status_code == 404
    assert (await client.get("/people/nobody")).status_code == 404

    # the stats page counts the day on this database too (its date grouping is the dialect's)
    today = datetime.now(timezone.utc).date().isoformat()
    stats = (await client.get("/stats/mira?days=7")).text
    assert f"<title>{today}: 1 received</title>" in stats  # Tess and her messages are gone
    assert f"<title>{today}: 1 new people</title>" in stats


async def test_a_persons_text_is_shown_as_text_never_as_markup(studio_sqlite):
    web, client = studio_sqlite
    await _telegram(web, "I love <script>alert(1)</script>", name="<img src=x onerror=alert(1)>")
    await _telegram(web, "I love <b>bold</b> stars", name="<img src=x onerror=alert(1)>", mid="2")
    await web.svc.manager.drain()
    page = (await client.get("/people/mira")).text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    uid = re.search(r'href="/people/mira/(\d+)"', page).group(1)
    person = (await client.get(f"/people/mira/{uid}")).text
    assert "<script>alert" not in person and "&lt;script&gt;alert(1)&lt;/script&gt;" in person
    assert "<b>bold</b>" not in person and "&lt;b&gt;bold&lt;/b&gt; stars" in person


# -- posts ---------------------------------------------------------------------------------

async def _plan_post(web, at: datetime, text: str = "Stargazing tonight, who is in?"):
    ctx = _ctx(web)
    await ctx.manager.persona_db_id("mira")
    return await ctx.planner.add(ctx.registry.get("mira"), "telegram:@mira_daily", at, text=text)


async def test_the_calendar_shows_a_planned_post_on_its_day_in_the_week_and_the_month(studio_sqlite):
    web, client = studio_sqlite
    today = datetime.now(timezone.utc).date()
    day = today + timedelta(days=3)
    post = await _plan_post(web, datetime.combine(day, time(18, 30), timezone.utc))
    other = await _plan_post(web, datetime.combine(day + timedelta(days=40), time(9), timezone.utc), "Much later")

    r = await client.get("/posts")
    assert r.status_code == 303 and r.headers["location"] == "/posts/mira"
    week = (await client.get(f"/posts/mira?view=week&day={day}")).text
    assert week.count('<div class="head">') == 7 and week.count('<div class="day') == 7
    cell = _day_cell(week, day.isoformat())
    assert f'href="/posts/item/{post.id}"' in cell and "18:30" in cell and "telegram:@mira_daily" in cell
    assert 'class="badge pending"' in cell
    assert f"/posts/item/{other.id}" not in week
    assert "pending 1" in _text(week)  # counts by status
    monday = day - timedelta(days=day.weekday())
    prev = re.search(r'href="([^"]+)" rel="prev"', week).group(1)
    assert html.unescape(prev) == f"/posts/mira?view=week&day={day - timedelta(days=7)}"

    default = (await client.get("/posts/mira")).text  # this week, today marked
    assert re.search(rf'<div class="day today" data-day="{today}">', default)

    month = (await client.get(f"/posts/mira?view=month&day={day}")).text
    cell = _day_cell(month, day.isoformat())
    assert f'href="/posts/item/{post.id}"' in cell and "other" not in cell.split(">")[0]
    first = day.replace(day=1)
    lead = first - timedelta(days=first.weekday())
    assert month.count('<div class="day') % 7 == 0
    if lead < first:  # the days of last month that fill its first week are marked as such
        assert re.search(rf'<div class="day other[^"]*" data-day="{lead}">', month)
    nxt = html.unescape(re.search(r'href="([^"]+)" rel="next"', month).group(1))
    assert nxt.startswith("/posts/mira?view=month&day=") and date.fromisoformat(nxt[-10:]).month != first.month
    assert monday.isoformat() in month  # the week view's Monday is inside the month's grid

    assert (await client.get("/posts/mira?day=not-a-day")).status_code == 422
    assert (await client.get("/posts/nobody")).status_code == 404


async def test_the_post_page_approves_rejects_rewrites_and_edits_and_refuses_the_rest(studio_sqlite):
    web, client = studio_sqlite
    posts = _ctx(web).posts
    post = await _plan_post(web, datetime.now(timezone.utc) + timedelta(days=2))
    assert post.status == "pending"

    page = await client.get(f"/posts/item/{post.id}")
    assert page.status_code == 200
    assert "Stargazing tonight, who is in?" in page.text and "telegram:@mira_daily" in page.text
    for action in ("approve", "reject", "regenerate", "edit"):
        assert f'action="/posts/item/{post.id}/{action}"' in page.text

    flash = await _flash_after(client, await client.post(f"/posts/item/{post.id}/edit",
                                                         data={"text": "  Meteor shower at 2am!  "}))
    assert "edited" in flash
    row = await posts.get(post.id)
    assert row.text == "Meteor shower at 2am!" and row.status == "pending" and row.content["generator"] == "operator"

    flash = await _flash_after(client, await client.post(f"/posts/item/{post.id}/regenerate"))
    assert "written again" in flash
    row = await posts.get(post.id)
    assert row.text and row.text != "Meteor shower at 2am!" and row.status == "pending"

    flash = await _flash_after(client, await client.post(f"/posts/item/{post.id}/approve"))
    assert "approved" in flash
    row = await posts.get(post.id)
    assert row.status == "approved" and row.approved_by == "studio"
    assert 'class="badge approved" id="status"' in (await client.get(f"/posts/item/{post.id}")).text

    again = await client.post(f"/posts/item/{post.id}/approve")  # approved already: not pending or draft
    assert again.status_code == 409 and "is approved" in _text(again.text) and "Nothing changed" in again.text
    assert (await posts.get(post.id)).status == "approved"

    flash = await _flash_after(client, await client.post(f"/posts/item/{post.id}/reject"))
    assert "rejected" in flash
    assert (await posts.get(post.id)).status == "rejected"
    before = (await posts.get(post.id)).text
    r = await client.post(f"/posts/item/{post.id}/regenerate")  # a rejected post is not written again
    assert r.status_code == 409 and "is rejected" in _text(r.text)
    assert (await posts.get(post.id)).text == before and (await posts.get(post.id)).status == "rejected"
    r = await client.post(f"/posts/item/{post.id}/approve")
    assert r.status_code == 409 and (await posts.get(post.id)).status == "rejected"

    # a published post is history: nothing edits it, and the page offers nothing
    from db.posts import STATES

    await posts.change(post.id, from_states=STATES, status="published")
    r = await client.post(f"/posts/item/{post.id}/edit", data={"text": "rewriting history"})
    assert r.status_code == 409 and "is published" in _text(r.text)
    assert (await posts.get(post.id)).text == before
    page = (await client.get(f"/posts/item/{post.id}")).text
    assert f"/posts/item/{post.id}/approve" not in page and f"/posts/item/{post.id}/edit" not in page

    # its media are shown from the data folders, and only from there
    picture = web.settings.media_dir / "post-test.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    await posts.change(post.id, from_states=STATES, content={**row.content, "media": [
        {"kind": "image", "path": str(picture), "mime": "image/png"}, {"kind": "image", "path": "/etc/hostname"}]})
    page = (await client.get(f"/posts/item/{post.id}")).text
    assert f'<img src="/posts/item/{post.id}/media/0"' in page
    got = await client.get(f"/posts/item/{post.id}/media/0")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content[:4] == b"\x89PNG"
    assert (await client.get(f"/posts/item/{post.id}/media/1")).status_code == 404
    assert (await client.get(f"/posts/item/{post.id}/media/2")).status_code == 404

    r = await client.post(f"/posts/item/{post.id}/edit", data={"text": "   "})
    assert r.status_code in (409, 422)
    assert (await client.get("/posts/item/999999")).status_code == 404
    assert (await client.post("/posts/item/999999/approve")).status_code == 404


# -- jobs ----------------------------------------------------------------------------------

async def _first_event(web, client, url: str, name: str, timeout: float = 10.0) -> str:
    """The data of the first server-sent event ``name`` at ``url``, read as it streams
    (through the app's own ASGI stack, as a browser's EventSource reads it), then the
    connection closed. (httpx's ASGI transport gives a response only when it ends.)"""
    path, _, query = url.partition("?")
    cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode()), (b"accept", b"text/event-stream")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    asked, gone, got = False, asyncio.Event(), asyncio.get_running_loop().create_future()
    buffer, status = "", []

    async def receive():
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal buffer
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            buffer += message.get("body", b"").decode()
            for block in re.split(r"\r?\n\r?\n", buffer)[:-1]:
                lines = block.splitlines()
                if f"event: {name}" in lines and not got.done():
                    got.set_result("\n".join(x[6:] for x in lines if x.startswith("data: ")))

    task = asyncio.create_task(web.asgi(scope, receive, send))
    try:
        done, _ = await asyncio.wait({got, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        assert got in done, f"no {name!r} event from {url} (status {status}): {buffer[:500]}"
        assert status == [200]
        return got.result()
    finally:
        gone.set()
        try:
            await asyncio.wait_for(task, 5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()


async def test_the_jobs_page_shows_progress_and_cancel_and_retry_change_a_job(studio_sqlite):
    web, client = studio_sqlite
    jobs = web.svc.jobs
    job, _ = await jobs.enqueue("studio-test", {"what": "a drawing"}, "studio-test:1", requester="studio:operator")
    assert await jobs.claim("tester", ["studio-test"], lease=60) is not None  # a worker of its kind takes it
    assert await jobs.heartbeat(job.id, "tester", 60, progress=0.42, stage="drawing the sky")

    page = (await client.get("/jobs")).text
    row = _row(page, f'id="job-{job.id}"')
    assert "studio-test" in row and 'class="badge running"' in row and "drawing the sky" in row
    assert 'style="width: 42%"' in row and "42%" in _text(row) and "studio:operator" in row and "1/3" in row
    assert f'action="/jobs/{job.id}/cancel"' in row and f"/jobs/{job.id}/retry" not in row
    assert 'id="jobs-body" data-events="/jobs/events"' in page
    assert "studio-test running" in _text(page)  # the queue's depth

    data = json.loads(await _first_event(web, client, "/jobs/events", "jobs"))
    assert f'id="job-{job.id}"' in data and "42%" in data and "drawing the sky" in data

    flash = await _flash_after(client, await client.post(f"/jobs/{job.id}/cancel"))
    assert f"Job {job.id}" in flash and "cancelled" in flash
    assert (await jobs.get(job.id)).status == "cancelled"
    assert not await jobs.heartbeat(job.id, "tester", 60)  # its worker stops at its next step
    row = _row((await client.get("/jobs?status=cancelled")).text, f'id="job-{job.id}"')
    assert 'class="badge cancelled"' in row and f'action="/jobs/{job.id}/retry"' in row

    r = await client.post(f"/jobs/{job.id}/cancel")  # cancelled already
    assert r.status_code == 409 and "is cancelled" in _text(r.text) and "Nothing changed" in r.text

    flash = await _flash_after(client, await client.post(f"/jobs/{job.id}/retry", data={"status": "cancelled"}))
    assert "queued again" in flash
    again = await jobs.get(job.id)
    assert again.status == "queued" and again.attempts == 0 and again.progress == 0
    r = await client.post(f"/jobs/{job.id}/retry")  # queued: nothing to retry
    assert r.status_code == 409 and "is queued" in _text(r.text)
    assert (await jobs.get(job.id)).status == "queued"
    assert (await client.post("/jobs/999999/retry")).status_code == 404

    queued = (await client.get("/jobs?status=queued")).text
    assert f'id="job-{job.id}"' in queued and 'data-events="/jobs/events?status=queued"' in queued
    assert f'id="job-{job.id}"' not in (await client.get("/jobs?status=done")).text
    assert (await client.get("/jobs?status=bogus")).status_code == 422


async def test_a_selfie_job_is_listed_done_and_the_live_rows_follow_it(studio_sqlite):
    web, client = studio_sqlite
    await web.adapters["mira"].converse("/selfie at the observatory")
    for _ in range(600):
        made = [j for j in await web.svc.jobs.list() if j.kind == "image"]
        if made and made[0].status == "done":
            break
        await asyncio.sleep(0.1)
    assert made and made[0].status == "done", made
    row = _row((await client.get("/jobs")).text, f'id="job-{made[0].id}"')
    assert 'class="badge done"' in row and "100%" in _text(row) and "Cancel" not in row and "Retry" not in row
    data = json.loads(await _first_event(web, client, "/jobs/events?status=done", "jobs"))
    assert f'id="job-{made[0].id}"' in data and "badge done" in data


# -- stats ---------------------------------------------------------------------------------

async def test_stats_draws_the_days_messages_and_new_people_as_svg_bars(studio_sqlite):
    web, client = studio_sqlite
    await web.adapters["mira"].converse("hi, my name is Sam")
    await web.adapters["mira"].converse("what are you up to?")
    await _telegram(web, "hello from telegram")
    await web.svc.manager.drain()
    pid = await web.svc.manager.persona_db_id("mira")
    today = datetime.now(timezone.utc).date()
    counts = (await web.svc.store.daily_counts(pid, datetime.combine(today, time(), timezone.utc)))[today.isoformat()]
    assert counts["received"] == 3

    r = await client.get("/stats")
    assert r.status_code == 303 and r.headers["location"] == "/stats/mira"
    page = (await client.get("/stats/mira")).text
    assert page.count("<svg") == 2 and "<script" not in page.split("</head>")[1]
    assert f"<title>{today}: 3 received</title>" in page
    assert f"<title>{today}: {counts['sent']} sent</title>" in page
    assert f"<title>{today}: 2 new people</title>" in page
    assert f"<title>{today - timedelta(days=1)}: 0 received</title>" in page
    assert page.count('class="bar" x=') == 30 + 30 + 1 + 1  # 30 days in each chart, and the legends
    assert re.search(r'<text class="max"[^>]*>3</text>', page)  # the tallest bar's value
    assert f"{today:%d %b}" in page  # today's date under its bar
    shown = _text(page)
    assert "People 2" in shown and "Messages" in shown
    assert re.search(r"studio\s*</td>\s*<td>1<", page) and re.search(r"telegram\s*</td>\s*<td>1<", page)

    week = (await client.get("/stats/mira?days=7")).text
    assert week.count("received</title>") == 7
    assert (await client.get("/stats/mira?days=0")).status_code == 422
    assert (await client.get("/stats/nobody")).status_code == 404


async def test_one_memory_is_erased_and_recall_no_longer_finds_it(studio_sqlite):
    web, client = studio_sqlite
    await _telegram(web, "I love astronomy and my cat is called Pixel.")
    await web.svc.manager.drain()
    pid = await web.svc.manager.persona_db_id("mira")
    uid = await web.svc.store.find_user("telegram", "4242")
    memories = await web.svc.store.list_memories(pid, uid)
    pixel = next(m for m in memories if "Pixel" in m.text)
    query = (await web.svc.manager.batcher.embed(["what is my cat called?"]))[0]
    rel = await web.svc.store.relationship(pid, uid)
    assert any("Pixel" in t for t, _ in await web.svc.manager.memory.recall(pid, uid, query, 5, version=rel.memory_version))

    r = await client.post(f"/people/mira/{uid}/memories/{pixel.id}/erase")
    assert r.status_code == 303
    page = _text((await client.get(r.headers["location"])).text)
    assert "no longer remembers that" in page and "Pixel" not in page
    assert all("Pixel" not in m.text for m in await web.svc.store.list_memories(pid, uid))
    rel = await web.svc.store.relationship(pid, uid)
    assert not any("Pixel" in t for t, _ in await web.svc.manager.memory.recall(pid, uid, query, 5,
                                                                                 version=rel.memory_version))
    again = await client.post(f"/people/mira/{uid}/memories/{pixel.id}/erase")
    assert "already gone" in _text((await client.get(again.headers["location"])).text)
