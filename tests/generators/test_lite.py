"""The lite backend answers in character from the card's own material."""

from __future__ import annotations

import re

from generators.text.base import ChatMessage, Example, TextRequest
from generators.text.lite import (
    RECENT_REPLIES,
    STOCK_LINES,
    LiteTextGenerator,
    detect_language,
    feeling,
    first_person,
    introduced_name,
)
from persona.registry import SAMPLES, PersonaRegistry

MIRA = PersonaRegistry([SAMPLES]).get("mira")


def req(said, *, last_reply=None, facts=(), lore=(), history=(), user="Zoe", examples=None, greetings=None,
        char=None, description=""):
    msgs = [ChatMessage("system", "sys")]
    if last_reply:
        msgs += [ChatMessage("user", "earlier"), ChatMessage("assistant", last_reply)]
    msgs += [ChatMessage(role, text) for role, text in history]
    msgs.append(ChatMessage("user", said))
    return TextRequest(
        messages=tuple(msgs), char_name=char or MIRA.name, user_name=user,
        examples=MIRA.examples(user) if examples is None else tuple(examples),
        greetings=tuple(MIRA.render(g, user) for g in MIRA.greetings) if greetings is None else tuple(greetings),
        facts=tuple(facts), lore=tuple(lore), description=description,
    )


def stock(move, lang="en", user=""):
    return [t.format(_user=f", {user}" if user else "", user=user, char=MIRA.name, name=user, topic="", Topic="", facts="")
            for t in STOCK_LINES[lang][move]]


def english_stock(reply):
    """Whether a reply carries one of the English stock lines (its longest fixed part)."""
    for lines in STOCK_LINES["en"].values():
        for t in lines:
            fixed = max(re.split(r"\{[^}]*\}", t), key=len).strip()
            if len(fixed) >= 8 and fixed in reply:
                return True
    return False


async def chat(lite, said_lines, **kw):
    """A conversation: each reply goes back into the history of the next request."""
    history, replies = [], []
    for said in said_lines:
        out = await lite.generate(req(said, history=history, **kw))
        history += [("user", said), ("assistant", out)]
        replies.append(out)
    return replies


async def test_answers_by_meaning_not_by_exact_words(embedder):
    lite = LiteTextGenerator(embedder)
    assert "Comet" in await lite.generate(req("got any animals at home?"))
    assert "food videos" in await lite.generate(req("so what's your job?"))
    assert "pork buns" in await lite.generate(req("which dish do you like the most"))


async def test_greets_with_the_cards_first_message_at_the_start(embedder):
    assert await LiteTextGenerator(embedder).generate(req("hello!")) == MIRA.render(MIRA.greetings[0], "Zoe")


async def test_same_message_same_reply_and_no_immediate_repeat(embedder):
    lite = LiteTextGenerator(embedder)
    a = await lite.generate(req("tell me a joke"))
    assert a == await lite.generate(req("tell me a joke"))
    b = await lite.generate(req("tell me a joke", last_reply=a))
    assert b != a


async def test_no_reply_is_repeated_within_the_last_several_turns(embedder):
    lite = LiteTextGenerator(embedder)
    said = ["tell me a joke", "ok", "what's the capital of Peru?", "lol", "tell me a joke", "ok", "hmm"] * 2
    replies = await chat(lite, said)
    for i, r in enumerate(replies):
        assert r not in replies[max(0, i - RECENT_REPLIES) : i], (i, r)


async def test_answers_questions_about_the_person_from_memories(embedder):
    lite = LiteTextGenerator(embedder)
    out = await lite.generate(req("do you remember what food I love?", facts=["Zoe loves pierogi.", "Zoe lives in Oslo."]))
    assert "you love pierogi" in out
    untold = await lite.generate(req("do you remember my birthday?"))
    assert untold in stock("not_told", user="Zoe")  # honest, not a random line


async def test_uses_triggered_lore_when_no_example_fits(embedder):
    entry = ("Lanternport is a rainy harbour city whose night market lights up the old docks with paper lanterns "
             "every evening from nine.")
    lite = LiteTextGenerator(embedder)
    out = await lite.generate(req("what is Lanternport like at night?", lore=[entry]))
    assert "paper lanterns" in out and out != entry  # said as speech, not pasted
    assert "paper lanterns" not in await lite.generate(req("what is Lanternport like at night?"))  # no lore, no lanterns


