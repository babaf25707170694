from __future__ import annotations

import pytest

from generators.text.base import to_second_person
from persona.memory import extract_facts, parse_model_memories


def texts(s, who="Zoe"):
    return [f.text for f in extract_facts(s, who)]


def test_the_facts_people_tell():
    assert texts("Hi, I am Zoe and I love pierogi", "") == ["Their name is Zoe.", "Zoe loves pierogi."]
    assert texts("I live in Kraków and I have a dog named Rex.", "Zoe") == ["Zoe lives in Kraków.", "Zoe has a dog named Rex."]
    assert texts("my favourite band is Queen!") == ["Zoe's favourite band is Queen."]
    assert texts("I'm a nurse") == ["Zoe is a nurse."]
    assert texts("I really hate my commute") == ["Zoe hates their commute."]
    assert texts("please remember that my sister is Ann") == ["Zoe asked to remember: their sister is Ann."]


def test_small_talk_is_not_a_fact():
    assert texts("I am fine thanks") == []
    assert texts("I'm Happy today") == []
    assert texts("what do you like?") == []
    assert texts("do you remember what food I love?") == []
    assert texts("Do I like jazz? I love pierogi.") == ["Zoe loves pierogi."]


def test_second_person_for_the_person_themselves():
    assert to_second_person("Zoe loves pierogi.", "Zoe") == "you love pierogi."
    assert to_second_person("Their name is Zoe.", "Zoe") == "your name is Zoe."
    assert to_second_person("Zoe's favourite band is Queen.", "Zoe") == "your favourite band is Queen."
    assert to_second_person("Zoe has a dog.", "Zoe") == "you have a dog."


def test_model_memory_answers_are_parsed_leniently():
    raw = 'Sure!\n```json\n{"summary": "They talked about food.", "facts": ["Zoe loves pierogi", 3, ""]}\n```'
    assert parse_model_memories(raw) == ("They talked about food.", ["Zoe loves pierogi"])
    assert parse_model_memories("no json here") == (None, [])
    assert parse_model_memories("{broken") == (None, [])


@pytest.mark.parametrize("said,remembered", [
    ("I work as a nurse in Leeds", "you work as a nurse in Leeds."),
    ("I work at the harbour office", "you work at the harbour office."),
    ("I study chemistry", "you study chemistry."),
    ("I study at Leeds university", "you study at Leeds university."),
    ("I live in Leeds", "you live in Leeds."),
    ("I love pierogi", "you love pierogi."),
    ("my sister is called Ana", "your sister is called Ana."),
])
def test_memories_read_naturally(said, remembered):
    facts = [to_second_person(f.text, "Zoe") for f in extract_facts(said, "Zoe")]
    assert remembered in facts
