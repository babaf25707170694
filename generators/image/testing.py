"""Tiny real-architecture models for tests and benchmarks (importable, like the fakes).

``save_tiny_sd_pipeline(folder)`` writes a Stable Diffusion pipeline folder (random UNet,
VAE, CLIP text encoder, a CLIP tokenizer with a byte-level vocabulary made on the spot,
and optionally a tiny ``StableDiffusionSafetyChecker``) that ``from_pretrained`` loads
like any real checkpoint. ``save_tiny_ip_adapter(folder, unet)`` writes IP-Adapter
weights (``base`` or ``plus``) and a tiny CLIP vision encoder in h94/IP-Adapter's layout
(``models/ip-adapter_sd15.safetensors``, ``models/image_encoder/``), in the exact format
``load_ip_adapter`` reads. ``face_image()`` draws a synthetic face that OpenCV's Haar
cascades detect. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CROSS_DIM = 32


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make_clip_tokenizer(folder: Path):
    """A CLIPTokenizer over single bytes (no merges): real code, 514 tokens."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def tiny_components(seed: int = 0, *, safety: str | None = None, image_size: int = 32):
    """UNet, VAE, text encoder, tokenizer, scheduler (and a safety checker + feature
    extractor when ``safety`` is ``"flag-all"`` or ``"flag-none"``)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_DIM, attention_head_dim=4, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4, sample_size=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=CROSS_DIM, intermediate_size=64,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=514, max_position_embeddings=77, projection_dim=32,
    ))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_clip_tokenizer(Path(tmp))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    parts = dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                 safety_checker=None, feature_extractor=None)
    if safety:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPConfig, CLIPImageProcessor

        cfg = CLIPConfig(
            text_config=dict(hidden_size=CROSS_DIM, intermediate_size=64, num_attention_heads=4, num_hidden_layers=1,
                             vocab_size=514),
            vision_config=dict(hidden_size=CROSS_DIM, intermediate_size=64, num_attention_heads=4, num_hidden_layers=1,
                               image_size=image_size, patch_size=8),
            projection_dim=CROSS_DIM,
        )
        checker = StableDiffusionSafetyChecker(cfg)
        with torch.no_grad():
            # cosine similarity is in [-1, 1]: a threshold of -2 flags everything, of 2 nothing
            w = -2.0 if safety == "flag-all" else 2.0
            checker.concept_embeds_weights.fill_(w)
            checker.special_care_embeds_weights.fill_(w)
        parts["safety_checker"] = checker
        parts["feature_extractor"] = CLIPImageProcessor(size={"shortest_edge": image_size},
                                                        crop_size={"height": image_size, "width": image_size})
    return parts


def save_tiny_sd_pipeline(folder: str | Path, *, seed: int = 0, safety: str | None = None) -> Path:
    """Write a tiny Stable Diffusion pipeline folder; returns it."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    parts = tiny_components(seed, safety=safety)
    pipe = StableDiffusionPipeline(**parts, image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def save_tiny_ip_adapter(folder: str | Path, unet_config: dict, *, variant: str = "base", seed: int = 0,
                         image_size: int = 32) -> Path:
    """IP-Adapter weights for a UNet of ``unet_config`` plus a tiny CLIP image encoder, in
    h94/IP-Adapter's layout under ``folder``. Returns ``folder``."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: (torch.randn(*shape, generator=gen) * 0.2).contiguous()  # noqa: E731
    cross = unet_config["cross_attention_dim"]
    vision_hidden, embed_dim = 32, 24
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=vision_hidden, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        image_size=image_size, patch_size=8, projection_dim=embed_dim,
    ))
    encoder.save_pretrained(folder / "models" / "image_encoder")

    sd: dict[str, torch.Tensor] = {}
    if variant == "base":
        sd["image_proj.proj.weight"] = rand(4 * cross, embed_dim)
        sd["image_proj.proj.bias"] = rand(4 * cross)
        sd["image_proj.norm.weight"] = torch.ones(cross)
        sd["image_proj.norm.bias"] = torch.zeros(cross)
        weight = "ip-adapter_sd15.safetensors"
    elif variant == "plus":
        hidden, queries, ff = 64, 4, 256  # one 64-wide head
        sd["image_proj.latents"] = rand(1, queries, hidden)
        sd["image_proj.proj_in.weight"], sd["image_proj.proj_in.bias"] = rand(hidden, vision_hidden), rand(hidden)
        sd["image_proj.proj_out.weight"], sd["image_proj.proj_out.bias"] = rand(cross, hidden), rand(cross)
        sd["image_proj.norm_out.weight"], sd["image_proj.norm_out.bias"] = torch.ones(cross), torch.zeros(cross)
        for i in range(4):
            p = f"image_proj.layers.{i}."
            for n in ("norm1", "norm2"):
                sd[p + f"0.{n}.weight"], sd[p + f"0.{n}.bias"] = torch.ones(hidden), torch.zeros(hidden)
            sd[p + "0.to_q.weight"] = rand(hidden, hidden)
            sd[p + "0.to_kv.weight"] = rand(2 * hidden, hidden)
            sd[p + "0.to_out.weight"] = rand(hidden, hidden)
            sd[p + "1.0.weight"], sd[p + "1.0.bias"] = torch.ones(hidden), torch.zeros(hidden)
            sd[p + "1.1.weight"] = rand(ff, hidden)
            sd[p + "1.3.weight"] = rand(hidden, ff)
        weight = "ip-adapter-plus_sd15.safetensors"
    else:
        raise ValueError(f"variant {variant!r}: base or plus")

    # one (to_k_ip, to_v_ip) pair per cross-attention layer, numbered 1, 3, 5, ... in the
    # order of the UNet's attention processors (as the original checkpoints are)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(unet_config)
    blocks = list(unet_config["block_out_channels"])
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hs = blocks[-1]
        elif name.startswith("up_blocks"):
            hs = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hs = blocks[int(name[len("down_blocks.")])]
        sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hs, cross)
        sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hs, cross)
        key_id += 2
    (folder / "models").mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "models" / weight))
    return folder


def face_image(size: int = 200, *, skin=(215, 175, 150), background=(60, 120, 90)) -> Image.Image:
    """A synthetic frontal face (RGB) that the Haar cascades find."""
    import cv2

    s = size
    img = np.full((s, s, 3), background, np.uint8)
    c = (s // 2, s // 2)
    cv2.ellipse(img, c, (int(s * .33), int(s * .43)), 0, 0, 360, skin, -1)
    cv2.ellipse(img, (c[0], int(s * .16)), (int(s * .36), int(s * .14)), 0, 180, 360, (40, 30, 30), -1)
    ey, ex = int(s * .40), int(s * .15)
    for dx in (-ex, ex):
        cv2.ellipse(img, (c[0] + dx, ey - int(s * .07)), (int(s * .09), int(s * .02)), 0, 0, 360, (50, 40, 40), -1)
        cv2.ellipse(img, (c[0] + dx, ey), (int(s * .07), int(s * .035)), 0, 0, 360, (250, 250, 250), -1)
        cv2.circle(img, (c[0] + dx, ey), int(s * .03), (20, 30, 40), -1)
    cv2.ellipse(img, (c[0], int(s * .55)), (int(s * .04), int(s * .08)), 0, 0, 360,
                tuple(int(v * 0.85) for v in skin), -1)
    cv2.ellipse(img, (c[0], int(s * .70)), (int(s * .12), int(s * .035)), 0, 0, 360, (160, 70, 70), -1)
    img = cv2.GaussianBlur(img, (0, 0), s * 0.012)
    return Image.fromarray(img)


def portrait_on_canvas(path: str | Path, *, canvas=(600, 400), at=(350, 150), face_size: int = 200) -> Path:
    """A photo-like portrait: the synthetic face placed off-centre on a larger canvas."""
    img = Image.new("RGB", canvas, (60, 120, 90))
    img.paste(face_image(face_size), at)
    path = Path(path)
    img.save(path)
    return path
