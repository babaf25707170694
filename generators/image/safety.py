"""The safety gate: a prompt blocklist before any work, an image check after.

Two blocklists:

* the **hard** list always applies, whatever the channel allows: sexual content together
  with any word for a minor, and a few terms that are never acceptable;
* the **soft** list (nudity, sex, gore) applies while ``ImageRequest.safety`` is on, which
  is the default; the caller switches it off per channel (an NSFW-marked channel).

The image check, also only while ``safety`` is on:

* the diffusers backend runs the model's own ``StableDiffusionSafetyChecker`` when the
  model folder has one (``safety_checker/`` next to ``unet/``, as SD 1.x releases ship);
* everywhere else (SDXL and most community checkpoints ship none, the remote backend, the
  lite backend's composites) it runs :func:`skin_check`, a documented heuristic: the
  share of skin-coloured pixels (YCrCb range) outside detected faces. A picture that is
  mostly bare skin is refused. It is crude: it misses nudity in unusual light or colour
  and refuses some innocent close-ups (a hand filling the frame, a beach of sand-coloured
  pixels). Operators who need better put a model with a safety checker in front, or an
  external moderation service behind ``ImageRefused``.

Everything here raises :class:`ImageRefused`; the persona layer answers it in character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from generators.image.base import ImageRefused, ImageRequest

_MINOR = (
    "child", "children", "kid", "kids", "minor", "minors", "underage", "under-age", "teen", "teens",
    "teenager", "preteen", "pre-teen", "schoolgirl", "schoolboy", "loli", "lolita", "shota", "toddler",
    "infant", "baby", "young girl", "young boy", "little girl", "little boy", "12 year old", "13 year old",
    "14 year old", "15 year old", "16 year old", "17 year old",
)
_SEXUAL = (
    "nude", "nudes", "naked", "nsfw", "porn", "porno", "pornographic", "sex", "sexual", "sexy", "explicit",
    "erotic", "topless", "bottomless", "lingerie", "undressed", "genitals", "genital", "nipples", "breasts",
    "penis", "vagina", "orgasm", "fetish", "bdsm", "hentai", "xxx", "seductive", "strip", "stripping",
)
_HARD = ("cp", "csam", "child porn", "rape", "raped", "bestiality", "zoophilia", "necrophilia")
_SOFT = _SEXUAL + (
    "gore", "gory", "dismembered", "dismemberment", "decapitated", "beheaded", "mutilated", "mutilation",
    "disembowel", "disemboweled", "corpse", "bloodbath", "self-harm", "suicide",
)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def _normalise(text: str) -> str:
    t = text.lower().translate(_LEET)
    t = re.sub(r"[_\-.*]+", " ", t)  # n.u.d.e, n_u_d_e
    t = re.sub(r"\b(?:[a-z] ){2,}[a-z]\b", lambda m: m.group(0).replace(" ", ""), t)  # n u d e
    return re.sub(r"\s+", " ", t)


def _find(terms, text: str) -> str | None:
    for term in terms:
        if re.search(r"(?<![a-z])" + re.escape(term.replace("-", " ")) + r"(?![a-z])", text):
            return term
    return None


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    """How strict the gate is. ``image_check`` off disables the image check for every
    request (the blocklists still apply); ``extra_blocklist`` adds soft terms; ``allow``
    removes soft terms (never hard ones); ``skin_threshold`` is the heuristic's cut-off."""

    image_check: bool = True
    extra_blocklist: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    skin_threshold: float = 0.45
    hard_blocklist: tuple[str, ...] = field(default=_HARD)

    @property
    def soft_terms(self) -> tuple[str, ...]:
        allowed = {a.lower() for a in self.allow}
        return tuple(t for t in (*_SOFT, *(e.lower() for e in self.extra_blocklist)) if t not in allowed)


def blocked_term(text: str, *, safe: bool = True, config: SafetyConfig = SafetyConfig()) -> str | None:
    """The blocked term ``text`` contains, or None: the same lists as for pictures (the
    hard list always, the soft list while ``safe``), for any text a character makes on
    request (song lyrics, a topic)."""
    t = _normalise(text)
    minor, sexual = _find(_MINOR, t), _find(_SEXUAL, t)
    if minor and sexual:
        return f"{minor}+{sexual}"
    return _find(config.hard_blocklist, t) or (_find(config.soft_terms, t) if safe else None)


def check_prompt(request: ImageRequest, config: SafetyConfig = SafetyConfig()) -> None:
    """Raise ImageRefused (stage "prompt") if the prompt asks for something blocked.
    The negative prompt is not checked (it lists what must NOT appear)."""
    text = _normalise(request.prompt)
    minor = _find(_MINOR, text)
    sexual = _find(_SEXUAL, text)
    if minor and sexual:
        raise ImageRefused("sexual content involving minors is never made", stage="prompt", term=f"{minor}+{sexual}")
    hard = _find(config.hard_blocklist, text)
    if hard:
        raise ImageRefused("the prompt asks for something that is never made", stage="prompt", term=hard)
    if request.safety:
        soft = _find(config.soft_terms, text)
        if soft:
            raise ImageRefused(
                f"the prompt asks for something this channel does not allow ({soft!r})", stage="prompt", term=soft
            )


def _small(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > 256:  # a share of pixels needs no detail; keeps the check to a few ms
        image = image.copy()
        image.thumbnail((256, 256))
    return image


def _skin_mask(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128
    cb = (b - y) * 0.564 + 128
    return (cr >= 135) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y > 40)


def skin_fraction(image: Image.Image) -> float:
    """The share of skin-coloured pixels outside detected faces (0..1)."""
    image = _small(image)
    skin = _skin_mask(image)
    mask = np.ones(skin.shape, dtype=bool)
    try:
        from generators.image.lite import detect_faces

        for x, yy, w, h in detect_faces(image):
            # the face and the neck below it are expected to be skin
            mask[max(0, yy - h // 4): yy + int(h * 1.6), max(0, x - w // 4): x + w + w // 4] = False
    except Exception:  # noqa: BLE001 - OpenCV missing or broken: count every pixel
        pass
    counted = mask.sum()
    return float((skin & mask).sum() / counted) if counted else 0.0


def skin_check(image: Image.Image, config: SafetyConfig = SafetyConfig()) -> None:
    """The fallback image check (see the module notes); raises ImageRefused (stage "image").
    Pictures with little skin overall pass without the (slower) face detection."""
    small = _small(image)
    if float(_skin_mask(small).mean()) <= 0.8 * config.skin_threshold:
        return
    frac = skin_fraction(small)
    if frac > config.skin_threshold:
        raise ImageRefused(
            f"the picture came out showing too much bare skin ({frac:.0%} of it) and was not sent", stage="image"
        )
