"""Prompt building: the system prompt, recalled memories, lore, and history within a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from generators.text.base import ChatMessage, Example
from persona.card import Persona

DEFAULT_SYSTEM = (
    "You are {{char}}. Stay in character at all times: speak as {{char}} would, in the first person, "
    "never as an assistant or an AI. Keep replies conversational and reasonably short."
)


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" | "assistant"
    text: str
    speaker: str | None = None  # shown in group chats


def trim_for_model(text: str, max_chars: int) -> str:
    """Messages past the limit reach the model trimmed, with a note; they are stored whole."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0] if " " in text[:max_chars] else text[:max_chars]
    return f"{cut}\n[message trimmed: {len(text) - len(cut)} more characters not shown]"


def system_prompt(
    persona: Persona,
    user_name: str,
    *,
    facts: Sequence[str] = (),
    relationship_note: str = "",
    lore: Sequence[str] = (),
    include_examples: bool = True,
    examples: Sequence[Example] | None = None,
) -> str:
    p = persona
    parts = [p.render(p.system_prompt or DEFAULT_SYSTEM, user_name)]
    for title, body in (("About {{char}}", p.description), ("Personality", p.personality), ("Scenario", p.scenario)):
        if body.strip():
            parts.append(f"{p.render(title, user_name)}: {p.render(body.strip(), user_name)}")
    rules = list(p.style.notes)
    if not p.nsfw:
        rules.append("Keep everything safe for work: no sexual content, no graphic violence.")
    if p.style.max_sentences:
        rules.append(f"Answer in at most {p.style.max_sentences} sentences.")
    if rules:
        parts.append("Style:\n" + "\n".join(f"- {p.render(r, user_name)}" for r in rules))
    if lore:
        parts.append("Things {char} knows:\n".replace("{char}", p.name) + "\n".join(f"- {p.render(x, user_name)}" for x in lore))
    if relationship_note:
        parts.append(relationship_note)
    if facts:
        parts.append(f"What you remember about {user_name}:\n" + "\n".join(f"- {f}" for f in facts))
    if include_examples and p.example_dialogue.strip():
        ex = "\n".join(f"{user_name}: {e.prompt}\n{p.name}: {e.response}" for e in (p.examples(user_name) if examples is None else examples)[:8])
        if ex:
            parts.append("Examples of how {char} talks:\n".replace("{char}", p.name) + ex)
    if p.post_history_instructions.strip():
        parts.append(p.render(p.post_history_instructions, user_name))
    return "\n\n".join(parts)


def build_messages(
    system: str,
    history: Sequence[Turn],
    current: str,
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    group: bool = False,
) -> tuple[ChatMessage, ...]:
    """System prompt, then as much recent history as fits, then the current message."""
    fixed = count_tokens(system) + count_tokens(current) + 8
    left = budget_tokens - fixed
    kept: list[ChatMessage] = []
    for turn in reversed(history):
        text = f"{turn.speaker}: {turn.text}" if group and turn.speaker and turn.role == "user" else turn.text
        cost = count_tokens(text) + 4
        if cost > left:
            break
        left -= cost
        kept.append(ChatMessage(turn.role, text))  # type: ignore[arg-type]
    kept.reverse()
    # Chat templates want user/assistant alternation starting with the user.
    while kept and kept[0].role != "user":
        kept.pop(0)
    merged: list[ChatMessage] = []
    for m in kept:
        if merged and merged[-1].role == m.role:
            merged[-1] = ChatMessage(m.role, merged[-1].content + "\n" + m.content)
        else:
            merged.append(m)
    if merged and merged[-1].role == "user":
        current = merged.pop().content + "\n" + current
    return (ChatMessage("system", system), *merged, ChatMessage("user", current))
