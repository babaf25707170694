"""The lite composer: forms that fit, melodies that fit the words, every style, any key."""

from __future__ import annotations

import pytest

from generators.music.composer import SLOTS_PER_BAR, compose
from generators.music.lyrics import parse_lyrics, split_syllables, template_lyrics
from generators.music.theory import STYLES, Key, nearest_style, parse_key

LYRICS = """[verse]
I keep on dreaming of the rain tonight
every window shining silver light
[chorus]
oh the rain, the rain, it sings to me
falling soft and slow and free
"""


def test_words_split_into_syllables_with_the_stress_where_it_falls():
    assert split_syllables("beautiful") == ["beau", "ti", "ful"]
    assert split_syllables("love") == ["love"] and split_syllables("window") == ["win", "dow"]
    line = parse_lyrics("[verse]\nthe rain tonight").sections[0].lines[0]
    assert [(s.text, s.stressed) for s in line.syllables] == [("the", False), ("rain", True), ("to", False),
                                                             ("night", True)]


def test_unknown_styles_and_keys_become_the_nearest_named_one():
    assert nearest_style("lofi")[0].name == "lo-fi" and nearest_style("a dreamy city pop song")[0].name == "city pop"
    style, note = nearest_style("jazz")
    assert style.name in STYLES and "jazz" in note and style.name in note
    assert parse_key("F# minor") == (Key(6, "minor"), None) and parse_key("Bb")[0] == Key(10, "major")
    key, note = parse_key("H dorian")
    assert key is not None and key.name in note


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_writes_a_song_in_key_that_fits_its_duration(style):
    s = STYLES[style]
    key = Key(4, s.mode)
    score = compose(parse_lyrics(LYRICS), s, key, s.tempo, 30.0, seed=11)
    assert abs(score.duration - 30.0) <= score.bar  # whole bars, as near the ask as a bar allows
    assert [p.name for p in score.parts][0] == "intro" and score.parts[-1].name == "outro"
    assert {"verse", "chorus"} <= {p.name for p in score.parts}
    sung = [n.pitch for n in score.vocal]
    assert sung and all(key.in_scale(p) for p in sung)  # the tune stays in the key
    assert all(57 <= p <= 76 for p in sung)  # and in the singer's range
    names = {i.name for i in score.backing.instruments}
    assert {"chords", "bass", "drums", "lead"} <= names
    assert all(n.end <= score.duration + 1e-6 for i in score.backing.instruments for n in i.notes)


def test_stressed_syllables_land_on_strong_beats_and_a_chorus_is_sung_to_one_tune():
    lyr = parse_lyrics(LYRICS + "\n[verse]\nwalking home beneath the city glow\n[chorus]\noh the rain, the rain, it sings to me\n"
                       "falling soft and slow and free\n")
    s = STYLES["pop"]
    score = compose(lyr, s, Key(0, "major"), 100, 60.0, seed=3)
    eighth = score.bar / SLOTS_PER_BAR
    on_beat = [round(n.start / eighth) % 2 == 0 for n in score.vocal if n.syllable.stressed]
    assert sum(on_beat) / len(on_beat) >= 0.8
    choruses = [p for p in score.parts if p.name == "chorus"]
    assert len(choruses) >= 2
    tunes = [[(round(n.start - p.start, 3), n.pitch) for n in score.vocal if p.start <= n.start < p.end] for p in choruses]
    assert tunes[0] == tunes[1]


def test_the_same_seed_writes_the_same_score_and_another_seed_another():
    s = STYLES["synthwave"]
    a = compose(parse_lyrics(LYRICS), s, Key(9, "minor"), 96, 30.0, seed=5)
    b = compose(parse_lyrics(LYRICS), s, Key(9, "minor"), 96, 30.0, seed=5)
    c = compose(parse_lyrics(LYRICS), s, Key(9, "minor"), 96, 30.0, seed=6)
    tune = lambda sc: [(n.start, n.pitch) for n in sc.vocal]  # noqa: E731
    assert tune(a) == tune(b) and tune(a) != tune(c)


def test_lyrics_longer_than_the_song_are_trimmed_to_the_form_and_say_so():
    long = "\n".join(f"[verse]\n{'la ' * 30}\n{'da ' * 8}\n[chorus]\nsing it now\nsing it loud" for _ in range(12))
    lyr = parse_lyrics(long)
    assert any("sections" in n for n in lyr.notes)
    assert all(len(line.syllables) <= 14 for sec in lyr.sections for line in sec.lines)  # a phrase each
    score = compose(lyr, STYLES["rock"], Key(7, "major"), 124, 20.0, seed=1)
    assert score.notes and "longer than the song" in score.notes[0]
    assert any(p.name == "chorus" for p in score.parts)  # a short song still gets to its chorus


def test_template_lyrics_rhyme_and_name_the_topic():
    lyr = template_lyrics("a song about the rain", seed=4, hint="rainy night")
    assert lyr.title == "The Rain"
    text = lyr.text.lower()
    assert "the rain" in text and "[chorus]" in text and "song about" not in text


def test_a_line_longer_than_a_phrase_is_sung_as_two_phrases_with_every_syllable_on_its_own_note():
    lyr = parse_lyrics("[verse]\nI have been walking all the way from the river to the market tonight with you\n")
    lines = lyr.sections[0].lines
    assert len(lines) == 2 and all(len(line.syllables) <= 14 for line in lines)
    assert " ".join(line.text for line in lines).startswith("I have been walking")
    score = compose(lyr, STYLES["pop"], Key(0, "major"), 100, 20.0, seed=2)
    starts = [n.start for n in score.vocal]
    assert len(starts) == len(set(starts)) == sum(len(line.syllables) for line in lines)
