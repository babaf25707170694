#!/usr/bin/env python
"""What the studio costs: page renders, streamed tokens, memory.

    .venv/bin/python bench/studio.py [--db sqlite|postgresql] [--messages 10000] [--renders 300] [--turns 40]

1. The chat page with ``--messages`` messages in the operator's conversation (seeded in
   bulk), rendered ``--renders`` times through the studio's whole ASGI stack (gate, CSRF,
   the database page query, Jinja): p50/p99 (target p99 <= 50 ms; the page shows the
   latest 50 messages, older ones a page at a time).
2. Time to the first streamed token: a studio chat POST read as server-sent events until
   the first ``token`` event, against ``PersonaManager.handle(on_text=...)`` until its
   first piece, alternating, on a text backend that streams a piece every 20 ms after a
   30 ms start (a stand-in with a model's rhythm, so the difference is the studio's own),
   each turn's text new to the embedding cache on both sides: p50 of each and of the
   difference (target within 10 ms).
3. Resident memory the studio adds to a started service (its app, adapters, one served
   page of each kind), from /proc/self/status.

Figures on these shared CPUs are compared within one run; absolute times vary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dvchar_bench_studio"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


class RhythmText:
    """A text backend with a model's rhythm: 30 ms to the first piece, 20 ms a piece after."""

    name = "rhythm"

    async def stream(self, request):
        await asyncio.sleep(0.03)
        for i, word in enumerate("Stars are out tonight and the sky is clear".split()):
            if i:
                await asyncio.sleep(0.02)
            yield word + " "

    async def generate(self, request) -> str:
        return "".join([p async for p in self.stream(request)])

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    async def aclose(self) -> None:
        pass


async def seed(svc, web, n: int) -> int:
    """``n`` messages in the studio conversation, bulk inserted; the conversation's id."""
    from sqlalchemy import insert

    from db.models import Message, utcnow

    adapter = web.adapters["mira"]
    await adapter.converse("hello")  # the conversation, its person and relationship, the real way
    pid = await svc.manager.persona_db_id("mira")
    conv = await svc.store.conversation_id(pid, "studio", adapter.chat_id)
    uid = await svc.store.find_user("studio", "operator")
    start = utcnow() - timedelta(days=30)
    rows = []
    for i in range(n - 2):
        user = i % 2 == 0
        rows.append(dict(conversation_id=conv, user_id=uid if user else None, role="user" if user else "assistant",
                         text=("Tell me about the stars, please. " if user else "They are far away and very bright. ") * 3,
                         platform_message_id=f"b{i}" if user else None, media=[],
                         status="answered" if user else "delivered", created_at=start + timedelta(seconds=60 * i)))
    async with svc.store.engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            await conn.execute(insert(Message), rows[i:i + 2000])
    return conv


async def run(args) -> dict:
    import httpx

    from bots.service import Service
    from bots.settings import Settings
    from bots.studio import Studio
    from persona.types import IncomingMessage

    tmp = Path(tempfile.mkdtemp(prefix="vchar-bench-studio-"))
    if args.db == "postgresql":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS vchar_bench_studio CASCADE")
            c.execute("CREATE SCHEMA vchar_bench_studio")
        url = PG
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'vchar.db'}"
    settings = Settings(data_dir=tmp / "data", database_url=url, personas_dir=tmp / "personas", studio_port=0,
                        chat_rate="off")
    out: dict = {}
    async with Service(settings) as svc:
        before = rss_mb()
        web = await Studio(settings, svc, token="bench").start()
        base = f"http://127.0.0.1:{web.server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            page = await http.get("/chat/mira?token=bench", follow_redirects=True)
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            for path in ("/chat/mira", "/personas/mira", "/personas/mira/edit", "/people/mira", "/posts/mira", "/jobs",
                         "/stats/mira"):
                assert (await http.get(path)).status_code == 200, path
            out["rss_added_mb"] = rss_mb() - before
            t0 = time.perf_counter()
            await seed(svc, web, args.messages)
            out["seed_s"] = time.perf_counter() - t0

            # 1. the chat page, in process through the whole stack (no socket in the way)
            # (the same address, port included: the session cookie is named for the port)
            local = httpx.AsyncClient(transport=httpx.ASGITransport(app=web.asgi), base_url=base, cookies=http.cookies)
            async with local:
                for _ in range(10):
                    await local.get("/chat/mira")
                times = []
                for _ in range(args.renders):
                    t = time.perf_counter()
                    r = await local.get("/chat/mira")
                    times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and r.text.count('class="msg ') == 50 and "Older messages" in r.text
            out["render_p50_ms"], out["render_p99_ms"] = pct(times, 50), pct(times, 99)
            out["page_kb"] = len(r.content) / 1024

            # 2. first token: through the studio (HTTP, SSE) vs the manager's own callback
            svc.manager.text = RhythmText()
            studio_ttft, manager_ttft = [], []
            for i in range(args.turns):
                t = time.perf_counter()
                first = None
                async with http.stream("POST", "/chat/mira/send", data={"text": f"what do you see from the roof, night {i}?",
                                                                                 "csrf": csrf},
                                       headers={"accept": "text/event-stream"}) as resp:
                    async for line in resp.aiter_lines():
                        if first is None and line.startswith("event: token"):
                            first = time.perf_counter() - t
                studio_ttft.append(first * 1000)

                got: list[float] = []
                t = time.perf_counter()

                async def on_text(piece: str) -> None:
                    if not got:
                        got.append(time.perf_counter() - t)

                msg = IncomingMessage(platform="bench", chat_id="b", user_id="b", user_name="Bea",
                                      text=f"what do you see from the hill, night {i}?", message_id=f"m{i}",
                                      persona="mira")
                await svc.manager.handle(msg, on_text=on_text)
                manager_ttft.append(got[0] * 1000)
            out["ttft_studio_p50_ms"] = statistics.median(studio_ttft)
            out["ttft_manager_p50_ms"] = statistics.median(manager_ttft)
            out["ttft_added_p50_ms"] = out["ttft_studio_p50_ms"] - out["ttft_manager_p50_ms"]
        await web.stop()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--renders", type=int, default=300)
    p.add_argument("--turns", type=int, default=40)
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    res = asyncio.run(run(args))
    print(f"studio on {args.db}, {args.messages} messages in the conversation (seeded in {res['seed_s']:.1f} s)")
    print(f"  chat page render: p50 {res['render_p50_ms']:.1f} ms, p99 {res['render_p99_ms']:.1f} ms "
          f"(target p99 <= 50 ms; {res['page_kb']:.0f} KB, 50 messages a page)")
    print(f"  first streamed token: studio p50 {res['ttft_studio_p50_ms']:.1f} ms, manager p50 "
          f"{res['ttft_manager_p50_ms']:.1f} ms, added {res['ttft_added_p50_ms']:.1f} ms (target <= 10 ms)")
    print(f"  resident memory the studio adds: {res['rss_added_mb']:.1f} MB")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}))
    return res


if __name__ == "__main__":
    main()
