"""`vchar image selfie` and `vchar persona portrait` through typer's CliRunner."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from bots.image_cli import image_app, portrait_app
from generators.image import read_metadata

runner = CliRunner()


@pytest.fixture
def env(tmp_path):
    return {
        "VCHAR_DATA_DIR": str(tmp_path / "data"),
        "VCHAR_PERSONAS_DIR": str(tmp_path / "personas"),
        "VCHAR_IMAGE_BACKEND": "lite",
        "VCHAR_IMAGE_SIZE": "128x128",
    }


def pix(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_selfie_needs_a_portrait_on_lite_then_works(env, tmp_path, portrait):
    (tmp_path / "personas").mkdir(exist_ok=True)
    (tmp_path / "personas" / "noor.yaml").write_text("id: noor\nname: Noor\ndescription: A painter.\n")
    r = runner.invoke(image_app, ["selfie", "noor", "at the beach", "-o", str(tmp_path / "x.png")], env=env)
    assert r.exit_code == 1 and "vchar persona portrait noor --from FILE" in r.output

    r = runner.invoke(portrait_app, ["portrait", "mira", "--from", str(portrait)], env=env)
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((tmp_path / "personas" / "mira.yaml").read_text())
    assert saved["identity"]["portraits"][0].endswith("portraits/mira.png")
    assert saved["name"] == "Mira Vale"  # the whole persona, not just the portrait

    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    for out, scene in ((a, "at the beach"), (b, "at the beach"), (c, "at the night market")):
        r = runner.invoke(image_app, ["selfie", "mira", scene, "-o", str(out), "--seed", "11"], env=env)
        assert r.exit_code == 0, r.output
    assert np.array_equal(pix(a), pix(b)) and not np.array_equal(pix(a), pix(c))
    meta = read_metadata(a)
    assert meta["seed"] == "11" and meta["persona"] == "mira" and "at the beach" in meta["prompt"]
    assert "teal" in meta["prompt"]  # the card's appearance text
    assert Image.open(a).size == (128, 128)

    # without --seed: the persona's seed family, stable per scene
    d, e = tmp_path / "d.png", tmp_path / "e.png"
    for out in (d, e):
        assert runner.invoke(image_app, ["selfie", "mira", "at the beach", "-o", str(out), "--size", "96x64"],
                             env=env).exit_code == 0
    assert read_metadata(d)["seed"] == read_metadata(e)["seed"] and Image.open(d).size == (96, 64)


def test_selfie_errors_are_clean(env, tmp_path):
    r = runner.invoke(image_app, ["selfie", "nobody", "beach", "-o", str(tmp_path / "x.png")], env=env)
    assert r.exit_code == 1 and "no persona called" in r.output
    r = runner.invoke(image_app, ["selfie", "mira", "beach", "-o", str(tmp_path / "x.jpg")], env=env)
    assert r.exit_code == 1 and ".png" in r.output
    r = runner.invoke(portrait_app, ["portrait", "mira", "--from", str(tmp_path / "missing.png")], env=env)
    assert r.exit_code == 1 and "does not exist" in r.output
    r = runner.invoke(portrait_app, ["portrait", "mira"], env=env)
    assert r.exit_code == 1 and "exactly one" in r.output


def test_refusal_exit_code(env, tmp_path, portrait):
    assert runner.invoke(portrait_app, ["portrait", "mira", "--from", str(portrait)], env=env).exit_code == 0
    r = runner.invoke(image_app, ["selfie", "mira", "naked on the beach", "-o", str(tmp_path / "x.png")], env=env)
    assert r.exit_code == 3 and "refused" in r.output


def test_generate_candidates_then_pick_one(env, tmp_path):
    r = runner.invoke(portrait_app, ["portrait", "mira", "--generate", "2", "--out-dir", str(tmp_path / "cand")], env=env)
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "cand").glob("mira-candidate-*.png"))
    assert len(files) == 2 and not np.array_equal(pix(files[0]), pix(files[1]))
    r = runner.invoke(portrait_app, ["portrait", "mira", "--from", str(files[0])], env=env)
    assert r.exit_code == 0, r.output


def test_selfie_on_a_local_diffusers_checkpoint(env, tmp_path, tiny_sd, ip_repo, portrait):
    env = dict(env, VCHAR_IMAGE_BACKEND="diffusers", VCHAR_IMAGE_MODEL=str(tiny_sd), VCHAR_IMAGE_IP_ADAPTER="plus",
               VCHAR_IMAGE_IP_ADAPTER_REPO=str(ip_repo), VCHAR_IMAGE_SIZE="32x32")
    assert runner.invoke(portrait_app, ["portrait", "mira", "--from", str(portrait)], env=env).exit_code == 0
    outs = [tmp_path / f"{n}.png" for n in "abc"]
    for out, scene in zip(outs, ("at the beach", "at the beach", "in the snow")):
        r = runner.invoke(image_app, ["selfie", "mira", scene, "-o", str(out), "--seed", "3", "--steps", "2"], env=env)
        assert r.exit_code == 0, r.output
    assert np.array_equal(pix(outs[0]), pix(outs[1])) and not np.array_equal(pix(outs[0]), pix(outs[2]))
    meta = read_metadata(outs[0])
    assert meta["model"] == str(tiny_sd) and meta["steps"] == "2" and meta["identity"].startswith("ip-adapter plus")
