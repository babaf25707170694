"""The prompt blocklists and the fallback image check."""

from __future__ import annotations

from PIL import Image

from generators.image import ImageRefused, ImageRequest, SafetyConfig
from generators.image.safety import check_prompt, skin_fraction
from generators.image.testing import face_image


def refused(prompt, safety=True, config=SafetyConfig()):
    try:
        check_prompt(ImageRequest(prompt=prompt, safety=safety), config)
    except ImageRefused as exc:
        return exc
    return None


def test_soft_terms_only_while_safety_is_on():
    assert refused("selfie at the beach") is None
    assert refused("nude selfie at the beach").term == "nude"
    assert refused("N.U.D.E selfie").term == "nude"
    assert refused("n u d e selfie").term == "nude"
    assert refused("nud3 selfie").term == "nude"
    assert refused("nude selfie", safety=False) is None
    assert refused("a bloody gore scene").stage == "prompt"
    # words that merely contain a term pass
    assert refused("sextant on the ship's deck, nudibranch in the reef") is None


def test_hard_terms_always():
    exc = refused("naked schoolgirl", safety=False)
    assert exc is not None and "minors" in exc.reason
    assert refused("young girl at the park") is None
    assert refused("bestiality", safety=False) is not None


def test_configurable_lists():
    cfg = SafetyConfig(extra_blocklist=("clown",), allow=("lingerie",))
    assert refused("a clown selfie", config=cfg).term == "clown"
    assert refused("lingerie ad", config=cfg) is None
    assert refused("lingerie ad") is not None
    # allow never lifts the hard rules
    assert refused("lingerie on a child", config=SafetyConfig(allow=("lingerie",))) is not None


def test_negative_prompt_is_not_checked():
    check_prompt(ImageRequest(prompt="selfie", negative_prompt="nsfw, nude"))


def test_skin_fraction_ignores_faces():
    assert skin_fraction(Image.new("RGB", (200, 200), (224, 172, 140))) > 0.9
    assert skin_fraction(Image.new("RGB", (200, 200), (40, 90, 200))) == 0.0
    assert skin_fraction(face_image(200, background=(40, 90, 200))) < 0.2
