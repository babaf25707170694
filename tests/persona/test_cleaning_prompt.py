from __future__ import annotations

from generators.text.base import estimate_tokens
from persona.card import Persona, StyleRules
from persona.cleaning import clean_reply
from persona.prompt import Turn, build_messages, system_prompt, trim_for_model

P = Persona(name="Mira Vale", style=StyleRules(max_sentences=3, max_chars=200, forbidden_phrases=["as per my programming"]))


def test_strips_speaker_tag_special_tokens_and_the_users_turn():
    raw = "<|im_start|>Mira Vale: Hey Zoe!<|im_end|> Pierogi time?\nZoe: yes!\nMira Vale: great"
    assert clean_reply(raw, P, "Zoe") == "Hey Zoe! Pierogi time?"


def test_drops_ai_leaks_and_cuts_forbidden_phrases_out_of_their_sentence():
    raw = "I'm just an AI, so I can't taste food. But pierogi sound amazing! As per my programming I must say hi. See you!"
    assert clean_reply(raw, P, "Zoe") == "But pierogi sound amazing! I must say hi. See you!"


def test_forbidden_phrase_is_removed_and_its_sentence_kept():
    p = Persona(name="Mira", style=StyleRules(forbidden_phrases=["darling", "as per my programming"]))
    assert clean_reply("Why, darling, the stars are out tonight!", p, "Zoe") == "Why, the stars are out tonight!"
    assert clean_reply("Pierogi, as per my programming, are great.", p, "Zoe") == "Pierogi are great."
    assert clean_reply("DARLING you came back. Sit down.", p, "Zoe") == "You came back. Sit down."
    assert clean_reply("Darling!", p, "Zoe") == ""  # nothing but the phrase: nothing to say


def test_cleaning_never_empties_a_reply_that_has_something_to_say():
    assert clean_reply("As an AI language model, I cannot do that.", P, "Zoe") == "I cannot do that."
    assert clean_reply("I don't have feelings, but I like you.", P, "Zoe") == "But I like you."
    assert clean_reply("I am an AI.", P, "Zoe") == "I am an AI."  # all there is: said rather than dropped
    assert clean_reply("<|im_end|>", P, "Zoe") == ""


def test_a_transcript_keeps_the_characters_turn():
    # Cards write example dialogue and lorebook entries as exchanges; a reply shaped like one
    # opens with the person's line: the character's turn is what is said.
    raw = '{{user}}: What is the Silverwood?\n{{char}}: *smiles* "The Silverwood is my home."\n{{user}}: wow'
    assert clean_reply(raw, P, "Zoe") == '*smiles* "The Silverwood is my home."'
    assert clean_reply("<START>\nZoe: hi\nMira: *waves* Hello!", P, "Zoe") == "*waves* Hello!"
    assert clean_reply("Zoe: hi", P, "Zoe") == ""  # only the person's words


def test_sentence_limit_keeps_roleplay_actions_whole():
    p = Persona(name="Mira", style=StyleRules(max_sentences=2))
    assert clean_reply('*smiles softly.* "Welcome!" *waves.* "Sit down."', p, "Zoe") == '*smiles softly.* "Welcome!"'


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
