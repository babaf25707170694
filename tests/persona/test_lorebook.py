"""Lorebook activation (which entries a chat turn brings into the prompt)."""

from __future__ import annotations

import time

import pytest

from persona.card import LoreEntry, Lorebook
from persona.lorebook import MAX_RECURSION_STEPS, MAX_SCAN_CHARS, triggered_entries


def entry(keys, content=None, **kw) -> LoreEntry:
    return LoreEntry(keys=list(keys), content=content or f"lore about {keys[0] if keys else 'nothing'}", **kw)


def fired(book: Lorebook, *texts: str, budget_chars=None) -> list[str]:
    return [e.content for e in triggered_entries(book, list(texts), budget_chars)]


def test_keys_match_whole_words_ignoring_case():
    book = Lorebook(entries=[entry(["cat"], "CAT"), entry(["Dark Forest"], "FOREST")])
    assert fired(book, "My Cat! is hungry") == ["CAT"]
    assert fired(book, "Let's concatenate strings") == []
    assert fired(book, "cats everywhere") == []  # whole words only
    assert fired(book, "we entered the dark\n  forest at dusk") == ["FOREST"]
    assert fired(book, "the DARK FOREST.") == ["FOREST"]
    # Unicode case folding: the dotted capital I (Turkish) still matches "i"
    assert fired(Lorebook(entries=[entry(["istanbul"], "CITY")]), "İSTANBUL'a gittik") == ["CITY"]


def test_case_sensitive_entries():
    book = Lorebook(entries=[entry(["Rose"], "NAME", case_sensitive=True)])
    assert fired(book, "Rose waves") == ["NAME"]
    assert fired(book, "a rose in the garden") == []


def test_match_whole_words_off_and_punctuation_keys():
    book = Lorebook(
        entries=[
            entry(["dragon"], "DRAGON", extensions={"match_whole_words": False}),
            entry(["C++"], "CPP"),
        ]
    )
    assert fired(book, "the dragonfly landed") == ["DRAGON"]
    assert fired(book, "I write C++ daily") == ["CPP"]
    assert fired(book, "I write C daily") == []


def test_keys_in_scripts_without_spaces_match_inside_words():
    book = Lorebook(entries=[entry(["龙"], "DRAGON-ZH"), entry(["магия"], "MAGIC-RU")])
    assert fired(book, "我看见了龙王") == ["DRAGON-ZH"]
    assert fired(book, "Это МАГИЯ!") == ["MAGIC-RU"]
    assert fired(book, "Это черномагиями") == []  # Cyrillic has spaces: whole words


def test_regex_keys():
    book = Lorebook(
        entries=[
            entry(["/mirela'?s (past|history)/i"], "PAST"),
            entry(["/^Captain\\b/m"], "CAPTAIN"),
            entry(["fox(es)? spirits?"], "KITSUNE", use_regex=True),
            entry(["/[unclosed/"], "LITERAL"),  # not a valid pattern: matched as text
        ]
    )
    assert fired(book, "Tell me about MIRELAS HISTORY") == ["PAST"]
    assert fired(book, "hello\nCaptain on deck") == ["CAPTAIN"]
    assert fired(book, "hello captain") == []  # the regex has no i flag
    assert fired(book, "Two Fox Spirits appear") == ["KITSUNE"]
    assert fired(book, "see /[unclosed/ here") == ["LITERAL"]


def test_selective_entries_need_secondary_keys():
    reefs = entry(["reefs"], "REEFS", selective=True, secondary_keys=["storm", "night"])
    calm = entry(["sea"], "CALM SEA", selective=True, secondary_keys=["storm"], extensions={"selectiveLogic": 2})
    both = entry(["ship"], "BOTH", selective=True, secondary_keys=["storm", "night"], extensions={"selectiveLogic": 3})
    book = Lorebook(entries=[reefs, calm, both])
    assert fired(book, "the reefs ahead") == []
    assert fired(book, "the reefs in the storm") == ["REEFS"]
    assert fired(book, "the sea is quiet") == ["CALM SEA"]
    assert fired(book, "the sea in a storm") == []
    assert fired(book, "the ship at night") == []
    assert fired(book, "the ship in a storm at night") == ["BOTH"]
    # selective without any secondary keys behaves like a plain entry
    assert fired(Lorebook(entries=[entry(["reefs"], "R", selective=True)]), "reefs") == ["R"]


