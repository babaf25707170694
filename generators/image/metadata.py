"""What made a picture, written into the PNG's text chunks (``tEXt``/``iTXt``).

Every key is its own chunk (``vchar:model``, ``vchar:prompt``, ``vchar:seed``, ...), and a
``parameters`` chunk repeats them in the AUTOMATIC1111 layout, which image viewers and
the common web UIs already show. ``read_metadata`` reads them back.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image, PngImagePlugin

from generators.image.base import ImageRequest

PREFIX = "vchar:"


def request_metadata(request: ImageRequest, *, backend: str, model: str, sampler: str = "",
                     extra: dict[str, str] | None = None) -> dict[str, str]:
    """The metadata of a finished request (steps and guidance already resolved)."""
    w, h = request.size
    meta = {
        "backend": backend,
        "model": model,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": str(request.seed),
        "steps": "" if request.steps is None else str(request.steps),
        "guidance": "" if request.guidance is None else f"{request.guidance:g}",
        "size": f"{w}x{h}",
        "mode": request.mode,
        "sampler": sampler,
    }
    if request.mode == "img2img":
        meta["strength"] = f"{request.strength:g}"
        meta["init_image"] = Path(request.init_image or "").name
    if request.references:
        meta["references"] = ", ".join(Path(r).name for r in request.references)
    meta.update({k: str(v) for k, v in request.tags.items()})
    meta.update(extra or {})
    return meta


def a1111_parameters(meta: dict[str, str]) -> str:
    """The ``parameters`` text AUTOMATIC1111 writes (prompt, negative, settings line)."""
    settings = [
        f"Steps: {meta.get('steps', '')}",
        f"Sampler: {meta.get('sampler', '') or 'default'}",
        f"CFG scale: {meta.get('guidance', '')}",
        f"Seed: {meta.get('seed', '')}",
        f"Size: {meta.get('size', '')}",
        f"Model: {meta.get('model', '')}",
    ]
    if "strength" in meta:
        settings.append(f"Denoising strength: {meta['strength']}")
    return f"{meta.get('prompt', '')}\nNegative prompt: {meta.get('negative_prompt', '')}\n" + ", ".join(settings)


def save_png(image: Image.Image, path: str | os.PathLike, meta: dict[str, str]) -> Path:
    """Write ``image`` as a PNG carrying ``meta``; atomically (a temp file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for k, v in meta.items():
        info.add_itxt(PREFIX + k, str(v))
    info.add_itxt("parameters", a1111_parameters(meta))
    # per process and thread: two workers making the same picture at once must not share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    image.save(tmp, format="PNG", pnginfo=info, compress_level=1)  # fast: a 512 px image in ~25 ms
    tmp.replace(path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``vchar:`` text chunks of a PNG, without the prefix (plus ``parameters``)."""
    with Image.open(path) as img:
        img.load()
        text = dict(getattr(img, "text", {}) or {})
    out = {k[len(PREFIX):]: v for k, v in text.items() if k.startswith(PREFIX)}
    if "parameters" in text:
        out["parameters"] = text["parameters"]
    return out
