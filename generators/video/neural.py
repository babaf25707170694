"""The neural lip-sync tier: MuseTalk redraws the mouth of the lite talking head.

``VCHAR_VIDEO_BACKEND=musetalk``. The lite head (``generators.video.lite``) still makes
the clip's framing, head motion, breathing and blinks, with its mouth left closed; MuseTalk
(Tencent Music's Lyra Lab, https://github.com/TMElyralab/MuseTalk) then paints the lower
face of every frame from the speech. MuseTalk is not a diffusion model: it inpaints a face
in a VAE's latent space in one step.

Per clip: the speech at 16 kHz as Whisper's log-mel features, 30 s to a window, through
whisper-tiny's encoder; the hidden states of every layer (the embedding and each of the
four layers: five of 384 channels) are kept, 50 a second.
Per frame, in batches: the face's box from the head's landmarks as MuseTalk 1.5 draws it
(the landmarks' width; from the chin, plus a small margin below it, up to as far above a
point two thirds of the way down the nose as the chin is below it), cut out and resized to
256x256; that crop with its lower half blanked and the crop whole, each encoded by the VAE
(the posterior's mode times its scaling factor), side by side as 8 latent channels; the
audio as the ten whisper frames around the video frame (two before it to two after, in
video frames, zero-padded at the ends) of all layers flattened to a 50-token sequence, plus
a sinusoidal positional encoding; one call of the UNet at timestep 0 with the audio as its
cross-attention context; the latent it returns decoded by the VAE and blended back into the
frame under a soft mask of the lower face (the jaw line from the landmarks, cut at the
crop's middle, feathered), so nothing above the nose or outside the face changes.

Weights, in the official layout (``models/`` of the MuseTalk repository, or any folder so
laid out; ``VCHAR_VIDEO_MODEL=/path``):
``musetalkV15/musetalk.json`` + ``musetalkV15/unet.pth`` (MuseTalk 1.5) or
``musetalk/musetalk.json`` + ``musetalk/pytorch_model.bin`` (1.0), ``sd-vae/`` (a diffusers
``AutoencoderKL`` folder: stabilityai/sd-vae-ft-mse) and ``whisper/`` (a transformers
folder: openai/whisper-tiny, with its ``preprocessor_config.json``). A hub id
(``TMElyralab/MuseTalk``, the default) downloads the same with ``huggingface_hub`` on first
use (3.4 GB, about 3.7 with the VAE and Whisper), with a progress bar; the VAE and Whisper
come from their own repositories unless the hub repository holds them. Loaded once per
``MuseTalkVideo`` (lazily, thread-safe); fp16 on CUDA, float32 on the CPU.

Licences, as published: MuseTalk's code is MIT; its README says the trained weights "are
available for any purpose, even commercially", while the weights' Hugging Face repository
(TMElyralab/MuseTalk) is tagged CreativeML OpenRAIL-M, which allows commercial use but
carries use restrictions that must be passed on to whoever gets the model. sd-vae-ft-mse
is MIT (its Hugging Face card); whisper-tiny is Apache-2.0 on Hugging Face (openai/whisper's
own code and weights are MIT). MuseTalk's face detector (S3FD), DWPose and face-parsing
models are not used: mediapipe's face mesh finds the face.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generators.video import VideoError, VideoInputError
from generators.video.lite import LiteHead, check_speech, frame_size, motion, read_portrait

log = logging.getLogger(__name__)

DEFAULT_MODEL = "TMElyralab/MuseTalk"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
WHISPER_REPO = "openai/whisper-tiny"
CROP = 256  # the face crop MuseTalk was trained on
PAD_LEFT = PAD_RIGHT = 2  # video frames of speech before and after each frame (MuseTalk 1.5's defaults)
WINDOW = 2 * (PAD_LEFT + PAD_RIGHT + 1)  # whisper frames per video frame's window
MARGIN = 10 / 256  # MuseTalk 1.5's 10 px below the chin, as a share of a typical face box's height
LICENSES = ("MuseTalk code MIT; MuseTalk weights as published: 'any purpose, even commercially' (README), "
            "CreativeML OpenRAIL-M on Hugging Face; sd-vae-ft-mse MIT; whisper-tiny Apache-2.0")

# the lower half of mediapipe's face oval, cheek to chin to cheek
LOWER_OVAL = (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234)
NASION, NOSE_TIP = 168, 4

LAYOUT_HELP = (
    "the official layout: musetalkV15/musetalk.json + musetalkV15/unet.pth (or musetalk/musetalk.json + "
    "musetalk/pytorch_model.bin), sd-vae/ and whisper/. With the network: "
    "`huggingface-cli download TMElyralab/MuseTalk musetalkV15/musetalk.json musetalkV15/unet.pth --local-dir DIR`, "
    "`huggingface-cli download stabilityai/sd-vae-ft-mse config.json diffusion_pytorch_model.safetensors "
    "--local-dir DIR/sd-vae`, `huggingface-cli download openai/whisper-tiny config.json model.safetensors "
    "preprocessor_config.json --local-dir DIR/whisper`; then VCHAR_VIDEO_MODEL=DIR "
    "(https://github.com/TMElyralab/MuseTalk#download-weights)"
)


@dataclass(frozen=True)
class Parts:
    """Where each part of a MuseTalk model lies."""

    unet_config: Path
    unet_weights: Path
    version: str  # "v15" or "v1"
    vae: Path
    whisper: Path


def _has_any(folder: Path, names: tuple[str, ...]) -> bool:
    return any((folder / n).is_file() for n in names)


VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
UNETS = (("v15", "musetalkV15", "unet.pth"), ("v1", "musetalk", "pytorch_model.bin"))


def find_parts(folder: str | Path) -> Parts:
    """The parts of a MuseTalk folder in the official layout (the ``models/`` folder, a
    MuseTalk checkout holding one, or the ``musetalkV15``/``musetalk`` folder itself), or a
    VideoError naming every part that is missing and where it comes from."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VideoError(f"the MuseTalk folder {root} does not exist; it needs {LAYOUT_HELP}")
    if (root / "models").is_dir() and not any((root / d).is_dir() for _, d, _ in UNETS):
        root = root / "models"
    unet = None
    if (root / "musetalk.json").is_file():  # the version folder itself; the others beside it
        for version, _, weights in UNETS:
            if (root / weights).is_file():
                unet = (root / "musetalk.json", root / weights, version)
                break
        root = root.parent
    missing = []
    if unet is None:
        for version, sub, weights in UNETS:
            if (root / sub / "musetalk.json").is_file() and (root / sub / weights).is_file():
                unet = (root / sub / "musetalk.json", root / sub / weights, version)
                break
    if unet is None:
        have = [f"{sub}/{n}" for _, sub, w in UNETS for n in ("musetalk.json", w) if (root / sub / n).is_file()]
        missing.append("the MuseTalk UNet: musetalkV15/musetalk.json and musetalkV15/unet.pth (MuseTalk 1.5) or "
                       "musetalk/musetalk.json and musetalk/pytorch_model.bin (1.0), from huggingface.co/"
                       f"{DEFAULT_MODEL}" + (f" (found only {', '.join(have)})" if have else ""))
    vae = next((root / d for d in ("sd-vae", "sd-vae-ft-mse") if (root / d / "config.json").is_file()
                and _has_any(root / d, VAE_WEIGHTS)), None)
    if vae is None:
        missing.append(f"sd-vae/ (config.json and diffusion_pytorch_model.safetensors or .bin, from huggingface.co/"
                       f"{VAE_REPO})")
    whisper = root / "whisper"
    if not ((whisper / "config.json").is_file() and _has_any(whisper, WHISPER_WEIGHTS)
            and (whisper / "preprocessor_config.json").is_file()):
        old = " (whisper/tiny.pt is the openai-whisper file of MuseTalk 1.0's first layout: the transformers " \
              "files are needed)" if (whisper / "tiny.pt").is_file() else ""
        missing.append(f"whisper/ (config.json, model.safetensors or pytorch_model.bin, and preprocessor_config.json, "
                       f"from huggingface.co/{WHISPER_REPO}){old}")
        whisper = None
    if missing:
        raise VideoError(f"the MuseTalk folder {root} is missing " + "; ".join(missing) + f". It needs {LAYOUT_HELP}")
    return Parts(unet[0], unet[1], unet[2], vae, whisper)