def test_constant_and_disabled_entries():
    book = Lorebook(
        entries=[
            entry([], "ALWAYS", constant=True),
            entry(["gold"], "OFF", enabled=False),
            entry([], "OFF CONSTANT", constant=True, enabled=False),
            entry([], "NO KEYS"),
        ]
    )
    assert fired(book, "gold gold gold") == ["ALWAYS"]
    assert fired(book) == ["ALWAYS"]


def test_scan_depth_limits_which_messages_are_scanned():
    book = Lorebook(scan_depth=2, entries=[entry(["amulet"], "AMULET"), entry([], "CONST", constant=True)])
    chat = ["I found an amulet", "nice", "what now?"]
    assert fired(book, *chat) == ["CONST"]
    assert fired(book, *chat[:2]) == ["AMULET", "CONST"]
    book0 = Lorebook(scan_depth=0, entries=book.entries)
    assert fired(book0, "amulet") == ["CONST"]
    assert fired(Lorebook(entries=book.entries), *chat) == ["AMULET", "CONST"]


def test_keys_do_not_match_across_messages():
    book = Lorebook(entries=[entry(["red moon"], "MOON")])
    assert fired(book, "it was red", "moon rises") == []


def test_order_is_insertion_order_then_priority():
    book = Lorebook(
        entries=[
            entry(["a"], "third", insertion_order=30),
            entry(["a"], "first-low", insertion_order=10, priority=1),
            entry(["a"], "first-high", insertion_order=10, priority=5),
            entry(["a"], "second", insertion_order=20),
        ]
    )
    assert fired(book, "a") == ["first-high", "first-low", "second", "third"]


def test_token_budget_drops_lowest_priority_first():
    book = Lorebook(
        token_budget=25,  # about 100 characters
        entries=[
            entry(["x"], "A" * 60, insertion_order=1, priority=1),
            entry(["x"], "B" * 60, insertion_order=2, priority=9),
            entry(["x"], "C" * 30, insertion_order=3, priority=5),
        ],
    )
    assert fired(book, "x") == ["B" * 60, "C" * 30]
    # a caller's tighter character budget applies on top of the book's
    assert fired(book, "x", budget_chars=70) == ["B" * 60]
    assert fired(Lorebook(entries=book.entries), "x", budget_chars=95) == ["B" * 60, "C" * 30]
    assert fired(Lorebook(entries=book.entries), "x", budget_chars=0) == []


def test_budget_chars_without_book_budget():
    book = Lorebook(entries=[entry(["x"], "A" * 60, priority=1), entry(["x"], "B" * 30, priority=2)])
    assert fired(book, "x", budget_chars=95) == ["B" * 30, "A" * 60]  # same order: priority first
    assert fired(book, "x", budget_chars=50) == ["B" * 30]


def test_recursive_scanning_follows_entry_content():
    entries = [
        entry(["castle"], "The castle belongs to Lord Aren."),
        entry(["Aren"], "Lord Aren fears the witch Morwen."),
        entry(["Morwen"], "Morwen lives in the marsh.", extensions={"exclude_recursion": True}),
    ]
    flat = Lorebook(entries=entries)
    assert fired(flat, "we reach the castle") == ["The castle belongs to Lord Aren."]
    deep = Lorebook(recursive_scanning=True, entries=entries)
    assert fired(deep, "we reach the castle") == [
        "The castle belongs to Lord Aren.",
        "Lord Aren fears the witch Morwen.",
    ]


def test_entry_changes_are_seen_on_the_next_turn():
    book = Lorebook(entries=[entry(["sword"], "SWORD")])
    assert fired(book, "a sword") == ["SWORD"]
    book.entries[0].keys = ["shield"]
    assert fired(book, "a sword") == []
    assert fired(book, "a shield") == ["SWORD"]


