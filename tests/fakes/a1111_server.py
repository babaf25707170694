"""A real, local AUTOMATIC1111-compatible web UI API for tests.

    async with FakeA1111Server() as srv:
        gen = RemoteImageGenerator(srv.base_url, out_dir=tmp_path)
        ...
        assert srv.requests[0].body["seed"] == 7

Serves ``POST /sdapi/v1/txt2img``, ``POST /sdapi/v1/img2img`` and ``GET /sdapi/v1/sd-models``
on 127.0.0.1 at a free port, answering as the web UI does: ``{"images": [base64 PNG],
"parameters": {...}, "info": "<JSON text>"}``. The picture is a deterministic function of
(prompt, seed, size), and for img2img a blend of the init image by ``denoising_strength``.
Programmable: ``fail_next(n, status)``, ``garbage_next(n)`` (an image that is not one),
``skin_next(n)`` (a picture that is all skin colour), ``auth=(user, password)``, ``delay``
(seconds each picture takes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image


@dataclass
class A1111Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeA1111Server:
    model: str = "fake-sd15"
    auth: tuple[str, str] | None = None
    delay: float = 0.0  # seconds each generation takes (a slow GPU server)
    host: str = "127.0.0.1"
    requests: list[A1111Request] = field(default_factory=list)
    port: int | None = None
    _faults: list[tuple[str, int]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        self._faults += [("status", status)] * n

    def garbage_next(self, n: int = 1) -> None:
        self._faults += [("garbage", 200)] * n

    def skin_next(self, n: int = 1) -> None:
        self._faults += [("skin", 200)] * n

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeA1111Server is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeA1111Server:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/sdapi/v1/txt2img", self._generate)
        app.router.add_post("/sdapi/v1/img2img", self._generate)
        app.router.add_get("/sdapi/v1/sd-models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeA1111Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _authorised(self, request: web.Request) -> bool:
        if self.auth is None:
            return True
        want = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return request.headers.get("Authorization") == want

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        return web.json_response([{"title": f"{self.model}.safetensors", "model_name": self.model}])

    @staticmethod
    def picture(prompt: str, seed: int, width: int, height: int) -> Image.Image:
        digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, height)[:, None, None]
        img = a * (1 - t) + b * t + rng.normal(0, 20, (height, width, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    async def _generate(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            body = None
        self.requests.append(A1111Request(request.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._authorised(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if not isinstance(body, dict) or "prompt" not in body:
            return web.json_response({"detail": "prompt is required"}, status=422)
        fault = self._faults.pop(0) if self._faults else None
        if fault and fault[0] == "status":
            return web.json_response({"error": "fake failure", "detail": "boom"}, status=fault[1])
        w, h = int(body.get("width", 512)), int(body.get("height", 512))
        seed = int(body.get("seed", -1))
        if seed == -1:
            seed = 1234
        img = self.picture(body["prompt"], seed, w, h)
        if request.path.endswith("img2img"):
            init = Image.open(io.BytesIO(base64.b64decode(body["init_images"][0]))).convert("RGB").resize((w, h))
            s = float(body.get("denoising_strength", 0.75))
            img = Image.blend(init, img, s)
        if fault and fault[0] == "skin":
            img = Image.new("RGB", (w, h), (224, 172, 140))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        encoded = base64.b64encode(buf.getvalue()).decode()
        if fault and fault[0] == "garbage":
            encoded = base64.b64encode(b"this is not a png").decode()
        info = {"prompt": body["prompt"], "seed": seed, "all_seeds": [seed], "sd_model_name": self.model,
                "sampler_name": body.get("sampler_name", "Euler a"), "width": w, "height": h}
        params = {k: v for k, v in body.items() if k not in ("init_images", "alwayson_scripts")}
        return web.json_response({"images": [encoded], "parameters": params, "info": json.dumps(info)})