def _download(hub_id: str) -> Parts:
    """The parts from the Hugging Face hub: the UNet from ``hub_id``, the VAE and Whisper from
    it too where it holds them, else from their own repositories."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise VideoError(f"downloading {hub_id} needs huggingface_hub (pip install huggingface_hub), or a local "
                         f"folder: {LAYOUT_HELP}") from exc
    try:
        log.info("downloading MuseTalk from %s (%s)", hub_id, LICENSES)
        patterns = ["musetalkV15/musetalk.json", "musetalkV15/unet.pth", "sd-vae/*", "whisper/*"]
        root = Path(snapshot_download(hub_id, allow_patterns=patterns))
        if not (root / "musetalkV15" / "unet.pth").is_file():  # a repository of MuseTalk 1.0 only
            v1 = ["musetalk/musetalk.json", "musetalk/pytorch_model.bin", "sd-vae/*", "whisper/*"]
            root = Path(snapshot_download(hub_id, allow_patterns=v1))
        version = next(((v, root / d / "musetalk.json", root / d / w) for v, d, w in UNETS if (root / d / w).is_file()),
                       None)
        if version is None:
            raise VideoError(f"the hub repository {hub_id} holds no MuseTalk UNet (musetalkV15/unet.pth or "
                             f"musetalk/pytorch_model.bin); {LAYOUT_HELP}")
        vae = root / "sd-vae"
        if not _has_any(vae, VAE_WEIGHTS):
            vae = Path(snapshot_download(VAE_REPO, allow_patterns=["config.json", VAE_WEIGHTS[0]]))
        whisper = root / "whisper"
        if not _has_any(whisper, WHISPER_WEIGHTS):
            whisper = Path(snapshot_download(WHISPER_REPO, allow_patterns=["config.json", "model.safetensors",
                                                                           "preprocessor_config.json"]))
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001 - offline, unknown repository, disk full: all said the same way
        raise VideoError(f"could not download the MuseTalk weights from the Hugging Face hub ({hub_id}): "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Without the network, "
                         f"fetch them where there is one into a folder in {LAYOUT_HELP}") from exc
    return Parts(version[1], version[2], version[0], vae, whisper)


def positional_encoding(length: int, d_model: int) -> np.ndarray:
    """MuseTalk's sinusoidal encoding of the audio tokens' positions: (1, length, d_model),
    sine on the even channels and cosine on the odd ones, wavelengths up to 10000 * 2 pi."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((length, d_model), np.float64)
    pe[:, 0::2] = np.sin(pos * rate)
    pe[:, 1::2] = np.cos(pos * rate)[:, : d_model // 2]
    return pe[None].astype(np.float32)


def _resolve_device(device: str):
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VideoError(f"the video device is {device!r} (VCHAR_VIDEO_DEVICE) but torch sees no CUDA GPU here")
    return dev


def _resolve_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        named = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}
        if dtype not in named:
            raise VideoError(f"unknown dtype {dtype!r}: use float16, bfloat16 or float32")
        return named[dtype]
    return dtype