async def test_lore_is_the_characters_own_knowledge_one_answering_sentence(embedder):
    entry = ("Mira's telescope is a second-hand 90 mm refractor she bought from a retired sailor. "
             "Auntie Lo's pork-bun cart is the oldest, forty years at the same corner.")
    out = await LiteTextGenerator(embedder).generate(req("where did you get your telescope from?", lore=[entry]))
    assert "refractor" in out and "Auntie Lo" not in out
    assert "Mira's" not in out and "my telescope" in out.lower() and "I bought" in out


async def test_lore_meta_formatting_is_stripped(embedder):
    entry = "[Silver Lantern: tavern in Oakvale; run by old Bram; famous mutton stew]\n**Note:** keep {{char}}'s replies short."
    out = await LiteTextGenerator(embedder).generate(req("what is the Silver Lantern?", lore=[entry]))
    assert "tavern in oakvale" in out.lower()
    assert not re.search(r"[\[\]{}]|\*\*|Note|replies", out)


async def test_lore_written_as_an_exchange_is_said_as_the_characters_turn(embedder):
    entry = '{{user}}: What is the Greywood?\n{{char}}: *her face darkens* "The Greywood is the old forest east of Oakvale."'
    out = await LiteTextGenerator(embedder).generate(req("what's the Greywood?", lore=[entry]))
    assert out == '*her face darkens* "The Greywood is the old forest east of Oakvale."'


async def test_irrelevant_lore_is_not_said(embedder):
    lore = ["Comet is a one-eared ginger stray who sleeps on Mira's balcony and only comes inside when it thunders."]
    out = await LiteTextGenerator(embedder).generate(req("I'm so tired", lore=lore))
    assert "Comet" not in out and "one-eared" not in out


async def test_an_introduction_is_answered_with_the_name(embedder):
    lite = LiteTextGenerator(embedder)
    for said in ("I'm Zoe", "my name is Zoe", "call me Zoe", "hi, i'm zoe!", "Hey, it's Zoe", "Ich heiße Zoe."):
        out = await lite.generate(req(said, user="friend"))
        assert "Zoe" in out, (said, out)
    both = await lite.generate(req("Hi, I am Zoe and I love pierogi", user="friend"))
    assert "Zoe" in both and "pierogi" in both.lower()
    for not_a_name in ("I'm tired", "I'm so happy", "i'm good", "I'm from Oslo", "I'm going home"):
        assert introduced_name(not_a_name) is None, not_a_name
    assert introduced_name("I'm Zoe from Oslo")[0] == "Zoe"


async def test_the_name_given_in_the_chat_is_used_later_not_a_handle(embedder):
    lite = LiteTextGenerator(embedder)
    history = [("user", "call me Zoe"), ("assistant", "Nice to meet you, Zoe!")]
    outs = {await lite.generate(req(q, history=history, user="zk_1997"))
            for q in ("what's the capital of Peru?", "who won the 1998 world cup?", "what's 2 + 2?", "thanks!")}
    assert not any("zk_1997" in o for o in outs)
    assert any("Zoe" in o for o in outs)


async def test_feelings_are_answered_with_care(embedder):
    lite = LiteTextGenerator(embedder)
    bad_day = await lite.generate(req("I had a terrible day"))
    assert bad_day.startswith("Oh no, come here.")  # the card's own example for a bad day
    exam = await lite.generate(req("I'm anxious about my exam"))
    assert "your exam" in exam
    happy = await lite.generate(req("I'm so happy!"))
    assert happy in stock("care_happy", user="Zoe")
    assert feeling("not great, honestly", asked_how=True) == "sad"
    assert feeling("I love cooking") is None


async def test_a_question_it_cannot_answer_gets_an_honest_deflection(embedder):
    lite = LiteTextGenerator(embedder)
    assert await lite.generate(req("what's the capital of Australia?")) in stock("deflect_world", user="Zoe")
    colour = await lite.generate(req("what's your favourite colour?"))
    assert colour in stock("deflect_self", user="Zoe")  # not the pork buns of "favourite food"


