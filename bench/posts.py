"""Scheduled posts on PostgreSQL: claim latency, lateness after the slot, and the kill test.

    .venv/bin/python bench/posts.py [--personas 100] [--posts 10000] [--window 60] [--processes 3]
        [--kill-at 0.4] [--telegram-limits] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

A fresh schema (``vchar_bench_posts_<pid>``, dropped at the end) gets ``--personas``
personas and ``--posts`` approved one-part text posts, one channel per persona, their
slots spread evenly over ``--window`` seconds starting 2 s after the service processes
are ready. The fake Telegram Bot API (tests/fakes/telegram_server.py) runs in this
process with one channel per persona. ``--processes`` service processes (this script
with ``--child``) each run the real :class:`bots.telegram.TelegramAdapter` against it and
a :class:`persona.posts.publisher.Publisher` (lease 5 s) ticking every 0.05 s. Process 0
is killed with SIGKILL at ``--kill-at`` of the window and not replaced.

Printed:
- claim latency (``PostTable.claim_due``, as a publisher awaits it) p50 / p99;
- lateness of publication (``posted_at - due_at``) p50 / p99 / max; target p99 <= 2 s
  plus the platform's own rate limits. By default the adapter's rate limiter is lifted
  (overall_rate=0, no per-channel limit) so the figure is vchar's own; the lateness that
  Telegram's limits alone would force on this schedule is computed and printed beside it.
  ``--telegram-limits`` keeps the adapter's limiter (30/s overall, 20 a minute per
  channel) instead: expect minutes of lateness, and a longer run;
- posts/s published;
- the kill test, from the fake's record of what arrived: published, published twice
  (target 0), lost (target 0: neither published nor unconfirmed, and never received),
  unconfirmed (a send of the killed process may have left: the operator decides) and
  how many of those did arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.posts import PostTable  # noqa: E402
from db.store import Store  # noqa: E402

PG_BASE = os.environ.get("VCHAR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "424242:BENCH-token_abcdefghijklmnopqrstuvwxyz"
LEASE = 5.0
TICK = 0.05
CHANNEL0 = -1002000000000  # persona i posts to CHANNEL0 - i
GROUP_RATE, GROUP_PERIOD = 20, 60.0  # Telegram's (and PTB AIORateLimiter's) per group / channel limit
UTC = timezone.utc


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def text_of(n: int, slug: str) -> str:
    return f"post {n} from {slug}: tonight's special at the night market, stall {n % 37}."


# -- a service process ----------------------------------------------------------------------------

class TimedPosts(PostTable):
    """PostTable timing each claim as the publisher awaits it."""

    def __init__(self, store):
        super().__init__(store)
        self.claims: list[tuple[float, int]] = []  # (seconds, posts claimed)
        self.steps: dict[str, list[float]] = {}  # the other calls a publish makes, timed the same way

    async def claim_due(self, *args, **kwargs):
        t0 = time.perf_counter()
        rows = await super().claim_due(*args, **kwargs)
        self.claims.append((time.perf_counter() - t0, len(rows)))
        return rows

    def _timed(name):
        async def call(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await getattr(PostTable, name)(self, *args, **kwargs)
            finally:
                self.steps.setdefault(name, []).append(time.perf_counter() - t0)
        return call

    take_over_expired = _timed("take_over_expired")
    sending = _timed("sending")
    part_sent = _timed("part_sent")
    finish = _timed("finish")
    del _timed


def _dump(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def child(url: str, api_url: str, index: int, out_dir: str, telegram_limits: bool) -> None:
    import logging

    import bots.telegram as bt
    from persona.posts.publisher import Publisher

    logging.basicConfig(level=logging.WARNING, format=f"child {index}: %(levelname)s %(name)s: %(message)s")
    if not telegram_limits:
        class _Unlimited(bt._ChatActionLimiter):  # the per-channel limit too (the adapter has no option for it)
            def __init__(self, *a, **kw):
                kw["group_max_rate"] = 0
                super().__init__(*a, **kw)

        bt._ChatActionLimiter = _Unlimited
    store = Store.from_url(url)
    posts = TimedPosts(store)
    adapter = bt.TelegramAdapter(TOKEN, None, api_url=api_url, poll_timeout=1,
                                 **({} if telegram_limits else {"overall_rate": 0}))

    async def handler(msg):
        return None

    await adapter.start(handler)
    # This bench publishes only: N processes long polling one bot token would end each
    # other's getUpdates with 409 Conflict all run long.
    await adapter.application.updater.stop()
    send_part = adapter.send_part

    async def timed_send_part(*a, **kw):
        t0 = time.perf_counter()
        try:
            return await send_part(*a, **kw)
        finally:
            posts.steps.setdefault("send_part (Bot API)", []).append(time.perf_counter() - t0)

    adapter.send_part = timed_send_part
    pub = Publisher(posts, {("telegram", "*"): adapter}, worker=f"bench-{index}", lease=LEASE)
    out = Path(out_dir) / f"child{index}.json"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    (Path(out_dir) / f"ready{index}").write_text("ok")
    last_dump = time.monotonic()
    errors = 0
    ticks: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            await pub.tick()
        except Exception:  # noqa: BLE001 - counted; the next tick tries again
            errors += 1
            logging.getLogger("bench").exception("a tick failed")
        ticks.append(time.perf_counter() - t0)
        if time.monotonic() - last_dump > 2.0:
            _dump(out, {"claims": posts.claims, "steps": posts.steps, "ticks": ticks, "published": pub.published, "errors": errors})
            last_dump = time.monotonic()
        try:
            await asyncio.wait_for(stop.wait(), TICK)
        except asyncio.TimeoutError:
            pass
    _dump(out, {"claims": posts.claims, "steps": posts.steps, "ticks": ticks, "published": pub.published, "errors": errors})
    await adapter.stop()
    await store.close()


# -- the platform's own limit, for comparison ---------------------------------------------------------

def limited_lateness(due_by_channel: dict[int, list[float]], rate: float = GROUP_RATE,
                     period: float = GROUP_PERIOD) -> list[float]:
    """How late each post would be if sent the instant it is due but held by a leaky
    bucket of ``rate`` per ``period`` per channel (aiolimiter.AsyncLimiter, as PTB's
    AIORateLimiter uses it), with nothing else in the way."""
    out = []
    drip = rate / period
    for dues in due_by_channel.values():
        level, last = 0.0, None
        for d in sorted(dues):
            t = d if last is None else max(d, last)
            if last is not None:
                level = max(0.0, level - (t - last) * drip)
            if level + 1 > rate:
                t += (level + 1 - rate) / drip
                level = rate - 1
            level += 1
            last = t
            out.append(t - d)
    return out


# -- the run -------------------------------------------------------------------------------------

def _cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (0, 0 elsewhere)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


async def run(args) -> None:
    import psycopg
    from sqlalchemy import func, select

    from db.migrate import upgrade_async
    from db.models import Post, utcnow
    from tests.fakes.telegram_server import FakeTelegramServer

    schema = f"vchar_bench_posts_{os.getpid()}"
    with psycopg.connect(_plain(args.pg), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{args.pg}?options=-csearch_path%3D{schema}"
    procs: list[asyncio.subprocess.Process] = []
    tg = FakeTelegramServer(token=TOKEN, username="bench_posts_bot")
    store = None
    try:
        await upgrade_async(url)
        store = Store.from_url(url)
        slugs = [f"bench{i:03d}" for i in range(args.personas)]
        pids = [await store.ensure_persona(s, s.title(), {"name": s}, None) for s in slugs]
        await tg.start()
        for i, s in enumerate(slugs):
            tg.add_channel(CHANNEL0 - i, f"@{s}_channel", title=f"{s}'s channel")

        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--child", url, tg.api_url, "", tmp]
            if args.telegram_limits:
                cmd.append("--telegram-limits")
            for i in range(args.processes):
                cmd[5] = str(i)
                procs.append(await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL))
            t_wait = time.monotonic()
            while not all((Path(tmp) / f"ready{i}").exists() for i in range(args.processes)):
                if any(p.returncode is not None for p in procs):
                    raise RuntimeError("a service process exited before it was ready")
                if time.monotonic() - t_wait > 60:
                    raise RuntimeError("the service processes were not ready within 60 s")
                await asyncio.sleep(0.1)

            # the posts: n-th due at start + n * window / posts, persona n % personas
            T = Post.__table__
            start = utcnow() + timedelta(seconds=2)
            step = args.window / args.posts
            now = utcnow()
            rows, due_by_channel = [], {}
            for n in range(args.posts):
                i = n % args.personas
                due = start + timedelta(seconds=n * step)
                rows.append(dict(persona_id=pids[i], platform="telegram", channel="main", chat_id=str(CHANNEL0 - i),
                                 status="approved", due_at=due,
                                 content={"text": text_of(n, slugs[i]), "format": "text", "persona": slugs[i],
                                          "grace_minutes": 60},
                                 attempts=0, parts_sent=0, notified=False, created_at=now, updated_at=now))
                due_by_channel.setdefault(i, []).append(n * step)
            async with store.engine.begin() as conn:
                for k in range(0, len(rows), 2000):
                    await conn.execute(T.insert(), rows[k:k + 2000])
            t_start = time.monotonic() + (start - utcnow()).total_seconds()
            cpu0 = _cpu()

            # SIGKILL process 0 mid-run; wait until nothing is approved or publishing
            kill_at = t_start + args.kill_at * args.window
            killed = args.no_kill
            deadline = t_start + args.window + args.grace
            left = None
            while time.monotonic() < deadline:
                if not killed and time.monotonic() >= kill_at:
                    procs[0].send_signal(signal.SIGKILL)
                    await procs[0].wait()
                    killed = True
                if time.monotonic() > t_start + args.window:
                    async with store.read() as conn:
                        left = (await conn.execute(select(func.count()).select_from(T).where(
                            T.c.status.in_(["approved", "publishing"])))).scalar_one()
                    if left == 0 and killed:
                        break
                await asyncio.sleep(0.25)
            t_end = time.monotonic()
            cpu1 = _cpu()
            busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
            await asyncio.sleep(1.0)  # anything late would land now
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 20)
                except asyncio.TimeoutError:
                    p.kill()
                    await p.wait()

            claims, errors, published_by, steps, ticks = [], 0, {}, {}, []
            for i in range(args.processes):
                f = Path(tmp) / f"child{i}.json"
                if f.exists():
                    d = json.loads(f.read_text())
                    claims += [tuple(c) for c in d["claims"]]
                    for k, v in d["steps"].items():
                        steps.setdefault(k, []).extend(v)
                    errors += d["errors"]
                    ticks += d["ticks"]
                    published_by[i] = d["published"]

        async with store.read() as conn:
            counts = dict((await conn.execute(select(T.c.status, func.count()).group_by(T.c.status))).all())
            db_rows = (await conn.execute(select(T.c.id, T.c.status, T.c.due_at, T.c.posted_at, T.c.attempts,
                                                 T.c.content))).all()
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await tg.stop()
        if store is not None:
            await store.close()
        with psycopg.connect(_plain(args.pg), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    # -- figures
    arrived = Counter(c.text for c in tg.calls if c.method == "sendMessage" and c.ok)
    status_of = {r.content["text"]: r.status for r in db_rows}
    published = [r for r in db_rows if r.status == "published"]
    late = [(r.posted_at - r.due_at).total_seconds() for r in published]
    retaken = [(r.posted_at - r.due_at).total_seconds() for r in published if r.attempts > 1]
    twice = sum(1 for t, k in arrived.items() if k > 1 and t in status_of)
    unconfirmed = [r for r in db_rows if r.status == "unconfirmed"]
    unconfirmed_arrived = sum(1 for r in unconfirmed if arrived[r.content["text"]])
    lost = sum(1 for r in db_rows if r.status not in ("published", "unconfirmed") and not arrived[r.content["text"]])
    published_not_arrived = sum(1 for r in published if not arrived[r.content["text"]])
    arrived_other = Counter(r.status for r in db_rows
                            if r.status not in ("published", "unconfirmed") and arrived[r.content["text"]])
    nonempty = [s for s, k in claims if k]
    claim_ms = [s * 1000 for s, _ in claims]
    span = max((r.posted_at for r in published), default=None)
    first_due = min((r.due_at for r in db_rows), default=None)
    rate = len(published) / max(1e-9, (span - first_due).total_seconds()) if span and first_due else 0.0
    floor = limited_lateness(due_by_channel)

    mode = ("the adapter's rate limiter ON (30/s overall, 20 a minute per channel)" if args.telegram_limits else
            "the adapter's rate limiter lifted (overall_rate=0, no per-channel limit): vchar's own figures")
    print(f"vchar scheduled posts (PostgreSQL 127.0.0.1, schema {schema}; fake Telegram Bot API in process; "
          f"{os.cpu_count()} CPUs)")
    print(f"  {args.personas} personas, {args.posts} approved posts (one channel each, one text part), slots evenly "
          f"over {args.window:g} s ({args.posts / args.window:.0f} due/s); {args.processes} service processes, "
          f"Publisher tick {TICK} s, lease {LEASE:g} s; {mode}")
    print(f"  claim latency (claim_due, {len(claims)} calls from the processes that lived, {len(nonempty)} of them "
          f"non-empty): p50 {pct(claim_ms, 50):.1f} ms, p99 {pct(claim_ms, 99):.1f} ms"
          f"  (non-empty only: p50 {pct([s * 1000 for s in nonempty], 50):.1f} ms, "
          f"p99 {pct([s * 1000 for s in nonempty], 99):.1f} ms)")
    print(f"  lateness after the slot (posted_at - due_at, {len(late)} published): p50 {pct(late, 50):.2f} s, "
          f"p99 {pct(late, 99):.2f} s, max {max(late, default=float('nan')):.2f} s   (target p99 <= 2 s plus the "
          f"platform's own rate limits)")
    if not args.no_kill:
        cut = first_due + timedelta(seconds=args.kill_at * args.window)
        before = [(r.posted_at - r.due_at).total_seconds() for r in published if r.due_at < cut]
        after = [(r.posted_at - r.due_at).total_seconds() for r in published if r.due_at >= cut]
        print(f"    slots before the kill ({len(before)}, {args.processes} processes): p50 {pct(before, 50):.2f} s, "
              f"p99 {pct(before, 99):.2f} s; after it ({len(after)}, {args.processes - 1} processes): "
              f"p50 {pct(after, 50):.2f} s, p99 {pct(after, 99):.2f} s")
    tenths = [[] for _ in range(10)]
    for r in published:
        k = int((r.due_at - first_due).total_seconds() / args.window * 10)
        tenths[min(9, max(0, k))].append((r.posted_at - r.due_at).total_seconds())
    print("    p99 by tenth of the window (s): " + " ".join(f"{pct(x, 99):.2f}" for x in tenths))
    print("    one publish, step by step (p50 / p99 / max ms): " + "; ".join(
        f"{k} {pct(v, 50) * 1000:.1f} / {pct(v, 99) * 1000:.1f} / {max(v) * 1000:.0f}" for k, v in steps.items()))
    print(f"    ticks (a claim of up to 20, published one after another): p50 {pct(ticks, 50):.2f} s, "
          f"p99 {pct(ticks, 99):.2f} s, max {max(ticks, default=0):.2f} s; {sum(t > LEASE for t in ticks)} longer "
          f"than the lease; {sum(k >= 20 for _, k in claims)} full claims of 20")
    if retaken:
        print(f"    of which {len(retaken)} claimed more than once (taken over when a lease of {LEASE:g} s ran out): "
              f"max {max(retaken):.2f} s late")
    per_channel = args.posts / args.personas / (args.window / 60)
    print(f"  Telegram's own limit alone (20 posts a minute per channel; this schedule has {per_channel:.0f} a minute "
          f"per channel) would make them: p50 {pct(floor, 50):.1f} s, p99 {pct(floor, 99):.1f} s, "
          f"max {max(floor):.1f} s late")
    print(f"  throughput: {rate:.1f} posts/s published (first slot to last post; {args.posts / args.window:.0f} "
          f"due/s offered); run took {t_end - t_start:.1f} s after the first slot; tick errors {errors}; "
          f"the machine's CPUs were {busy:.0%} busy meanwhile")
    print(f"  status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(("  no kill: " if args.no_kill else
           f"  kill test ({args.processes} processes, process 0 SIGKILLed at {args.kill_at:.0%} of the window, not "
           f"replaced): ") + f"published {len(published)}, published twice {twice} (target 0), lost {lost} (target 0), "
          f"unconfirmed {len(unconfirmed)} (of which the fake received {unconfirmed_arrived})")
    if published_not_arrived or arrived_other or left:
        print(f"  anomalies: published but never received {published_not_arrived}; received but recorded as "
              f"{dict(arrived_other)}; still approved/publishing at the deadline {left}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        asyncio.run(child(a[0], a[1], int(a[2]), a[3], "--telegram-limits" in a[4:]))
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--personas", type=int, default=100)
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--window", type=float, default=60.0, help="seconds over which the slots are spread")
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--kill-at", type=float, default=0.4, help="when process 0 is SIGKILLed, as a share of the window")
    ap.add_argument("--no-kill", action="store_true", help="no SIGKILL (all the processes live)")
    ap.add_argument("--grace", type=float, default=90.0, help="seconds after the window before giving up")
    ap.add_argument("--telegram-limits", action="store_true", help="keep the adapter's rate limiter")
    ap.add_argument("--pg", default=PG_BASE)
    asyncio.run(run(ap.parse_args()))
