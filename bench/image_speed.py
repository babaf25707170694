"""Image generation speed: the project's diffusers backend next to a plain diffusers call.

    .venv/bin/python bench/image_speed.py                 # tiny random SD pipeline, CPU
    .venv/bin/python bench/image_speed.py --real-size     # SD 1.5-sized random weights (GPU)

Prints latency per image and images per second at 1 request and at 8 concurrent
requests, for (a) the plain pipeline call, (b) our backend (which also writes the PNG with
its metadata). Targets: (b) at most 5% slower than (a) at one request; (b) with 8
concurrent requests at least 2x the throughput of (a) called one by one.

The tiny pipeline is the test suite's (a few thousand parameters, loaded with
from_pretrained from a folder); its numbers measure overheads, not a real model. The
``--real-size`` pipeline has SD 1.5's architecture (UNet 860M, VAE, CLIP ViT-L text
encoder) with random weights, built in memory on the device and handed to the backend.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from generators.image import ImageRequest  # noqa: E402
from generators.image.diffusers_backend import DiffusersImageGenerator, clear_engines  # noqa: E402


def real_size_pipeline(device: str, dtype: torch.dtype):
    """SD 1.5's architecture, random weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from generators.image.testing import make_clip_tokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, sample_size=512,
        )
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=514, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        ))
    tok = make_clip_tokenizer(Path(tempfile.mkdtemp()))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                          steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device, dtype)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real-size", action="store_true", help="SD 1.5 architecture, random weights (use a GPU)")
    ap.add_argument("--size", type=int, default=None, help="image side (default 64 tiny, 512 real-size)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 8 tiny, 25 real-size)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per figure")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="a smoke run (tiny, 2 repeats)")
    args = ap.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    real = args.real_size
    size = args.size or (512 if real else 64)
    steps = args.steps or (25 if real else 8)
    repeats = args.repeats or (2 if args.quick else (5 if real else 10))
    n = args.concurrency
    tmp = Path(tempfile.mkdtemp(prefix="vchar-image-bench-"))

    clear_engines()
    if real:
        dtype = torch.float16 if device == "cuda" else torch.float32
        gen = DiffusersImageGenerator("sd15-random", out_dir=tmp / "out", batch_window_s=0.002, max_batch=n)
        gen.engine.adopt(real_size_pipeline(device, dtype))
        what = f"SD 1.5 architecture, random weights, {str(dtype).removeprefix('torch.')}"
    else:
        from generators.image.testing import save_tiny_sd_pipeline

        folder = save_tiny_sd_pipeline(tmp / "tiny-sd")
        gen = DiffusersImageGenerator(str(folder), out_dir=tmp / "out", batch_window_s=0.002, max_batch=n)
        asyncio.run(gen.load())
        what = "tiny random SD pipeline (test-suite size), loaded with from_pretrained"
    pipe = gen.engine.pipe
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; model: {what}; {size}x{size}, {steps} steps, guidance 7")

    prompt = "selfie photo, at the beach, young woman with dark hair, round glasses"

    def plain(seed: int, k: int = 1):
        gens = [torch.Generator("cpu").manual_seed(seed + i) for i in range(k)]
        with torch.inference_mode():
            pipe([prompt] * k, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
                 generator=gens if k > 1 else gens[0], output_type="pil")
        if device == "cuda":
            torch.cuda.synchronize()

    def req(seed: int) -> ImageRequest:
        return ImageRequest(prompt=prompt, size=(size, size), steps=steps, guidance=7.0, seed=seed,
                            negative_prompt="", output=str(tmp / "out" / f"{seed}.png"))

    async def ours_one(seed: int):
        await gen.generate(req(seed))

    async def ours_many(seed: int):
        await asyncio.gather(*(gen.generate(req(seed + i)) for i in range(n)))

    async def timed():
        # warm up both paths (allocator, kernels, the engine thread)
        plain(0)
        await ours_one(0)
        await ours_many(0)
        t_plain, t_ours = [], []
        for r in range(repeats):  # interleaved, so that load on the machine hits both alike
            t = time.perf_counter()
            plain(100 + r)
            t_plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            await ours_one(100 + r)
            t_ours.append(time.perf_counter() - t)
        t_seq, t_conc, t_batch = [], [], []
        for r in range(max(1, repeats // 2)):
            t = time.perf_counter()
            for i in range(n):
                plain(1000 + i)
            t_seq.append(time.perf_counter() - t)
            calls = gen.stats.calls
            t = time.perf_counter()
            await ours_many(1000)
            t_conc.append(time.perf_counter() - t)
            assert gen.stats.calls - calls == 1, f"{n} concurrent requests should be one pipeline call"
            t = time.perf_counter()
            plain(1000, n)
            t_batch.append(time.perf_counter() - t)
        return t_plain, t_ours, t_seq, t_conc, t_batch

    t_plain, t_ours, t_seq, t_conc, t_batch = asyncio.run(timed())

    p1, o1 = statistics.median(t_plain), statistics.median(t_ours)
    seq, conc, batch = statistics.median(t_seq), statistics.median(t_conc), statistics.median(t_batch)
    res = {
        "plain_1_s": p1, "ours_1_s": o1, "overhead_1": o1 / p1 - 1,
        "plain_seq_ips": n / seq, "ours_conc_ips": n / conc, "plain_batch_ips": n / batch,
        "speedup_conc": seq / conc, "device": name, "model": what,
    }
    print(f"{'figure':<58}{'value':>12}")
    rows = [
        ("1 request: plain pipeline call, latency (s)", f"{p1:.4f}"),
        ("1 request: vchar backend (+PNG with metadata), latency (s)", f"{o1:.4f}"),
        ("1 request: vchar overhead vs plain (target <= +5%)", f"{res['overhead_1']:+.1%}"),
        (f"{n} requests: plain, one by one (images/s)", f"{res['plain_seq_ips']:.2f}"),
        (f"{n} concurrent: vchar backend, batched (images/s)", f"{res['ours_conc_ips']:.2f}"),
        (f"{n} concurrent: vchar latency per request (s)", f"{conc:.4f}"),
        (f"{n} prompts: plain pipeline, one batched call (images/s)", f"{res['plain_batch_ips']:.2f}"),
        (f"{n} concurrent: vchar vs one by one (target >= 2x)", f"{res['speedup_conc']:.2f}x"),
    ]
    for k, v in rows:
        print(f"{k:<58}{v:>12}")
    return res


if __name__ == "__main__":
    main()