async def test_a_statement_with_nothing_fitting_is_reflected(embedder):
    out = await LiteTextGenerator(embedder).generate(req("I went hiking yesterday"))
    assert "you went hiking yesterday" in out.lower() and out.endswith("?")


async def test_questions_about_itself_are_answered_from_the_description(embedder):
    lite = LiteTextGenerator(embedder)
    description = MIRA.render(MIRA.description, "Zoe")
    out = await lite.generate(req("where do you live?", description=description))
    assert "noodle shop" in out and "Mira is" not in out and out.startswith("I")


GERMAN = [
    Example("Hallo!", "Grüß dich, mein Schatz! Setz dich, ich hab dir ein Stück Kuchen aufgehoben."),
    Example("Was backst du heute?", "Heute gibt es Schwarzwälder Kirschtorte und Brezeln."),
    Example("Mir geht es nicht gut.", "Ach herrje, Kind. Komm her, erzähl der Oma, was los ist."),
]


async def test_a_german_card_is_answered_in_german(embedder):
    lite = LiteTextGenerator(embedder)
    kw = dict(examples=GERMAN, greetings=["Ach, da bist du ja! Komm rein, der Kuchen ist fertig."], char="Oma Hilde")
    assert detect_language([e.response for e in GERMAN]) == "de"
    replies = await chat(lite, ["Hallo!", "Was ist die Hauptstadt von Peru?", "Ich bin so traurig heute.", "ok", "Danke!"], **kw)
    assert not any(english_stock(r) for r in replies), replies
    assert replies[1] in stock("deflect_world", "de", "Zoe")
    assert replies[2] == GERMAN[2].response  # the card's own line for that mood


async def test_a_card_in_a_language_without_stock_lines_uses_only_its_own(embedder):
    french = [Example("Bonjour !", "Bonjour, mon ami ! Entre, le café est chaud."),
              Example("Tu fais quoi ?", "Je peins la Seine, comme tous les matins. C'est ma passion.")]
    kw = dict(examples=french, greetings=["Ah, te voilà ! Assieds-toi, je finis ce tableau."], char="Amélie")
    replies = await chat(LiteTextGenerator(embedder), ["Quelle est la capitale du Pérou ?", "d'accord", "merci"], **kw)
    own = " ".join([e.response for e in french] + kw["greetings"])
    assert all(r in own for r in replies), replies  # the card's lines, or sentences of them


async def test_a_card_that_does_not_talk_answers_in_actions(embedder):
    cat = [Example("Hi Biscuit!", "*stretches and blinks slowly at you* mrrp."),
           Example("Are you hungry?", "*headbutts your ankle and stares at the food bowl* mrrrow.")]
    kw = dict(examples=cat, greetings=["*Biscuit is asleep in a sunbeam.*"], char="Biscuit")
    replies = await chat(LiteTextGenerator(embedder), ["I'm Zoe", "what's 2+2?", "I had a terrible day", "ok"], user="friend", **kw)
    assert "Zoe" in replies[0]
    assert all(r.startswith("*") for r in replies)
    assert not any(english_stock(r) for r in replies), replies


def test_first_person_lore():
    said, mine = first_person("Mira films street food for her channel and names every stray cat she meets.", "Mira Vale")
    assert mine and said == "I film street food for my channel and name every stray cat I meet."
    assert first_person("Comet sleeps on Mira's balcony.", "Mira Vale") == ("Comet sleeps on my balcony.", True)
    assert first_person("Lanternport is rainy.", "Mira Vale") == ("Lanternport is rainy.", False)


async def test_stream_yields_the_same_text(embedder):
    lite = LiteTextGenerator(embedder)
    r = req("tell me about the stars")
    whole = await lite.generate(r)
    assert "".join([p async for p in lite.stream(r)]).strip() == whole
    long_greeting = "*Rain.*\n\n*A knight looks up.* \"Halt. State your business.\""
    r = req("hello", greetings=[long_greeting])
    assert "".join([p async for p in lite.stream(r)]) == long_greeting
