"""The text generator protocol shared by every backend."""

from __future__ import annotations

import re

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Example:
    """A few-shot pair: what someone said and how the character answered."""

    prompt: str
    response: str


@dataclass(frozen=True, slots=True)
class TextRequest:
    """A chat completion request.

    ``messages`` is the full prompt (system first). ``examples``, ``facts`` and
    ``greetings`` repeat, in structured form, material the system prompt already
    carries; model backends may ignore them, the lite backend composes replies from them.
    """

    messages: tuple[ChatMessage, ...]
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    char_name: str = ""
    user_name: str = ""
    examples: tuple[Example, ...] = ()
    greetings: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()  # recalled memories, most relevant first
    lore: tuple[str, ...] = ()  # lorebook entries triggered by the conversation
    description: str = ""  # the character's description, macros rendered (the lite backend's self-knowledge)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""


class TextGenerationError(RuntimeError):
    """A backend could not produce text (down, timed out, misconfigured)."""


@runtime_checkable
class TextGenerator(Protocol):
    name: str

    async def generate(self, request: TextRequest) -> str:
        """The whole reply."""
        ...

    def stream(self, request: TextRequest) -> AsyncIterator[str]:
        """The reply in pieces as they are produced."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this backend's model (an estimate where unknown)."""
        ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: about four characters a token for English text."""
    return max(1, (len(text) + 3) // 4) if text else 0


def to_second_person(fact: str, user: str) -> str:
    """'Zoe loves pierogi.' -> 'you love pierogi.'"""
    out = fact.strip()
    if user and out.lower().startswith(user.lower() + "'s "):
        out = "your " + out[len(user) + 3 :]
    elif user and out.lower().startswith(user.lower() + " "):
        rest = out[len(user) + 1 :]
        verb, _, tail = rest.partition(" ")
        verb = {"is": "are", "has": "have", "was": "were", "does": "do", "goes": "go"}.get(verb) or _base_verb(verb)
        out = f"you {verb} {tail}".strip()
    out = re.sub(r"\btheir\b", "your", out, flags=re.I)
    return out.rstrip(".") + "."


def _base_verb(verb: str) -> str:
    """'loves' -> 'love', 'studies' -> 'study', 'watches' -> 'watch'; others as they are."""
    low = verb.lower()
    if low.endswith("ies") and len(low) > 4:
        return verb[:-3] + "y"
    if low.endswith(("shes", "ches", "xes", "sses", "zes")):
        return verb[:-2]
    if low.endswith("s") and not low.endswith("ss"):
        return verb[:-1]
    return verb
