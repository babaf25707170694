"""The lite backend answers in character from the card's own material."""

from __future__ import annotations

from generators.text.base import ChatMessage, TextRequest
from generators.text.lite import LiteTextGenerator
from persona.registry import SAMPLES, PersonaRegistry

MIRA = PersonaRegistry([SAMPLES]).get("mira")


def req(said, *, last_reply=None, facts=(), lore=()):
    msgs = [ChatMessage("system", "sys")]
    if last_reply:
        msgs += [ChatMessage("user", "earlier"), ChatMessage("assistant", last_reply)]
    msgs.append(ChatMessage("user", said))
    return TextRequest(
        messages=tuple(msgs), char_name=MIRA.name, user_name="Zoe", examples=MIRA.examples("Zoe"),
        greetings=tuple(MIRA.greetings), facts=tuple(facts), lore=tuple(lore),
    )


async def test_answers_by_meaning_not_by_exact_words(embedder):
    lite = LiteTextGenerator(embedder)
    assert "Comet" in await lite.generate(req("got any animals at home?"))
    assert "food videos" in await lite.generate(req("so what's your job?"))
    assert "pork buns" in await lite.generate(req("which dish do you like the most"))


async def test_greets_with_a_card_greeting_at_the_start(embedder):
    assert await LiteTextGenerator(embedder).generate(req("hello!")) in MIRA.greetings


async def test_same_message_same_reply_and_no_immediate_repeat(embedder):
    lite = LiteTextGenerator(embedder)
    a = await lite.generate(req("tell me a joke"))
    assert a == await lite.generate(req("tell me a joke"))
    b = await lite.generate(req("tell me a joke", last_reply=a))
    assert b != a


async def test_answers_questions_about_the_person_from_memories(embedder):
    lite = LiteTextGenerator(embedder)
    out = await lite.generate(req("do you remember what food I love?", facts=["Zoe loves pierogi.", "Zoe lives in Oslo."]))
    assert "you love pierogi" in out


async def test_uses_triggered_lore_when_no_example_fits(embedder):
    lore = ["Lanternport is a rainy harbour city whose night market lights up the old docks with paper lanterns every evening from nine."]
    out = await LiteTextGenerator(embedder).generate(req("what is Lanternport like at night?", lore=lore))
    assert "paper lanterns" in out or "Lanternport" in out


async def test_stream_yields_the_same_text(embedder):
    lite = LiteTextGenerator(embedder)
    r = req("tell me about the stars")
    whole = await lite.generate(r)
    assert "".join([p async for p in lite.stream(r)]).strip() == whole
