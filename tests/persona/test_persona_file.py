"""Persona YAML files: loading, errors that name the file and the field, the registry."""

from __future__ import annotations

import pytest

from persona.card import PersonaError, load_persona_file
from persona.registry import SAMPLES, PersonaRegistry


def test_sample_persona_loads_with_examples_and_lore():
    p = load_persona_file(SAMPLES / "mira.yaml")
    assert p.id == "mira" and p.name == "Mira Vale"
    assert len(p.examples("Zoe")) >= 15 and p.lorebook and len(p.lorebook.entries) >= 4
    assert all("{{" not in e.prompt + e.response for e in p.examples("Zoe"))


@pytest.mark.parametrize(
    "content, field",
    [
        ("name: X\nstyle:\n  max_sentences: many\n", "style.max_sentences"),
        ("name: X\ngreetings: 5\n", "greetings"),
        ("description: no name\n", "name"),
        ("name: X\ncolour: blue\n", "colour"),
        ("name: X\nidentity:\n  voice:\n    consent:\n      who: Ann\n", "identity.voice.consent.statement"),
    ],
)
def test_bad_fields_are_named(tmp_path, content, field):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(PersonaError) as e:
        load_persona_file(f)
    assert str(f) in str(e.value) and field in str(e.value)


def test_broken_yaml_says_where(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: X\ngreetings: [unclosed\n")
    with pytest.raises(PersonaError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_persona_file(f)


def test_yaml_aliases_and_deep_nesting_are_refused_before_they_expand(tmp_path):
    bomb = "name: Bomb\nextensions:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):  # each level ten times the last: billions of items once written back
        bomb += f"  {chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb)
    with pytest.raises(PersonaError, match=r"bomb.yaml: invalid YAML: aliases \(\*a\) are not allowed"):
        load_persona_file(f)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: Deep\nextensions: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(PersonaError, match="nested too deeply"):
        load_persona_file(deep)


def test_registry_skips_a_bad_file_whole_and_reports_it(tmp_path):
    (tmp_path / "good.yaml").write_text("name: Good One\ngreetings: [hi]\n")
    (tmp_path / "bad.yaml").write_text("name: Bad\nstyle: {max_chars: 1}\n")
    reg = PersonaRegistry([SAMPLES, tmp_path])
    assert {p.id for p in reg} == {"mira", "good-one"}
    assert len(reg.problems) == 1 and "style.max_chars" in reg.problems[0].error
    assert reg.get("GOOD ONE").id == "good-one"
    with pytest.raises(LookupError, match="known: good-one, mira"):
        reg.get("nobody")


def test_example_dialogue_knows_the_character_by_a_word_of_its_name():
    from persona.card import parse_example_dialogue

    pairs = parse_example_dialogue("<START>\nUser: where to?\nBrann: Wherever the wind says.\n", "Captain Brann", "Zoe")
    assert [(e.prompt, e.response) for e in pairs] == [("where to?", "Wherever the wind says.")]
