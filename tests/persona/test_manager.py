"""The persona manager end to end on both databases, with the lite backend and the real embedder."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from db.models import Message
from generators.text.base import TextGenerationError, estimate_tokens
from generators.text.lite import LiteTextGenerator
from persona.limits import Rate, RateLimiter
from persona.commands import ADMIN_ONLY, FORGOTTEN
from persona.manager import CHAT_LIMITED, FALLBACK_LINES, MEDIA_LIMITED, ManagerConfig, PersonaManager
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage
from tests.fakes.text import ScriptedText


def msg(text: str, *, user="u1", chat=None, mid=None, name="Zoe", kind="private") -> IncomingMessage:
    return IncomingMessage(
        platform="telegram", chat_id=chat or f"chat-{user}", user_id=user, user_name=name, text=text,
        message_id=mid or uuid.uuid4().hex, persona="mira", chat_kind=kind,
    )


@pytest.fixture
def registry():
    return PersonaRegistry([SAMPLES])


async def make(store, registry, embedder, text=None, **cfg):
    cfg.setdefault("chat_rate", Rate(0, 0))  # limits have tests of their own below
    m = PersonaManager(store, registry, text or LiteTextGenerator(embedder), embedder, ManagerConfig(**cfg))
    await m.start()
    return m


async def test_reply_is_in_character_and_both_sides_are_stored(store, registry, embedder):
    m = await make(store, registry, embedder)
    reply = await m.handle(msg("What's your favourite food?"))
    await m.drain()
    assert reply is not None and not reply.fallback
    assert "pork buns" in reply.text  # from the card's own example dialogue
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(Message.role, Message.text, Message.status).order_by(Message.id))).all()
    assert [(r.role, r.status) for r in rows] == [("user", "answered"), ("assistant", "due")]  # due: the outbox sends it
    assert rows[1].text == reply.text


async def test_same_platform_message_twice_is_answered_once(store, registry, embedder):
    m = await make(store, registry, embedder)
    first = await m.handle(msg("hello there", mid="42"))
    again = await m.handle(msg("hello there", mid="42"))
    assert first is not None and again is None
    assert await store.count_messages() == 2


async def test_concurrent_redelivery_answers_once(store, registry, embedder):
    m = await make(store, registry, embedder)
    results = await asyncio.gather(*(m.handle(msg("tell me a joke", mid="7")) for _ in range(6)))
    assert sum(r is not None for r in results) == 1


async def test_fact_is_remembered_and_recalled_into_the_prompt(store, registry, embedder):
    m = await make(store, registry, embedder, text=ScriptedText())
    await m.handle(msg("Hi, I am Zoe and I love pierogi"))
    await m.drain()
    text = m.text
    await m.handle(msg("What should I cook for dinner tonight, any pierogi ideas?"))
    system = text.chat_requests[-1].messages[0].content
    assert "Zoe loves pierogi." in system
    assert "Zoe loves pierogi." in text.chat_requests[-1].facts


async def test_memory_survives_a_new_manager(store, registry, embedder):
    m = await make(store, registry, embedder)
    await m.handle(msg("Hi, I am Zoe and I love pierogi"))
    await m.close()
    m2 = await make(store, registry, embedder)  # a restart: fresh caches, same database
    reply = await m2.handle(msg("do you remember what food I love?"))
    assert "pierogi" in reply.text.lower()
    listing = await m2.handle(msg("/memory"))
    assert "you love pierogi" in listing.text and "your name is Zoe" in listing.text


async def test_forget_deletes_history_and_memories(store, registry, embedder):
    m = await make(store, registry, embedder)
    await m.handle(msg("I live in Gdansk and I love sailing", user="a", name="Ala"))
    await m.handle(msg("I love jazz", user="b", name="Bo"))
    await m.drain()
    a = await store.find_user("telegram", "a")
    reply = await m.handle(msg("/forget", user="a", name="Ala"))
    assert reply.text == FORGOTTEN
    assert await store.find_user("telegram", "a") is None  # their platform user row went too
    b = await store.find_user("telegram", "b")
    pid = await store.persona_id("mira")
    assert await store.count_messages(user_id=a) == 0
    assert await store.list_memories(pid, a) == []
    assert await store.relationship(pid, a) is None
    assert [r.text for r in await store.list_memories(pid, b)] == ["Bo loves jazz."]
    # The character starts over with the person, and recall has no stale cache.
    again = await m.handle(msg("what do you remember about me?", user="a", name="Ala"))
    assert "sailing" not in again.text and "Gdansk" not in again.text


async def test_dead_backend_gives_an_in_character_fallback_and_keeps_the_message(store, registry, embedder):
    m = await make(store, registry, embedder, text=ScriptedText(fail=TextGenerationError("connection refused")))
    reply = await m.handle(msg("are you there?", mid="m1"))
    assert reply.fallback and reply.text in FALLBACK_LINES
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(Message.status, Message.error, Message.text).where(Message.role == "user"))).one()
    assert row.status == "failed" and "connection refused" in row.error and row.text == "are you there?"
    # The backend recovers and the same message is delivered again: now it is answered.
    m.text = ScriptedText(["Yes, I'm here!"])
    retry = await m.handle(msg("are you there?", mid="m1"))
    assert retry.text == "Yes, I'm here!" and not retry.fallback
    assert await m.handle(msg("are you there?", mid="m1")) is None


async def test_crashing_backend_also_falls_back(store, registry, embedder):
    m = await make(store, registry, embedder, text=ScriptedText(fail=ZeroDivisionError("bug")))
    reply = await m.handle(msg("hi"))
    assert reply.fallback


async def test_huge_message_is_stored_whole_and_trimmed_for_the_model(store, registry, embedder):
    text = ScriptedText()
    m = await make(store, registry, embedder, text=text, max_message_chars=500)
    huge = "word " * 20000
    await m.handle(msg(huge))
    sent = text.chat_requests[-1].messages[-1].content
    assert len(sent) < 700 and "message trimmed" in sent
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(Message.text).where(Message.role == "user"))).scalar_one()
    assert stored == huge


async def test_model_reply_is_cleaned(store, registry, embedder):
    raw = "Mira: Oh wow, pierogi! As an AI language model I cannot eat. I'd eat ten.\nZoe: haha\nMira: more"
    m = await make(store, registry, embedder, text=ScriptedText([raw]))
    reply = await m.handle(msg("I love pierogi"))
    assert reply.text == "Oh wow, pierogi! I'd eat ten."


async def test_history_reaches_the_model_within_the_budget(store, registry, embedder):
    text = ScriptedText()
    m = await make(store, registry, embedder, text=text, context_tokens=2400, max_tokens=200)
    for i in range(40):
        await m.handle(msg(f"message number {i} " + "blah " * 30))
    req = text.chat_requests[-1]
    total = sum(estimate_tokens(x.content) for x in req.messages)
    assert total <= 2400 - 200
    assert "message number 39" in req.messages[-1].content
    assert any("message number 38" in x.content for x in req.messages[1:-1])
    assert not any("message number 0 " in x.content for x in req.messages)  # oldest dropped


async def test_commands(store, registry, embedder):
    m = await make(store, registry, embedder)
    start = await m.handle(msg("/start"))
    assert start.text == registry.get("mira").greetings[0]
    assert "/forget" in (await m.handle(msg("/help"))).text
    assert "Mira Vale" in (await m.handle(msg("/persona"))).text
    selfie = await m.handle(msg("/selfie at the beach"))
    assert "camera" in selfie.text and not selfie.fallback


async def test_lorebook_entry_reaches_the_prompt(store, registry, embedder):
    text = ScriptedText()
    m = await make(store, registry, embedder, text=text)
    await m.handle(msg("how is your cat Comet doing?"))
    assert any("one-eared ginger" in x for x in text.chat_requests[-1].lore)
    assert "one-eared ginger" in text.chat_requests[-1].messages[0].content
    await m.handle(msg("what did you have for lunch", user="other"))
    assert not any("one-eared" in x for x in text.chat_requests[-1].lore)


async def test_chat_rate_limit_tells_once_then_stays_quiet_and_keeps_messages(store, registry, embedder):
    m = await make(store, registry, embedder, chat_rate=Rate(3, 60))
    replies = [await m.handle(msg(f"message {i}")) for i in range(6)]
    assert all(r is not None and r.text != CHAT_LIMITED for r in replies[:3])
    assert replies[3].text == CHAT_LIMITED
    assert replies[4] is None and replies[5] is None
    assert await store.count_messages() == 6 + 4  # every message stored; 3 replies and 1 notice
    # Another person is not affected.
    assert (await m.handle(msg("hi", user="u2"))).text != CHAT_LIMITED


async def test_media_commands_have_their_own_budget(store, registry, embedder):
    m = await make(store, registry, embedder, chat_rate=Rate(100, 60), media_rate=Rate(1, 3600))
    assert "camera" in (await m.handle(msg("/selfie beach"))).text
    assert (await m.handle(msg("/selfie park"))).text == MEDIA_LIMITED
    assert (await m.handle(msg("tell me a joke"))).text not in (MEDIA_LIMITED, CHAT_LIMITED)


def test_rate_parsing_and_window():
    assert Rate.parse("20/minute") == Rate(20, 60) and Rate.parse("5/hour") == Rate(5, 3600)
    assert Rate.parse("3/10s") == Rate(3, 10) and Rate.parse("off").unlimited
    import pytest as _pytest

    with _pytest.raises(ValueError, match="20/minute"):
        Rate.parse("lots")
    now = [0.0]
    lim = RateLimiter(Rate(2, 10), clock=lambda: now[0])
    assert [lim.hit(("k",)) for _ in range(4)] == ["allowed", "allowed", "limited", "silent"]
    now[0] = 10.5
    assert lim.hit(("k",)) == "allowed"


async def test_admin_commands_need_an_admin(store, registry, embedder):
    m = await make(store, registry, embedder, admins={"telegram": frozenset({"boss"})})
    await m.handle(msg("hello", user="pest"))
    assert (await m.handle(msg("/block pest", user="u1"))).text == ADMIN_ONLY
    assert "Blocked" in (await m.handle(msg("/block pest", user="boss"))).text
    assert await m.handle(msg("are you there?", user="pest")) is None  # blocked: stored, not answered
    assert "Unblocked" in (await m.handle(msg("/unblock pest", user="boss"))).text
    assert await m.handle(msg("back again", user="pest")) is not None
    stats = (await m.handle(msg("/stats", user="boss"))).text
    assert "people" in stats and "messages" in stats
    assert "Reloaded" in (await m.handle(msg("/reload", user="boss"))).text


async def test_allowed_chats_keep_the_character_out_of_other_groups(store, embedder, tmp_path):
    (tmp_path / "guard.yaml").write_text(
        "id: mira\nname: Mira Vale\ngreetings: [hi]\nplatforms:\n  telegram:\n    allowed_chats: [-100]\n"
    )
    reg = PersonaRegistry([SAMPLES, tmp_path])
    m = await make(store, reg, embedder)
    assert await m.handle(msg("hello all", chat="-200", kind="group")) is None
    assert await store.count_messages() == 0  # not even stored: the character is not in that group
    assert await m.handle(msg("hello all", chat="-100", kind="group")) is not None
    assert await m.handle(msg("hello", chat="dm")) is not None  # private chats always


async def test_sfw_rule_unless_the_persona_allows_adult_content(store, registry, embedder):
    text = ScriptedText()
    m = await make(store, registry, embedder, text=text)
    await m.handle(msg("hi"))
    assert "safe for work" in text.chat_requests[-1].messages[0].content


@pytest.fixture
def portrait_registry(tmp_path):
    from generators.image.testing import portrait_on_canvas

    face = portrait_on_canvas(tmp_path / "mira-face.png")
    (tmp_path / "mira.yaml").write_text(
        (SAMPLES / "mira.yaml").read_text() + "\n# test portrait\n"
    )
    import yaml

    data = yaml.safe_load((tmp_path / "mira.yaml").read_text())
    data["identity"]["portraits"] = [str(face)]
    data["identity"]["seed"] = 7
    (tmp_path / "mira.yaml").write_text(yaml.safe_dump(data))
    return PersonaRegistry([SAMPLES, tmp_path])


async def test_selfie_command_sends_a_picture_with_a_caption(store, embedder, portrait_registry, tmp_path):
    from PIL import Image

    from generators.image import build_image_backend

    image = build_image_backend("lite", out_dir=tmp_path / "images")
    m = PersonaManager(store, portrait_registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await m.start()
    a = await m.handle(msg("/selfie at the beach"))
    assert len(a.media) == 1 and a.media[0].kind == "image" and "beach" in a.media[0].caption.lower()
    pic = Image.open(a.media[0].path)
    assert pic.format == "PNG" and "at the beach" in pic.text.get("vchar:prompt", pic.text.get("parameters", ""))
    b = await m.handle(msg("/selfie at the beach", user="u2"))  # same scene, same picture
    assert Image.open(b.media[0].path).tobytes() == pic.tobytes()
    c = await m.handle(msg("send me a pic of you at the night market", user="u3"))  # asked in words
    assert c.media and Image.open(c.media[0].path).tobytes() != pic.tobytes()
    from sqlalchemy import func, select

    from db.models import MediaAsset

    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(MediaAsset))).scalar_one() == 3


async def test_selfie_refusal_and_missing_portrait_answer_in_character(store, embedder, portrait_registry, registry, tmp_path):
    from generators.image import build_image_backend
    from persona.requests import SELFIE_NO_PORTRAIT, SELFIE_REFUSED

    image = build_image_backend("lite", out_dir=tmp_path / "images")
    m = PersonaManager(store, portrait_registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await m.start()
    assert (await m.handle(msg("/selfie nude on the beach"))).text == SELFIE_REFUSED
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    (faceless / "noor.yaml").write_text("id: noor\nname: Noor\ndescription: A painter.\n")
    bare = PersonaManager(store, PersonaRegistry([faceless]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                          image=image)
    import dataclasses

    asked = dataclasses.replace(msg("/selfie at home", user="u9"), persona="noor")
    assert (await bare.handle(asked)).text == SELFIE_NO_PORTRAIT


def photo_msg(text: str, path, *, user="u1", mime="image/png") -> IncomingMessage:
    from persona.types import Attachment

    base = msg(text, user=user)
    att = Attachment(kind="image", path=str(path), mime=mime, size=path.stat().st_size)
    return IncomingMessage(**{**{f: getattr(base, f) for f in base.__slots__ if f != "attachments"}, "attachments": (att,)})


async def test_art_and_portrait_redraw_the_photo_that_came_with_the_command(store, embedder, portrait_registry, tmp_path):
    import numpy as np
    from PIL import Image
    from sqlalchemy import func, select

    from db.models import MediaAsset
    from generators.image import build_image_backend, read_metadata
    from generators.image.testing import portrait_on_canvas

    photo = portrait_on_canvas(tmp_path / "friend.png")
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    m = PersonaManager(store, portrait_registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await m.start()
    art = await m.handle(photo_msg("/art watercolor", photo))
    assert art is not None and art.text == "" and len(art.media) == 1
    out = art.media[0]
    assert out.kind == "image" and out.mime == "image/png" and out.caption
    with Image.open(out.path) as pic:
        assert pic.format == "PNG"
        redrawn = np.asarray(pic.convert("RGB"), dtype=np.int16)
    meta = read_metadata(out.path)
    assert "watercolor" in str(meta) and "img2img" in str(meta)
    with Image.open(photo) as src:
        original = np.asarray(src.convert("RGB").resize(pic.size), dtype=np.int16)
    assert np.abs(redrawn - original).mean() > 3  # really redrawn, not the photo sent back

    portrait = await m.handle(photo_msg("/portrait", photo, user="u2"))
    assert portrait.media and "lifelike" in str(read_metadata(portrait.media[0].path))
    assert portrait.media[0].path != out.path
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(MediaAsset))).scalar_one() == 2


async def test_art_without_a_photo_or_with_a_broken_one_answers_in_character(store, embedder, portrait_registry, registry, tmp_path):
    from generators.image import build_image_backend
    from persona.commands import MEDIA_COMMANDS
    from persona.requests import ART_UNREADABLE

    image = build_image_backend("lite", out_dir=tmp_path / "images")
    m = PersonaManager(store, portrait_registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await m.start()
    hint = await m.handle(msg("/art"))
    assert hint.text == "Send me the photo with /art as its caption!" and not hint.media
    assert (await m.handle(msg("/portrait", user="u2"))).text == "Send me the photo with /portrait as its caption!"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    bad = await m.handle(photo_msg("/art", broken, user="u3", mime="image/jpeg"))
    assert bad.text == ART_UNREADABLE and not bad.media
    # No image backend: the host's "not set up" line, counted against the media budget.
    plain = await make(store, registry, embedder, media_rate=Rate(1, 3600))
    assert plain.image is None
    assert (await plain.handle(msg("/art", user="u4"))).text == MEDIA_COMMANDS["art"]
    assert (await plain.handle(msg("/portrait", user="u4"))).text == MEDIA_LIMITED


async def test_nsfw_persona_lifts_image_safety_and_the_sfw_rule(store, embedder, portrait_registry, tmp_path):
    """`nsfw: true` is the operator's choice: the soft blocklist and the SFW prompt rule go;
    a persona without it keeps both (the hard blocklist stays for everyone)."""
    import yaml

    from generators.image import build_image_backend
    from persona.requests import SELFIE_REFUSED

    source = portrait_registry.sources["mira"]
    data = yaml.safe_load(source.read_text())
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    sfw = PersonaManager(store, portrait_registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await sfw.start()
    assert (await sfw.handle(msg("/selfie in lingerie"))).text == SELFIE_REFUSED

    data["nsfw"] = True
    source.write_text(yaml.safe_dump(data))
    portrait_registry.reload()
    text = ScriptedText(["hello"])
    adult = PersonaManager(store, portrait_registry, text, embedder, ManagerConfig(), image=image)
    await adult.start()
    pic = await adult.handle(msg("/selfie in lingerie", user="u2"))
    assert pic.media and pic.media[0].kind == "image"
    assert (await adult.handle(msg("/selfie csam", user="u3"))).text == SELFIE_REFUSED
    await adult.handle(msg("hi", user="u4"))
    assert "safe for work" not in text.chat_requests[-1].messages[0].content


async def test_model_backends_write_memory_summaries_every_few_turns(store, registry, embedder):
    """On a model backend, every memory_every turns the model is asked for a summary and
    the facts it noticed; both are stored and recalled like stated facts."""
    import json

    class Summarising(ScriptedText):
        async def generate(self, request):
            if not request.char_name:  # the background memory request
                self.requests.append(request)
                return "```json\n" + json.dumps({"summary": "Zoe and Mira planned a trip to the night market.",
                                                 "facts": ["Zoe is saving up for a camera."]}) + "\n```"
            return await super().generate(request)

    text = Summarising(["Ooh, tell me more!", "A trip sounds perfect."])
    m = await make(store, registry, embedder, text=text, memory_every=2)
    await m.handle(msg("hey, it's been a long week"))
    await m.handle(msg("we should go to the market together"))
    await m.drain()
    memory_requests = [r for r in text.requests if not r.char_name]
    assert len(memory_requests) == 1
    assert "we should go to the market together" in memory_requests[0].messages[-1].content
    pid = await store.persona_id("mira")
    uid = await store.find_user("telegram", "u1")
    stored = {(r.text, r.source) for r in await store.list_memories(pid, uid)}
    assert ("Zoe is saving up for a camera.", "fact") in stored
    assert ("Zoe and Mira planned a trip to the night market.", "summary") in stored
