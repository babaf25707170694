#!/usr/bin/env python
"""Many people at once through Telegram: the adapter benchmark.

    .venv/bin/python bench/adapters.py [--people 1000] [--messages 5] [--concurrency 100]
        [--arrival-rate 0] [--think 0] [--db sqlite|postgresql] [--inject-429 3] [--quick]

Simulated people talk to the character through the local fake Bot API server
(tests/fakes/telegram_server.py), the real :class:`bots.telegram.TelegramAdapter`
(long polling with a short timeout) and the real :class:`bots.service.Service` with the
lite text backend, on SQLite (a file in a temp dir) or PostgreSQL (schema
``vchar_bench_adapters`` in the ``test`` database, dropped and recreated).

Each person (a private chat of their own) sends ``--messages`` short chat lines, some of
them facts ("I love jazz"), and waits for the bot's reply before sending the next, as
people do. At most ``--concurrency`` people are talking at once; ``--arrival-rate`` (people
per second, 0 = as soon as a slot frees up) spaces their arrival.

Measured, from the fake server's own record of each sendMessage (a hook on the server,
timestamped when the message is accepted):

* latency of each message: push into getUpdates -> the bot's sendMessage to that chat;
* messages/s over the run, and the slowest 5-second window after ramp-up;
* lost replies (no reply within ``--reply-timeout``, or never) and duplicated replies
  (more sendMessage calls to a chat than messages its person sent: private chats carry
  no reply_to_message_id, so replies are matched per chat, which is exact because each
  person waits for a reply before writing again);
* ``--inject-429`` sendMessage calls answered 429 (retry_after 1 s) mid-run: each must be
  retried (the same text to the same chat succeeds later) and none lost.

Target: >= 100 messages/s sustained, none lost, none doubled.

``--overall-rate N`` sets the adapter's overall flood limit (``VCHAR_TELEGRAM_OVERALL_RATE``;
default 30 messages/s, what Telegram asks of a bot; 0 = none), as an operator of a
self-hosted Bot API server or paid broadcasts would.

``main(argv)`` returns the figures as a dict, so a test can run ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bots.service import Service  # noqa: E402
from bots.settings import Settings  # noqa: E402
from bots.telegram import APOLOGY_TEXT, TelegramAdapter  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

PG_BASE = os.environ.get("VCHAR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCHEMA = "vchar_bench_adapters"
PERSONA = "mira"
TOKEN = "987654:BENCH-token_abcdefghijklmnopqrstuvwx"
FIRST_CHAT = 700_000_000  # private chat id == user id, as on Telegram

TARGET_MPS = 100.0

log = logging.getLogger("bench.adapters")

# -- what people say --------------------------------------------------------------------------

OPENERS = ["", "", "", "hey,", "so", "honestly", "lol", "ok so", "omg", "hmm,", "btw", "guess what,", "ugh", "haha"]
GREETINGS = ["hi!", "hey", "hello :)", "hiii", "hey Mira", "good evening", "yo", "hi there", "heyy how are you?"]
PLAIN = [
    "how was your day", "I just got home from work", "it's raining again here", "did you film anything tonight",
    "I can't sleep", "what are you up to", "that sounds amazing", "I made pasta for dinner",
    "my boss was in a terrible mood today", "do you ever get tired of the night market", "I saw a cat on my way home",
    "the bus was late again", "tell me something nice", "I finally finished that book", "I went for a run this morning",
    "the sky is so clear tonight", "I'm kind of stressed about exams", "we should go stargazing sometime",
    "that made me laugh way too hard", "I tried making dumplings and they fell apart", "my coffee went cold",
    "I have a meeting tomorrow at nine", "what's your favourite food?", "I watched your latest video",
    "the neighbours are being loud again", "I'm thinking about learning guitar", "it's my day off finally",
    "I spent all afternoon cleaning", "I need a vacation", "do you think it'll rain tomorrow",
    "I found a new ramen place", "my phone almost died", "I'm so hungry right now", "I'm heading to bed soon",
    "the traffic was horrible", "I can't decide what to eat", "thanks for listening to me", "you always cheer me up",
    "do you have any pets?", "what music are you listening to", "where do you live?", "what do you do for fun?",
]
THINGS = [
    "spicy ramen", "jazz", "old sci-fi movies", "rainy mornings", "board games", "hiking", "indie games", "cats",
    "bubble tea", "horror films", "sushi", "gardening", "techno", "crosswords", "skateboarding", "karaoke",
    "astronomy", "mango sticky rice", "thunderstorms", "anime", "long walks by the sea", "vinyl records",
]
PLACES = ["Lisbon", "Osaka", "Berlin", "Toronto", "Manila", "Krakow", "Austin", "Nairobi", "Melbourne", "Porto", "Seoul"]
JOBS = ["nurse", "software developer", "teacher", "barista", "graphic designer", "chef", "student", "photographer"]
PETS = ["dog called Biscuit", "grumpy old cat", "parrot", "hamster named Noodle", "tiny turtle"]
FACTS = [
    ("I love {t}", THINGS), ("I really like {t}", THINGS), ("I hate {t}", THINGS), ("I'm really into {t}", THINGS),
    ("I live in {t}", PLACES), ("I'm from {t}", PLACES), ("I work as a {t}", JOBS), ("I have a {t}", PETS),
]
TAILS = ["", "", "", "", "haha", "what about you?", ":)", "anyway", "lol", "...", "you know?"]
NAMES = [
    "Ana", "Ben", "Chloe", "Dev", "Elif", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena", "Mo", "Nora", "Omar",
    "Pia", "Quinn", "Rosa", "Sami", "Tao", "Uma", "Vik", "Wren", "Xu", "Yara", "Zoe",
]


def chat_line(rng: random.Random, first: bool, fact_rate: float = 0.2) -> str:
    """One short, realistic chat line; a few of them state a fact about the person."""
    if first and rng.random() < 0.5:
        return rng.choice(GREETINGS)
    if rng.random() < fact_rate:
        tpl, pool = rng.choice(FACTS)
        body = tpl.format(t=rng.choice(pool))
    else:
        body = rng.choice(PLAIN)
    parts = [rng.choice(OPENERS), body + rng.choice(["", "", ".", "!"]), rng.choice(TAILS)]
    return " ".join(p for p in parts if p)


# -- the fake server, with a timestamp hook on sendMessage -----------------------------------------


class TimedTelegramServer(FakeTelegramServer):
    """FakeTelegramServer that timestamps every accepted sendMessage per chat and wakes the
    person waiting on that chat (polling ``sent_to`` would cost O(all calls) each time)."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.replies: dict[int, list[tuple[float, str]]] = defaultdict(list)
        self.events: dict[int, asyncio.Event] = {}
        self.last_reply_at = 0.0
        self.chat_index: dict[int, dict[str, Any]] = {}

    async def _api_sendMessage(self, fields, files):
        result = await super()._api_sendMessage(fields, files)
        now = time.monotonic()
        chat = int(fields["chat_id"])
        self.replies[chat].append((now, str(fields.get("text"))))
        self.last_reply_at = now
        ev = self.events.get(chat)
        if ev is not None:
            ev.set()
        return result


