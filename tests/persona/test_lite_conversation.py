"""A scripted conversation with the sample character on the lite backend, through the real
manager and database, measuring what makes it sound less canned."""

from __future__ import annotations

import uuid

import yaml
from sqlalchemy import select

from db.models import Message
from generators.text.lite import RECENT_REPLIES, STOCK_LINES, LiteTextGenerator
from persona.limits import Rate
from persona.manager import FALLBACK_LINES, ManagerConfig, PersonaManager
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage

FORBIDDEN = "doctor's orders"


def registry_with_forbidden_phrase(tmp_path) -> PersonaRegistry:
    """The sample character, told never to say one phrase that its own example dialogue uses."""
    data = yaml.safe_load((SAMPLES / "mira.yaml").read_text(encoding="utf-8"))
    data["style"]["forbidden_phrases"] = [FORBIDDEN]
    (tmp_path / "mira.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return PersonaRegistry([tmp_path])


def msg(text: str) -> IncomingMessage:
    # The platform name is a handle: the character learns the person's name from the chat.
    return IncomingMessage(platform="telegram", chat_id="c1", user_id="u1", user_name="zk_1997", text=text,
                           message_id=uuid.uuid4().hex, persona="mira")


def lines(move: str, user: str = "Zoe") -> list[str]:
    return [t.format(_user=f", {user}", user=user, topic="", Topic="", name=user, char="Mira Vale", facts="")
            for t in STOCK_LINES["en"][move]]


SCRIPT = [
    "hi!",
    "I'm Zoe and I love pierogi",
    "I had a really bad day",
    "I'm anxious about my exam tomorrow",
    "what's the capital of Australia?",
    "how many stalls does the night market have?",
    "tell me a joke",
    "tell me a joke",
    "ok",
    "ok",
    "lol",
    "I'm so happy!",
    "ok",
    "what's the capital of Peru?",
    "ok",
]


async def test_a_conversation_on_the_lite_backend(store, embedder, tmp_path):
    registry = registry_with_forbidden_phrase(tmp_path)
    mira = registry.get("mira")
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig(chat_rate=Rate(0, 0)))
    await m.start()
    replies = []
    for said in SCRIPT:
        reply = await m.handle(msg(said))
        await m.drain()  # the name and facts are stored before the next message, as between real messages
        assert reply is not None and not reply.fallback and reply.text not in FALLBACK_LINES
        replies.append(reply.text)
    got = dict(zip(SCRIPT, replies))
    transcript = "\n".join(f"> {s}\n{r}" for s, r in zip(SCRIPT, replies))

    # nothing failed, nothing was emptied by cleaning
    async with store.engine.connect() as conn:
        statuses = (await conn.execute(select(Message.role, Message.status))).all()
    assert {s for r, s in statuses if r == "user"} == {"answered"}, transcript

    # no reply repeated word for word within the last several turns
    for i, r in enumerate(replies):
        assert r not in replies[max(0, i - RECENT_REPLIES) : i], f"reply {i} repeats:\n{transcript}"

    # the card's first message opens the chat
    assert replies[0] == mira.render(mira.greetings[0], "zk_1997")

    # an introduction is answered with the name, and the name (not the handle) is used afterwards
    assert "Zoe" in replies[1] and "pierogi" in replies[1].lower(), transcript
    assert not any("zk_1997" in r for r in replies[1:]), transcript
    assert any("Zoe" in r for r in replies[2:]), transcript

    # a feeling is answered with care: the card's own line for a bad day, with the
    # forbidden phrase cut out of its sentence and the rest of that sentence kept
    bad_day = got["I had a really bad day"]
    assert bad_day.startswith("Oh no, come here."), transcript
    assert FORBIDDEN not in bad_day.lower() and "something warm to eat" in bad_day, transcript
    assert "your exam" in got["I'm anxious about my exam tomorrow"], transcript
    assert got["I'm so happy!"] in lines("care_happy"), transcript

    # a question it cannot answer: an honest deflection, not a random line of the card
    assert got["what's the capital of Australia?"] in lines("deflect_world") + lines("deflect_self"), transcript
    assert got["what's the capital of Peru?"] in lines("deflect_world") + lines("deflect_self"), transcript

    # lore is spoken, one sentence that answers, not the pasted entry
    market = next(e.content for e in mira.lorebook.entries if "two hundred stalls" in e.content)
    stalls = got["how many stalls does the night market have?"]
    assert "two hundred stalls" in stalls and stalls != market and "Auntie Lo" not in stalls, transcript

    # and lore that the history triggered is not said where it does not fit
    lore_text = [e.content for e in mira.lorebook.entries]
    for said in ("ok", "lol", "I'm so happy!"):
        assert not any(sentence in got[said] for entry in lore_text for sentence in entry.split(". ")), transcript

    # the same joke is not told twice in a row: it says so instead
    jokes = [r for s, r in zip(SCRIPT, replies) if s == "tell me a joke"]
    assert "dumpling" in jokes[0] and jokes[1] != jokes[0], transcript
