#!/usr/bin/env python
"""Threads or processes for CPU-heavy media work: what a chat feels while a render runs.

    .venv/bin/python bench/offload.py [--renders 4]

The in-process worker runs a lite render (a voice note: espeak-ng + WORLD; a selfie:
the NumPy/Pillow compositor; a song: the composer, FluidSynth, the singer, the mix) off
the event loop. This measures, for no render, renders
in worker threads (``asyncio.to_thread``) and renders in a process pool, how late the
event loop wakes up (a 5 ms timer, p50 / p99 / max lateness: what every chat turn on the
same loop waits on top of its own work) and the renders' own wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TEXT = "Hey, it's so good to hear from you! I spent the whole afternoon at the market. Tell me about your day?"
PORTRAIT = ROOT / "persona/samples/media/mira-portrait.png"
_state: dict = {}


def render_voice(tmp: str, i: int) -> float:
    """One lite voice note; the backend and the voice analysis are kept per process."""
    from generators.voice import VoiceGenerator, build_voice_backend
    from voice_speed import _profile

    if "voice" not in _state:
        t = Path(tmp) / f"v{mp.current_process().pid}"
        profile = _profile(t, Path(tmp) / "sample.wav")
        lite = build_voice_backend("lite", cache_dir=Path(tmp) / "cache")
        lite.prepare(profile)
        _state["voice"] = (VoiceGenerator(lite, t / "notes"), profile)
    gen, profile = _state["voice"]
    t0 = time.perf_counter()
    gen.generate(f"{TEXT} Number {i}.", profile)
    return time.perf_counter() - t0


def render_image(tmp: str, i: int) -> float:
    from generators.image import ImageRequest
    from generators.image.lite import LiteImageGenerator

    gen = _state.setdefault("image", LiteImageGenerator(out_dir=Path(tmp) / "img"))
    t0 = time.perf_counter()
    gen.generate_sync(ImageRequest(prompt="selfie at the beach", references=(str(PORTRAIT),), seed=1000 + i))
    return time.perf_counter() - t0


def render_song(tmp: str, i: int) -> float:
    """A 20-second lite song sung by espeak-ng's voice (compose, FluidSynth, the singer, the mix)."""
    from generators.music import MusicRequest
    from generators.music.lite import LiteMusic

    gen = _state.setdefault("music", LiteMusic(Path(tmp) / f"music{mp.current_process().pid}"))
    t0 = time.perf_counter()
    gen.generate(MusicRequest(topic="the rain", style="pop", duration=20, seed=i, stock_voice=True))
    return time.perf_counter() - t0


async def lateness(stop: asyncio.Event, tick: float = 0.005) -> list[float]:
    late = []
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(tick)
        late.append(time.perf_counter() - t0 - tick)
    return late


async def run(fn, tmp: str, renders: int, pool) -> dict:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    ticker = asyncio.create_task(lateness(stop))
    t0 = time.perf_counter()
    if pool is None:
        await asyncio.sleep(1.0)
        own = []
    else:
        own = await asyncio.gather(*(loop.run_in_executor(pool, fn, tmp, i) for i in range(renders)))
    wall = time.perf_counter() - t0
    stop.set()
    late = sorted(await ticker)
    q = lambda p: late[min(len(late) - 1, int(p * (len(late) - 1)))] * 1000  # noqa: E731
    return {"p50": q(0.5), "p99": q(0.99), "max": late[-1] * 1000, "wall": wall,
            "render": statistics.median(own) if own else 0.0}


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        from voice_speed import _sample

        _sample(Path(tmp))
        with cf.ThreadPoolExecutor(2) as threads, \
                cf.ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")) as procs:
            for name, fn in (("voice note", render_voice), ("selfie", render_image), ("20 s song", render_song)):
                # warm both: each process builds its backend and caches before timing
                await asyncio.gather(*(loop.run_in_executor(procs, fn, tmp, 99) for _ in range(4)))
                await asyncio.gather(*(loop.run_in_executor(threads, fn, tmp, 99) for _ in range(2)))
                print(f"{name}: {args.renders} lite renders, 2 at a time, while a 5 ms timer runs on the event loop")
                for mode, pool in (("none", None), ("threads", threads), ("processes", procs)):
                    r = await run(fn, tmp, args.renders, pool)
                    print(f"  {mode:<9} loop lateness p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms  max {r['max']:7.2f} ms"
                          + (f"   {args.renders} renders in {r['wall']:.2f} s (one: {r['render']:.2f} s)"
                             if pool else ""), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", type=int, default=6)
    asyncio.run(main(ap.parse_args()))
