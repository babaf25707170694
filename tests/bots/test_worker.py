"""`vchar worker` processes on a real Redis: media made away from the service, a worker
killed mid-job replaced by another, the result delivered once."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest

from tests.bots.test_run import VCHAR, _persona_with_portrait
from tests.fakes.a1111_server import FakeA1111Server
from tests.fakes.telegram_server import FakeTelegramServer

REDIS = "redis://127.0.0.1:6379"


async def _redis_db() -> str:
    """A Redis database of its own for this test, emptied."""
    from redis.asyncio import Redis

    db = random.randint(1, 12)  # bench/jobs.py uses 14
    client = Redis.from_url(f"{REDIS}/{db}")
    try:
        await client.flushdb()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("VCHAR_TEST_STRICT"):
            raise
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")
    finally:
        await client.aclose()
    return f"{REDIS}/{db}"


async def _wait(pred, timeout: float, what: str) -> None:
    for _ in range(int(timeout * 10)):
        if pred():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_selfie_waits_for_a_worker_and_survives_a_killed_one(tmp_path):
    from sqlalchemy import select

    from db.models import Job
    from db.store import Store

    queue = await _redis_db()
    async with FakeTelegramServer(token="123456:TESTTOKEN") as tg, FakeA1111Server(delay=3.0) as gpu:
        env = {
            **os.environ,
            "VCHAR_DATA_DIR": str(tmp_path / "data"),
            "VCHAR_PERSONAS_DIR": str(_persona_with_portrait(tmp_path)),
            "VCHAR_TELEGRAM_TOKEN": "123456:TESTTOKEN",
            "VCHAR_TELEGRAM_API_URL": tg.api_url,
            "VCHAR_TELEGRAM_POLL_TIMEOUT": "1",
            "VCHAR_QUEUE_URL": queue,
            "VCHAR_JOB_LEASE": "2",
            "VCHAR_OUTBOX_POLL": "0.3",
            "VCHAR_IMAGE_BACKEND": "remote",
            "VCHAR_IMAGE_BASE_URL": gpu.base_url,
        }
        env.pop("VCHAR_DATABASE_URL", None)

        async def start(*args):
            return await asyncio.create_subprocess_exec(VCHAR, *args, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE, env=env)

        procs = [await start("run")]
        try:
            tg.push_message(1001, "Zoe", "/selfie at the beach")
            [ack] = await tg.wait_for_sent(1, timeout=90, chat_id=1001)
            await asyncio.sleep(1.0)
            assert not tg.sent_to(1001, method="sendPhoto") and not gpu.requests  # no worker yet: nothing made
            first = await start("worker", "--kinds", "image")
            procs.append(first)
            await _wait(lambda: gpu.requests, 90, "the first worker to start the picture")
            first.kill()  # SIGKILL mid-job
            await first.wait()
            procs.append(await start("worker", "--kinds", "image"))
            [photo] = await tg.wait_for_sent(1, timeout=90, method="sendPhoto", chat_id=1001)
            await asyncio.sleep(2.5)  # a second copy would come within a lease and a poll
        finally:
            errs = []
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(p.communicate(), 60)
                errs.append(err.decode())
        for p, err in zip(procs, errs):
            if p is not first:
                assert p.returncode == 0, err[-3000:]
                assert "Traceback" not in err, err[-3000:]
    assert "beach" in photo.fields.get("caption", "").lower()
    assert len(tg.sent_to(1001, method="sendPhoto")) == 1  # delivered once
    assert len(gpu.requests) == 2  # made again by the second worker after the kill
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'vchar.db'}")
    try:
        async with store.read() as conn:
            [job] = (await conn.execute(select(Job))).all()
    finally:
        await store.close()
    assert job.status == "done" and job.attempts == 2


async def test_run_with_a_queue_that_is_down_says_so_at_start(tmp_path):
    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_TELEGRAM_TOKEN": "123456:TESTTOKEN",
           "VCHAR_TELEGRAM_API_URL": "http://127.0.0.1:9", "VCHAR_QUEUE_URL": "redis://127.0.0.1:1/0"}
    env.pop("VCHAR_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(VCHAR, "run", stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    text = err.decode()
    assert proc.returncode != 0 and "Traceback" not in text
    assert "redis://127.0.0.1:1/0 is not reachable" in text and "VCHAR_QUEUE_URL" in text
    worker = await asyncio.create_subprocess_exec(VCHAR, "worker", stdin=asyncio.subprocess.DEVNULL,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                  env={k: v for k, v in env.items() if k != "VCHAR_QUEUE_URL"})
    _, err = await asyncio.wait_for(worker.communicate(), 90)
    assert worker.returncode != 0 and "set VCHAR_QUEUE_URL" in err.decode()


async def test_logs_are_one_line_per_record_off_a_terminal_and_json_when_asked(tmp_path):
    import json

    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_QUEUE_URL": "redis://127.0.0.1:1/0"}
    env.pop("VCHAR_DATABASE_URL", None)

    async def worker_log(fmt: str) -> list[str]:
        proc = await asyncio.create_subprocess_exec(VCHAR, "worker", "--kinds", "image", stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    env={**env, "VCHAR_LOG_FORMAT": fmt})
        _, err = await asyncio.wait_for(proc.communicate(), 90)
        return [line for line in err.decode().splitlines() if line and not line.startswith("error:")]

    plain = await worker_log("auto")  # stderr is a pipe here: plain lines
    assert plain and all(" INFO " in line or " WARNING " in line or " ERROR " in line for line in plain), plain
    records = [json.loads(line) for line in await worker_log("json")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
