#!/usr/bin/env python
"""What one chat turn costs, apart from the model: the bookkeeping benchmark.

    .venv/bin/python bench/turn.py [--db sqlite|postgresql|both] [--users 10000]
        [--messages 1000000] [--turns 3000] [--memories 100000] [--quick]

For SQLite (a file in a temp dir) and PostgreSQL (schema ``vchar_bench`` in the
``test`` database, dropped and recreated) it measures:

1. seeding: users with relationships with the sample persona "mira", and messages
   spread over their conversations, bulk inserted (Core executemany / COPY);
2. per-turn cost of ``PersonaManager.handle`` with an instant text generator:
   (a) "bookkeeping" with embeddings precomputed (real MiniLM vectors, looked up),
   (b) "with embedding" running MiniLM live on unique texts;
   sequential p50/p99 latency and throughput with concurrent tasks in one process;
3. memory recall latency with many memories for one person, and spread over many;
4. peak resident memory of ``vchar chat`` (the ``vchar run`` code path without
   platform tokens) on the lite backends.

``main(argv)`` returns the figures as a dict, so a test can run ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import create_engine as sa_create_engine  # noqa: E402
from sqlalchemy import delete, func, select, update  # noqa: E402

from db.migrate import upgrade  # noqa: E402
from db.store import MEM, C, M, R, Store, U  # noqa: E402
from generators.text.base import TextRequest, estimate_tokens  # noqa: E402
from persona.manager import ManagerConfig, PersonaManager  # noqa: E402
from persona.memory import MemoryStore, extract_facts  # noqa: E402
from persona.prompt import trim_for_model  # noqa: E402
from persona.registry import SAMPLES, PersonaRegistry  # noqa: E402
from persona.types import IncomingMessage  # noqa: E402

PG_BASE = os.environ.get("VCHAR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCHEMA = "vchar_bench"
PERSONA = "mira"
PLATFORM = "telegram"
DIM = 384

TARGET_P99_MS = 15.0
TARGET_TPS = 200.0
TARGET_RECALL_MS = 20.0
TARGET_RSS_MB = 1024.0

log = logging.getLogger("bench.turn")

# -- realistic chat lines -------------------------------------------------------------

OPENERS = ["", "", "hey,", "so", "honestly", "lol", "ok so", "omg", "hmm,", "btw", "guess what,", "ugh", "haha"]
PLAIN = [
    "how was your day", "I just got home from work", "it's raining again here", "did you film anything tonight",
    "I can't sleep", "what are you up to", "that sounds amazing", "I made pasta for dinner",
    "my boss was in a terrible mood today", "do you ever get tired of the night market", "I saw a cat on my way home",
    "the bus was late again", "tell me something nice", "I finally finished that book", "I went for a run this morning",
    "the sky is so clear tonight", "I'm kind of stressed about exams", "we should go stargazing sometime",
    "that made me laugh way too hard", "I tried making dumplings and they fell apart", "my coffee went cold",
    "I have a meeting tomorrow at nine", "what's your favourite dumpling filling", "I watched your latest video",
    "the neighbours are being loud again", "I'm thinking about learning guitar", "it's my day off finally",
    "I spent all afternoon cleaning", "I need a vacation", "do you think it'll rain tomorrow",
    "I found a new ramen place", "my phone almost died", "I'm so hungry right now", "I'm heading to bed soon",
    "the traffic was horrible", "I can't decide what to eat", "thanks for listening to me", "you always cheer me up",
    "I saw the moon through the clouds", "what music are you listening to",
]
THINGS = [
    "spicy ramen", "jazz", "old sci-fi movies", "rainy mornings", "board games", "hiking", "indie games", "cats",
    "bubble tea", "horror films", "sushi", "gardening", "techno", "crosswords", "skateboarding", "karaoke",
    "astronomy", "mango sticky rice", "thunderstorms", "anime", "long walks by the sea", "vinyl records",
]
PLACES = ["Lisbon", "Osaka", "Berlin", "Toronto", "Manila", "Krakow", "Austin", "Nairobi", "Melbourne", "Porto", "Seoul"]
JOBS = ["nurse", "software developer", "teacher", "barista", "graphic designer", "chef", "student", "photographer"]
FOODS = ["pizza", "pho", "tacos", "dumplings", "curry", "lasagna", "pierogi", "bibimbap"]
PETS = ["dog called Biscuit", "grumpy old cat", "parrot", "hamster named Noodle", "tiny turtle"]
FACTS = [
    ("I love {t}", THINGS), ("I really like {t}", THINGS), ("I hate {t}", THINGS), ("I enjoy {t}", THINGS),
    ("I live in {t}", PLACES), ("I'm from {t}", PLACES), ("I work as a {t}", JOBS),
    ("my favourite food is {t}", FOODS), ("I have a {t}", PETS), ("I'm really into {t}", THINGS),
]
TAILS = ["", "", "", "haha", "what about you?", ":)", "anyway", "how's your day going?", "lol", "...", "you know?"]
REPLIES = [
    "Oh that sounds lovely, tell me more!", "Haha, same here honestly.", "Ugh, I'm sorry, that sounds rough.",
    "Wait, really? That's amazing!", "I'm at the night market right now, it smells like grilled squid.",
    "You should rest, seriously. I'll be here.", "Okay now I'm hungry too.", "The clouds finally cleared here!",
]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena", "Mo", "Nora", "Omar", "Pia"]


def user_name(i: int) -> str:
    return NAMES[i % len(NAMES)]


def chat_line(rng: random.Random, fact_rate: float = 0.3) -> str:
    def body() -> str:
        if rng.random() < fact_rate:
            tpl, pool = rng.choice(FACTS)
            return tpl.format(t=rng.choice(pool))
        return rng.choice(PLAIN)

    parts = [rng.choice(OPENERS), body()]
    if rng.random() < 0.4:
        parts[-1] += rng.choice([".", "!", ","])
        parts.append(body())
    end = rng.choice(["", "", ".", "!", "?"])
    parts[-1] += end
    tail = rng.choice(TAILS)
    if tail:
        parts.append(tail)
    return " ".join(p for p in parts if p)


def unique_lines(rng: random.Random, n: int, avoid: set[str] | None = None) -> list[str]:
    """``n`` distinct chat lines (a counter suffix only when the combinations run out)."""
    avoid = avoid if avoid is not None else set()
    out: list[str] = []
    tries = 0
    while len(out) < n:
        line = chat_line(rng)
        tries += 1
        if line in avoid:
            if tries < n * 20:
                continue
            line = f"{line} ({tries})"
        avoid.add(line)
        out.append(line)
    return out


# -- an instant text generator and a precomputed embedder ------------------------------


class InstantText:
    """A TextGenerator that answers at once: the turn costs only bookkeeping.

    Its name is not "lite", so the manager also runs the every-few-turns model memory
    pass (as it would with a real model), which asks this generator for a summary."""

    name = "instant"

    def __init__(self, reply: str = "Haha, tell me more about that!"):
        self.reply = reply
        self.calls = 0

    async def generate(self, request: TextRequest) -> str:
        self.calls += 1
        return self.reply

    async def stream(self, request: TextRequest):
        yield self.reply

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        pass


class PrecomputedEmbedder:
    """Real MiniLM vectors computed before the timed loop, looked up by text."""

    def __init__(self, table: dict[str, np.ndarray], fallback):
        self.table = table
        self.fallback = fallback
        self.dim = fallback.dim
        self.misses = 0

    def embed(self, texts):
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing = []
        for i, t in enumerate(texts):
            v = self.table.get(t)
            if v is None:
                missing.append(i)
            else:
                out[i] = v
        if missing:
            self.misses += len(missing)
            vecs = self.fallback.embed([texts[i] for i in missing])
            for i, v in zip(missing, vecs):
                out[i] = v
                self.table[texts[i]] = v
        return out


def embed_keys(text: str, user_name: str, cfg: ManagerConfig) -> list[str]:
    """The texts the manager will embed for this message: the query and any facts in it."""
    said = trim_for_model(text, cfg.max_message_chars)[:2000]
    facts = extract_facts(text[: cfg.max_message_chars], user_name if user_name != "friend" else "")
    return [said, *(f.text for f in facts)]


def precompute(embedder, keys: list[str], batch: int = 256) -> dict[str, np.ndarray]:
    keys = list(dict.fromkeys(keys))
    table: dict[str, np.ndarray] = {}
    for i in range(0, len(keys), batch):
        chunk = keys[i : i + batch]
        for k, v in zip(chunk, embedder.embed(chunk)):
            table[k] = np.array(v, dtype=np.float32)
    return table


# -- timing helpers ---------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Timers:
    """Wraps methods on an instance to add up their time (calls overlap under concurrency)."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.enabled = True

    def wrap(self, obj: Any, name: str, label: str) -> None:
        fn = getattr(obj, name)
        timers = self
        if asyncio.iscoroutinefunction(fn):

            async def wrapped(*a, **k):
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    if timers.enabled:
                        timers.total[label] += time.perf_counter() - t
                        timers.count[label] += 1
        else:

            def wrapped(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    if timers.enabled:
                        timers.total[label] += time.perf_counter() - t
                        timers.count[label] += 1

        setattr(obj, name, wrapped)


# -- databases ------------------------------------------------------------------------------


def pg_plain() -> str:
    return PG_BASE.replace("postgresql+psycopg://", "postgresql://")


def prepare_db(kind: str, tmp: Path) -> str:
    """A fresh, migrated database; returns its async URL."""
    if kind == "sqlite":
        path = tmp / "bench.db"
        for p in (path, path.with_suffix(".db-wal"), path.with_suffix(".db-shm")):
            p.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        import psycopg

        with psycopg.connect(pg_plain(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
        url = f"{PG_BASE}?options=-csearch_path%3D{SCHEMA}"
    upgrade(url)
    return url


def sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite://", "sqlite://")


def pg_connect():
    import psycopg

    return psycopg.connect(pg_plain(), options=f"-csearch_path={SCHEMA}")


def _copy(conn, table: str, cols: list[str], rows) -> None:
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def seed(kind: str, url: str, persona_id: int, n_users: int, n_messages: int, rng: np.random.Generator) -> dict:
    """Users, relationships, conversations and messages, bulk inserted. Returns timings."""
    t0 = time.perf_counter()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(days=180)
    pyrng = random.Random(int(rng.integers(1 << 30)))

    # Pairs (a user message and its reply) per conversation: at least one each, heavy-tailed.
    n_pairs = max(n_users, n_messages // 2)
    w = rng.lognormal(0.0, 1.0, n_users)
    per_conv = 1 + rng.multinomial(n_pairs - n_users, w / w.sum())
    conv_of_pair = np.repeat(np.arange(n_users), per_conv)
    rng.shuffle(conv_of_pair)
    order = np.argsort(conv_of_pair, kind="stable")
    seq = np.empty(n_pairs, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(per_conv)[:-1]])
    seq[order] = np.arange(n_pairs) - np.repeat(starts, per_conv)  # k-th pair within its conversation
    step = (now - start).total_seconds() / n_pairs
    first_pair = np.full(n_users, -1, dtype=np.int64)
    last_pair = np.zeros(n_users, dtype=np.int64)
    first_pair[conv_of_pair[order[starts]]] = order[starts]
    last_pair[conv_of_pair[order[starts + per_conv - 1]]] = order[starts + per_conv - 1]

    def when(j: int) -> datetime:
        return start + timedelta(seconds=float(j) * step)

    user_lines = unique_lines(pyrng, 400, set())
    names = [user_name(i) for i in range(n_users)]
    tg = [str(7_000_000_000 + i) for i in range(n_users)]
    users = [(i + 1, PLATFORM, tg[i], names[i], start) for i in range(n_users)]
    convs = [(i + 1, persona_id, PLATFORM, tg[i], "private", None, when(first_pair[i]), when(last_pair[i]) + timedelta(seconds=2))
             for i in range(n_users)]
    rels = [(i + 1, persona_id, i + 1, when(first_pair[i]), when(last_pair[i]), int(per_conv[i]),
             min(0.01 * int(per_conv[i]), 1.0), "[]", "{}", False, 0, int(per_conv[i]) % 4) for i in range(n_users)]

    def message_rows():
        for j in range(n_pairs):
            c = int(conv_of_pair[j])
            k = int(seq[j])
            t = when(j)
            yield (2 * j + 1, c + 1, c + 1, "user", user_lines[(j * 7 + c) % len(user_lines)], str(2 * k + 1), None, "[]", "answered", None, t)
            yield (2 * j + 2, c + 1, None, "assistant", REPLIES[j % len(REPLIES)], str(2 * k + 2), 2 * j + 1, "[]", "delivered", None,
                   t + timedelta(seconds=2))

    ucols = ["id", "platform", "platform_user_id", "display_name", "created_at"]
    ccols = ["id", "persona_id", "platform", "platform_chat_id", "kind", "title", "created_at", "last_message_at"]
    rcols = ["id", "persona_id", "user_id", "first_seen", "last_seen", "message_count", "affinity", "facts", "consent",
             "blocked", "memory_version", "turns_since_memory"]
    mcols = ["id", "conversation_id", "user_id", "role", "text", "platform_message_id", "reply_to_id", "media", "status",
             "error", "created_at"]
    t_people = t_msgs = 0.0
    if kind == "postgresql":
        with pg_connect() as conn:
            a = time.perf_counter()
            _copy(conn, "platform_users", ucols, users)
            _copy(conn, "conversations", ccols, convs)
            _copy(conn, "relationships", rcols, rels)
            conn.commit()
            t_people = time.perf_counter() - a
            a = time.perf_counter()
            _copy(conn, "messages", mcols, message_rows())
            conn.commit()
            t_msgs = time.perf_counter() - a
            for table in ("platform_users", "conversations", "relationships", "messages"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            conn.commit()
            a = time.perf_counter()
            conn.autocommit = True
            conn.execute("ANALYZE")
            t_analyze = time.perf_counter() - a
    else:
        eng = sa_create_engine(sync_url(url))
        with eng.begin() as conn:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            a = time.perf_counter()
            for table, cols, rows in ((U, ucols, users), (C, ccols, convs), (R, rcols, rels)):
                for chunk in _chunks(rows, 10_000):
                    conn.execute(table.insert(), [dict(zip(cols, r)) for r in chunk])
            t_people = time.perf_counter() - a
        # JSON columns take Python values through Core.
        with eng.begin() as conn:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            a = time.perf_counter()
            buf: list[dict] = []
            for r in message_rows():
                d = dict(zip(mcols, r))
                d["media"] = []
                buf.append(d)
                if len(buf) >= 10_000:
                    conn.execute(M.insert(), buf)
                    buf = []
            if buf:
                conn.execute(M.insert(), buf)
            t_msgs = time.perf_counter() - a
        eng.dispose()
        t_analyze = 0.0
    return {
        "seed_people_s": t_people,
        "seed_messages_s": t_msgs,
        "seed_total_s": time.perf_counter() - t0,
        "analyze_s": t_analyze,
        "users": n_users,
        "messages": 2 * n_pairs,
        "user_names": names,
        "chat_ids": tg,
        "per_conv": per_conv,
    }


# -- the turn benchmark ----------------------------------------------------------------------


def registry() -> PersonaRegistry:
    return PersonaRegistry([SAMPLES])


async def register_persona(url: str, embedder) -> int:
    """Registers the sample persona the way the service does: through manager.start()."""
    store = Store.from_url(url)
    manager = PersonaManager(store, registry(), InstantText(), embedder)
    try:
        await manager.start()
        pid = await store.persona_id(PERSONA)
        assert pid is not None
        return pid
    finally:
        await manager.close()
        await store.close()


async def count_replies(store: Store) -> int:
    async with store.engine.connect() as conn:
        return (
            await conn.execute(select(func.count()).select_from(M).where(M.c.role == "assistant"))
        ).scalar_one()


def make_messages(plan: list[tuple[int, str]], seeded: dict, tag: str) -> list[IncomingMessage]:
    return [
        IncomingMessage(
            platform=PLATFORM, chat_id=seeded["chat_ids"][u], user_id=seeded["chat_ids"][u], user_name=seeded["user_names"][u],
            text=text, message_id=f"bench-{tag}-{i}", persona=PERSONA, chat_kind="private",
        )
        for i, (u, text) in enumerate(plan)
    ]


async def run_turns(url: str, embedder, seq_msgs: list[IncomingMessage], conc_msgs: list[IncomingMessage],
                    concurrency: int, instrument: bool = False) -> dict:
    """Sequential latencies, then concurrent throughput, on a fresh Store (cold caches)."""
    store = Store.from_url(url)
    text = InstantText()
    manager = PersonaManager(store, registry(), text, embedder)
    timers = Timers()
    if instrument:
        for name in ("store_incoming", "history", "store_reply", "memory_matrix", "add_memories"):
            timers.wrap(store, name, f"store.{name}")
        timers.wrap(manager.memory, "recall", "memory.recall")
        timers.wrap(embedder, "embed", "embedder.embed")
    res: dict[str, Any] = {}
    try:
        a = time.perf_counter()
        await manager.start()
        res["start_ms"] = (time.perf_counter() - a) * 1000
        before = await count_replies(store)
        lost = 0
        lat_first: list[float] = []
        lat_repeat: list[float] = []
        seen: set[str] = set()
        # Sequential: one turn at a time; background memory work overlaps the next turns.
        for msg in seq_msgs:
            a = time.perf_counter()
            reply = await manager.handle(msg)
            dt = (time.perf_counter() - a) * 1000
            (lat_repeat if msg.user_id in seen else lat_first).append(dt)
            seen.add(msg.user_id)
            if reply is None or reply.fallback:
                lost += 1
        a = time.perf_counter()
        await manager.drain()
        res["seq_drain_ms"] = (time.perf_counter() - a) * 1000
        timers.enabled = False
        lat = lat_first + lat_repeat
        res.update(
            seq_turns=len(seq_msgs), seq_p50=pct(lat, 50), seq_p99=pct(lat, 99), seq_mean=float(np.mean(lat)) if lat else 0.0,
            first_n=len(lat_first), first_p50=pct(lat_first, 50), first_p99=pct(lat_first, 99),
            repeat_n=len(lat_repeat), repeat_p50=pct(lat_repeat, 50), repeat_p99=pct(lat_repeat, 99),
            breakdown={k: (timers.count[k], timers.total[k]) for k in timers.total},
        )
        # Concurrent: N tasks pulling turns from one list, background work drained inside the timing.
        it = iter(conc_msgs)
        conc_lat: list[float] = []

        async def worker():
            nonlocal lost
            for msg in it:
                b = time.perf_counter()
                reply = await manager.handle(msg)
                conc_lat.append((time.perf_counter() - b) * 1000)
                if reply is None or reply.fallback:
                    lost += 1

        a = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await manager.drain()
        wall = time.perf_counter() - a
        after = await count_replies(store)
        res.update(
            conc_turns=len(conc_msgs), concurrency=concurrency, conc_wall_s=wall,
            tps=len(conc_msgs) / wall if wall > 0 else float("inf"),
            conc_p50=pct(conc_lat, 50), conc_p99=pct(conc_lat, 99),
            turns_driven=len(seq_msgs) + len(conc_msgs), replies_added=after - before, lost=lost,
            model_memory_calls=text.calls - len(seq_msgs) - len(conc_msgs),
        )
    finally:
        await manager.close()
        await store.close()
    return res


# -- the recall benchmark -----------------------------------------------------------------------


def _unit_rows(rng: np.random.Generator, n: int) -> list[bytes]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [row.tobytes() for row in v]


def insert_memories(kind: str, url: str, persona_id: int, owners: np.ndarray, rng: np.random.Generator) -> float:
    """Replace the memories table with one row per entry of ``owners`` (user ids); bump their versions."""
    pyrng = random.Random(int(rng.integers(1 << 30)))
    now = datetime.now(timezone.utc)
    blobs = _unit_rows(rng, len(owners))
    texts = [f"{pyrng.choice(NAMES)} {tpl.split(' ', 1)[1].replace('{t}', pyrng.choice(pool))}."
             .replace(" love ", " loves ").replace(" like ", " likes ").replace(" hate ", " hates ")
             for tpl, pool in (pyrng.choice(FACTS) for _ in range(len(owners)))]
    cols = ["persona_id", "user_id", "text", "embedding", "importance", "source", "source_message_id", "created_at"]
    rows = [(persona_id, int(u), texts[i], blobs[i], round(pyrng.uniform(0.4, 1.0), 2), "fact", None, now)
            for i, u in enumerate(owners)]
    users = sorted({int(u) for u in owners})
    a = time.perf_counter()
    if kind == "postgresql":
        with pg_connect() as conn:
            conn.execute("DELETE FROM memories")
            _copy(conn, "memories", cols, rows)
            conn.execute("UPDATE relationships SET memory_version = memory_version + 1 WHERE user_id = ANY(%s)", (users,))
            conn.commit()
            conn.autocommit = True
            conn.execute("ANALYZE memories")
    else:
        eng = sa_create_engine(sync_url(url))
        with eng.begin() as conn:
            conn.execute(delete(MEM))
            for chunk in _chunks(rows, 10_000):
                conn.execute(MEM.insert(), [dict(zip(cols, r)) for r in chunk])
            for chunk in _chunks(users, 500):
                conn.execute(update(R).where(R.c.user_id.in_(chunk)).values(memory_version=R.c.memory_version + 1))
        eng.dispose()
    return time.perf_counter() - a


async def _versions(store: Store, persona_id: int, users: list[int]) -> dict[int, int]:
    out = {}
    async with store.engine.connect() as conn:
        for chunk in _chunks(users, 500):
            rows = (await conn.execute(select(R.c.user_id, R.c.memory_version).where(R.c.persona_id == persona_id, R.c.user_id.in_(chunk)))).all()
            out.update({u: v for u, v in rows})
    return out


async def time_recall(url: str, persona_id: int, users: list[int], queries: np.ndarray, embedder) -> dict:
    """Cold (first, loading from the database) and warm recall latencies in ms."""
    store = Store.from_url(url)
    mem = MemoryStore(store, embedder)
    try:
        versions = await _versions(store, persona_id, users)
        cold, warm = [], []
        for i, u in enumerate(users):
            a = time.perf_counter()
            got = await mem.recall(persona_id, u, queries[i % len(queries)], k=5, version=versions[u])
            cold.append((time.perf_counter() - a) * 1000)
            assert got, "recall found nothing"
        for i in range(len(queries)):
            u = users[i % len(users)]
            a = time.perf_counter()
            await mem.recall(persona_id, u, queries[i], k=5, version=versions[u])
            warm.append((time.perf_counter() - a) * 1000)
    finally:
        await store.close()
    return {"cold_p50": pct(cold, 50), "cold_max": max(cold), "cold_n": len(cold),
            "warm_p50": pct(warm, 50), "warm_p99": pct(warm, 99), "warm_n": len(warm)}


def bench_recall(kind: str, url: str, persona_id: int, n_mem: int, n_users: int, embedder, rng) -> dict:
    queries = np.stack([np.frombuffer(b, dtype=np.float32) for b in _unit_rows(rng, 200)])
    one = np.full(n_mem, 1, dtype=np.int64)
    res: dict[str, Any] = {"one_insert_s": insert_memories(kind, url, persona_id, one, rng)}
    res["one"] = asyncio.run(time_recall(url, persona_id, [1], queries, embedder))
    spread_users = max(1, min(1000, n_users))
    owners = np.repeat(np.arange(1, spread_users + 1), n_mem // spread_users)
    rng.shuffle(owners)
    res["spread_users"] = spread_users
    res["spread_per_user"] = n_mem // spread_users
    res["spread_insert_s"] = insert_memories(kind, url, persona_id, owners, rng)
    users = list(range(1, spread_users + 1))
    random.Random(7).shuffle(users)
    res["spread"] = asyncio.run(time_recall(url, persona_id, users[:200], queries, embedder))
    return res


# -- peak resident memory of the service ---------------------------------------------------------


def bench_rss(lines: list[str], timeout: float = 300.0) -> dict:
    exe = ROOT / ".venv" / "bin" / "vchar"
    if not exe.exists():
        found = shutil.which("vchar")
        if found is None:
            return {"error": "vchar executable not found"}
        exe = Path(found)
    tmp = Path(tempfile.mkdtemp(prefix="vchar-rss-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCHAR_")}
    env.update(VCHAR_DATA_DIR=str(tmp / "data"), VCHAR_CHAT_USER="bench")
    a = time.perf_counter()
    p = subprocess.Popen([str(exe), "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=tmp, env=env)
    out: dict[str, bytes] = {}

    def feed():
        try:
            p.stdin.write(("\n".join(lines) + "\n").encode())
            p.stdin.close()
        except BrokenPipeError:
            pass

    def drain(name, f):
        out[name] = f.read()

    threads = [threading.Thread(target=feed), threading.Thread(target=drain, args=("out", p.stdout)),
               threading.Thread(target=drain, args=("err", p.stderr))]
    # The process's own high-water mark (VmHWM). getrusage/wait4's ru_maxrss is not used:
    # after fork+exec Linux reports at least the parent's size at the fork.
    hwm_kb = [0]
    done = threading.Event()

    def poll():
        path = f"/proc/{p.pid}/status"
        while not done.is_set():
            try:
                with open(path) as f:
                    for ln in f:
                        if ln.startswith("VmHWM:"):
                            hwm_kb[0] = max(hwm_kb[0], int(ln.split()[1]))
                            break
            except (OSError, ValueError):
                pass
            done.wait(0.01)

    threads.append(threading.Thread(target=poll, daemon=True))
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        # Wait without reaping first, so /proc/<pid> stays readable to the very end.
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        done.set()
        threads[-1].join()
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
        done.set()
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    shutil.rmtree(tmp, ignore_errors=True)
    replies = [ln for ln in out.get("out", b"").decode(errors="replace").splitlines() if ln.strip()]
    res = {"rss_mb": hwm_kb[0] / 1024, "ru_maxrss_mb": usage.ru_maxrss / 1024, "rc": p.returncode, "lines": len(lines), "replies": len(replies),
           "wall_s": time.perf_counter() - a}
    if p.returncode != 0:
        res["stderr_tail"] = out.get("err", b"").decode(errors="replace")[-2000:]
    return res


# -- the whole run --------------------------------------------------------------------------------


def bench_db(kind: str, args, tmp: Path, emb_table: dict, real_embedder, plans: dict) -> dict:
    rng = np.random.default_rng(12345)
    r: dict[str, Any] = {}
    print(f"\n=== {kind} ===", flush=True)
    url = prepare_db(kind, tmp)
    pre = PrecomputedEmbedder(dict(emb_table), real_embedder)
    pid = asyncio.run(register_persona(url, pre))
    seeded = seed(kind, url, pid, args.users, args.messages, rng)
    r["seed"] = {k: v for k, v in seeded.items() if k not in ("user_names", "chat_ids", "per_conv")}
    print(f"seeded {seeded['users']:,} users/relationships/conversations in {seeded['seed_people_s']:.1f} s, "
          f"{seeded['messages']:,} messages in {seeded['seed_messages_s']:.1f} s "
          f"(total {seeded['seed_total_s']:.1f} s{', ANALYZE %.1f s' % seeded['analyze_s'] if kind == 'postgresql' else ''})",
          flush=True)

    seq = make_messages(plans["seq"], seeded, f"{kind}-a-seq")
    conc = make_messages(plans["conc"], seeded, f"{kind}-a-conc")
    a = asyncio.run(run_turns(url, pre, seq, conc, args.concurrency, instrument=True))
    a["embed_misses"] = pre.misses
    r["bookkeeping"] = a
    print(f"(a) bookkeeping: p50 {a['seq_p50']:.2f} ms, p99 {a['seq_p99']:.2f} ms sequential; "
          f"{a['tps']:.0f} turns/s with {a['concurrency']} tasks; lost {a['lost']}", flush=True)

    # (b) the real embedder, live, on texts it has never seen (its LRU cache cannot help).
    live_rng = random.Random(f"live-{kind}")
    used = set(emb_table)
    texts = unique_lines(live_rng, 2 * args.embed_turns, used)
    users = [live_rng.randrange(args.users) for _ in texts]
    plan = list(zip(users, texts))
    bseq = make_messages(plan[: args.embed_turns], seeded, f"{kind}-b-seq")
    bconc = make_messages(plan[args.embed_turns :], seeded, f"{kind}-b-conc")
    b = asyncio.run(run_turns(url, real_embedder, bseq, bconc, args.concurrency))
    r["with_embedding"] = b
    print(f"(b) with embedding: p50 {b['seq_p50']:.2f} ms, p99 {b['seq_p99']:.2f} ms sequential; "
          f"{b['tps']:.0f} turns/s with {b['concurrency']} tasks; lost {b['lost']}", flush=True)

    r["turns_driven"] = a["turns_driven"] + b["turns_driven"]
    r["replies_added"] = a["replies_added"] + b["replies_added"]
    r["lost"] = a["lost"] + b["lost"]

    rec = bench_recall(kind, url, pid, args.memories, args.users, real_embedder, rng)
    r["recall"] = rec
    print(f"recall, {args.memories:,} memories for one person: cold {rec['one']['cold_p50']:.1f} ms, "
          f"warm p50 {rec['one']['warm_p50']:.2f} / p99 {rec['one']['warm_p99']:.2f} ms", flush=True)
    print(f"recall, {args.memories:,} memories over {rec['spread_users']:,} people: cold p50 {rec['spread']['cold_p50']:.2f} ms, "
          f"warm p50 {rec['spread']['warm_p50']:.2f} / p99 {rec['spread']['warm_p99']:.2f} ms", flush=True)
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(pg_plain(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    return r


def _ok(value: float, target: float, higher_is_better: bool = False) -> str:
    if value != value:  # nan
        return "n/a"
    good = value >= target if higher_is_better else value <= target
    return "ok" if good else "MISS"


def print_table(results: dict, args) -> None:
    kinds = [k for k in ("sqlite", "postgresql") if k in results and isinstance(results[k], dict)]
    rows: list[tuple[str, list[str], str]] = []

    def row(label, fn, target="", check=None):
        vals = []
        for k in kinds:
            try:
                v = fn(results[k])
                vals.append(v if isinstance(v, str) else f"{v:,.2f}")
                if check is not None and not isinstance(v, str):
                    vals[-1] += f" {check(v)}"
            except (KeyError, TypeError):
                vals.append("-")
        rows.append((label, vals, target))

    row("seed: users+rels+convs (s)", lambda r: r["seed"]["seed_people_s"])
    row("seed: messages (s)", lambda r: r["seed"]["seed_messages_s"])
    row("seed: messages/s", lambda r: r["seed"]["messages"] / max(r["seed"]["seed_messages_s"], 1e-9))
    row("manager.start() on seeded db (ms)", lambda r: r["bookkeeping"]["start_ms"])
    ta, tb = "bookkeeping", "with_embedding"
    row("(a) bookkeeping p50 (ms)", lambda r: r[ta]["seq_p50"])
    row("(a) bookkeeping p99 (ms)", lambda r: r[ta]["seq_p99"], f"<= {TARGET_P99_MS:g} (sqlite)",
        lambda v: _ok(v, TARGET_P99_MS))
    row("(a)   first touch of a user p50/p99", lambda r: f"{r[ta]['first_p50']:.2f}/{r[ta]['first_p99']:.2f} (n={r[ta]['first_n']})")
    row("(a)   repeat user p50/p99", lambda r: f"{r[ta]['repeat_p50']:.2f}/{r[ta]['repeat_p99']:.2f} (n={r[ta]['repeat_n']})")
    row(f"(a) throughput, {args.concurrency} tasks (turns/s)", lambda r: r[ta]["tps"], f">= {TARGET_TPS:g} (sqlite)",
        lambda v: _ok(v, TARGET_TPS, True))
    row("(a)   latency under load p50/p99", lambda r: f"{r[ta]['conc_p50']:.1f}/{r[ta]['conc_p99']:.1f}")
    row("(b) with embedding p50 (ms)", lambda r: r[tb]["seq_p50"])
    row("(b) with embedding p99 (ms)", lambda r: r[tb]["seq_p99"])
    row(f"(b) throughput, {args.concurrency} tasks (turns/s)", lambda r: r[tb]["tps"])
    row("turns driven / replies added / lost", lambda r: f"{r['turns_driven']}/{r['replies_added']}/{r['lost']}")
    row(f"recall 1 person x {args.memories:,}: cold (ms)", lambda r: r["recall"]["one"]["cold_p50"])
    row("recall 1 person: warm p50 (ms)", lambda r: r["recall"]["one"]["warm_p50"])
    row("recall 1 person: warm p99 (ms)", lambda r: r["recall"]["one"]["warm_p99"], f"<= {TARGET_RECALL_MS:g}",
        lambda v: _ok(v, TARGET_RECALL_MS))
    row("recall per person (spread): cold p50/max", lambda r: f"{r['recall']['spread']['cold_p50']:.2f}/{r['recall']['spread']['cold_max']:.2f}")
    row("recall per person (spread): warm p99 (ms)", lambda r: r["recall"]["spread"]["warm_p99"], f"<= {TARGET_RECALL_MS:g}",
        lambda v: _ok(v, TARGET_RECALL_MS))

    width = max(len(r[0]) for r in rows) + 2
    colw = 26
    print("\n" + "=" * (width + colw * len(kinds) + 20))
    print(f"bench/turn.py: {args.users:,} users, {args.messages:,} messages, {args.turns:,}+{args.turns:,} turns, "
          f"{args.embed_turns}+{args.embed_turns} live-embedding turns, {args.memories:,} memories")
    la = results.get("loadavg")
    if la:
        print(f"host: {os.cpu_count()} CPUs, 1-min load average {la[0][0]:.1f} at start, {la[1][0]:.1f} at end "
              "(figures are inflated when other work shares the CPUs)")
    print("-" * (width + colw * len(kinds) + 20))
    print("metric".ljust(width) + "".join(k.rjust(colw) for k in kinds) + "   target")
    for label, vals, target in rows:
        print(label.ljust(width) + "".join(v.rjust(colw) for v in vals) + ("   " + target if target else ""))
    rss = results.get("rss")
    if rss:
        if "rss_mb" in rss:
            print("-" * (width + colw * len(kinds) + 20))
            print(f"{'peak RSS of `vchar chat` (lite, SQLite) (MB)'.ljust(width)}{rss['rss_mb']:>{colw},.0f} "
                  f"{_ok(rss['rss_mb'], TARGET_RSS_MB)}   target <= {TARGET_RSS_MB:g} MB "
                  f"({rss['replies']}/{rss['lines']} lines answered in {rss['wall_s']:.1f} s, rc {rss['rc']})")
            if rss.get("stderr_tail"):
                print(rss["stderr_tail"])
        else:
            print(f"peak RSS: {rss.get('error')}")
    print("=" * (width + colw * len(kinds) + 20))
    for k in kinds:
        bd = results[k]["bookkeeping"].get("breakdown") or {}
        n = results[k]["bookkeeping"]["seq_turns"] or 1
        if bd:
            print(f"\n{k}: where a sequential (a) turn's time goes (calls, mean ms per call, ms per turn):")
            for label, (cnt, tot) in sorted(bd.items(), key=lambda kv: -kv[1][1]):
                print(f"  {label:<28} {cnt:>7}  {tot / max(cnt, 1) * 1000:8.3f}  {tot / n * 1000:8.3f}")
        a = results[k]["bookkeeping"]
        print("  (nested: memory.recall includes store.memory_matrix; add_memories runs in\n"
              "   background tasks that overlap the following turns; history counts the model memory pass too)")
        print(f"  precomputed-embedding misses: {a.get('embed_misses', 0)}; model memory passes: {a.get('model_memory_calls', 0)}; "
              f"drain after sequential: {a.get('seq_drain_ms', 0):.1f} ms")
        rec = results[k]["recall"]
        print(f"  memories bulk insert: {rec['one_insert_s']:.1f} s (one person), {rec['spread_insert_s']:.1f} s "
              f"({rec['spread_users']} people x {rec['spread_per_user']})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--users", type=int, default=None, help="seeded users (default 10000; quick 1000)")
    ap.add_argument("--messages", type=int, default=None, help="seeded messages (default 1000000; quick 20000)")
    ap.add_argument("--turns", type=int, default=None, help="turns per phase of (a) (default 3000; quick 300)")
    ap.add_argument("--embed-turns", type=int, default=None, help="turns per phase of (b) (default 500; quick 30)")
    ap.add_argument("--memories", type=int, default=None, help="memories for the recall test (default 100000; quick 10000)")
    ap.add_argument("--concurrency", type=int, default=8, help="concurrent tasks for the throughput figure")
    ap.add_argument("--rss-lines", type=int, default=None, help="lines piped into `vchar chat` (default 50; quick 20)")
    ap.add_argument("--no-rss", action="store_true", help="skip the `vchar chat` peak memory run")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args(argv)
    defaults = dict(users=(1000, 10_000), messages=(20_000, 1_000_000), turns=(300, 3000), embed_turns=(30, 500),
                    memories=(10_000, 100_000), rss_lines=(20, 50))
    for k, (quick, full) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if args.quick else full)
    args.users = max(1, args.users)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for noisy in ("alembic", "sqlalchemy", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    from generators.embed import get_embedder

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    real = get_embedder()
    cfg = ManagerConfig()
    # One plan of (user, text) turns for both databases; texts come from a pool whose
    # embeddings (and those of the facts in them) are computed now, outside the timing.
    prng = random.Random(2024)
    pool = unique_lines(prng, min(500, max(50, args.turns // 6)))

    def pick() -> tuple[int, str]:
        # A line always comes from people of the same name, so the facts it yields
        # ("Ana loves jazz.") are few enough to embed beforehand.
        j = prng.randrange(len(pool))
        slots = max(1, (args.users - j % len(NAMES) + len(NAMES) - 1) // len(NAMES))
        u = min(args.users - 1, prng.randrange(slots) * len(NAMES) + j % len(NAMES))
        return u, pool[j]

    plans = {ph: [pick() for _ in range(args.turns)] for ph in ("seq", "conc")}
    keys = [k for plan in plans.values() for u, line in plan for k in embed_keys(line, user_name(u), cfg)]
    a = time.perf_counter()
    table = precompute(real, keys)
    print(f"precomputed {len(table):,} MiniLM embeddings in {time.perf_counter() - a:.1f} s "
          f"({(time.perf_counter() - a) / max(len(table), 1) * 1000:.1f} ms each, batched)", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vchar-bench-") as tmp:
        for kind in kinds:
            results[kind] = bench_db(kind, args, Path(tmp), table, real, plans)
    if not args.no_rss:
        lines = unique_lines(random.Random("rss"), args.rss_lines, set())
        results["rss"] = bench_rss(lines)
    results["loadavg"] = (load0, os.getloadavg())
    print_table(results, args)
    print(f"\ntotal bench time {time.perf_counter() - t0:.0f} s")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
