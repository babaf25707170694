"""Long-term memory: facts a person tells the character, recalled by meaning.

Facts are taken from what the person says by a handful of first-person patterns ("I
love ...", "my name is ...", "I live in ...") on every message, so a fact survives even
if the service stops right after; with a model backend, every few turns the model
also writes a short summary and the facts it noticed. Recall is cosine similarity
over unit sentence embeddings plus a small importance bonus, from an in-process
matrix per (persona, person) that reloads when the database says it changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache

from db.store import Store
from generators.embed import EmbedBatcher, Embedder

log = logging.getLogger(__name__)

_NAME_WORD = r"[A-Z][\w'-]{1,30}"
_OBJ = r"([^.!?,;\n]{2,80}?)"
_END = r"(?=\s*(?:[.!?,;\n]|\band\b|\bbut\b|\bso\b|$))"

# (pattern, template, importance); {s} is the person's name, groups fill {0}, {1}.
_RULES: list[tuple[re.Pattern[str], str, float]] = [
    (re.compile(rf"\b(?i:my name is)\s+({_NAME_WORD})"), "Their name is {0}.", 0.9),
    (re.compile(rf"\b(?i:i am|i'm|im|call me)\s+({_NAME_WORD})(?=\s*(?:[.!,]|\band\b|$))"), "Their name is {0}.", 0.9),
    (re.compile(r"\bi(?:'m| am) (\d{1,3}) (?:years old|yo)\b", re.I), "{s} is {0} years old.", 0.7),
    (re.compile(rf"\bi (?:really |absolutely |just )?(love|adore|like|enjoy|hate|dislike|can't stand) {_OBJ}{_END}", re.I), "{s} {0}s {1}.", 0.7),
    (re.compile(rf"\bi(?:'m| am) (?:really )?(?:into|a fan of|obsessed with) {_OBJ}{_END}", re.I), "{s} is into {0}.", 0.6),
    (re.compile(rf"\bi (?:live|stay) in {_OBJ}{_END}", re.I), "{s} lives in {0}.", 0.8),
    (re.compile(rf"\bi(?:'m| am) from {_OBJ}{_END}", re.I), "{s} is from {0}.", 0.8),
    (re.compile(rf"\bi work (as|at|for|in) {_OBJ}{_END}", re.I), "{s} works {0} {1}.", 0.7),
    (re.compile(rf"\bi study (?!at\b){_OBJ}{_END}", re.I), "{s} studies {0}.", 0.7),
    (re.compile(rf"\bi study at {_OBJ}{_END}", re.I), "{s} studies at {0}.", 0.7),
    (re.compile(rf"\bmy ((?:little |big |older |younger )?(?:sister|brother|mum|mom|mother|dad|father|son|daughter|wife|husband|partner|girlfriend|boyfriend|dog|cat|best friend)) is (?:called|named) ({_NAME_WORD})", re.I), "{s}'s {0} is called {1}.", 0.8),
    (re.compile(rf"\bi(?:'m| am) an? ((?:[a-z-]+ ){{0,2}}(?:developer|engineer|teacher|student|nurse|doctor|artist|designer|writer|chef|cook|musician|programmer|lawyer|scientist|driver|photographer|gamer|streamer|barista|manager|[a-z]+er|[a-z]+ist)){_END}", re.I), "{s} is a {0}.", 0.7),
    (re.compile(rf"\bmy (?:favou?rite) ([a-z ]{{2,30}}?) (?:is|are) {_OBJ}{_END}", re.I), "{s}'s favourite {0} is {1}.", 0.8),
    (re.compile(rf"\bi have an? {_OBJ}{_END}", re.I), "{s} has a {0}.", 0.6),
    (re.compile(rf"\bmy birthday is {_OBJ}{_END}", re.I), "{s}'s birthday is {0}.", 0.9),
    (re.compile(rf"(?:^|\bplease |\band )remember (?:that )?{_OBJ}{_END}", re.I), "{s} asked to remember: {0}.", 1.0),
]

_NOT_NAMES = {"fine", "good", "ok", "okay", "here", "back", "sorry", "sure", "tired", "happy", "sad", "bored", "not", "so", "just", "the", "a", "an", "going", "from", "into", "in", "at", "very", "really"}


def _third_person(obj: str) -> str:
    obj = re.sub(r"\bmy\b", "their", obj, flags=re.I)
    obj = re.sub(r"\bmine\b", "theirs", obj, flags=re.I)
    obj = re.sub(r"\bme\b", "them", obj, flags=re.I)
    return obj.strip(" \"'")


@dataclass(frozen=True, slots=True)
class Fact:
    text: str
    importance: float
    name: str | None = None  # the person's own name, when that is the fact


def extract_facts(text: str, person: str) -> list[Fact]:
    """First-person facts in ``text``, phrased in the third person about ``person``."""
    facts: list[Fact] = []
    seen: set[str] = set()
    subject = person or "They"
    # Questions ("do you remember what I love?") state nothing about the person.
    text = " ".join(s for s in re.split(r"(?<=[.!?\n])\s*", text) if s.strip() and not s.rstrip().endswith("?"))
    for pattern, _template, _imp in _RULES[:2]:
        m = pattern.search(text)
        if m and m.group(1).lower() not in _NOT_NAMES:
            subject = m.group(1)  # "I'm Zoe and I love pierogi": the facts are Zoe's
            break
    for pattern, template, importance in _RULES:
        for m in pattern.finditer(text):
            groups = [g.strip() for g in m.groups()]
            name = None
            if template.startswith("Their name"):
                if groups[0].lower() in _NOT_NAMES:
                    continue
                name = groups[0]
            if "{0}s" in template:  # a verb in the third person: love -> loves; can't stand stays
                verb = groups[0].lower()
                verb = verb if verb == "can't stand" else verb + "s"
                sentence = template.replace("{0}s", verb).format(*[_third_person(g) for g in groups], s=subject)
            else:
                sentence = template.format(*[_third_person(g) for g in groups], s=subject)
            key = sentence.lower()
            if key not in seen:
                seen.add(key)
                facts.append(Fact(sentence, importance, name))
    return facts


@dataclass
class _Index:
    version: int
    ids: np.ndarray
    vectors: np.ndarray
    texts: list[str]
    importance: np.ndarray

    @property
    def last_id(self) -> int:
        return int(self.ids[-1]) if len(self.ids) else 0

    def extended(self, version: int, ids, vectors, texts, importance) -> _Index:
        if not len(ids):
            return _Index(version, self.ids, self.vectors, self.texts, self.importance)
        if not len(self.ids):
            return _Index(version, np.asarray(ids), np.asarray(vectors, np.float32), list(texts), np.asarray(importance, np.float32))
        return _Index(
            version,
            np.concatenate([self.ids, ids]),
            np.concatenate([self.vectors, np.asarray(vectors, np.float32)]),
            self.texts + list(texts),
            np.concatenate([self.importance, np.asarray(importance, np.float32)]),
        )


_EMPTY = _Index(0, np.zeros(0, np.int64), np.zeros((0, 0), np.float32), [], np.zeros(0, np.float32))


class MemoryStore:
    """Adds, recalls and lists one persona's memories of one person."""

    def __init__(
        self, store: Store, embedder: Embedder, dedupe_similarity: float = 0.92, batcher: EmbedBatcher | None = None,
        max_cached: int = 10_000,
    ):
        self.store = store
        self.embedder = embedder
        self.batcher = batcher or EmbedBatcher(embedder)
        self.dedupe_similarity = dedupe_similarity
        # Bounded: the people talked to least recently are dropped (and reloaded when back).
        self._indexes: LRUCache = LRUCache(maxsize=max_cached)
        self._locks: LRUCache = LRUCache(maxsize=max_cached)

    async def _index(self, persona_id: int, user_id: int, version: int | None) -> _Index:
        """The person's memory matrix, brought up to ``version``: rows added since the
        cached copy are appended; a deletion anywhere means a full reload."""
        key = (persona_id, user_id)
        idx = self._indexes.get(key)
        if idx is not None and (version is None or idx.version == version):
            return idx
        if idx is None and version == 0:
            return _EMPTY  # never given a memory: nothing to load
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            idx = self._indexes.get(key)
            if idx is not None and (version is None or idx.version == version):
                return idx
            after = idx.last_id if idx is not None else 0
            v, total, ids, mat, texts, imp = await self.store.memory_matrix(persona_id, user_id, after)
            # Append only what is plainly new: each add bumps the version by one and adds
            # a row at least, and nothing went (a /forget restarts versions far ahead,
            # and SQLite may reuse a deleted row's id).
            if idx is not None and 0 < v - idx.version <= len(ids) and total == len(idx.ids) + len(ids):
                idx = idx.extended(v, ids, mat, texts, imp)
            else:
                if after:
                    v, total, ids, mat, texts, imp = await self.store.memory_matrix(persona_id, user_id)
                idx = _Index(v, ids, mat, texts, imp)
            self._indexes[key] = idx
            return idx

    async def recall(
        self, persona_id: int, user_id: int, query: np.ndarray, k: int = 5, *, version: int | None = None,
        min_similarity: float = 0.0,
    ) -> list[tuple[str, float]]:
        """The ``k`` memories closest to ``query`` (a unit vector), best first."""
        idx = await self._index(persona_id, user_id, version)
        if k <= 0 or len(idx.ids) == 0:
            return []
        sims = idx.vectors @ query
        scores = sims + 0.1 * idx.importance
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top])]
        return [(idx.texts[i], float(sims[i])) for i in top if sims[i] >= min_similarity]

    async def add(
        self, persona_id: int, user_id: int, items: list[tuple[str, float, str]], source_message_id: int | None = None
    ) -> list[str]:
        """Store (text, importance, source) memories not already known; returns the texts added."""
        if not items:
            return []
        vecs = await self.batcher.embed([t for t, _, _ in items])
        idx = await self._index(persona_id, user_id, None)
        rows = []
        for (text, importance, source), vec in zip(items, vecs):
            if len(idx.ids) and float(np.max(idx.vectors @ vec)) >= self.dedupe_similarity:
                continue
            if any(float(vec @ r[1]) >= self.dedupe_similarity for r in rows):
                continue
            rows.append((text, vec, importance, source, source_message_id))
        if not rows:
            return []
        ids, version = await self.store.add_memories(persona_id, user_id, rows)
        key = (persona_id, user_id)
        current = self._indexes.get(key)
        if current is not None and version == current.version + 1:
            # Nobody else wrote in between: append instead of reloading everything.
            self._indexes[key] = current.extended(
                version, np.asarray(ids, np.int64), np.stack([r[1] for r in rows]),
                [r[0] for r in rows], np.asarray([r[2] for r in rows], np.float32),
            )
        else:
            self._indexes.pop(key, None)
        return [r[0] for r in rows]

    def forget(self, persona_id: int, user_id: int) -> None:
        self._indexes.pop((persona_id, user_id), None)


def parse_model_memories(raw: str) -> tuple[str | None, list[str]]:
    """Read the model's {"summary": ..., "facts": [...]} answer, tolerating code fences and chatter."""
    m = re.search(r"\{.*\}", raw, flags=re.S)
    if not m:
        return None, []
    try:
        data = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None, []
    summary = data.get("summary") if isinstance(data.get("summary"), str) else None
    facts = [f.strip() for f in data.get("facts", []) if isinstance(f, str) and f.strip()][:8]
    return (summary.strip() or None) if summary else None, facts
