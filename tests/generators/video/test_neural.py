"""The neural lip-sync tier: MuseTalk over the lite head, on tiny random models of MuseTalk's
real architecture (a diffusers UNet2DConditionModel with 8 input channels, an AutoencoderKL,
a transformers Whisper), saved in MuseTalk's official folder layout and loaded through the
same loader real weights take."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from generators.video import VideoError, neural
from generators.video import face as fm
from generators.video.lite import LiteHead, LiteVideo, motion, read_portrait
from generators.video.mp4 import probe, read_audio, read_frames, write_mp4
from generators.video.neural import MuseTalkVideo, load_musetalk
from persona.registry import SAMPLES

PORTRAIT = f"{SAMPLES}/media/mira-portrait.png"
SR = 22050
WHISPER_WIDTH = 32  # the tiny Whisper's d_model; the real whisper-tiny's is 384


# musetalkV15/musetalk.json as published (TMElyralab/MuseTalk)
PUBLISHED_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


def unet_config(cross: int = WHISPER_WIDTH) -> dict:
    """The published musetalk.json with the widths made tiny."""
    return {**PUBLISHED_UNET, "block_out_channels": [16, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
            "attention_head_dim": 2, "cross_attention_dim": cross}


def save_tiny_musetalk(root: Path, *, version: str = "v15", seed: int = 0, full_size: bool = False) -> Path:
    """A random MuseTalk in the official ``models/`` layout: ``musetalkV15/musetalk.json`` +
    ``unet.pth`` (or 1.0's ``musetalk/musetalk.json`` + ``pytorch_model.bin``), ``sd-vae/``
    (diffusers' files) and ``whisper/`` (config.json, the weights, preprocessor_config.json).
    ``full_size``: the published shapes (an 850M-parameter UNet, sd-vae-ft-mse's and
    whisper-tiny's configs), random, for timing on a GPU without downloading anything."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    sub, weights = ("musetalkV15", "unet.pth") if version == "v15" else ("musetalk", "pytorch_model.bin")
    (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = PUBLISHED_UNET if full_size else unet_config()
    (root / sub / "musetalk.json").write_text(json.dumps(cfg, indent=2))
    torch.save(UNet2DConditionModel(**cfg).state_dict(), root / sub / weights)  # a plain state dict, as published
    widths = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32) if full_size else \
        dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, sample_size=256,
                        scaling_factor=0.18215, **widths)
    vae.save_pretrained(root / "sd-vae", safe_serialization=False)  # config.json + diffusion_pytorch_model.bin
    if full_size:  # openai/whisper-tiny's shapes
        wcfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                             decoder_layers=4, decoder_attention_heads=6, decoder_ffn_dim=1536, vocab_size=51865)
    else:
        wcfg = WhisperConfig(d_model=WHISPER_WIDTH, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                             decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=64,
                             max_target_positions=16, num_mel_bins=80, max_source_positions=1500, pad_token_id=0,
                             bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    whisper = WhisperForConditionalGeneration(wcfg)  # openai/whisper-tiny's checkpoint is the full model
    whisper.save_pretrained(root / "whisper")
    if version == "v15":  # as MuseTalk's download script fetches it: pytorch_model.bin
        torch.save(whisper.state_dict(), root / "whisper" / "pytorch_model.bin")
        (root / "whisper" / "model.safetensors").unlink()
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_musetalk(tmp_path_factory.mktemp("musetalk") / "models")


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    bursts = np.clip(np.sin(2 * np.pi * 2.2 * t) * 1.6, 0, 1)
    return (0.4 * np.sin(2 * np.pi * 190 * t) * bursts).astype(np.float32)


def _closed_mouth_lite_frames(size: int, audio: np.ndarray, fps: float, seed: int, cache: Path) -> list[np.ndarray]:
    """What the lite head films with the same seed, its mouth kept shut."""
    head = LiteHead(read_portrait(PORTRAIT), size, cache_dir=cache)
    n = math.ceil(len(audio) / SR * fps)
    mo = motion(n, fps, audio, SR, seed)
    return [head.frame(0.0, mo.blink[i], mo.yaw[i], mo.dx[i], mo.dy[i], mo.scale[i], 0.0) for i in range(n)]


def _regions(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of a frame (from mediapipe on it): the lips, the lower face's surroundings to
    keep (everything but a generous box around nose-to-chin), and the top of the head."""
    pts = fm.landmarks(frame)[0]
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    lips = pts[list(fm.UPPER_OUTER + fm.LOWER_OUTER)]
    lx0, ly0 = lips.min(axis=0)
    lx1, ly1 = lips.max(axis=0)
    mouth = (xx >= lx0) & (xx <= lx1) & (yy >= ly0) & (yy <= ly1)
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    chin, nose = pts[152, 1], pts[4, 1]
    pad = 0.15 * (x1 - x0)
    lower_face = (xx >= x0 - pad) & (xx <= x1 + pad) & (yy >= pts[168, 1]) & (yy <= chin + 0.5 * (chin - nose))
    top = yy < pts[168, 1] - 2  # above the eyes' inner corners: forehead, brows, hair
    return mouth, ~lower_face, top


def test_a_clip_plays_with_the_mouth_redrawn_and_the_lite_head_kept_everywhere_else(tiny, tmp_path):
    audio = _speech(0.8)
    video = MuseTalkVideo(tmp_path / "out", model=str(tiny), device="cpu")
    meta = video.make(PORTRAIT, audio, SR, size=256, fps=25, seed=4, name="hi")
    lite = LiteVideo(tmp_path / "lite").make(PORTRAIT, audio, SR, size=256, fps=25, seed=4, name="hi")
    assert set(lite) - {"generator"} <= set(meta) and meta["generator"] == "musetalk"
    assert meta["musetalk_version"] == "v15" and meta["device"] == "cpu"
    p = probe(meta["path"])
    assert (p.width, p.height, p.video_codec, p.has_audio) == (256, 256, "h264", True)
    assert p.frames == meta["frames"] == 20 and abs(p.duration - 0.8) < 0.1 and abs(meta["duration"] - 0.8) < 1e-9
    sound = read_audio(meta["path"])
    assert abs(len(sound) / 48000 - 0.8) < 0.1 and np.sqrt(np.mean(sound ** 2)) > 0.05  # the speech is heard
    assert Path(meta["thumbnail"]).is_file()

    expected = _closed_mouth_lite_frames(256, audio, 25, 4, tmp_path / "faces")
    write_mp4(tmp_path / "expected.mp4", expected, 25)  # H.264's own noise on those frames, to compare with
    lite_frames, _ = read_frames(lite["path"])
    got, _ = read_frames(meta["path"])
    encoded, _ = read_frames(tmp_path / "expected.mp4")
    outside, noise, inside, top = [], [], [], []
    for i, (f, e, ee, lf) in enumerate(zip(got, expected, encoded, lite_frames)):
        if i % 4:
            continue
        mouth, keep, above = _regions(e)
        d = np.abs(f.astype(np.float32) - e.astype(np.float32)).mean(axis=2)
        outside.append(d[keep].mean())
        noise.append(np.abs(ee.astype(np.float32) - e.astype(np.float32)).mean(axis=2)[keep].mean())
        inside.append(d[mouth].mean())
        top.append(np.abs(f.astype(np.float32) - lf.astype(np.float32)).mean(axis=2)[above].mean())
    # the same frame as the lite head's, within H.264's noise (the portrait is grainy: about 2.4 levels)
    assert all(o < n + 0.3 for o, n in zip(outside, noise)), (outside, noise)
    assert max(top) < 3.0, top  # the same head motion and blinks as the lite tier's clip with that seed
    assert min(inside) > 12.0, inside  # the model painted the mouth


def test_weights_load_once_for_two_clips_and_the_mouth_follows_the_audio(tiny, tmp_path):
    video = MuseTalkVideo(tmp_path, model=str(tiny), device="cpu", batch_size=4)
    before = neural.LOADS
    audio = {"speech": _speech(0.6), "silence": np.zeros(int(0.6 * SR), np.float32)}
    metas: dict[str, dict] = {}

    def make(kind: str) -> None:
        metas[kind] = video.make(PORTRAIT, audio[kind], SR, size=256, fps=25, seed=2, name=kind, cache=False)

    threads = [threading.Thread(target=make, args=(k,)) for k in audio]  # two clips asked for at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(metas) == {"speech", "silence"}
    assert neural.LOADS == before + 1 and video.model is not None
    a, _ = read_frames(metas["speech"]["path"])
    b, _ = read_frames(metas["silence"]["path"])
    fa, fb = list(a), list(b)
    assert len(fa) == len(fb) == 15
    mouth, keep, _ = _regions(fa[0])
    diff = [np.abs(x.astype(np.float32) - y.astype(np.float32)).mean(axis=2) for x, y in zip(fa, fb)]
    assert max(d[keep].mean() for d in diff) < 1.5  # the same head, the same moves
    assert np.mean([d[mouth].mean() for d in diff]) > 0.5  # another sound, another mouth


def test_musetalk_1_0_layout_loads_and_its_model_redraws_a_crop(tmp_path):
    root = save_tiny_musetalk(tmp_path / "MuseTalk" / "models", version="v1", seed=1)
    model = load_musetalk(tmp_path / "MuseTalk", "cpu")  # a checkout holding models/
    assert model.version == "v1" and model.layers == 3 and model.audio_rate == 50
    feats = model.whisper_features(np.zeros(16000, np.float32))
    assert tuple(feats.shape) == (50, 3, WHISPER_WIDTH)  # one second: 50 frames of every layer
    padded, starts = model.windows(feats, 25, 25)
    prompts = model.prompts(padded, starts[:3])
    assert tuple(prompts.shape) == (3, neural.WINDOW * 3, WHISPER_WIDTH)
    crops = np.random.default_rng(0).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    out = model.lipsync(crops, prompts)
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert (root / "musetalk" / "pytorch_model.bin").is_file()


def test_the_positional_encoding_is_musetalks():
    pe = neural.positional_encoding(50, 384)[0]
    assert pe.shape == (50, 384)
    assert np.allclose(pe[0, 0::2], 0) and np.allclose(pe[0, 1::2], 1)
    assert np.isclose(pe[7, 2], np.sin(7 * np.exp(2 * -np.log(10000.0) / 384)))
    assert np.isclose(pe[7, 3], np.cos(7 * np.exp(2 * -np.log(10000.0) / 384)))


def test_a_folder_with_a_missing_part_says_what_to_download_and_where(tiny, tmp_path):
    import shutil

    broken = tmp_path / "models"
    shutil.copytree(tiny, broken)
    shutil.rmtree(broken / "whisper")
    (broken / "musetalkV15" / "unet.pth").unlink()
    with pytest.raises(VideoError) as err:
        load_musetalk(broken, "cpu")
    msg = str(err.value)
    assert "musetalkV15/unet.pth" in msg and "whisper/" in msg and "openai/whisper-tiny" in msg
    assert "TMElyralab/MuseTalk" in msg and "sd-vae" not in msg.split("It needs")[0]  # the VAE is there
    with pytest.raises(VideoError, match="does not exist"):
        load_musetalk(tmp_path / "nowhere", "cpu")
    # a UNet whose config does not fit its weights
    shutil.copytree(tiny / "musetalkV15", broken / "musetalkV15", dirs_exist_ok=True)
    shutil.copytree(tiny / "whisper", broken / "whisper")
    cfg = unet_config()
    cfg["block_out_channels"] = [16, 16, 32, 64]
    (broken / "musetalkV15" / "musetalk.json").write_text(json.dumps(cfg))
    with pytest.raises(VideoError, match="do not fit musetalk.json"):
        load_musetalk(broken, "cpu")


def test_a_hub_id_that_cannot_be_fetched_says_how_to_get_the_weights(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never download in a test
    with pytest.raises(VideoError) as err:
        load_musetalk("vchar-tests/no-such-musetalk", "cpu")
    msg = str(err.value)
    assert "vchar-tests/no-such-musetalk" in msg and "huggingface-cli download TMElyralab/MuseTalk" in msg
    assert "VCHAR_VIDEO_MODEL" in msg


def test_a_picture_without_a_face_is_refused_before_any_weights_load(tmp_path):
    from PIL import Image

    from generators.video import VideoInputError

    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(tmp_path / "wall.png")
    video = MuseTalkVideo(tmp_path, model=str(tmp_path / "no-weights-here"), device="cpu")
    with pytest.raises(VideoInputError, match="can't find a face"):
        video.make(tmp_path / "wall.png", _speech(0.5), SR, size=128)
    assert video.model is None