def _read_unet(parts: Parts, device, dtype):
    import torch
    from diffusers import UNet2DConditionModel

    try:
        config = json.loads(parts.unet_config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VideoError(f"cannot read the MuseTalk UNet config {parts.unet_config}: {exc}") from exc
    if config.get("in_channels") != 8 or config.get("out_channels") != 4:
        raise VideoError(f"{parts.unet_config} is not a MuseTalk UNet (it needs in_channels 8: the masked and the "
                         f"reference latents; out_channels 4), got in {config.get('in_channels')}, "
                         f"out {config.get('out_channels')}")
    try:
        state = torch.load(parts.unet_weights, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file from before torch's zip format cannot be memory-mapped
        state = torch.load(parts.unet_weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise VideoError(f"cannot read the MuseTalk UNet weights {parts.unet_weights}: {type(exc).__name__}: "
                         f"{exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    for prefix in ("module.", "unet."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    with torch.device("meta"):  # no random init of 850M parameters only to overwrite them
        unet = UNet2DConditionModel.from_config(config)
    want = set(unet.state_dict())
    lost, extra = sorted(want - set(state)), sorted(set(state) - want)
    if lost or extra:
        raise VideoError(f"the MuseTalk UNet weights {parts.unet_weights} do not fit {parts.unet_config.name}: "
                         f"{len(lost)} missing (e.g. {lost[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
    # each tensor straight to the device in its dtype (a memory-mapped file is read as it goes)
    state = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    unet.load_state_dict(state, strict=True, assign=True)
    return unet.eval().requires_grad_(False)


LOADS = 0  # how many times weights were read from disk in this process (the benchmark and tests look)


@dataclass
class MuseTalk:
    """A loaded MuseTalk model: the UNet, the VAE, whisper's encoder and feature extractor."""

    unet: Any
    vae: Any
    encoder: Any
    features: Any
    version: str
    device: Any
    dtype: Any
    source: str
    pe: Any = field(default=None, repr=False)

    @property
    def layers(self) -> int:
        return int(self.encoder.config.encoder_layers) + 1

    @property
    def audio_rate(self) -> float:
        """Whisper encoder frames a second (50 for whisper-tiny)."""
        fe = self.features
        stride = int(self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0])
        return fe.sampling_rate / fe.hop_length / stride

    def whisper_features(self, audio: np.ndarray) -> Any:
        """(T, layers, d_model) hidden states of every encoder layer for ``audio`` (mono, at
        the feature extractor's rate), T at ``audio_rate``, cut to the speech's length."""
        import torch

        fe = self.features
        seg = int(fe.n_samples)
        chunks = [audio[i: i + seg] for i in range(0, max(1, len(audio)), seg)]
        mel = fe(chunks, sampling_rate=fe.sampling_rate, return_tensors="pt", return_attention_mask=False)
        mel = mel.input_features  # (chunks, mel bins, 3000): each chunk padded to 30 s
        with torch.inference_mode():
            hs = self.encoder(mel.to(self.device, self.dtype), output_hidden_states=True).hidden_states
            x = torch.stack(hs, dim=2)  # (chunks, 1500, layers, d)
        x = x.reshape(-1, *x.shape[2:])
        return x[: max(1, int(math.floor(len(audio) / fe.sampling_rate * self.audio_rate)))]

    def windows(self, feats, frames: int, fps: float) -> tuple[Any, np.ndarray]:
        """The features zero-padded at both ends, and each video frame's window start in them."""
        import torch

        step = self.audio_rate / fps
        left = int(math.ceil(step)) * PAD_LEFT
        starts = np.floor(np.arange(frames) * step).astype(np.int64)
        right = max(int(math.ceil(step)) * 3 * PAD_RIGHT, int(starts[-1]) + WINDOW - left - len(feats)) if frames else 0
        zeros = feats.new_zeros
        padded = torch.cat([zeros((left, *feats.shape[1:])), feats, zeros((max(0, right), *feats.shape[1:]))])
        return padded, starts

    def prompts(self, padded, starts: np.ndarray):
        """The UNet's cross-attention context for the frames starting at ``starts``:
        (B, WINDOW * layers, d_model), time-major, plus the positional encoding."""
        import torch

        idx = torch.as_tensor(starts, device=padded.device)[:, None] + torch.arange(WINDOW, device=padded.device)
        x = padded[idx]  # (B, WINDOW, layers, d)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.pe is None or self.pe.shape[1] < x.shape[1]:
            self.pe = torch.from_numpy(positional_encoding(max(x.shape[1], 64), x.shape[-1])).to(self.device)
        return (x.float() + self.pe[:, : x.shape[1]]).to(self.dtype)

    def lipsync(self, crops: np.ndarray, prompts) -> np.ndarray:
        """New faces (B, 256, 256, 3 uint8 RGB) for ``crops`` (the same) speaking ``prompts``."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            masked = x.clone()
            masked[:, :, CROP // 2:, :] = 0  # the lower half blanked (black, -1 once normalized)
            pixels = torch.cat([masked, x]) * 2 - 1
            scale = float(self.vae.config.scaling_factor)
            lat = self.vae.encode(pixels.to(self.dtype)).latent_dist.mode() * scale
            b = len(crops)
            latents = torch.cat([lat[:b], lat[b:]], dim=1)  # masked, then reference: 8 channels
            t = torch.zeros((), device=self.device, dtype=torch.long)
            pred = self.unet(latents, t, encoder_hidden_states=prompts).sample
            img = self.vae.decode(pred / scale).sample
            img = ((img.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            return img.permute(0, 2, 3, 1).cpu().numpy()


def load_musetalk(path_or_hub_id: str | Path = DEFAULT_MODEL, device: str = "auto", dtype=None) -> MuseTalk:
    """MuseTalk from a folder in the official layout (1.5's or 1.0's file names) or a hub
    id (downloaded with huggingface_hub), on ``device`` ("auto": CUDA when there is one)
    in ``dtype`` (default fp16 on CUDA, float32 elsewhere). Raises VideoError saying which
    part is missing and where it comes from."""
    global LOADS
    try:
        import torch  # noqa: F401
        from diffusers import AutoencoderKL
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
    except ImportError as exc:
        raise VideoError(f"the musetalk backend needs torch, diffusers and transformers: pip install -e '.[image]' "
                         f"({exc})") from exc
    src = str(path_or_hub_id)
    local = Path(src).expanduser()
    if local.exists() or src.startswith((".", "/", "~")) or src.count("/") != 1:
        parts = find_parts(local)
    else:
        parts = _download(src)
    dev = _resolve_device(device)
    dt = _resolve_dtype(dtype, dev)
    t0 = time.perf_counter()
    unet = _read_unet(parts, dev, dt)
    try:
        safetensors = (parts.vae / VAE_WEIGHTS[0]).is_file()  # MuseTalk's script fetches the .bin
        vae = AutoencoderKL.from_pretrained(str(parts.vae), torch_dtype=dt, use_safetensors=safetensors)
        vae = vae.to(dev).eval().requires_grad_(False)
    except Exception as exc:  # noqa: BLE001 - named with the folder to fix
        raise VideoError(f"cannot load the VAE {parts.vae}: {type(exc).__name__}: {exc}") from exc
    try:
        # openai/whisper-tiny's checkpoint is the speech recognizer; only its encoder is kept
        whisper = WhisperForConditionalGeneration.from_pretrained(str(parts.whisper), dtype=dt)
        encoder = whisper.get_encoder().to(dev).eval().requires_grad_(False)
        del whisper
        features = WhisperFeatureExtractor.from_pretrained(str(parts.whisper))
    except Exception as exc:  # noqa: BLE001
        raise VideoError(f"cannot load Whisper {parts.whisper}: {type(exc).__name__}: {exc}") from exc
    cross = unet.config.cross_attention_dim
    if cross != encoder.config.d_model:
        raise VideoError(f"the MuseTalk UNet attends to {cross}-wide audio features but {parts.whisper} gives "
                         f"{encoder.config.d_model} (MuseTalk is trained on whisper-tiny)")
    LOADS += 1
    log.info("MuseTalk %s loaded from %s on %s (%s) in %.1f s", parts.version, src, dev, dt, time.perf_counter() - t0)
    return MuseTalk(unet, vae, encoder, features, parts.version, dev, dt, src)


@dataclass(frozen=True)
class Geometry:
    """Where a frame's face crop comes from: frame -> crop affine, and the crop's lower-face mask."""

    matrix: np.ndarray  # (2, 3) frame pixels to crop pixels
    box: tuple[float, float, float, float]
    mask: np.ndarray  # (256, 256) float32 0..1


def _taper(edge: int = 12) -> np.ndarray:
    r = np.arange(CROP, dtype=np.float32)
    ramp = np.clip(np.minimum(r, CROP - 1 - r) / edge, 0, 1)
    return np.outer(ramp, ramp)


_TAPER = _taper()


def face_geometry(points: np.ndarray, margin: float) -> Geometry:
    """MuseTalk's face box for landmarks ``points`` (mediapipe's 478, in frame pixels) and
    the soft mask, in the crop, of the lower face that the model's output replaces."""
    import cv2

    x1, x2 = float(points[:, 0].min()), float(points[:, 0].max())
    chin = float(points[:, 1].max())
    mid = float(points[NASION, 1] + (points[NOSE_TIP, 1] - points[NASION, 1]) * 2 / 3)  # 68-point landmark 29
    top = mid - (chin - mid)
    y2 = chin + margin * (chin - top)
    sx, sy = CROP / max(x2 - x1, 1.0), CROP / max(y2 - top, 1.0)
    m = np.array([[sx, 0, -x1 * sx], [0, sy, -top * sy]], np.float64)
    p = points @ m[:, :2].T + m[:, 2]
    poly = p[list(LOWER_OVAL)]
    canvas = np.zeros((CROP, CROP), np.uint8)
    drop = (0.0, 0.6 * (CROP - p[152, 1]))  # the jaw line, and the same jaw a little lower: the model owns the chin
    for off in (np.zeros(2), np.array(drop)):
        cv2.fillPoly(canvas, [np.round((poly + off) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    canvas[: CROP // 2] = 0  # MuseTalk's upper boundary: the crop's middle
    k = int(0.04 * CROP) * 2 + 1
    mask = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (k, k), 0) * _TAPER
    return Geometry(m, (x1, top, x2, y2), mask)


def pose_points(head: LiteHead, yaw: float, dx: float, dy: float, scale: float) -> np.ndarray:
    """The head's landmarks at rest, moved as ``LiteHead.frame`` moves the head."""
    a = math.radians(yaw)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    c = np.array(head.center)
    return (head.points - c) @ rot.T + c + (dx, dy)


def cut(frame: np.ndarray, geo: Geometry) -> np.ndarray:
    """The 256x256 face crop of ``frame``."""
    import cv2

    shrink = 1.0 / min(geo.matrix[0, 0], geo.matrix[1, 1])
    if shrink > 1.5:  # a big face: blurred first, so the downscale does not alias
        frame = cv2.GaussianBlur(frame, (0, 0), 0.45 * shrink)
    return cv2.warpAffine(frame, geo.matrix, (CROP, CROP), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)


def paste(frame: np.ndarray, face: np.ndarray, geo: Geometry) -> np.ndarray:
    """``frame`` with ``face`` (the model's crop) blended in under the crop's mask."""
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = geo.box
    rx0, ry0 = max(0, int(math.floor(x1)) - 1), max(0, int(math.floor(y1)) - 1)
    rx1, ry1 = min(w, int(math.ceil(x2)) + 2), min(h, int(math.ceil(y2)) + 2)
    if rx1 <= rx0 or ry1 <= ry0:
        return frame
    m = geo.matrix.copy()
    m[:, 2] += m[:, :2] @ (rx0, ry0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    size = (rx1 - rx0, ry1 - ry0)
    new = cv2.warpAffine(face, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    alpha = cv2.warpAffine(geo.mask, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)[..., None]
    out = frame.copy()
    roi = out[ry0:ry1, rx0:rx1].astype(np.float32)
    out[ry0:ry1, rx0:rx1] = np.clip(roi + alpha * (new - roi) + 0.5, 0, 255).astype(np.uint8)
    return out


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """``items`` made ahead in a thread (the lite head renders on the CPU while the model
    runs); its errors are raised here, and it stops when the consumer does."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def work():
        try:
            for it in items:
                while not stop.is_set():
                    try:
                        q.put(("item", it), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", end))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("error", exc))

    t = threading.Thread(target=work, name="musetalk-frames", daemon=True)
    t.start()
    try:
        while True:
            kind, it = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise it
            yield it
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def lipsync_frames(head: LiteHead, mo, model: MuseTalk, audio: np.ndarray, sr: int, fps: float, frames: int,
                   batch: int = 8) -> Iterator[np.ndarray]:
    """The clip's frames: the lite head with its mouth closed (motion ``mo``), each with its
    lower face redrawn by ``model`` speaking ``audio``; ``batch`` frames per UNet call."""
    from generators.voice.finishing import resample

    feats = model.whisper_features(resample(audio, sr, int(model.features.sampling_rate)))
    padded, starts = model.windows(feats, frames, fps)
    margin = MARGIN if model.version == "v15" else 0.0

    def batches():
        buf = []
        for i in range(frames):
            f = head.frame(0.0, float(mo.blink[i]), float(mo.yaw[i]), float(mo.dx[i]), float(mo.dy[i]),
                           float(mo.scale[i]), 0.0)
            geo = face_geometry(pose_points(head, float(mo.yaw[i]), float(mo.dx[i]), float(mo.dy[i]),
                                            float(mo.scale[i])), margin)
            buf.append((i, f, geo, cut(f, geo)))
            if len(buf) == batch or i == frames - 1:
                yield buf
                buf = []

    for buf in _prefetch(batches()):
        idx = np.array([b[0] for b in buf])
        faces = model.lipsync(np.stack([b[3] for b in buf]), model.prompts(padded, starts[idx]))
        for (_, f, geo, _), face in zip(buf, faces):
            yield paste(f, face, geo)


class MuseTalkVideo:
    """The neural tier as the service uses it: ``LiteVideo``'s interface, MuseTalk's mouth."""

    name = "musetalk"

    def __init__(self, out_dir: str | Path, *, cache_dir: str | Path | None = None, model: str = DEFAULT_MODEL,
                 device: str = "auto", dtype=None, batch_size: int | None = None):
        self.out_dir = Path(out_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.out_dir / "faces"
        self.model_name = str(model)
        self.device, self.dtype = device, dtype
        self.batch_size = batch_size
        self._model: MuseTalk | None = None
        self._lock = threading.Lock()
        self.description = f"musetalk: {self.model_name} lip sync over the lite head"

    def load(self) -> MuseTalk:
        """The model, loaded on first use, once (thread-safe)."""
        with self._lock:
            if self._model is None:
                self._model = load_musetalk(self.model_name, self.device, self.dtype)
            return self._model

    @property
    def model(self) -> MuseTalk | None:
        return self._model

    def make(self, portrait: str | Path, audio: np.ndarray, sr: int, *, size: int = 512, fps: float = 25,
             seed: int = 0, name: str = "clip", cache: bool = True, layout: str = "square",
             smooth_to: float | None = None) -> dict:
        """An MP4 of the portrait speaking ``audio`` (as ``LiteVideo.make``; "generator":
        "musetalk"). ``cache``: keep the face's landmarks for next time."""
        from generators.video.mp4 import thumb_path, thumbnail, write_mp4
        from generators.video.smooth import smooth
        from generators.voice.finishing import resample

        check_speech(audio, sr)
        if fps <= 0:
            raise VideoInputError(f"the frame rate must be positive (got {fps})")
        img = read_portrait(portrait)
        width, height = frame_size(layout, size)
        head = LiteHead(img, width, height=height, cache_dir=self.cache_dir if cache else None)  # no face: fail early
        model = self.load()
        t0 = time.perf_counter()
        n = max(1, int(math.ceil(len(audio) / sr * fps)))
        mo = motion(n, fps, audio, sr, seed)
        batch = self.batch_size or (16 if model.device.type == "cuda" else 8)
        frames = lipsync_frames(head, mo, model, np.asarray(audio, np.float32), sr, fps, n, batch)
        rate = fps
        if smooth_to and smooth_to > fps:
            frames, rate = smooth(frames, fps, smooth_to)
        first: list[np.ndarray] = []
        written = [0]

        def keep_first():
            for f in frames:
                if not first:
                    first.append(f)
                written[0] += 1
                yield f

        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.mp4"
        path = write_mp4(out, keep_first(), rate, audio=resample(audio, sr, 48000), sample_rate=48000)
        thumb = thumbnail(first[0], thumb_path(out))
        return {"path": str(path), "thumbnail": str(thumb), "frames": written[0], "fps": rate, "width": width,
                "height": height, "duration": n / fps, "faces_found": head.faces_found,
                "seconds": time.perf_counter() - t0, "generator": "musetalk", "seed": seed, "layout": layout,
                "model": self.model_name, "musetalk_version": model.version, "device": str(model.device),
                "batch": batch}

    async def aclose(self) -> None:
        """Let go of the weights (and the GPU memory they held)."""
        with self._lock:
            model, self._model = self._model, None
        if model is not None and model.device.type == "cuda":
            import torch

            del model
            torch.cuda.empty_cache()
