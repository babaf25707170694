"""The ``remote`` backend: an AUTOMATIC1111 / SD.Next (or any compatible) web UI API.

``POST {base_url}/sdapi/v1/txt2img`` and ``/sdapi/v1/img2img`` over httpx, for operators
who already run an image server (start AUTOMATIC1111 with ``--api``). Identity: when
``ip_adapter_model`` is set (the ControlNet extension's IP-Adapter model name as its UI
lists it, for example ``ip-adapter-plus-face_sd15 [7f7a633a]``), the first reference
portrait goes to a ControlNet unit with ``ip_adapter_module``; otherwise references are
not sent. The server's own safety settings apply on its side; here the prompt blocklist
runs before the call and the skin heuristic after it (see :mod:`generators.image.safety`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from generators.redact import public_url
from generators.image.base import (
    ImageBackendError,
    ImageRequest,
    ImageResult,
    fit_image,
    load_image,
    output_path,
)
from generators.image.metadata import request_metadata, save_png
from generators.image.safety import SafetyConfig, check_prompt, skin_check

log = logging.getLogger(__name__)


def _b64_png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class RemoteImageGenerator:
    name = "remote"

    def __init__(
        self,
        base_url: str,
        *,
        out_dir: str | Path,
        safety: SafetyConfig | None = None,
        model: str | None = None,  # a checkpoint title to switch to per call (override_settings)
        sampler: str | None = None,  # e.g. "DPM++ 2M Karras", "Euler a"
        username: str | None = None,
        password: str | None = None,
        timeout: float = 180.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        ip_adapter_model: str | None = None,
        ip_adapter_module: str = "ip-adapter_clip_sd15",
        identity_scale: float = 0.6,
        default_steps: int = 25,
        default_guidance: float = 7.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not base_url:
            raise ImageBackendError(
                "VCHAR_IMAGE_BACKEND=remote needs VCHAR_IMAGE_BASE_URL, for example http://127.0.0.1:7860 "
                "(AUTOMATIC1111 or SD.Next started with --api)"
            )
        self.base_url = base_url.rstrip("/")
        self.out_dir = Path(out_dir)
        self.safety = safety or SafetyConfig()
        self.model = model
        self.sampler = sampler
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.ip_adapter_model = ip_adapter_model
        self.ip_adapter_module = ip_adapter_module
        self.identity_scale = identity_scale
        self._defaults = (default_steps, default_guidance)
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, auth=auth, transport=transport)
        self._warned_refs = False

    def defaults(self) -> tuple[int, float]:
        return self._defaults

    def payload(self, request: ImageRequest) -> dict[str, Any]:
        """The JSON body for the request (steps and guidance resolved)."""
        w, h = request.size
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": int(request.seed) & 0xFFFFFFFF,  # the web UIs take 32-bit seeds
            "steps": request.steps,
            "cfg_scale": request.guidance,
            "width": w,
            "height": h,
            "batch_size": 1,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if self.sampler:
            body["sampler_name"] = self.sampler
        if self.model:
            body["override_settings"] = {"sd_model_checkpoint": self.model}
            body["override_settings_restore_afterwards"] = False
        if request.mode == "img2img":
            photo = fit_image(load_image(request.init_image, what="photo"), (w, h))
            body["init_images"] = [_b64_png(photo)]
            body["denoising_strength"] = request.strength
        if request.references:
            if self.ip_adapter_model:
                ref = fit_image(load_image(request.references[0], what="reference portrait"), (512, 512))
                scale = request.identity_scale if request.identity_scale is not None else self.identity_scale
                body["alwayson_scripts"] = {"controlnet": {"args": [{
                    "enabled": True, "image": _b64_png(ref), "module": self.ip_adapter_module,
                    "model": self.ip_adapter_model, "weight": scale, "resize_mode": "Crop and Resize",
                    "control_mode": "Balanced", "pixel_perfect": True,
                }]}}
            elif not self._warned_refs:
                log.warning("reference portraits are not sent to the image server: set VCHAR_IMAGE_IP_ADAPTER_MODEL "
                            "to its ControlNet IP-Adapter model name")
                self._warned_refs = True
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: str = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = await self._client.post(path, json=body)
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.TransportError as exc:
                last = f"unreachable ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except json.JSONDecodeError:
                        raise ImageBackendError(
                            f"the image server at {public_url(self.base_url)} answered {path} with something that is not JSON: is "
                            "VCHAR_IMAGE_BASE_URL the web UI's address (started with --api)?"
                        ) from None
                if resp.status_code in (401, 403):
                    raise ImageBackendError(
                        f"the image server at {public_url(self.base_url)} refused the login ({resp.status_code}): set "
                        "VCHAR_IMAGE_USERNAME and VCHAR_IMAGE_PASSWORD to its --api-auth credentials"
                    )
                if resp.status_code == 404:
                    raise ImageBackendError(
                        f"the image server at {public_url(self.base_url)} has no {path} (404): start AUTOMATIC1111/SD.Next with --api"
                    )
                if resp.status_code < 500 and resp.status_code != 429:
                    raise ImageBackendError(
                        f"the image server rejected the request ({resp.status_code}): {resp.text[:300]}"
                    )
                last = f"answered {resp.status_code}: {resp.text[:200]}"
            if attempt < self.max_retries:
                await asyncio.sleep(min(4.0, self.retry_backoff * 2**attempt))
        raise ImageBackendError(f"the image server at {public_url(self.base_url)} {last}; tried {self.max_retries + 1} times")

    async def generate(self, request: ImageRequest) -> ImageResult:
        request = request.checked().with_defaults(*self.defaults())
        check_prompt(request, self.safety)
        path = "/sdapi/v1/img2img" if request.mode == "img2img" else "/sdapi/v1/txt2img"
        data = await self._post(path, self.payload(request))
        images = data.get("images") or []
        if not images:
            raise ImageBackendError(f"the image server answered {path} without an image")
        try:
            raw = base64.b64decode(images[0].split(",", 1)[-1])
            img = Image.open(io.BytesIO(raw))
            img.load()
            img = img.convert("RGB")
        except (ValueError, UnidentifiedImageError, OSError) as exc:
            raise ImageBackendError(f"the image server sent an image that cannot be read ({exc})") from None
        info: dict[str, Any] = {}
        try:
            info = json.loads(data.get("info") or "{}")
        except (json.JSONDecodeError, TypeError):
            pass
        if request.safety and self.safety.image_check:
            await asyncio.to_thread(skin_check, img, self.safety)
        model = str(info.get("sd_model_name") or self.model or "remote")
        extra = {"server": public_url(self.base_url)}  # stored in the PNG and the asset row
        if "seed" in info:
            extra["server_seed"] = str(info["seed"])
        if request.references and self.ip_adapter_model:
            extra["identity"] = f"controlnet {self.ip_adapter_model}"
        meta = request_metadata(request, backend=self.name, model=model, sampler=self.sampler or str(info.get("sampler_name", "")),
                                extra=extra)
        out = output_path(request, self.out_dir, self.name)
        return ImageResult(await asyncio.to_thread(save_png, img, out, meta), meta)

    async def aclose(self) -> None:
        await self._client.aclose()
