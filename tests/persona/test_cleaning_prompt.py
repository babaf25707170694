from __future__ import annotations

from generators.text.base import estimate_tokens
from persona.card import Persona, StyleRules
from persona.cleaning import clean_reply
from persona.prompt import Turn, build_messages, system_prompt, trim_for_model

P = Persona(name="Mira Vale", style=StyleRules(max_sentences=3, max_chars=200, forbidden_phrases=["as per my programming"]))


def test_strips_speaker_tag_special_tokens_and_the_users_turn():
    raw = "<|im_start|>Mira Vale: Hey Zoe!<|im_end|> Pierogi time?\nZoe: yes!\nMira Vale: great"
    assert clean_reply(raw, P, "Zoe") == "Hey Zoe! Pierogi time?"


def test_drops_ai_leaks_and_forbidden_phrases():
    raw = "I'm just an AI, so I can't taste food. But pierogi sound amazing! As per my programming I must say hi. See you!"
    assert clean_reply(raw, P, "Zoe") == "But pierogi sound amazing! See you!"


def test_length_rules():
    raw = "One. Two! Three? Four. Five."
    assert clean_reply(raw, P, "Zoe") == "One. Two! Three?"
    long = Persona(name="X", style=StyleRules(max_chars=40))
    out = clean_reply("This sentence is fine. " + "This one is far too long to fit in the limit at all.", long, "u")
    assert out == "This sentence is fine."


def test_only_leaks_leave_nothing():
    assert clean_reply("As an AI language model, I cannot do that.", P, "Zoe") == ""


def test_macros_rendered():
    assert clean_reply("Hi {{user}}, I'm {{char}}.", P, "Zoe") == "Hi Zoe, I'm Mira Vale."


def test_trim_for_model_notes_how_much_was_cut():
    out = trim_for_model("word " * 1000, 100)
    assert len(out) < 200 and "more characters not shown" in out
    assert trim_for_model("short", 100) == "short"


def test_system_prompt_carries_persona_facts_and_lore():
    p = Persona(name="Mira", description="{{char}} films food.", personality="warm", scenario="at the market")
    s = system_prompt(p, "Zoe", facts=["Zoe loves pierogi."], lore=["The market opens at nine."])
    for part in ("Mira films food.", "warm", "at the market", "Zoe loves pierogi.", "The market opens at nine.", "You are Mira"):
        assert part in s


def test_history_budget_alternation_and_group_names():
    hist = [Turn("assistant", "greeting")] + [
        Turn("user" if i % 2 == 0 else "assistant", f"m{i} " + "x" * 200, speaker="Bo") for i in range(30)
    ]
    msgs = build_messages("sys", hist, "now", budget_tokens=600, count_tokens=estimate_tokens, group=True)
    assert msgs[0].role == "system" and msgs[-1].role == "user" and msgs[-1].content.endswith("now")
    roles = [m.role for m in msgs[1:]]
    assert roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:]))
    assert sum(estimate_tokens(m.content) for m in msgs) <= 600
    assert any(m.content.startswith("Bo: ") for m in msgs if m.role == "user")
