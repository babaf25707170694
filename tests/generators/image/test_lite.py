"""The lite backend: deterministic composites from the reference portrait, face-aware."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generators.image import ImageInputError, ImageRefused, ImageRequest, read_metadata
from generators.image.lite import LiteImageGenerator, detect_faces, scene_theme


@pytest.fixture
def lite(tmp_path):
    return LiteImageGenerator(out_dir=tmp_path)


def arr(result) -> np.ndarray:
    return np.asarray(Image.open(result.path).convert("RGB"), dtype=np.int16)


def selfie(scene, portrait, seed=5, **kw):
    return ImageRequest(prompt=f"selfie photo of Mira, {scene}", references=(str(portrait),), seed=seed,
                        size=kw.pop("size", (256, 256)), **kw)


async def test_same_seed_and_scene_same_bytes_other_scene_differs(lite, portrait, tmp_path):
    a = await lite.generate(selfie("at the beach", portrait, output=str(tmp_path / "a.png")))
    b = await lite.generate(selfie("at the beach", portrait, output=str(tmp_path / "b.png")))
    c = await lite.generate(selfie("at the night market", portrait, output=str(tmp_path / "c.png")))
    d = await lite.generate(selfie("at the beach", portrait, seed=6, output=str(tmp_path / "d.png")))
    assert np.array_equal(arr(a), arr(b))
    assert not np.array_equal(arr(a), arr(c))
    assert not np.array_equal(arr(a), arr(d))
    assert (a.metadata["theme"], c.metadata["theme"]) == ("beach", "night")
    meta = read_metadata(a.path)
    assert meta["backend"] == "lite" and meta["seed"] == "5" and meta["size"] == "256x256"
    assert meta["references"] == "mira.png"


async def test_face_aware_the_portraits_face_lands_where_reported(lite, portrait, tmp_path):
    # the portrait's face sits right of centre of a 600x400 photo; the selfie re-centres it
    faces_in = detect_faces(Image.open(portrait))
    assert faces_in and faces_in[0][0] > 300
    for seed in range(3):
        r = await lite.generate(selfie("in a cozy cafe", portrait, seed=seed, output=str(tmp_path / f"s{seed}.png")))
        assert r.metadata["face_detected"] == "yes"
        x, y, w, h = (int(v) for v in r.metadata["face_box"].split(","))
        found = detect_faces(Image.open(r.path))
        assert found, "the composed selfie shows a detectable face"
        fx, fy, fw, fh = found[0]
        assert abs((fx + fw / 2) - (x + w / 2)) < 0.25 * w and abs((fy + fh / 2) - (y + h / 2)) < 0.25 * h
        assert 0.3 * 256 < x + w / 2 < 0.7 * 256  # re-centred, not at the right edge


async def test_styles_avatars_and_img2img(lite, portrait, tmp_path):
    plain = await lite.generate(selfie("in the forest", portrait, output=str(tmp_path / "p.png")))
    sketch = await lite.generate(selfie("in the forest, pencil sketch", portrait, output=str(tmp_path / "k.png")))
    assert not np.array_equal(arr(plain), arr(sketch))
    # no reference: a procedural head from the colour words, deterministic per seed
    av = ImageRequest(prompt="portrait of a woman with red hair and green eyes, yellow raincoat", seed=1, size=(128, 128))
    a1 = await lite.generate(av)
    a2 = await lite.generate(av)
    assert np.array_equal(arr(a1), arr(a2)) and a1.metadata["avatar"] == "procedural"
    # img2img: the photo restyled, blended by strength
    art = ImageRequest(prompt="redraw as a watercolor painting", mode="img2img", init_image=str(portrait), strength=0.8,
                       size=(128, 128))
    r = await lite.generate(art)
    assert r.metadata["style"] == "paint" and Image.open(r.path).size == (128, 128)


async def test_bad_input_is_clear(lite, tmp_path):
    with pytest.raises(ImageInputError, match="vchar persona portrait"):
        await lite.generate(selfie("beach", tmp_path / "nope.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageInputError, match="cannot be read"):
        await lite.generate(selfie("beach", broken))
    from generators.image import load_image

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    with pytest.raises(ImageInputError, match="too large"):
        load_image(big, max_pixels=50_000)
    with pytest.raises(ImageInputError, match="MB"):
        load_image(big, max_bytes=10)


async def test_a_mostly_skin_picture_is_refused_unless_the_channel_allows(lite, tmp_path):
    skin = tmp_path / "skin.png"
    Image.new("RGB", (300, 300), (224, 172, 140)).save(skin)
    with pytest.raises(ImageRefused) as info:
        await lite.generate(selfie("beach", skin))
    assert info.value.stage == "image"
    assert (await lite.generate(selfie("beach", skin, safety=False))).path.exists()


def test_scene_themes():
    assert scene_theme("selfie at the beach at sunset") == "beach"
    assert scene_theme("sunset on the beach") == "sunset"
    assert scene_theme("late night at the market") == "night"
    assert scene_theme("somewhere odd") == "plain"


def test_a_tiny_file_of_huge_dimensions_is_refused_before_decoding(tmp_path):
    """A 6320x6320 PNG compresses to about 100 KB but would decode to over 100 MB (and
    several times that while processed): refused from its header, nothing decoded."""
    import tracemalloc

    import pytest
    from PIL import Image

    from generators.image.base import ImageInputError, load_image

    bomb = tmp_path / "bomb.png"
    Image.new("L", (6320, 6320)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(ImageInputError, match="6320x6320"):
        load_image(bomb, what="photo")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000
    ok = tmp_path / "photo.png"
    Image.new("RGB", (1200, 900), "white").save(ok)
    assert load_image(ok).size == (1200, 900)
