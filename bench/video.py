#!/usr/bin/env python
"""The lite talking head: speed, and lip sync measured with mediapipe on its output.

    .venv/bin/python bench/video.py [--seconds 8] [--size 512]

Prints for Mira's portrait speaking in her own (lite) voice, on this machine's CPU:
frames per second rendered and encoded at SIZE x SIZE (target >= 50: twice real time at
25 fps), seconds of work per second of video, peak resident memory; then, re-measured by
mediapipe's face mesh on every output frame: the mouth opening's correlation with the
speech's loudness envelope at the best lag within 80 ms (target >= 0.6), the share of
frames where the face was found, and the jitter of the fixed points (forehead, nose
bridge) from frame to frame, in pixels (the head's seeded motion included); and the mouth
width's correlation with the speech's second formant (the visemes' spread and rounding).

    .venv/bin/python bench/video.py --musetalk PATH|tiny|full-size [--device cpu|cuda]

then also times the neural tier (``generators.video.neural``: MuseTalk over the lite head)
on the same speech: frames per second rendered, lip-synced and encoded, the weights' load
time, the peak GPU memory; and re-measures its lip sync the same way. PATH is a folder in
MuseTalk's layout (or a hub id); ``tiny`` builds tiny random weights, ``full-size`` random
weights of the published shapes (timing only: random weights do not lip-sync).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TEXT = ("Good evening! The night market opens at seven, and tonight there are fresh dumplings, "
        "lemon cakes and a band playing by the river. Come early, the queue gets long.")


def lip_sync(path: Path, audio: np.ndarray, sr: int) -> dict:
    from generators.video import face as fm
    from generators.video.mp4 import read_frames

    frames, fps = read_frames(path)
    opening, widths, fixed, found = [], [], [], 0
    for f in frames:
        faces = fm.landmarks(f)
        if faces:
            p = faces[0]
            found += 1
            scale = np.linalg.norm(p[152] - p[1])
            opening.append(float(np.linalg.norm(p[14] - p[13]) / scale))
            widths.append(float(np.linalg.norm(p[291] - p[61]) / np.linalg.norm(p[454] - p[234])))
            fixed.append(p[list(fm.FIXED)])
        else:
            opening.append(np.nan)
            widths.append(np.nan)
    o = np.array(opening)
    n = len(o)
    rms = np.array([np.sqrt(np.mean(audio[int(i * sr / fps): int((i + 1) * sr / fps)] ** 2) + 1e-12) for i in range(n)])
    best = -1.0
    lags = range(-int(0.08 * fps + 0.5), int(0.08 * fps + 0.5) + 1)
    ok = ~np.isnan(o)
    for lag in lags:
        a = o[max(0, lag): n + min(0, lag)]
        b = rms[max(0, -lag): n - max(0, lag)]
        m = ok[max(0, lag): n + min(0, lag)]
        if m.sum() > 10:
            best = max(best, float(np.corrcoef(a[m], b[m])[0, 1]))
    from generators.video.lite import formants

    _, f2 = formants(audio, sr, fps, n)
    w = np.array(widths)
    both = ~np.isnan(f2) & ~np.isnan(w)
    width_r = float(np.corrcoef(w[both], f2[both])[0, 1]) if both.sum() > 10 else float("nan")
    jit = np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in zip(fixed, fixed[1:])]) if len(fixed) > 1 else 0
    return {"corr": best, "found": found / max(1, n), "jitter": float(jit), "frames": n, "width_r": width_r}


def main(args) -> None:
    import soundfile

    from generators.video.lite import LiteHead
    from generators.video.mp4 import write_mp4
    from generators.voice.lite import LiteVoice
    from generators.voice.profile import create_voice_profile
    from PIL import Image

    tmp = Path(tempfile.mkdtemp())
    media = ROOT / "persona/samples/media"
    import json

    spec = json.loads((media / "mira-voice.json").read_text())
    profile, _ = create_voice_profile("mira", media / spec["sample"], consent_statement=spec["consent_statement"],
                                      consent_who=spec["consent_who"], voices_root=tmp / "voices")
    voice = LiteVoice(tmp / "cache")
    audio = voice.synthesize(TEXT, profile)
    sr = voice.sample_rate
    reps = int(np.ceil(args.seconds / (len(audio) / sr)))
    audio = np.concatenate([audio] * reps)[: int(args.seconds * sr)]
    soundfile.write(tmp / "speech.wav", audio, sr)
    portrait = np.asarray(Image.open(media / "mira-portrait.png").convert("RGB"))
    t0 = time.perf_counter()
    head = LiteHead(portrait, args.size, cache_dir=tmp / "faces")
    setup = time.perf_counter() - t0
    frames, n, _ = head.render(audio, sr, args.fps, seed=1)
    from generators.voice.finishing import resample

    t0 = time.perf_counter()
    write_mp4(tmp / "say.mp4", frames, args.fps, audio=resample(audio, sr, 48000), sample_rate=48000)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"vchar lite talking head, {args.size}x{args.size}, {n} frames ({n / args.fps:.1f} s at {args.fps:g} fps), CPU")
    print(f"  rendered and encoded {n / dt:.1f} frames a second (target >= 50); {dt / (n / args.fps):.3f} s of work "
          f"per second of video; one-off face mesh and warp set-up {setup:.2f} s; peak resident memory {peak:.0f} MB")
    m = lip_sync(tmp / "say.mp4", audio, sr)
    print(f"  lip sync (mediapipe on the output): mouth opening vs loudness, best lag within 80 ms: r = {m['corr']:.2f} "
          f"(target >= 0.6); face found on {m['found']:.0%} of frames; fixed-point jitter {m['jitter']:.2f} px a frame")
    print(f"  visemes: mouth width (mediapipe) vs the speech's second formant (linear prediction), same frame: "
          f"r = {m['width_r']:.2f} (spread for \"ee\", rounded for \"oo\")")
    if args.musetalk:
        musetalk(args, tmp, media / "mira-portrait.png", audio, sr)


def musetalk(args, tmp: Path, portrait: Path, audio: np.ndarray, sr: int) -> None:
    import torch

    from generators.video import neural

    source = args.musetalk
    if source in ("tiny", "full-size"):
        from tests.generators.video.test_neural import save_tiny_musetalk

        t0 = time.perf_counter()
        source = str(save_tiny_musetalk(tmp / "musetalk" / "models", full_size=source == "full-size"))
        print(f"  ({args.musetalk} random MuseTalk weights written in {time.perf_counter() - t0:.1f} s)")
    video = neural.MuseTalkVideo(tmp / "neural", model=source, device=args.device)
    t0 = time.perf_counter()
    model = video.load()
    load = time.perf_counter() - t0
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    video.make(portrait, audio[: int(sr * 1.0)], sr, size=args.size, fps=args.fps, name="warm")  # first calls
    meta = video.make(portrait, audio, sr, size=args.size, fps=args.fps, seed=1, name="say")
    n, dt = meta["frames"], meta["seconds"]
    gpu = (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
           if model.device.type == "cuda" else "")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"musetalk {model.version} ({args.musetalk}), {args.size}x{args.size}, {n} frames, {model.device} "
          f"{str(model.dtype).replace('torch.', '')}, {meta['batch']} frames a UNet call")
    print(f"  rendered, lip-synced and encoded {n / dt:.1f} frames a second; {dt / (n / args.fps):.3f} s of work per "
          f"second of video; weights loaded in {load:.1f} s{gpu}; peak resident memory {peak:.0f} MB")
    m = lip_sync(Path(meta["path"]), audio, sr)
    print(f"  lip sync (mediapipe on the output): r = {m['corr']:.2f}; face found on {m['found']:.0%} of frames; "
          f"fixed-point jitter {m['jitter']:.2f} px a frame" + (" (random weights: no sync expected)"
                                                              if args.musetalk in ("tiny", "full-size") else ""))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--musetalk", default=None,
                    help="also time MuseTalk: a weights folder, a hub id, tiny or full-size")
    ap.add_argument("--device", default="auto", help="the neural tier's device: auto, cpu or cuda")
    main(ap.parse_args())
