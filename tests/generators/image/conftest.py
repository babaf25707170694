"""Tiny real-architecture Stable Diffusion folders, IP-Adapter weights and portraits,
built once per test session (no downloads)."""

from __future__ import annotations

import json

import pytest

from generators.image.testing import (
    face_image,
    portrait_on_canvas,
    save_tiny_ip_adapter,
    save_tiny_sd_pipeline,
)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)."""
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd") / "sd")


@pytest.fixture(scope="session")
def tiny_sd_flagging(tmp_path_factory):
    """The same with a StableDiffusionSafetyChecker that flags every picture."""
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd-nsfw") / "sd", safety="flag-all")


@pytest.fixture(scope="session")
def tiny_sd_checked(tmp_path_factory):
    """The same with a StableDiffusionSafetyChecker that flags nothing."""
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd-ok") / "sd", safety="flag-none")


@pytest.fixture(scope="session")
def ip_repo(tiny_sd, tmp_path_factory):
    """h94/IP-Adapter's layout: models/ip-adapter_sd15.safetensors, models/ip-adapter-plus_sd15.safetensors,
    models/image_encoder/."""
    cfg = json.loads((tiny_sd / "unet" / "config.json").read_text())
    repo = tmp_path_factory.mktemp("ip-adapter")
    save_tiny_ip_adapter(repo, cfg, variant="base")
    save_tiny_ip_adapter(repo, cfg, variant="plus")
    return repo


@pytest.fixture(scope="session")
def portrait(tmp_path_factory):
    """A 600x400 photo with a face off-centre (right of middle)."""
    return portrait_on_canvas(tmp_path_factory.mktemp("portraits") / "mira.png")


@pytest.fixture(scope="session")
def other_portrait(tmp_path_factory):
    path = tmp_path_factory.mktemp("portraits2") / "zoe.png"
    face_image(300, skin=(150, 105, 80), background=(200, 200, 210)).save(path)
    return path
