"""The ``diffusers`` backend: Stable Diffusion 1.x/2.x and SDXL pipelines, by hub id or
local folder, with IP-Adapter identity from reference portraits and request batching.

* Loading: ``AutoPipelineForText2Image.from_pretrained`` (a diffusers folder with
  ``model_index.json`` or a hub id; the family, SD or SDXL, comes from the folder), or
  ``from_single_file`` for a ``.safetensors``/``.ckpt`` checkpoint. fp16 on CUDA, fp32 on
  the CPU unless ``dtype`` says otherwise. img2img reuses the same components through
  ``AutoPipelineForImage2Image.from_pipe`` (no second copy in memory).
* Samplers: ``default`` (the checkpoint's own), ``euler``, ``euler_a``, ``dpm++``,
  ``ddim``, ``unipc``, ``lcm`` (LCM-distilled checkpoints: 2-8 steps, guidance 1-2) and
  ``turbo`` (SD/SDXL-Turbo: 1-4 steps, no guidance; Euler ancestral, trailing spacing).
  Steps and guidance left out of a request take the sampler's defaults.
* Identity: IP-Adapter through ``pipeline.load_ip_adapter`` (variants ``base``, ``plus``,
  ``plus-face``, ``full-face``; from ``h94/IP-Adapter`` or a local folder of the same
  layout). The reference portraits are encoded once (their embeddings averaged) and cached.
* Caching: one engine (pipeline, adapter, embeddings, worker thread) per model and
  settings per process, shared by every backend object that asks for the same.
* Batching: concurrent requests with the same (mode, size, steps, guidance, strength,
  identity scale) go through ONE pipeline call with a generator per item, so each image
  equals the one its seed gives alone (see :mod:`generators.image.batching`).
* Safety: the model's ``StableDiffusionSafetyChecker`` when the folder has one, run by
  this backend (so it can be switched per request), else the documented fallback in
  :mod:`generators.image.safety`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from generators.image.base import (
    ImageBackendError,
    ImageError,
    ImageInputError,
    ImageRefused,
    ImageRequest,
    ImageResult,
    fit_image,
    load_image,
    output_path,
)
from generators.image.batching import MicroBatcher
from generators.image.metadata import request_metadata, save_png
from generators.image.safety import SafetyConfig, check_prompt, skin_check

try:
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"the diffusers image backend needs its extra: pip install 'vchar[image]' ({exc})") from exc

log = logging.getLogger(__name__)

SAMPLERS = ("default", "euler", "euler_a", "dpm++", "ddim", "unipc", "lcm", "turbo")
IP_ADAPTER_VARIANTS = ("base", "plus", "plus-face", "full-face")
DEFAULT_IP_ADAPTER_REPO = "h94/IP-Adapter"

# (family, variant) -> (subfolder, weight file, image encoder folder) in h94/IP-Adapter's layout
_IP_WEIGHTS = {
    ("sd", "base"): ("models", "ip-adapter_sd15.safetensors", "image_encoder"),
    ("sd", "plus"): ("models", "ip-adapter-plus_sd15.safetensors", "image_encoder"),
    ("sd", "plus-face"): ("models", "ip-adapter-plus-face_sd15.safetensors", "image_encoder"),
    ("sd", "full-face"): ("models", "ip-adapter-full-face_sd15.safetensors", "image_encoder"),
    ("sdxl", "base"): ("sdxl_models", "ip-adapter_sdxl_vit-h.safetensors", "models/image_encoder"),
    ("sdxl", "plus"): ("sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors", "models/image_encoder"),
    ("sdxl", "plus-face"): ("sdxl_models", "ip-adapter-plus-face_sdxl_vit-h.safetensors", "models/image_encoder"),
}


def sampler_defaults(sampler: str, family: str) -> tuple[int, float]:
    """(steps, guidance) a request gets when it names neither."""
    if sampler == "turbo":
        return 2, 0.0
    if sampler == "lcm":
        return 4, 1.0
    return 25, (5.0 if family == "sdxl" else 7.0)


@dataclass(frozen=True, slots=True)
class DiffusersConfig:
    model: str
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None: CUDA when present
    dtype: str | None = None  # "float16", "bfloat16", "float32"; None: fp16 on CUDA, fp32 on CPU
    sampler: str = "default"
    ip_adapter: str | None = None  # one of IP_ADAPTER_VARIANTS, or None for no identity adapter
    ip_adapter_repo: str = DEFAULT_IP_ADAPTER_REPO  # hub id or local folder of the same layout
    ip_adapter_weight: str | None = None  # "subfolder/file.safetensors" inside the repo, overrides the variant
    ip_adapter_image_encoder: str | None = None  # image encoder folder inside the repo, overrides the variant
    identity_scale: float = 0.6
    local_files_only: bool = False
    batch_window_s: float = 0.002
    max_batch: int = 8

    def checked(self) -> DiffusersConfig:
        if not self.model:
            raise ImageBackendError(
                "the diffusers backend needs a model: set VCHAR_IMAGE_MODEL to a diffusers folder or a hub id "
                "(for example stable-diffusion-v1-5/stable-diffusion-v1-5 or stabilityai/sdxl-turbo)"
            )
        if self.sampler not in SAMPLERS:
            raise ImageBackendError(f"unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}")
        if self.ip_adapter is not None and self.ip_adapter not in IP_ADAPTER_VARIANTS:
            raise ImageBackendError(
                f"unknown IP-Adapter variant {self.ip_adapter!r}; use one of {', '.join(IP_ADAPTER_VARIANTS)} or none"
            )
        if self.dtype not in (None, "float16", "bfloat16", "float32"):
            raise ImageBackendError(f"dtype {self.dtype!r}: use float16, bfloat16 or float32")
        return self


@dataclass(slots=True)
class _Job:
    request: ImageRequest  # steps and guidance resolved
    out: Path
    safety: SafetyConfig
    model_name: str


_ENGINES: dict[DiffusersConfig, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(cfg: DiffusersConfig) -> _Engine:
    """The process-wide engine for these settings (created, not yet loaded)."""
    with _ENGINES_LOCK:
        eng = _ENGINES.get(cfg)
        if eng is None:
            eng = _ENGINES[cfg] = _Engine(cfg)
        return eng


def clear_engines() -> None:
    """Forget every cached pipeline (tests; or to free memory)."""
    with _ENGINES_LOCK:
        for eng in _ENGINES.values():
            eng.executor.shutdown(wait=False)
        _ENGINES.clear()


class _Engine:
    """A loaded pipeline and everything around it; all model work runs on its one thread."""

    def __init__(self, cfg: DiffusersConfig):
        self.cfg = cfg
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vchar-diffusers")
        self.batcher: MicroBatcher[_Job, ImageResult] = MicroBatcher(
            self._run_batch, self._group_key, self.executor, window_s=cfg.batch_window_s, max_batch=cfg.max_batch
        )
        self.pipe: Any = None
        self._img2img: Any = None
        self.family = "sd"
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.dtype:
            self.dtype = getattr(torch, cfg.dtype)
        else:
            self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.checker: Any = None
        self.adapter_loaded = False
        self._hidden_states = False
        self._embeds: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._null: torch.Tensor | None = None
        self._warned_no_adapter = False

    # -- loading (on the engine thread) ---------------------------------------------------

    def load(self) -> None:
        if self.pipe is not None:
            return
        cfg = self.cfg
        src = Path(cfg.model).expanduser()
        try:
            if src.is_file():
                pipe = self._load_single_file(src)
            else:
                if src.is_dir() and not (src / "model_index.json").is_file():
                    raise ImageBackendError(
                        f"{src} is a folder without model_index.json: point VCHAR_IMAGE_MODEL at a diffusers pipeline "
                        "folder (one saved with save_pretrained), a .safetensors checkpoint file, or a hub id"
                    )
                pipe = AutoPipelineForText2Image.from_pretrained(
                    str(src) if src.is_dir() else cfg.model, torch_dtype=self.dtype, local_files_only=cfg.local_files_only
                )
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds; all mean "cannot load"
            raise ImageBackendError(
                f"cannot load the image model {cfg.model!r} ({type(exc).__name__}: {exc}). Set VCHAR_IMAGE_MODEL to a "
                "diffusers pipeline folder, a .safetensors checkpoint, or a hub id such as "
                "stable-diffusion-v1-5/stable-diffusion-v1-5 (the first use downloads it and needs the network), or "
                "use VCHAR_IMAGE_BACKEND=lite on a host without a GPU"
            ) from exc
        self.adopt(pipe)

    def adopt(self, pipe) -> None:
        """Use an already built pipeline (benchmarks, or callers who build their own)."""
        cfg = self.cfg
        self.family = "sdxl" if "XL" in type(pipe).__name__ else "sd"
        self._set_sampler(pipe)
        self.checker = getattr(pipe, "safety_checker", None)
        if self.checker is not None:
            # run by us after generation, so that it can be switched per request
            pipe.safety_checker = None
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        log.info("image model %s loaded (%s, %s, %s, sampler %s, safety checker %s)", cfg.model, self.family,
                 self.device, str(self.dtype).removeprefix("torch."), cfg.sampler, "yes" if self.checker else "no")

    def _load_single_file(self, path: Path):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        if path.suffix.lower() not in (".safetensors", ".ckpt"):
            raise ImageBackendError(f"{path}: a checkpoint file must be .safetensors or .ckpt")
        cls = StableDiffusionXLPipeline if "xl" in path.name.lower() else StableDiffusionPipeline
        return cls.from_single_file(str(path), torch_dtype=self.dtype, local_files_only=self.cfg.local_files_only)

    def _set_sampler(self, pipe) -> None:
        name = self.cfg.sampler
        if name == "default":
            return
        import diffusers

        base = dict(pipe.scheduler.config)
        cls_name, extra = {
            "euler": ("EulerDiscreteScheduler", {}),
            "euler_a": ("EulerAncestralDiscreteScheduler", {}),
            "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
            "ddim": ("DDIMScheduler", {}),
            "unipc": ("UniPCMultistepScheduler", {}),
            "lcm": ("LCMScheduler", {}),
            "turbo": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
        }[name]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(base, **extra)

    def ensure_adapter(self) -> None:
        cfg = self.cfg
        if self.adapter_loaded or cfg.ip_adapter is None:
            return
        if cfg.ip_adapter_weight:
            sub, _, weight = cfg.ip_adapter_weight.rpartition("/")
            enc = cfg.ip_adapter_image_encoder or "image_encoder"
        else:
            key = (self.family, cfg.ip_adapter)
            if key not in _IP_WEIGHTS:
                raise ImageBackendError(
                    f"there is no {cfg.ip_adapter} IP-Adapter for {self.family.upper()} models; use "
                    + ", ".join(v for f, v in _IP_WEIGHTS if f == self.family)
                )
            sub, weight, enc = _IP_WEIGHTS[key]
            enc = cfg.ip_adapter_image_encoder or enc
        try:
            self.pipe.load_ip_adapter(
                cfg.ip_adapter_repo, subfolder=sub or "", weight_name=weight, image_encoder_folder=enc,
                local_files_only=cfg.local_files_only,
            )
        except Exception as exc:  # noqa: BLE001
            raise ImageBackendError(
                f"cannot load the IP-Adapter {cfg.ip_adapter_repo}/{sub}/{weight} ({type(exc).__name__}: {exc}). "
                "Download it once with the network on, or set VCHAR_IMAGE_IP_ADAPTER_REPO to a local folder with the "
                f"same layout ({sub}/{weight} and its image encoder), or VCHAR_IMAGE_IP_ADAPTER=none"
            ) from exc
        self.pipe.to(self.device, self.dtype)
        from diffusers.models.embeddings import ImageProjection

        layer = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        self._hidden_states = not isinstance(layer, ImageProjection)
        self._img2img = None  # rebuilt with the image encoder registered
        self.adapter_loaded = True
        log.info("IP-Adapter %s/%s loaded", sub, weight)

    @property
    def img2img(self):
        if self._img2img is None:
            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    # -- identity -------------------------------------------------------------------------

    def identity_embeds(self, refs: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) IP-Adapter embeddings for these portraits, (1, 1, ...) each."""
        key = tuple((r, Path(r).stat().st_mtime_ns) for r in refs)
        hit = self._embeds.get(key)
        if hit is not None:
            return hit
        images = [fit_image(load_image(r, what="reference portrait"), (512, 512)) for r in refs]
        with torch.inference_mode():
            pos, neg = self.pipe.encode_image(images, self.device, 1, output_hidden_states=self._hidden_states)
        pos = pos.mean(0, keepdim=True).unsqueeze(0)
        neg = neg.mean(0, keepdim=True).unsqueeze(0)
        if len(self._embeds) > 256:
            self._embeds.clear()
        self._embeds[key] = (pos, neg)
        return pos, neg

    def null_embeds(self) -> torch.Tensor:
        """The 'no identity' embedding (what the adapter gets for an unconditioned item)."""
        if self._null is None:
            blank = Image.new("RGB", (224, 224))
            with torch.inference_mode():
                _, neg = self.pipe.encode_image([blank], self.device, 1, output_hidden_states=self._hidden_states)
            self._null = neg.unsqueeze(0)
        return self._null

    # -- generation (on the engine thread) ----------------------------------------------------

    def _group_key(self, job: _Job) -> tuple:
        r = job.request
        ident = (r.identity_scale if r.identity_scale is not None else self.cfg.identity_scale) if r.references else None
        return (r.mode, r.size, r.steps, r.guidance, r.strength if r.mode == "img2img" else None, ident)

    def _run_batch(self, jobs: list[_Job]) -> list[ImageResult | BaseException]:
        try:
            self.load()
            images = self._generate_split([j.request for j in jobs])
        except ImageError as exc:
            return [exc] * len(jobs)
        flags = self._model_check(jobs, images)
        out: list[ImageResult | BaseException] = []
        for job, img, flagged in zip(jobs, images, flags):
            try:
                if job.request.safety and job.safety.image_check:
                    if flagged:
                        raise ImageRefused("the safety checker flagged the picture and it was not sent", stage="image")
                    if self.checker is None:
                        skin_check(img, job.safety)
                meta = request_metadata(
                    job.request, backend="diffusers", model=job.model_name, sampler=self.cfg.sampler,
                    extra=self._identity_meta(job.request),
                )
                out.append(ImageResult(save_png(img, job.out, meta), meta))
            except Exception as exc:  # noqa: BLE001 - that item alone fails
                out.append(exc)
        return out

    def _identity_meta(self, r: ImageRequest) -> dict[str, str]:
        if not r.references or not self.adapter_loaded:
            return {"identity": "none"}
        scale = r.identity_scale if r.identity_scale is not None else self.cfg.identity_scale
        return {"identity": f"ip-adapter {self.cfg.ip_adapter or self.cfg.ip_adapter_weight} scale {scale:g}"}

    def _model_check(self, jobs: list[_Job], images: list[Image.Image]) -> list[bool]:
        want = [i for i, j in enumerate(jobs) if j.request.safety and j.safety.image_check]
        flags = [False] * len(jobs)
        if self.checker is None or not want:
            return flags
        import numpy as np

        picked = [images[i] for i in want]
        clip = self.pipe.feature_extractor(picked, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        arr = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in picked])
        with torch.inference_mode():
            _, nsfw = self.checker(images=arr, clip_input=clip)
        for i, bad in zip(want, nsfw):
            flags[i] = bool(bad)
        return flags

    def _generate_split(self, reqs: list[ImageRequest]) -> list[Image.Image]:
        """One pipeline call; on CUDA out-of-memory, halves of the batch instead."""
        try:
            return self.generate_now(reqs)
        except torch.OutOfMemoryError:
            if len(reqs) == 1:
                raise ImageBackendError(
                    "the GPU ran out of memory for one image: use a smaller size, fewer concurrent jobs, or a GPU with "
                    "more memory"
                ) from None
            torch.cuda.empty_cache()
            half = len(reqs) // 2
            log.warning("GPU out of memory at batch %d; running halves", len(reqs))
            return self._generate_split(reqs[:half]) + self._generate_split(reqs[half:])

    def generate_now(self, reqs: list[ImageRequest]) -> list[Image.Image]:
        """Run ONE pipeline call for requests that share a group key. Blocking."""
        self.load()
        first = reqs[0]
        w, h = first.size
        steps, guidance = first.steps, first.guidance
        gens = [torch.Generator("cpu").manual_seed(r.seed) for r in reqs]
        kwargs: dict[str, Any] = dict(
            prompt=[r.prompt for r in reqs],
            negative_prompt=[r.negative_prompt or "" for r in reqs],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="pil",
        )
        if first.mode == "img2img":
            if int(steps * first.strength) < 1:
                raise ImageInputError(
                    f"with {steps} steps at strength {first.strength:g} no denoising step would run: use at least "
                    f"{math.ceil(1 / first.strength)} steps or a higher strength"
                )
            kwargs["image"] = [fit_image(load_image(r.init_image, what="photo"), (w, h)) for r in reqs]
            kwargs["strength"] = first.strength
        else:
            kwargs.update(height=h, width=w)
        wants_identity = any(r.references for r in reqs)
        if wants_identity and self.cfg.ip_adapter is None and not self._warned_no_adapter:
            log.warning("reference portraits are ignored: no IP-Adapter configured (set VCHAR_IMAGE_IP_ADAPTER, "
                        "for example plus-face)")
            self._warned_no_adapter = True
        if wants_identity:
            self.ensure_adapter()
        if self.adapter_loaded:
            if wants_identity:
                pairs = [self.identity_embeds(r.references) for r in reqs]
                pos = torch.cat([p for p, _ in pairs])
                neg = torch.cat([n for _, n in pairs])
                scale = first.identity_scale if first.identity_scale is not None else self.cfg.identity_scale
            else:
                pos = neg = self.null_embeds().expand(len(reqs), *self.null_embeds().shape[1:])
                scale = 0.0
            cfg_on = guidance > 1 and self.pipe.unet.config.time_cond_proj_dim is None
            embeds = [(torch.cat([neg, pos]) if cfg_on else pos).to(self.device, self.dtype)]
            kwargs["ip_adapter_image_embeds"] = embeds
            self.pipe.set_ip_adapter_scale(scale)
        pipe = self.img2img if first.mode == "img2img" else self.pipe
        if self.adapter_loaded:
            # The pipelines repeat ip_adapter_image_embeds once per prompt (they expect ONE
            # identity for the whole batch). Ours are already per item, in the pipeline's
            # own [negatives, positives] layout: hand them over unchanged.
            pipe.prepare_ip_adapter_image_embeds = lambda *args, **kw: embeds
        try:
            with torch.inference_mode():
                result = pipe(**kwargs)
        finally:
            pipe.__dict__.pop("prepare_ip_adapter_image_embeds", None)
        return list(result.images)


