"""Image generation backends: lite (compositing from the reference portrait, CPU, no
weights), diffusers (Stable Diffusion / SDXL with IP-Adapter identity and batching),
remote (an AUTOMATIC1111 / SD.Next compatible server).

    gen = build_image_backend("diffusers", model="stable-diffusion-v1-5/stable-diffusion-v1-5",
                              out_dir=data_dir / "images", ip_adapter="plus-face")
    result = await gen.generate(ImageRequest(prompt=selfie_prompt("at the beach", appearance=...),
                                             references=(portrait,), seed=seed_for(persona_seed, scene)))
    result.path, result.metadata

Errors: ImageInputError (bad input), ImageRefused (the safety gate), ImageBackendError
(cannot work); all are ImageError and their messages say what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generators.image.base import (
    DEFAULT_NEGATIVE,
    ImageBackendError,
    ImageError,
    ImageGenerator,
    ImageInputError,
    ImageRefused,
    ImageRequest,
    ImageResult,
    load_image,
    parse_size,
    seed_for,
    selfie_prompt,
)
from generators.image.metadata import read_metadata
from generators.image.safety import SafetyConfig

__all__ = [
    "BACKENDS",
    "DEFAULT_NEGATIVE",
    "ImageBackendError",
    "ImageError",
    "ImageGenerator",
    "ImageInputError",
    "ImageRefused",
    "ImageRequest",
    "ImageResult",
    "SafetyConfig",
    "build_image_backend",
    "load_image",
    "parse_size",
    "read_metadata",
    "seed_for",
    "selfie_prompt",
]

BACKENDS = ("lite", "diffusers", "remote")


def build_image_backend(
    name: str,
    *,
    out_dir: str | Path,
    model: str | None = None,
    base_url: str | None = None,
    safety: SafetyConfig | None = None,
    **options: Any,
) -> ImageGenerator:
    """The configured backend; heavy imports happen only for the one chosen.

    ``options`` go to the backend: for ``diffusers`` see
    :class:`generators.image.diffusers_backend.DiffusersConfig` (device, dtype, sampler,
    ip_adapter, ip_adapter_repo, identity_scale, batch_window_s, max_batch, ...); for
    ``remote`` see :class:`generators.image.remote.RemoteImageGenerator` (username,
    password, sampler, timeout, ip_adapter_model, ...). Options set to None are dropped.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if name == "lite":
        from generators.image.lite import LiteImageGenerator

        return LiteImageGenerator(out_dir=out_dir, safety=safety)
    if name == "diffusers":
        try:
            from generators.image.diffusers_backend import DiffusersImageGenerator
        except ImportError as exc:
            raise ImageBackendError(f"the diffusers image backend needs its extra: pip install 'vchar[image]' ({exc})") from exc
        if not model:
            raise ImageBackendError(
                "VCHAR_IMAGE_BACKEND=diffusers needs VCHAR_IMAGE_MODEL: a diffusers folder or a hub id such as "
                "stable-diffusion-v1-5/stable-diffusion-v1-5 or stabilityai/sdxl-turbo"
            )
        return DiffusersImageGenerator(model, out_dir=out_dir, safety=safety, **options)
    if name == "remote":
        from generators.image.remote import RemoteImageGenerator

        if model is not None:
            options.setdefault("model", model)
        return RemoteImageGenerator(base_url or "", out_dir=out_dir, safety=safety, **options)
    raise ImageBackendError(f"unknown image backend {name!r}; use lite, diffusers or remote")