# -- the run --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}"] += 1
        if len(self.samples) < 8:
            self.samples.append(f"{record.levelname} {record.name}: {record.getMessage()[:200]}")


@contextlib.contextmanager
def _pg_schema():
    import psycopg

    plain = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{SCHEMA}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


async def run(args: argparse.Namespace, db_url: str | None, data_dir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    n_people, n_msgs = args.people, args.messages
    total = n_people * n_msgs
    scripts = [[chat_line(rng, first=(j == 0)) for j in range(n_msgs)] for _ in range(n_people)]
    names = [rng.choice(NAMES) for _ in range(n_people)]

    settings_kw: dict[str, Any] = {"data_dir": data_dir, "text_backend": "lite", "default_persona": PERSONA}
    settings_kw["database_url"] = db_url or f"sqlite:///{data_dir / 'vchar.db'}"
    settings = Settings(_env_file=None, **settings_kw)

    latencies: list[float] = []
    pushed_at: list[float] = []
    pushed: Counter[int] = Counter()
    timed_out: list[tuple[int, int]] = []
    injected_at: list[int] = []
    answered = 0
    t_setup = time.perf_counter()

    async with TimedTelegramServer(token=TOKEN, username="mira_bench_bot") as tg:
        async with Service(settings) as svc:
            adapter = TelegramAdapter(tg.token, PERSONA, api_url=tg.api_url, poll_timeout=args.poll_timeout,
                                      overall_rate=30.0 if args.overall_rate is None else args.overall_rate)
            await adapter.start(svc.handle)
            setup_s = time.perf_counter() - t_setup
            print(f"service, adapter and fake server up in {setup_s:.1f} s; "
                  f"{n_people:,} people x {n_msgs} messages, concurrency {args.concurrency}, "
                  f"arrival {'as slots free' if not args.arrival_rate else f'{args.arrival_rate:g}/s'}", flush=True)

            slots = asyncio.Semaphore(args.concurrency)
            inject_marks = sorted({int(total * (k + 1) / (args.inject_429 + 1)) for k in range(args.inject_429)})
            done_people = 0

            async def person(i: int) -> None:
                nonlocal answered, done_people
                chat = FIRST_CHAT + i
                ev = tg.events.setdefault(chat, asyncio.Event())
                for j, text in enumerate(scripts[i]):
                    got_before = len(tg.replies[chat])
                    t0 = time.monotonic()
                    tg.push_message(chat, names[i], text, user_id=chat)
                    pushed[chat] += 1
                    pushed_at.append(t0)
                    deadline = t0 + args.reply_timeout
                    while len(tg.replies[chat]) <= got_before:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        ev.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(ev.wait(), left)
                    if len(tg.replies[chat]) > got_before:
                        latencies.append(tg.replies[chat][got_before][0] - t0)
                        answered += 1
                        while inject_marks and answered >= inject_marks[0]:
                            inject_marks.pop(0)
                            tg.fail_next("sendMessage", 1, status=429, retry_after=1)
                            injected_at.append(answered)
                    else:
                        timed_out.append((chat, j))
                    if args.think and j + 1 < n_msgs:
                        await asyncio.sleep(rng.expovariate(1 / args.think))
                done_people += 1

            async def slot(i: int) -> None:
                async with slots:
                    await person(i)

            async def progress() -> None:
                last = 0
                while True:
                    await asyncio.sleep(args.progress)
                    now = answered
                    print(f"  [{time.monotonic() - t_run:6.1f} s] answered {now:,}/{total:,} "
                          f"({(now - last) / args.progress:.0f}/s), people done {done_people:,}/{n_people:,}, "
                          f"timed out {len(timed_out)}", flush=True)
                    last = now

            t_run = time.monotonic()
            reporter = asyncio.create_task(progress()) if args.progress else None
            tasks = []
            for i in range(n_people):
                if args.arrival_rate:
                    delay = t_run + i / args.arrival_rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(slot(i)))
            await asyncio.gather(*tasks)
            t_end = time.monotonic()
            if reporter:
                reporter.cancel()
            # Let anything late or doubled arrive: quiet for `--settle` seconds, then stop the
            # adapter (it answers what is in flight) while the service is still up.
            while time.monotonic() - max(tg.last_reply_at, t_end) < args.settle:
                await asyncio.sleep(0.1)
            await adapter.stop()

        # -- tally ---------------------------------------------------------------------------------
        replies_total = sum(len(v) for v in tg.replies.values())
        per_chat = {chat: len(tg.replies.get(chat, ())) for chat in pushed}
        never = sum(max(0, pushed[c] - per_chat[c]) for c in pushed)
        doubled = sum(max(0, per_chat[c] - pushed[c]) for c in pushed)
        stray = sum(len(v) for c, v in tg.replies.items() if c not in pushed)
        apologies = sum(1 for v in tg.replies.values() for _, t in v if t.startswith(APOLOGY_TEXT))
        late = max(0, len(timed_out) - never)

        rejected = [c for c in tg.calls if c.method == "sendMessage" and c.status == 429]
        ok_calls = [c for c in tg.calls if c.method == "sendMessage" and c.ok]
        retried = sum(
            1 for r in rejected
            if any(c.chat_id == r.chat_id and c.text == r.text and c.at > r.at for c in ok_calls)
        )
        actions = sum(1 for c in tg.calls if c.method == "sendChatAction" and c.ok)
        redelivered = sum(1 for n in tg.deliveries.values() if n > 1)
        polls = sum(1 for c in tg.calls if c.method == "getUpdates")

    # Throughput: answered messages over the span from the first push to the last reply;
    # and the slowest 5-second window between 10% and 90% of the run (ramp excluded).
    reply_times = sorted(t for v in tg.replies.values() for t, _ in v)
    first = min(pushed_at) if pushed_at else t_run
    span = (max(reply_times) - first) if reply_times else float("nan")
    mps = len(latencies) / span if span and span > 0 else 0.0
    windows: list[float] = []
    if reply_times and span > 10:
        lo, hi = first + 0.1 * span, first + 0.9 * span
        w = 5.0
        t = lo
        while t + w <= hi:
            windows.append(sum(1 for x in reply_times if t <= x < t + w) / w)
            t += w
    lost = len(timed_out)  # not answered within the timeout (late ones included)
    return {
        "db": "postgresql" if db_url and db_url.startswith("postgresql") else "sqlite",
        "people": n_people,
        "messages_per_person": n_msgs,
        "concurrency": args.concurrency,
        "pushed": sum(pushed.values()),
        "answered": len(latencies),
        "lost": lost,
        "never_answered": never,
        "late": late,
        "duplicated": doubled,
        "stray_replies": stray,
        "apologies": apologies,
        "replies_total": replies_total,
        "p50_ms": pct(latencies, 50) * 1000,
        "p90_ms": pct(latencies, 90) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "msgs_per_s": mps,
        "min_window_mps": min(windows) if windows else None,
        "span_s": span,
        "drive_s": t_end - t_run,
        "setup_s": setup_s,
        "inject_429": args.inject_429,
        "served_429": len(rejected),
        "retried_429": retried,
        "injected_after_answers": injected_at,
        "chat_actions": actions,
        "redelivered_updates": redelivered,
        "get_updates_calls": polls,
        "overall_rate": args.overall_rate,
        "blas_threads": args.blas_threads,
    }


