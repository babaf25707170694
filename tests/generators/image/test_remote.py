"""The remote backend against a real local AUTOMATIC1111-compatible server."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from generators.image import ImageBackendError, ImageRefused, ImageRequest, build_image_backend, read_metadata
from tests.fakes.a1111_server import FakeA1111Server


def arr(result):
    return np.asarray(Image.open(result.path).convert("RGB"))


async def test_txt2img_sends_the_request_and_keeps_metadata(tmp_path):
    async with FakeA1111Server(model="dreamshaper_8") as srv:
        gen = build_image_backend("remote", base_url=srv.base_url, out_dir=tmp_path, sampler="Euler a")
        try:
            r = await gen.generate(ImageRequest(prompt="selfie at the beach", seed=42, steps=12, guidance=6.0,
                                                size=(64, 96), output=str(tmp_path / "a.png")))
            again = await gen.generate(ImageRequest(prompt="selfie at the beach", seed=42, steps=12, guidance=6.0,
                                                    size=(64, 96), output=str(tmp_path / "b.png")))
        finally:
            await gen.aclose()
    body = srv.requests[0].body
    assert srv.requests[0].path == "/sdapi/v1/txt2img"
    assert (body["prompt"], body["seed"], body["steps"], body["cfg_scale"]) == ("selfie at the beach", 42, 12, 6.0)
    assert (body["width"], body["height"], body["sampler_name"]) == (64, 96, "Euler a")
    assert Image.open(r.path).size == (64, 96)
    assert np.array_equal(arr(r), arr(again))
    meta = read_metadata(r.path)
    assert meta["model"] == "dreamshaper_8" and meta["seed"] == "42" and meta["backend"] == "remote"


async def test_img2img_and_identity_unit(tmp_path, portrait):
    async with FakeA1111Server() as srv:
        gen = build_image_backend("remote", base_url=srv.base_url, out_dir=tmp_path,
                                  ip_adapter_model="ip-adapter-plus-face_sd15 [7f7a633a]", identity_scale=0.8)
        try:
            r = await gen.generate(ImageRequest(prompt="redraw as a painting", mode="img2img", init_image=str(portrait),
                                                strength=0.4, size=(64, 64), references=(str(portrait),)))
        finally:
            await gen.aclose()
    req = srv.requests[0]
    assert req.path == "/sdapi/v1/img2img" and req.body["denoising_strength"] == 0.4
    init = Image.open(io.BytesIO(base64.b64decode(req.body["init_images"][0])))
    assert init.size == (64, 64)
    unit = req.body["alwayson_scripts"]["controlnet"]["args"][0]
    assert unit["model"] == "ip-adapter-plus-face_sd15 [7f7a633a]" and unit["weight"] == 0.8 and unit["enabled"]
    assert r.metadata["identity"].startswith("controlnet")


async def test_retries_then_clear_errors(tmp_path):
    async with FakeA1111Server(auth=("op", "secret")) as srv:
        good = build_image_backend("remote", base_url=srv.base_url, out_dir=tmp_path, username="op", password="secret",
                                   max_retries=2, retry_backoff=0.01)
        bad_login = build_image_backend("remote", base_url=srv.base_url, out_dir=tmp_path, username="op", password="x")
        try:
            srv.fail_next(2, status=500)
            r = await good.generate(ImageRequest(prompt="selfie", size=(32, 32)))
            assert r.path.exists() and len(srv.requests) == 3
            srv.fail_next(3, status=503)
            with pytest.raises(ImageBackendError, match="503"):
                await good.generate(ImageRequest(prompt="selfie", size=(32, 32)))
            with pytest.raises(ImageBackendError, match="VCHAR_IMAGE_PASSWORD"):
                await bad_login.generate(ImageRequest(prompt="selfie", size=(32, 32)))
            srv.garbage_next()
            with pytest.raises(ImageBackendError, match="cannot be read"):
                await good.generate(ImageRequest(prompt="selfie", size=(32, 32)))
            srv.skin_next()
            with pytest.raises(ImageRefused):
                await good.generate(ImageRequest(prompt="selfie", size=(32, 32)))
            n = len(srv.requests)
            with pytest.raises(ImageRefused):
                await good.generate(ImageRequest(prompt="topless selfie", size=(32, 32)))
            assert len(srv.requests) == n  # refused before the call
        finally:
            await good.aclose()
            await bad_login.aclose()
    down = build_image_backend("remote", base_url=srv.base_url, out_dir=tmp_path, max_retries=0)
    with pytest.raises(ImageBackendError, match="unreachable"):
        await down.generate(ImageRequest(prompt="selfie", size=(32, 32)))
    await down.aclose()
    with pytest.raises(ImageBackendError, match="VCHAR_IMAGE_BASE_URL"):
        build_image_backend("remote", out_dir=tmp_path)


async def test_server_credentials_never_reach_the_picture_or_its_record(tmp_path):
    """A base URL with a login in it: the PNG's text chunks and the metadata stored with
    the picture name the server by its public address only."""
    async with FakeA1111Server(model="dreamshaper_8") as srv:
        secret_url = srv.base_url.replace("http://", "http://op:pw-hunter2@")
        gen = build_image_backend("remote", base_url=secret_url, out_dir=tmp_path)
        try:
            r = await gen.generate(ImageRequest(prompt="selfie", seed=1, size=(64, 64), output=str(tmp_path / "a.png")))
        finally:
            await gen.aclose()
    stored = " ".join(str(v) for v in [*read_metadata(r.path).values(), *r.metadata.values()])
    stored += " ".join(Image.open(r.path).text.values())
    assert srv.base_url.removeprefix("http://") in stored
    assert "hunter2" not in stored and "op:" not in stored
