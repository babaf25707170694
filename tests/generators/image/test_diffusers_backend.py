"""The diffusers backend on a tiny random pipeline saved as a folder and loaded with
from_pretrained: reproducibility, batching, IP-Adapter identity, img2img, safety, errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from generators.image import ImageBackendError, ImageInputError, ImageRefused, ImageRequest, read_metadata
from generators.image.diffusers_backend import DiffusersImageGenerator

SIZE = (32, 32)


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)


def req(prompt="selfie photo of Mira, at the beach", **kw) -> ImageRequest:
    kw.setdefault("size", SIZE)
    kw.setdefault("steps", 2)
    kw.setdefault("seed", 7)
    return ImageRequest(prompt=prompt, **kw)


@pytest.fixture
def gen(tiny_sd, tmp_path):
    return DiffusersImageGenerator(str(tiny_sd), out_dir=tmp_path, batch_window_s=0.002)


async def test_loads_the_folder_with_from_pretrained_and_is_reproducible(gen, tmp_path):
    a = await gen.generate(req(output=str(tmp_path / "a.png")))
    b = await gen.generate(req(output=str(tmp_path / "b.png")))
    other_scene = await gen.generate(req("selfie photo of Mira, in a snowy forest", output=str(tmp_path / "c.png")))
    other_seed = await gen.generate(req(seed=8, output=str(tmp_path / "d.png")))

    assert type(gen.engine.pipe).__name__ == "StableDiffusionPipeline"
    assert gen.engine.dtype.is_floating_point and str(gen.engine.dtype) == "torch.float32"  # CPU: fp32
    assert Image.open(a.path).size == SIZE
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(other_scene))
    assert not np.array_equal(pixels(a), pixels(other_seed))


async def test_png_text_chunks_carry_model_prompt_seed_steps_size(gen, tiny_sd, tmp_path):
    r = await gen.generate(req(output=str(tmp_path / "meta.png"), seed=1234, steps=3, guidance=5.5,
                               tags={"persona": "mira"}))
    meta = read_metadata(r.path)
    assert meta["model"] == str(tiny_sd)
    assert meta["prompt"] == "selfie photo of Mira, at the beach"
    assert meta["seed"] == "1234" and meta["steps"] == "3" and meta["size"] == "32x32"
    assert meta["guidance"] == "5.5" and meta["backend"] == "diffusers" and meta["persona"] == "mira"
    assert "Seed: 1234" in meta["parameters"] and "Steps: 3" in meta["parameters"]
    assert r.metadata["seed"] == "1234" and r.seed == 1234


async def test_eight_concurrent_requests_make_one_pipeline_call_equal_to_one_by_one(gen, tmp_path):
    scenes = ["beach", "cafe", "night market", "forest", "snow", "rooftop", "library", "train"]
    reqs = [req(f"selfie photo of Mira, at the {s}", seed=100 + i, output=str(tmp_path / f"one-{i}.png"))
            for i, s in enumerate(scenes)]
    alone = []
    for r in reqs:
        alone.append(await gen.generate(r))
    calls_before = gen.stats.calls
    together = await asyncio.gather(*(gen.generate(req(r.prompt, seed=r.seed, output=str(tmp_path / f"all-{i}.png")))
                                      for i, r in enumerate(reqs)))
    assert gen.stats.calls - calls_before == 1
    assert gen.stats.sizes[-1] == 8
    # Each item equals its unbatched image up to float rounding in the batched kernels:
    # (in practice 0-1 levels of 255 on a few pixels; most runs are bit-identical).
    for a, b in zip(alone, together):
        diff = np.abs(pixels(a) - pixels(b))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.02, (diff.max(), (diff > 0).mean())
    # eight different images, not one repeated
    assert len({pixels(t).tobytes() for t in together}) == 8


async def test_only_matching_shapes_share_a_call(gen, tmp_path):
    before = gen.stats.calls
    await asyncio.gather(
        gen.generate(req(seed=1, output=str(tmp_path / "1.png"))),
        gen.generate(req(seed=2, output=str(tmp_path / "2.png"))),
        gen.generate(req(seed=3, size=(32, 48), output=str(tmp_path / "3.png"))),
        gen.generate(req(seed=4, steps=3, output=str(tmp_path / "4.png"))),
    )
    assert gen.stats.calls - before == 3
    assert sorted(gen.stats.sizes[-3:]) == [1, 1, 2]


@pytest.mark.parametrize("variant", ["base", "plus"])
async def test_ip_adapter_identity_from_reference_portraits(tiny_sd, ip_repo, portrait, other_portrait, tmp_path, variant):
    gen = DiffusersImageGenerator(str(tiny_sd), out_dir=tmp_path, ip_adapter=variant, ip_adapter_repo=str(ip_repo),
                                  identity_scale=1.0)
    plain = await gen.generate(req(output=str(tmp_path / "plain.png")))
    mira = await gen.generate(req(references=(str(portrait),), output=str(tmp_path / "mira.png")))
    mira2 = await gen.generate(req(references=(str(portrait),), output=str(tmp_path / "mira2.png")))
    zoe = await gen.generate(req(references=(str(other_portrait),), output=str(tmp_path / "zoe.png")))

    assert gen.engine.adapter_loaded and gen.engine.pipe.image_encoder is not None
    assert np.array_equal(pixels(mira), pixels(mira2))
    assert not np.array_equal(pixels(plain), pixels(mira))
    assert not np.array_equal(pixels(mira), pixels(zoe))
    assert mira.metadata["identity"] == f"ip-adapter {variant} scale 1"
    assert read_metadata(mira.path)["references"] == "mira.png"
    assert plain.metadata["identity"] == "none"

    # identity requests batch too, each item with its own portrait, equal to one by one
    together = await asyncio.gather(
        gen.generate(req(references=(str(portrait),), output=str(tmp_path / "b-mira.png"))),
        gen.generate(req(references=(str(other_portrait),), output=str(tmp_path / "b-zoe.png"))),
    )
    assert gen.stats.sizes[-1] == 2
    for got, want in ((together[0], mira), (together[1], zoe)):
        assert np.abs(pixels(got) - pixels(want)).max() <= 2


async def test_img2img_redraws_the_photo(gen, portrait, tmp_path):
    light = await gen.generate(req("oil painting", mode="img2img", init_image=str(portrait), strength=0.5, steps=4,
                                   output=str(tmp_path / "light.png")))
    again = await gen.generate(req("oil painting", mode="img2img", init_image=str(portrait), strength=0.5, steps=4,
                                   output=str(tmp_path / "again.png")))
    heavy = await gen.generate(req("oil painting", mode="img2img", init_image=str(portrait), strength=1.0, steps=4,
                                   output=str(tmp_path / "heavy.png")))
    assert np.array_equal(pixels(light), pixels(again))
    assert not np.array_equal(pixels(light), pixels(heavy))
    assert light.metadata["mode"] == "img2img" and light.metadata["strength"] == "0.5"

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageInputError, match="cannot be read as an image"):
        await gen.generate(req("oil painting", mode="img2img", init_image=str(bad)))
    with pytest.raises(ImageInputError, match="no denoising step"):
        await gen.generate(req("oil painting", mode="img2img", init_image=str(portrait), strength=0.2, steps=2))


async def test_turbo_sampler_defaults_and_no_guidance(tiny_sd, ip_repo, portrait, tmp_path):
    gen = DiffusersImageGenerator(str(tiny_sd), out_dir=tmp_path, sampler="turbo", ip_adapter="base",
                                  ip_adapter_repo=str(ip_repo))
    r = await gen.generate(ImageRequest(prompt="selfie", size=SIZE, seed=3, references=(str(portrait),)))
    assert (r.metadata["steps"], r.metadata["guidance"], r.metadata["sampler"]) == ("2", "0", "turbo")
    assert type(gen.engine.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    lcm = DiffusersImageGenerator(str(tiny_sd), out_dir=tmp_path, sampler="lcm")
    r = await lcm.generate(ImageRequest(prompt="selfie", size=SIZE, seed=3))
    assert r.metadata["steps"] == "4" and type(lcm.engine.pipe.scheduler).__name__ == "LCMScheduler"


async def test_safety_checker_in_the_folder_gates_images(tiny_sd_flagging, tiny_sd_checked, tmp_path):
    strict = DiffusersImageGenerator(str(tiny_sd_flagging), out_dir=tmp_path)
    with pytest.raises(ImageRefused) as info:
        await strict.generate(req(output=str(tmp_path / "x.png")))
    assert info.value.stage == "image"
    assert not (tmp_path / "x.png").exists()
    # a channel that switched the check off gets the picture
    ok = await strict.generate(req(safety=False, output=str(tmp_path / "y.png")))
    assert ok.path.exists()

    # in a batch only the flagged items fail: a checker that flags nothing passes all
    relaxed = DiffusersImageGenerator(str(tiny_sd_checked), out_dir=tmp_path)
    results = await relaxed.generate_many([req(seed=s, output=str(tmp_path / f"ok{s}.png")) for s in range(3)])
    assert relaxed.engine.checker is not None
    assert all(not isinstance(r, BaseException) for r in results)


async def test_prompt_blocklist_refuses_before_any_work(gen):
    calls = gen.stats.calls
    with pytest.raises(ImageRefused) as info:
        await gen.generate(req("selfie photo of Mira, n.u.d.e on the beach"))
    assert info.value.stage == "prompt" and gen.stats.calls == calls


async def test_unloadable_models_say_what_to_do(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageBackendError, match="model_index.json"):
        await DiffusersImageGenerator(str(empty), out_dir=tmp_path).generate(req())
    with pytest.raises(ImageBackendError, match="VCHAR_IMAGE_MODEL"):
        await DiffusersImageGenerator("nobody/no-such-model", out_dir=tmp_path, local_files_only=True).generate(req())
    with pytest.raises(ImageBackendError, match="sampler"):
        DiffusersImageGenerator("x", out_dir=tmp_path, sampler="warp-drive")


async def test_missing_ip_adapter_weights_say_what_to_do(tiny_sd, portrait, tmp_path):
    gen = DiffusersImageGenerator(str(tiny_sd), out_dir=tmp_path, ip_adapter="plus-face",
                                  ip_adapter_repo=str(tmp_path / "nowhere"), local_files_only=True)
    with pytest.raises(ImageBackendError, match="VCHAR_IMAGE_IP_ADAPTER"):
        await gen.generate(req(references=(str(portrait),)))


async def test_bad_requests_are_clear(gen, tmp_path):
    with pytest.raises(ImageInputError, match="multiple of 8"):
        await gen.generate(req(size=(30, 32)))
    with pytest.raises(ImageInputError, match="portrait"):
        await gen.generate(req(references=(str(tmp_path / "missing.png"),)))
    with pytest.raises(ImageInputError, match="empty"):
        await gen.generate(req("  "))