# -- output ---------------------------------------------------------------------------------------


def report(r: dict[str, Any], args: argparse.Namespace, warnings: _CountingHandler) -> None:
    mark = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    sustained = r["msgs_per_s"]
    rows = [
        ("messages sent (people x messages)", f"{r['pushed']:,} ({r['people']:,} x {r['messages_per_person']})", ""),
        ("answered within timeout", f"{r['answered']:,}", f"all {r['pushed']:,}  {mark(r['answered'] == r['pushed'])}"),
        ("lost replies (no reply in time)", f"{r['lost']}", f"0  {mark(r['lost'] == 0)}"),
        ("  of which never answered", f"{r['never_answered']}", ""),
        ("duplicated replies", f"{r['duplicated']}", f"0  {mark(r['duplicated'] == 0)}"),
        ("apologies (handler errors)", f"{r['apologies']}", f"0  {mark(r['apologies'] == 0)}"),
        ("throughput, sustained (messages/s)", f"{sustained:.1f}", f">= {TARGET_MPS:.0f}  {mark(sustained >= TARGET_MPS)}"),
        ("slowest 5-s window, 10-90% (messages/s)",
         "n/a" if r["min_window_mps"] is None else f"{r['min_window_mps']:.1f}", ""),
        ("latency p50 (ms)", f"{r['p50_ms']:.0f}", ""),
        ("latency p90 (ms)", f"{r['p90_ms']:.0f}", ""),
        ("latency p99 (ms)", f"{r['p99_ms']:.0f}", ""),
        ("latency max (ms)", f"{r['max_ms']:.0f}", ""),
        ("429s injected / served / retried ok",
         f"{r['inject_429']} / {r['served_429']} / {r['retried_429']}",
         f"all retried  {mark(r['served_429'] == r['inject_429'] and r['retried_429'] == r['served_429'])}"),
        ("updates handed out twice", f"{r['redelivered_updates']}", ""),
        ("typing actions / getUpdates calls", f"{r['chat_actions']:,} / {r['get_updates_calls']:,}", ""),
        ("run (first push -> last reply) (s)", f"{r['span_s']:.1f}", ""),
    ]
    width = max(len(a) for a, _, _ in rows) + 2
    colw = max(16, max(len(b) for _, b, _ in rows) + 2)
    line = "=" * (width + colw + 24)
    print("\n" + line)
    limiter = ("default (30 messages/s overall, Telegram's limit)" if r["overall_rate"] is None
               else f"VCHAR_TELEGRAM_OVERALL_RATE={r['overall_rate'] or 0} ({'no overall limit' if not r['overall_rate'] else 'messages/s'})")
    print(f"bench/adapters.py: Telegram adapter + lite backend on {r['db']}, {r['people']:,} people x "
          f"{r['messages_per_person']} messages, concurrency {r['concurrency']}, think {args.think:g} s")
    print(f"flood limiter: {limiter}")
    if args.blas_threads is not None:
        print(f"DIAGNOSTIC: NumPy BLAS capped at {args.blas_threads} thread(s) (not the shipped configuration)")
    with contextlib.suppress(OSError):
        la = os.getloadavg()
        print(f"host: {os.cpu_count()} CPUs, 1-min load average {la[0]:.1f} at the end")
    print("-" * len(line))
    print("metric".ljust(width) + "value".rjust(colw) + "   target")
    for a, b, c in rows:
        print(a.ljust(width) + b.rjust(colw) + (f"   {c}" if c else ""))
    print("-" * len(line))
    met = r["target_met"]
    print(f"TARGET (>= {TARGET_MPS:.0f} messages/s sustained, none lost, none doubled): {'MET' if met else 'MISSED'}")
    print(line)
    if warnings.counts:
        print("warnings/errors logged: " + ", ".join(f"{k} x{v}" for k, v in warnings.counts.most_common()))
        for s in warnings.samples[:4]:
            print(f"  {s}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=None, help="simulated people (default 1000; quick 100)")
    ap.add_argument("--messages", type=int, default=None, help="messages each person sends (default 5; quick 2)")
    ap.add_argument("--concurrency", type=int, default=None, help="people talking at once (default 100; quick 50)")
    ap.add_argument("--arrival-rate", type=float, default=0.0, help="people arriving per second (0: as slots free)")
    ap.add_argument("--think", type=float, default=0.0, help="mean pause (s) after a reply before the next message")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--inject-429", type=int, default=3, help="sendMessage calls answered 429 mid-run")
    ap.add_argument("--reply-timeout", type=float, default=60.0, help="seconds a person waits before a reply counts lost")
    ap.add_argument("--poll-timeout", type=float, default=1.0, help="the adapter's getUpdates long-poll timeout")
    ap.add_argument("--settle", type=float, default=1.5, help="quiet seconds awaited for late or doubled replies")
    ap.add_argument("--overall-rate", type=float, default=None,
                    help="overall flood limit in messages/s (default 30, Telegram's; 0 = none)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="DIAGNOSTIC: cap NumPy's BLAS threads (threadpoolctl) for the run; default: untouched")
    ap.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines (0: none)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="100 people x 2 messages")
    args = ap.parse_args(argv)
    args.people = args.people or (100 if args.quick else 1000)
    args.messages = args.messages or (2 if args.quick else 5)
    args.concurrency = args.concurrency or (50 if args.quick else 100)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    counter = _CountingHandler()
    root = logging.getLogger()
    root.addHandler(counter)
    t0 = time.perf_counter()
    blas = contextlib.nullcontext()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        blas = threadpool_limits(limits=args.blas_threads, user_api="blas")
    try:
        with blas, tempfile.TemporaryDirectory(prefix="vchar-bench-adapters-") as tmp:
            if args.db == "postgresql":
                with _pg_schema() as url:
                    result = asyncio.run(run(args, url, Path(tmp)))
            else:
                result = asyncio.run(run(args, None, Path(tmp)))
    finally:
        root.removeHandler(counter)
    result["target_met"] = (
        result["msgs_per_s"] >= TARGET_MPS and result["lost"] == 0 and result["duplicated"] == 0
        and result["answered"] == result["pushed"]
    )
    result["warnings"] = dict(counter.counts)
    report(result, args, counter)
    print(f"total bench time {time.perf_counter() - t0:.0f} s")
    return result


if __name__ == "__main__":
    res = main(sys.argv[1:])
    sys.exit(0 if res["lost"] == 0 and res["duplicated"] == 0 and res["answered"] == res["pushed"] else 1)
