"""The studio's gate and its chat, through the app's own ASGI stack, and `vchar run` serving it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx

from tests.bots.studio_support import TOKEN, studio, studio_sqlite  # noqa: F401 - fixtures

VCHAR = str(Path(sys.executable).with_name("vchar"))


async def _stream(client, url: str, data: dict) -> list[tuple[str, object]]:
    """POST a form asking for server-sent events; the (event, data) pairs in order."""
    events, name = [], "message"
    async with client.http.stream("POST", url, data={"csrf": client.csrf, **data},
                                  headers={"accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:].strip())))
    return events


async def _count_messages(web) -> int:
    return await web.svc.store.count_messages()


async def test_nothing_is_shown_or_changed_without_the_token_login(studio_sqlite):
    web, client = studio_sqlite
    anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=web.asgi), base_url="http://127.0.0.1")
    async with anon:
        for url in ("/", "/chat/mira", "/chat/mira/events", "/media/1", "/personas", "/jobs", "/nowhere"):
            r = await anon.get(url)
            assert r.status_code == 401 and "Log in" in r.text and "Mira" not in r.text, url
        r = await anon.post("/chat/mira/send", data={"text": "hello"})
        assert r.status_code == 401 and "Log in" in r.text
        assert await _count_messages(web) == 0

        r = await anon.get("/chat/mira?token=not-the-token")
        assert r.status_code == 401 and "not this studio" in r.text
        assert "vchar_studio" not in r.headers.get("set-cookie", "")
        r = await anon.post("/login", data={"secret": "guess"})
        assert r.status_code == 401

        assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
        r = await anon.get(f"/chat/mira?conv=&token={TOKEN}")
        assert r.status_code == 303 and r.headers["location"] == "/chat/mira?conv="  # the token leaves the address
        r = await anon.get("/chat/mira")
        assert r.status_code == 200 and "Message Mira" in r.text


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(studio_sqlite):
    web, client = studio_sqlite
    r = await client.http.post("/chat/mira/send", data={"text": "hello"})
    assert r.status_code == 403 and "reload the page" in r.text
    r = await client.http.post("/chat/mira/send", data={"text": "hello", "csrf": "forged"})
    assert r.status_code == 403
    assert await _count_messages(web) == 0
    r = await client.post("/chat/mira/send", data={"text": "hello"})
    assert r.status_code == 303
    assert await _count_messages(web) == 2


async def test_the_password_logs_in_too(tmp_path, embedder):
    from tests.bots.studio_support import _studio

    url = f"sqlite+aiosqlite:///{tmp_path / 'vchar.db'}"
    async for web, _ in _studio(tmp_path, url, embedder, studio_password="open sesame"):
        anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=web.asgi), base_url="http://127.0.0.1")
        async with anon:
            page = await anon.get("/login")
            assert "or password" in page.text
            r = await anon.post("/login", data={"secret": "open sesame"})
            assert r.status_code == 303
            assert (await anon.get("/chat/mira")).status_code == 200


async def test_a_huge_upload_is_refused_before_it_is_read(studio_sqlite):
    web, client = studio_sqlite
    limit = web.settings.studio_max_upload
    r = await client.http.post("/personas/import", headers={"content-length": str(limit + 1), "x-csrf-token": client.csrf},
                               content=b"x" * 10)
    assert r.status_code == 413 and "VCHAR_STUDIO_MAX_UPLOAD" in r.text

    sent = 0
    boundary = b"vcharboundary"

    async def chunks():  # no length given: counted as it comes, refused once past the cap
        nonlocal sent
        yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="card"; filename="big.json"\r\n'
               b"Content-Type: application/json\r\n\r\n")
        for _ in range(limit // (1 << 20) + 8):
            sent += 1 << 20
            yield b" " * (1 << 20)
        yield b"\r\n--" + boundary + b"--\r\n"

    r = await client.http.post("/personas/import", content=chunks(),
                               headers={"x-csrf-token": client.csrf,
                                        "content-type": f"multipart/form-data; boundary={boundary.decode()}"})
    assert r.status_code == 413 and "VCHAR_STUDIO_MAX_UPLOAD" in r.text
    assert not list((web.settings.resolved_personas_dir).glob("*"))
    assert await _count_messages(web) == 0


async def test_the_reply_streams_piece_by_piece_and_is_stored_and_delivered(studio):
    web, client = studio
    events = await _stream(client, "/chat/mira/send", {"text": "Hi! My name is Sam. What do you like to do?"})
    tokens = [d for e, d in events if e == "token"]
    done = [d for e, d in events if e == "done"]
    assert len(tokens) >= 2, events  # more than one piece, before the end
    assert events[-1][0] == "done" and len(done) == 1
    assert "".join(tokens).strip() == done[0]["text"]
    row = await web.svc.store.message(done[0]["id"])
    assert row["text"] == done[0]["text"] and row["status"] == "delivered"  # through the outbox

    page = await client.get("/chat/mira")
    assert "Hi! My name is Sam." in page.text
    assert done[0]["text"].split(".")[0] in page.text.replace("&#39;", "'")


async def test_regenerate_keeps_the_alternatives_and_the_operator_picks_one(studio_sqlite):
    web, client = studio_sqlite
    first = [d for e, d in await _stream(client, "/chat/mira/send", {"text": "tell me about your day"}) if e == "done"][0]
    second = [d for e, d in await _stream(client, f"/chat/mira/regenerate/{first['id']}", {}) if e == "done"][0]
    assert second["id"] != first["id"]
    page = (await client.get("/chat/mira")).text
    assert "2/2" in page and f'id="m{second["id"]}"' in page and f'id="m{first["id"]}"' not in page

    # the model's history holds the chosen answer only
    conv = (await web.svc.store.message(second["id"]))["conversation_id"]
    history = await web.svc.store.history(conv, 10)
    assert [h.id for h in history if h.role == "assistant"] == [second["id"]]

    r = await client.post(f"/chat/mira/choose/{first['id']}", headers={"hx-request": "true"})
    assert r.status_code == 200 and "1/2" in r.text and f'id="m{first["id"]}"' in r.text
    history = await web.svc.store.history(conv, 10)
    assert [h.id for h in history if h.role == "assistant"] == [first["id"]]

    # only the latest reply can be written again
    await client.post("/chat/mira/send", data={"text": "and tomorrow?"})
    r = await client.post(f"/chat/mira/regenerate/{first['id']}")
    assert r.status_code == 409


async def test_the_operator_edits_and_deletes_studio_messages_but_only_reads_other_platforms(studio_sqlite):
    from persona.types import IncomingMessage

    web, client = studio_sqlite
    await client.post("/chat/mira/send", data={"text": "I have a cat called Pixel"})
    page = (await client.get("/chat/mira")).text
    mine = int(re.findall(r'class="msg user" id="m(\d+)"', page)[0])
    r = await client.post(f"/chat/mira/edit/{mine}", data={"text": "I have a dog called Pixel"}, headers={"hx-request": "true"})
    assert r.status_code == 200 and "a dog called Pixel" in r.text
    assert (await web.svc.store.message(mine))["text"] == "I have a dog called Pixel"
    r = await client.post(f"/chat/mira/delete/{mine}", headers={"hx-request": "true"})
    assert r.status_code == 200 and "Pixel" not in r.text
    assert await web.svc.store.message(mine) is None

    reply = await web.svc.handle(IncomingMessage(platform="telegram", chat_id="77", user_id="77", user_name="Zoe",
                                                 text="what's your favourite food?", message_id="1", persona="mira"))
    convs = await web.svc.store.conversations(await web.svc.manager.persona_db_id("mira"))
    tg = next(c for c in convs if c["platform"] == "telegram")
    page = await client.get(f"/chat/mira?conv={tg['id']}")
    assert "favourite food" in page.text and "read only" in page.text and 'id="compose"' not in page.text
    r = await client.post(f"/chat/mira/delete/{reply.message_db_id}")
    assert r.status_code == 404
    assert await web.svc.store.message(reply.message_db_id) is not None


async def test_a_selfie_arrives_inline_when_its_job_finishes(studio_sqlite):
    web, client = studio_sqlite
    r = await client.post("/chat/mira/send", data={"text": "/selfie at the beach"})
    assert r.status_code == 303
    listener = web.hub.listen("chat:mira")
    for _ in range(600):
        page = (await client.get("/chat/mira")).text
        found = re.search(r'<img src="/media/(\d+)"', page)
        if found:
            break
        await asyncio.sleep(0.1)
    assert found, "the selfie never reached the studio chat"
    got = await client.get(f"/media/{found.group(1)}")
    assert got.status_code == 200 and got.headers["content-type"].startswith("image/") and got.content[:4] == b"\x89PNG"
    assert not listener.empty()  # the open page was told

    # a row naming a file outside the data folders is never served
    pid = await web.svc.manager.persona_db_id("mira")
    bad = await web.svc.store.add_media_asset(persona_id=pid, kind="image", path="/etc/hostname", mime="text/plain",
                                              generator="x", parameters={}, sha256="0" * 64)
    assert (await client.get(f"/media/{bad}")).status_code == 404


async def test_vchar_run_prints_the_studio_address_and_serves_it_beside_the_terminal_chat(tmp_path):
    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_STUDIO_PORT": "0"}
    env.pop("VCHAR_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(VCHAR, "run", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 120)).decode()
            assert line, "vchar run ended without printing the studio's address"
            found = re.search(r"studio: (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
            url = found.group(1) if found else None
        async with httpx.AsyncClient(follow_redirects=True, timeout=30) as http:
            assert (await http.get(url.split("?")[0] + "chat/mira")).status_code == 401
            page = await http.get(url)
            assert page.status_code == 200 and "Message Mira" in page.text
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            r = await http.post(str(page.url).rstrip("/") + "/send", data={"text": "hello from the studio", "csrf": csrf})
            assert r.status_code == 200 and "hello from the studio" in r.text
        proc.stdin.write(b"hi, are you there?\n")
        await proc.stdin.drain()
        answer = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert answer.strip(), "the terminal chat still answers"
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_taken_port_moves_the_studio_to_the_next_free_one():
    from bots.studio.server import bind

    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = bind("127.0.0.1", port)
        try:
            assert second.getsockname()[1] != port and port < second.getsockname()[1] <= port + 20
        finally:
            second.close()
    finally:
        first.close()


async def test_regenerating_gives_another_answer_where_more_than_one_fits(studio_sqlite):
    web, client = studio_sqlite
    first = [d for e, d in await _stream(client, "/chat/mira/send", {"text": "hey, what are you up to tonight?"})
             if e == "done"][0]
    answers, last = {first["text"]}, first["id"]
    for _ in range(4):
        again = [d for e, d in await _stream(client, f"/chat/mira/regenerate/{last}", {}) if e == "done"][0]
        answers.add(again["text"])
        last = again["id"]
    assert len(answers) >= 2, answers
    page = (await client.get("/chat/mira")).text
    assert "5/5" in page


async def test_odd_addresses_and_ids_get_pages_not_crashes_or_other_sites(studio_sqlite):
    web, client = studio_sqlite
    from starlette.requests import Request

    from bots.studio.security import without_token

    # "//host/" as a path would send the browser to another site after the login
    odd = Request({"type": "http", "method": "GET", "path": "//evil.example/", "query_string": f"token={TOKEN}&a=1".encode(),
                   "headers": [(b"host", b"127.0.0.1")], "scheme": "http", "server": ("127.0.0.1", 80)})
    assert without_token(odd) == "/evil.example/?a=1"
    for url in ("/media/9223372036854775808", "/chat/mira?before=99999999999999999999", "/people/mira?page=10000000000",
                "/posts/item/9223372036854775808"):
        r = await client.get(url)
        assert r.status_code == 422 and "not one the studio understands" in r.text, url
    r = await client.get("/no/such/page")
    assert r.status_code == 404 and "Not found" in r.text and "detail" not in r.text  # the studio's page, not JSON
    r = await client.post(f"/jobs/{2**63}/retry")
    assert r.status_code == 422


async def test_a_persona_added_on_disk_and_reloaded_can_be_chatted_with(studio_sqlite):
    web, client = studio_sqlite
    folder = web.settings.resolved_personas_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "juno.yaml").write_text("name: Juno\ndescription: A lighthouse keeper.\ngreetings: [Ahoy!]\n")
    web.svc.manager.registry.reload()
    r = await client.post("/chat/juno/send", data={"text": "hello Juno"})
    assert r.status_code == 303
    page = await client.get("/chat/juno")
    assert page.status_code == 200 and "hello Juno" in page.text
    assert any(pid == "juno" for _, pid in web.sweeper.adapters)  # its media would reach it too


async def test_a_selfie_after_a_regenerated_acknowledgement_still_shows(studio_sqlite):
    web, client = studio_sqlite
    done = [d for e, d in await _stream(client, "/chat/mira/send", {"text": "/selfie in the rain"}) if e == "done"][0]
    await _stream(client, f"/chat/mira/regenerate/{done['id']}", {})  # the acknowledgement written again
    for _ in range(600):
        page = await client.get("/chat/mira")
        assert page.status_code == 200
        if '<img src="/media/' in page.text:
            break
        await asyncio.sleep(0.1)
    assert '<img src="/media/' in page.text
