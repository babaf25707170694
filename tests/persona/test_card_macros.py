"""SillyTavern macros in card text, as a character's greetings and prompts show them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from persona.card import Persona, humanize_duration, render_macros

NOW = datetime(2026, 11, 5, 15, 5, tzinfo=timezone.utc)  # a Thursday afternoon
MIRA = Persona(name="Mira")


def test_names_in_any_case_and_old_signature():
    assert render_macros("{{char}} meets {{USER}}; <BOT> and <user>", "Mira", "Zoe") == "Mira meets Zoe; Mira and Zoe"
    assert MIRA.render("Hi {{User}}, I'm {{ Char }}.", "Zoe") == "Hi Zoe, I'm Mira."


def test_time_date_and_weekday():
    text = "It's {{time}} on {{weekday}}, {{date}} ({{isodate}} {{isotime}}). {{TIME}}"
    assert MIRA.render(text, "Zoe", now=NOW) == "It's 3:05 PM on Thursday, November 5, 2026 (2026-11-05 15:05). 3:05 PM"
    assert render_macros("{{time}}", "M", "Z", now=datetime(2026, 1, 1, 0, 7)) == "12:07 AM"
    assert render_macros("{{time}}", "M", "Z", now=datetime(2026, 1, 1, 12, 0)) == "12:00 PM"


def test_time_defaults_to_now():
    before = datetime.now().astimezone()
    rendered = render_macros("{{isodate}}", "M", "Z")
    assert rendered in {before.date().isoformat(), datetime.now().astimezone().date().isoformat()}


@pytest.mark.parametrize(
    "idle,words",
    [
        (None, "just now"),
        (timedelta(seconds=20), "a few seconds"),
        (timedelta(seconds=70), "a minute"),
        (timedelta(minutes=12), "12 minutes"),
        (timedelta(minutes=70), "an hour"),
        (timedelta(hours=3, minutes=10), "3 hours"),
        (timedelta(hours=30), "a day"),
        (timedelta(days=4), "4 days"),
        (timedelta(days=40), "a month"),
        (timedelta(days=95), "3 months"),
        (timedelta(days=400), "a year"),
        (timedelta(days=1000), "3 years"),
    ],
)
def test_idle_duration(idle, words):
    assert MIRA.render("You were gone {{idle_duration}}!", "Zoe", idle=idle) == f"You were gone {words}!"
    if idle is not None:
        assert humanize_duration(idle) == words


def test_random_picks_one_item_and_the_same_seed_the_same_one():
    text = "{{char}} orders {{random:dumplings, noodles ,tea}} and {{RANDOM::soup, hot::a bun}}."
    outs = {MIRA.render(text, "Zoe", seed=seed) for seed in range(40)}
    firsts = {o.split(" orders ")[1].split(" and ")[0] for o in outs}
    seconds = {o.split(" and ")[1].rstrip(".") for o in outs}
    assert firsts == {"dumplings", "noodles", "tea"}  # items are trimmed
    assert seconds == {"soup, hot", "a bun"}  # "::" keeps commas inside items
    for seed in (3, "turn-17"):
        assert MIRA.render(text, "Zoe", seed=seed) == MIRA.render(text, "Zoe", seed=seed)


def test_random_items_may_hold_macros_and_escaped_commas():
    picks = {render_macros("{{random:{{user}},{{char}}}}", "Mira", "Zoe", seed=s) for s in range(30)}
    assert picks == {"Mira", "Zoe"}
    picks = {render_macros("{{random:salt\\, pepper,sugar}}", "M", "Z", seed=s) for s in range(30)}
    assert picks == {"salt, pepper", "sugar"}


def test_unknown_and_unclosed_macros_are_left_alone():
    text = "{{random}} {{original}} {{random:a,b" + "{{random:" * 2000
    assert render_macros(text, "M", "Z", seed=1) == text
