"""Scheduled posts as operators run them: `vchar posts add` on the command line, two
`vchar run` processes on one PostgreSQL, the fake Bot API's channel: each post goes out once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from sqlalchemy import delete

from db.models import Base
from db.store import Store
from persona.registry import SAMPLES
from tests.fakes.telegram_server import FakeTelegramServer

VCHAR = str(Path(sys.executable).with_name("vchar"))
CHANNEL = -1009876543210


def _personas(tmp_path: Path) -> Path:
    folder = tmp_path / "personas"
    folder.mkdir()
    data = yaml.safe_load((SAMPLES / "mira.yaml").read_text())
    data["posts"] = {"zone": "Europe/Berlin", "approval": False,
                     "channels": {"main": {"platform": "telegram", "chat": "@midnightmenu"}}}
    (folder / "mira.yaml").write_text(yaml.safe_dump(data))
    return folder


async def _empty(url: str) -> None:
    s = Store.from_url(url)
    async with s.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(delete(table))
    await s.close()


async def test_posts_for_now_go_out_once_from_two_run_processes_on_one_postgresql(tmp_path, pg_url):
    await _empty(pg_url)
    async with FakeTelegramServer(token="123456:TESTTOKEN") as tg:
        tg.add_channel(CHANNEL, "@midnightmenu", title="Midnight Menu")
        env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_PERSONAS_DIR": str(_personas(tmp_path)),
               "VCHAR_DATABASE_URL": pg_url, "VCHAR_TELEGRAM_TOKEN": "123456:TESTTOKEN",
               "VCHAR_TELEGRAM_API_URL": tg.api_url, "VCHAR_TELEGRAM_POLL_TIMEOUT": "1", "VCHAR_POSTS_POLL": "0.2"}
        texts = [f"Stall number {i} is open tonight!" for i in range(6)]
        for t in texts:
            added = await asyncio.to_thread(
                subprocess.run, [VCHAR, "posts", "add", "mira", "--channel", "main", "--text", t, "--approved"],
                capture_output=True, text=True, env=env, timeout=120)
            assert added.returncode == 0, added.stderr
            assert "approved" in added.stdout
        procs = [await asyncio.create_subprocess_exec(VCHAR, "run", stdin=asyncio.subprocess.DEVNULL,
                                                      stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                      env=env) for _ in range(2)]
        try:
            for _ in range(900):
                if len(tg.channel_posts(CHANNEL)) >= len(texts) or any(p.returncode is not None for p in procs):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # a second copy would come within a few polls
        finally:
            errs = []
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(p.communicate(), 60)
                errs.append(err.decode()[-3000:])
    assert all(p.returncode == 0 for p in procs), errs
    sent = sorted(c.text for c in tg.channel_posts(CHANNEL))
    assert sent == sorted(texts)  # every post, once
    listed = await asyncio.to_thread(subprocess.run, [VCHAR, "posts", "list", "--state", "published"],
                                     capture_output=True, text=True, env=env, timeout=120)
    assert listed.stdout.count("published") >= len(texts)