class DiffusersImageGenerator:
    """The ``diffusers`` backend. Cheap to construct; the model loads on first use (or
    on ``await load()``) and is shared with every other instance with the same config."""

    name = "diffusers"

    def __init__(self, model: str, *, out_dir: str | Path, safety: SafetyConfig | None = None,
                 model_name: str | None = None, **options: Any):
        self.config = DiffusersConfig(model=model, **options).checked()
        self.out_dir = Path(out_dir)
        self.safety = safety or SafetyConfig()
        self.model_name = model_name or model
        self.engine = get_engine(self.config)

    @property
    def stats(self):
        """Pipeline calls and their batch sizes (``calls``, ``items``, ``sizes``)."""
        return self.engine.batcher.stats

    async def load(self) -> None:
        """Load the pipeline now (and the IP-Adapter, if configured) instead of on first use."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.engine.executor, self.engine.load)
        if self.config.ip_adapter:
            await loop.run_in_executor(self.engine.executor, self.engine.ensure_adapter)

    def defaults(self) -> tuple[int, float]:
        return sampler_defaults(self.config.sampler, self.engine.family)

    async def generate(self, request: ImageRequest) -> ImageResult:
        request = request.checked()
        check_prompt(request, self.safety)
        if request.mode == "img2img":
            load_image(request.init_image, what="photo")  # a clear error before queueing
        if self.engine.pipe is None:
            await self.load()
        request = request.with_defaults(*self.defaults())
        job = _Job(request, output_path(request, self.out_dir, self.name), self.safety, self.model_name)
        return await self.engine.batcher.submit(job)

    async def generate_many(self, requests: list[ImageRequest]) -> list[ImageResult | BaseException]:
        return await asyncio.gather(*(self.generate(r) for r in requests), return_exceptions=True)

    async def aclose(self) -> None:
        """Nothing to close: the engine stays cached for the process (``clear_engines`` frees it)."""