def test_large_book_is_fast_enough_for_every_turn():
    words = [f"place{i}" for i in range(600)]
    book = Lorebook(
        scan_depth=6,
        entries=[
            entry([w, f"{w} alias", f"/{w}-rx\\d+/i"], f"lore {i}", insertion_order=i, selective=i % 3 == 0,
                  secondary_keys=["night"])
            for i, w in enumerate(words)
        ],
    )
    chat = [" ".join(f"chatter {j} about place{(t * 37 + j) % 600} at night" for j in range(8)) for t in range(10)]
    triggered_entries(book, chat)  # warm the pattern cache
    start = time.perf_counter()
    for _ in range(20):
        result = triggered_entries(book, chat)
    per_turn = (time.perf_counter() - start) / 20
    assert result and all(isinstance(e, LoreEntry) for e in result)
    assert per_turn < 0.05, f"{per_turn * 1000:.1f} ms per turn"


# -- bounded matching: a card's patterns cannot freeze a turn ------------------------


@pytest.mark.timeout(30)
def test_catastrophic_regex_key_runs_in_linear_time():
    # with a backtracking engine this pattern takes minutes on an ordinary sentence
    book = Lorebook(entries=[entry(["/^(\\w+\\s?)*$/"], "WORDS"), entry(["/(a|aa)+$/"], "AS")])
    sentence = "The old captain said that the storm would pass before the night was over!"
    chat = [sentence * 4, "a" * 5000 + "!"]
    start = time.perf_counter()
    assert fired(book, *chat) == []
    assert time.perf_counter() - start < 2.0
    # the same keys still fire where they should
    assert fired(book, "only words and spaces here") == ["WORDS"]
    assert fired(book, "b-aaaa") == ["AS"]


def test_regex_flags_keep_their_javascript_meaning():
    book = Lorebook(
        entries=[
            entry(["/storm.+night/s"], "DOTALL"),
            entry(["/storm.+rain/"], "NO-DOTALL"),
            entry(["/^night$/m"], "LINE"),
            entry(["/Night/"], "CASE"),
        ]
    )
    assert fired(book, "a storm\nat night") == ["DOTALL"]
    assert fired(book, "storm\nrain") == []  # without s the dot stops at a line break
    assert fired(book, "storm\nnight") == ["DOTALL", "LINE"]
    assert fired(book, "the storm at NIGHT") == []  # no i flag: case matters
    assert fired(book, "Night falls") == ["CASE"]


def test_patterns_re2_cannot_run_are_matched_as_text():
    book = Lorebook(
        entries=[
            entry(["/(?<=sir )knight/i"], "LOOKBEHIND"),
            entry(["/(\\w+) \\1/"], "BACKREF"),
            entry(["/[\\s\\S]{1,1000}Z/"], "HUGE"),  # compiles to too large a program
        ]
    )
    assert fired(book, "hail sir knight", "again again", "x" * 50 + "Z") == []
    assert fired(book, "she wrote /(?<=sir )knight/i on the wall") == ["LOOKBEHIND"]
    assert fired(book, "literally /(\\w+) \\1/ here") == ["BACKREF"]


def test_only_the_most_recent_text_is_scanned():
    book = Lorebook(entries=[entry(["amulet"], "OLD"), entry(["/rune\\d/"], "NEW")])
    chat = ["the amulet glows", "chatter " * (MAX_SCAN_CHARS // 8), "I read rune7 aloud"]
    assert fired(book, *chat) == ["NEW"]
    assert fired(book, *chat[:1]) == ["OLD"]


def test_recursive_scanning_is_bounded():
    # a chain where every entry's content names the next one
    chain = [entry([f"link{i}"], f"then link{i + 1}", insertion_order=i) for i in range(300)]
    book = Lorebook(recursive_scanning=True, entries=chain)
    start = time.perf_counter()
    result = fired(book, "start at link0")
    assert time.perf_counter() - start < 2.0
    assert result == [f"then link{i + 1}" for i in range(MAX_RECURSION_STEPS + 1)]
