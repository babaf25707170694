"""The lite text backend: in-character replies without a language model.

It answers from the character's own material: the example dialogue (a reply whose
prompt is closest in meaning to what was said), the greetings (for hellos), the
lorebook entries the conversation triggered, and the memories recalled about the
person (for "do you remember ..." questions). Similarity is cosine over sentence
embeddings; the choice among close candidates is seeded by the message, so the same
message in the same context gets the same reply, and the last reply is not repeated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import numpy as np

from generators.embed import Embedder
from generators.text.base import TextRequest, estimate_tokens, to_second_person

_GREETING = re.compile(r"^\s*(hi|hello|hey|hiya|yo|howdy|good (morning|afternoon|evening)|greetings)\b", re.I)
_ABOUT_ME = re.compile(
    r"\b(remember|recall|know|told you)\b.*\b(me|my|i)\b|\b(my|me)\b.*\?|\bwhat('s| is) my\b|\bwho am i\b", re.I
)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")

# Generic openers used only when the character's own material has nothing close.
_FALLBACKS = (
    "Tell me more, {user}. I'm listening.",
    "Hm, I hadn't thought of it that way. What made you think of it?",
    "That's interesting! Go on?",
)


class LiteTextGenerator:
    name = "lite"

    def __init__(self, embedder: Embedder, min_similarity: float = 0.25):
        self.embedder = embedder
        self.min_similarity = min_similarity

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        return None

    async def stream(self, request: TextRequest) -> AsyncIterator[str]:
        text = await self.generate(request)
        for piece in _SENTENCE.split(text):
            if piece:
                yield piece + " "

    async def generate(self, request: TextRequest) -> str:
        return self.compose(request)

    # The work is a few small matrix products: cheap enough to run inline.
    def compose(self, request: TextRequest) -> str:
        said = request.last_user_text.strip()
        user = request.user_name or "friend"
        last_reply = next((m.content for m in reversed(request.messages) if m.role == "assistant"), "")
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{said}|{last_reply}".encode()).digest()[:8], "little"))

        if not said:
            return request.greetings[0] if request.greetings else _FALLBACKS[0].format(user=user)

        q = self.embedder.embed([said])[0]
        candidates: list[tuple[float, str]] = []

        if request.facts and _ABOUT_ME.search(said):
            # Compare in the person's own terms: "you love pierogi", not "Zoe loves pierogi".
            yours = [to_second_person(f, user) for f in request.facts]
            sims = self.embedder.embed(yours) @ q
            order = np.argsort(-sims)
            if sims[order[0]] >= 0.15:
                picked = [yours[order[0]]] + [yours[i] for i in order[1:2] if sims[i] >= 0.3]
                remembered = " And ".join(picked)
                return f"Of course I remember, {user}: {remembered}"

        greeting = bool(_GREETING.match(said)) and len(said) < 40
        if greeting and request.greetings and not last_reply:
            return request.greetings[int(rng.integers(len(request.greetings)))]

        if request.examples:
            prompts = [e.prompt for e in request.examples]
            sims = self.embedder.embed(prompts) @ q
            for ex, s in zip(request.examples, sims):
                candidates.append((float(s), ex.response))

        for entry in request.lore:
            first = " ".join(_SENTENCE.split(entry.strip())[:2])
            if first:
                s = float(self.embedder.embed([first])[0] @ q)
                candidates.append((max(s, 0.3), first))

        candidates = [c for c in candidates if c[1].strip() and c[1].strip() != last_reply.strip()]
        candidates.sort(key=lambda c: -c[0])
        if not candidates or candidates[0][0] < self.min_similarity:
            pool = [f.format(user=user) for f in _FALLBACKS if f.format(user=user) != last_reply]
            return pool[int(rng.integers(len(pool)))]
        best = candidates[0][0]
        close = [c for c in candidates[:3] if c[0] >= best - 0.05]
        weights = np.exp(np.array([c[0] for c in close]) * 20.0)
        pick = close[int(rng.choice(len(close), p=weights / weights.sum()))][1]
        return pick.replace("{{user}}", user).replace("{{char}}", request.char_name)
