"""Cards and persona files are bounded where they come in: an oversized one is refused
with an error naming the file and the field, and the other personas still load and
fit the database."""

from __future__ import annotations

import json

import pytest

from persona.card import (
    MAX_GREETINGS,
    MAX_ID_CHARS,
    MAX_KEY_CHARS,
    MAX_LORE_ENTRIES,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    PersonaError,
)
from persona.cards import card_to_dict, import_card
from persona.registry import SAMPLES, PersonaRegistry


def card(**data) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Captain Rook", **data}}


def book(entries: list[dict]) -> dict:
    return {"entries": entries, "extensions": {}}


@pytest.mark.parametrize(
    "data,field,words",
    [
        ({"name": "N" * 250}, "data.name", f"at most {MAX_NAME_CHARS}"),
        ({"description": "d" * (MAX_TEXT_CHARS + 1)}, "data.description", "at most"),
        ({"first_mes": "g" * (MAX_TEXT_CHARS + 1)}, "data.first_mes", "at most"),
        ({"first_mes": "hi", "alternate_greetings": ["ok", "g" * (MAX_TEXT_CHARS + 1)]}, "data.alternate_greetings.1", "at most"),
        ({"alternate_greetings": ["hi"] * (MAX_GREETINGS + 1)}, "data.alternate_greetings", "at most"),
        ({"creator": "c" * 5000}, "data.creator", "at most"),
        ({"tags": ["t"] * 10_000}, "data.tags", "at most"),
        ({"character_book": book([{"keys": ["k"], "content": "x"}] * (MAX_LORE_ENTRIES + 1))},
         "data.character_book.entries", "at most"),
        ({"character_book": book([{"keys": ["k" * (MAX_KEY_CHARS + 1)], "content": "x"}])},
         "data.character_book.entries.0.keys.0", "at most"),
        ({"character_book": book([{"keys": ["k"], "content": "c" * (MAX_TEXT_CHARS + 1)}])},
         "data.character_book.entries.0.content", "at most"),
        ({"extensions": {"vchar": {"id": "r" * (MAX_ID_CHARS + 1)}}}, "data.extensions.vchar.id", "slug"),
    ],
)
def test_oversized_card_fields_are_refused_by_name(tmp_path, data, field, words):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(card(**data)))
    with pytest.raises(PersonaError) as info:
        import_card(path)
    assert info.value.field == field and info.value.source == str(path)
    assert words in str(info.value)


def test_longest_allowed_fields_still_load(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(card(name="N" * MAX_NAME_CHARS, description="d" * MAX_TEXT_CHARS)))
    p = import_card(path)
    assert len(p.name) == MAX_NAME_CHARS and len(p.id) <= MAX_ID_CHARS
    assert card_to_dict(p)["data"]["description"] == "d" * MAX_TEXT_CHARS


def test_yaml_persona_is_bounded_too(tmp_path):
    (tmp_path / "x.yaml").write_text("name: X\nstyle:\n  notes: [" + ", ".join(["n"] * 1000) + "]\n")
    reg = PersonaRegistry([tmp_path])
    assert len(reg) == 0 and "style.notes" in reg.problems[0].error


def test_one_overlong_card_does_not_stop_the_others(tmp_path):
    (tmp_path / "long.json").write_text(json.dumps(card(name="Sir " + "Reginald " * 30)))
    (tmp_path / "rook.json").write_text(json.dumps(card()))
    (tmp_path / "good.yaml").write_text("name: Good One\n")
    reg = PersonaRegistry([SAMPLES, tmp_path])
    assert {p.id for p in reg} == {"mira", "captain-rook", "good-one"}
    assert len(reg.problems) == 1
    problem = reg.problems[0]
    assert problem.path == tmp_path / "long.json" and "data.name" in problem.error


async def test_every_loadable_persona_fits_the_database(tmp_path, store):
    # the longest name and the longest slug a card may have, on SQLite and PostgreSQL
    (tmp_path / "a.json").write_text(json.dumps(card(name="A" * MAX_NAME_CHARS)))
    (tmp_path / "b.json").write_text(json.dumps(card(name="B", extensions={"vchar": {"id": "b" * MAX_ID_CHARS}})))
    reg = PersonaRegistry([tmp_path])
    assert len(reg) == 2 and not reg.problems
    for p in reg:
        assert await store.ensure_persona(p.id, p.name, card_to_dict(p), str(reg.sources[p.id])) > 0
