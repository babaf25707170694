#!/usr/bin/env python
"""How fast the voices are: real-time factors (synthesis seconds / audio seconds).

    .venv/bin/python bench/voice_speed.py [--quick] [--no-xtts] [--full-xtts] [--device cuda]

* lite on the CPU (the per-voice analysis is cached; it is timed separately): target RTF <= 0.1;
* tiny XTTS (2 GPT layers, random weights) on the CPU: the code path, not a quality figure;
* ``--full-xtts``: XTTS v2's real shapes (30 GPT layers x 1024, HiFi-GAN decoder) with random
  weights (speed does not depend on them) on ``--device`` (a GPU): first-chunk latency of the
  streaming inference and the real-time factor. Random weights rarely emit the stop token, so
  each sentence runs to ``--max-tokens`` audio tokens (21.5 tokens a second of audio).

The reference sample is festival's SLT voice (festvox-us-slt-hts) when installed, else espeak-ng.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEXT = (
    "Hey, it's so good to hear from you! I spent the whole afternoon at the market, and guess what, "
    "they finally had those little lemon cakes again. I saved one for you. Tell me about your day?"
)


def _sample(tmp: Path) -> Path:
    out = tmp / "sample.wav"
    passage = (
        "The old lighthouse keeper climbed the stairs every evening at dusk. He would wipe the salt from the "
        "great lens, trim the wick, and watch the ships slide past the rocks. Nobody in the village remembered "
        "a night when the light had failed."
    )
    try:
        subprocess.run(["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(out)],
                       input=passage.encode(), check=True, capture_output=True, timeout=120)
    except Exception:
        import soundfile

        from generators.voice.lite import espeak

        soundfile.write(out, espeak(passage, "en-us+f3"), 22050)
    return out


def _profile(tmp: Path, sample: Path | None = None):
    from generators.voice.profile import create_voice_profile

    profile, _ = create_voice_profile("bench", sample or _sample(tmp), consent_statement="benchmark voice",
                                      consent_who="festival SLT voice", voices_root=tmp / "voices")
    return profile


def bench_lite(profile, tmp: Path, repeats: int) -> dict:
    from generators.voice import VoiceGenerator, build_voice_backend

    lite = build_voice_backend("lite", cache_dir=tmp / "cache")
    t0 = time.perf_counter()
    lite.prepare(profile)
    prepare = time.perf_counter() - t0
    gen = VoiceGenerator(lite, tmp / "notes")
    synth, total, audio = [], [], 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = lite.synthesize(TEXT, profile, language="en")
        synth.append(time.perf_counter() - t0)
        audio = len(y) / lite.sample_rate
        t0 = time.perf_counter()
        [note] = gen.generate(TEXT, profile)
        total.append(time.perf_counter() - t0)
    first = []
    t0 = time.perf_counter()
    for chunk in lite.stream(TEXT, profile, language="en"):
        first.append(time.perf_counter() - t0)
        break
    r = dict(audio_s=audio, synth_rtf=min(synth) / audio, note_rtf=min(total) / note.duration,
             prepare_s=prepare, first_sentence_s=first[0])
    print(f"lite (CPU, {os.cpu_count()} cores): {audio:.1f} s of audio; synthesis RTF {r['synth_rtf']:.3f}; "
          f"finished OGG note RTF {r['note_rtf']:.3f} (target <= 0.1); first sentence streamed after "
          f"{r['first_sentence_s'] * 1000:.0f} ms; one-off voice analysis {prepare:.1f} s (cached per sample)", flush=True)
    return r


def bench_xtts(profile, tmp: Path, *, full: bool, device: str, max_tokens: int, repeats: int) -> dict:
    import torch

    from generators.voice import build_voice_backend
    from generators.voice.testing import build_xtts

    t0 = time.perf_counter()
    folder, _ = build_xtts(tmp / ("xtts-full" if full else "xtts-tiny"), full_size=full, max_audio_tokens=max_tokens)
    built = time.perf_counter() - t0
    xtts = build_voice_backend("xtts", model_dir=folder, cache_dir=tmp / "cache", device=device)
    t0 = time.perf_counter()
    model = xtts.model
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    xtts.prepare(profile)
    latents = time.perf_counter() - t0
    label = "XTTS v2 shapes (30 x 1024)" if full else "tiny XTTS (2 x 64)"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    sentence = "Hey, it's so good to hear from you!"
    xtts.synthesize("Warm up.", profile, language="en")  # kernels, allocator
    firsts, rtfs, tok_ms = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        first, n = None, 0
        for chunk in xtts.stream(sentence, profile, language="en"):
            if first is None:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                first = time.perf_counter() - t0
            n += len(chunk.samples)
        took = time.perf_counter() - t0
        firsts.append(first)
        rtfs.append(took / (n / xtts.sample_rate))
        tok_ms.append(took / max(1.0, n / (model.args.gpt_code_stride_len * xtts.sample_rate / 22050)) * 1000)
    r = dict(params_m=params, build_s=built, load_s=loaded, latents_s=latents, first_chunk_s=min(firsts),
             rtf=min(rtfs), ms_per_token=min(tok_ms))
    print(f"{label} on {device} ({params:.0f} M parameters, random weights): load {loaded:.1f} s, latents "
          f"{latents * 1000:.0f} ms (once per voice); streaming first chunk ({xtts.stream_chunk_size} tokens) after "
          f"{r['first_chunk_s'] * 1000:.0f} ms; RTF {r['rtf']:.3f}; about {r['ms_per_token']:.1f} ms per audio token", flush=True)
    return r


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-xtts", action="store_true")
    ap.add_argument("--no-lite", action="store_true")
    ap.add_argument("--full-xtts", action="store_true", help="XTTS v2's real shapes (for a GPU)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--sample", type=Path, default=None, help="a voice sample (default: festival's SLT reading a passage)")
    ap.add_argument("--max-tokens", type=int, default=120, help="audio tokens a sentence, for random weights")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {}
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="vchar-voice-speed-") as tmp:
        tmp = Path(tmp)
        profile = _profile(tmp, args.sample)
        if not args.no_lite:
            results["lite"] = bench_lite(profile, tmp, repeats)
        if not args.no_xtts:
            results["xtts_tiny_cpu"] = bench_xtts(profile, tmp, full=False, device="cpu", max_tokens=40, repeats=repeats)
        if args.full_xtts:
            if device == "cpu":
                print("full-size XTTS needs a GPU (--device cuda); skipped")
            else:
                print(f"GPU: {torch.cuda.get_device_name(0)}")
                results["xtts_full"] = bench_xtts(profile, tmp, full=True, device=device, max_tokens=args.max_tokens,
                                                  repeats=repeats)
    return results


if __name__ == "__main__":
    main()
