"""The image generator protocol shared by every backend: request, result, errors, and
the input checks every backend applies the same way."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from PIL import Image, ImageOps, UnidentifiedImageError

Mode = Literal["txt2img", "img2img"]

#: Limits on images that come in (reference portraits, photos for /art and /portrait).
MAX_INPUT_BYTES = 25 * 1024 * 1024
MAX_INPUT_PIXELS = 4096 * 4096  # 16.8 MP (48 MB as RGB): larger is refused before it is decoded
#: Limits on images that go out.
MIN_SIDE, MAX_SIDE = 32, 2048

DEFAULT_NEGATIVE = (
    "lowres, blurry, deformed, disfigured, bad anatomy, extra fingers, extra limbs, watermark, text, "
    "signature, jpeg artifacts, nsfw, nude"
)


class ImageError(RuntimeError):
    """Any failure to make an image. The message says what to do about it."""


class ImageInputError(ImageError, ValueError):
    """Bad input: an unreadable, huge or missing image, an impossible size, an empty prompt."""


class ImageRefused(ImageError):
    """The safety gate said no. ``stage`` is ``"prompt"`` (refused before any work) or
    ``"image"`` (the finished picture was flagged and thrown away); ``reason`` is short
    and printable. The persona layer answers it in character."""

    def __init__(self, reason: str, *, stage: Literal["prompt", "image"], term: str | None = None):
        self.reason = reason
        self.stage = stage
        self.term = term
        super().__init__(f"image refused ({stage}): {reason}")


class ImageBackendError(ImageError):
    """The backend cannot work: a model that cannot be loaded, a missing extra, a server
    that is down or answers nonsense."""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One picture to make.

    ``references`` are identity images (the persona's reference portraits): the diffusers
    backend conditions on them through IP-Adapter, the lite backend composes from the
    first one, the remote backend sends them to a ControlNet IP-Adapter unit if one is
    configured. ``steps`` and ``guidance`` left as ``None`` take the backend's sampler
    defaults. ``mode="img2img"`` redraws ``init_image`` with ``strength`` (0 keeps it,
    1 ignores it). ``safety=False`` skips the image check and the soft blocklist (for
    channels that allow it); the hard blocklist always applies.
    """

    prompt: str
    negative_prompt: str = DEFAULT_NEGATIVE
    references: tuple[str, ...] = ()
    size: tuple[int, int] = (512, 512)  # (width, height)
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    mode: Mode = "txt2img"
    init_image: str | None = None
    strength: float = 0.6
    identity_scale: float | None = None  # IP-Adapter scale; None: the backend's default
    safety: bool = True
    output: str | None = None  # where to write the PNG; None: the backend's folder
    tags: dict[str, str] = field(default_factory=dict, compare=False)  # extra PNG text chunks

    def checked(self) -> ImageRequest:
        """The request if it makes sense, else ImageInputError saying what is wrong."""
        if not self.prompt or not self.prompt.strip():
            raise ImageInputError("the image prompt is empty: say what the picture should show")
        w, h = self.size
        for side in (w, h):
            if not isinstance(side, int) or side < MIN_SIDE or side > MAX_SIDE or side % 8:
                raise ImageInputError(
                    f"image size {w}x{h} is not possible: each side must be a multiple of 8 between "
                    f"{MIN_SIDE} and {MAX_SIDE} (for example 512x512 or 768x512)"
                )
        if self.steps is not None and not 1 <= self.steps <= 150:
            raise ImageInputError(f"steps={self.steps}: use 1 to 150 (1-4 for turbo/LCM samplers, 20-30 otherwise)")
        if self.guidance is not None and not 0 <= self.guidance <= 30:
            raise ImageInputError(f"guidance={self.guidance}: use 0 to 30")
        if not 0 <= self.seed < 2**63:
            raise ImageInputError(f"seed={self.seed}: use a whole number from 0 to 2**63-1")
        if self.mode not in ("txt2img", "img2img"):
            raise ImageInputError(f"mode {self.mode!r}: use txt2img or img2img")
        if self.mode == "img2img":
            if not self.init_image:
                raise ImageInputError("img2img needs init_image: the photo to redraw")
            if not 0.0 < self.strength <= 1.0:
                raise ImageInputError(f"strength={self.strength}: use a number above 0 and at most 1")
        for ref in self.references:
            if not Path(ref).is_file():
                raise ImageInputError(
                    f"reference portrait {ref} does not exist: set one with "
                    "`vchar persona portrait NAME --from FILE`"
                )
        return self

    def with_defaults(self, steps: int, guidance: float) -> ImageRequest:
        return replace(
            self,
            steps=self.steps if self.steps is not None else steps,
            guidance=self.guidance if self.guidance is not None else guidance,
        )


@dataclass(frozen=True, slots=True)
class ImageResult:
    """A finished picture: the PNG on disk and what made it (also in its text chunks)."""

    path: Path
    metadata: dict[str, str]

    @property
    def seed(self) -> int:
        return int(self.metadata["seed"])


@runtime_checkable
class ImageGenerator(Protocol):
    name: str

    async def generate(self, request: ImageRequest) -> ImageResult:
        """Make one picture. Raises ImageInputError, ImageRefused or ImageBackendError."""
        ...

    async def aclose(self) -> None: ...


# -- helpers shared by the backends and their callers ---------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` or ``"768x512"`` (width x height) to a (width, height) pair."""
    t = text.lower().replace("*", "x").replace(" ", "")
    try:
        if "x" in t:
            w, h = t.split("x", 1)
            return int(w), int(h)
        return int(t), int(t)
    except ValueError:
        raise ImageInputError(f"size {text!r}: write WIDTHxHEIGHT, for example 512x512") from None


def seed_for(base: int | None, text: str) -> int:
    """A seed in the persona's seed family: the same base and text give the same seed,
    different texts (scenes) give unrelated ones."""
    digest = hashlib.sha256(f"{base if base is not None else 0}|{text.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def selfie_prompt(scene: str, *, appearance: str = "", style: str = "") -> str:
    """The prompt for a selfie: where (scene) first, since CLIP reads only 77 tokens and the
    scene is what changes between pictures; then who (appearance) and how (style)."""
    parts = ["selfie photo, " + scene.strip() if scene.strip() else "selfie photo", appearance.strip() or "a person",
             style.strip(), "looking at the camera, detailed face"]
    return ", ".join(p for p in parts if p)


def load_image(path: str | os.PathLike, *, what: str = "image", max_bytes: int = MAX_INPUT_BYTES,
               max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an incoming image safely as RGB (EXIF rotation applied), or raise
    ImageInputError naming the file and what to do."""
    p = Path(path)
    if not p.is_file():
        raise ImageInputError(f"{what} {p} does not exist or is not a file")
    size = p.stat().st_size
    if size == 0:
        raise ImageInputError(f"{what} {p} is empty: send a JPEG or PNG photo")
    if size > max_bytes:
        raise ImageInputError(
            f"{what} {p} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB: send a smaller JPEG or PNG"
        )
    try:
        with Image.open(p) as probe:
            w, h = probe.size
            if w * h > max_pixels:
                raise ImageInputError(
                    f"{what} {p} is {w}x{h} pixels, too large to process (limit {max_pixels // 1_000_000} megapixels): "
                    "scale it down first"
                )
            probe.load()
            img = ImageOps.exif_transpose(probe).convert("RGB")
    except ImageInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{what} {p} cannot be read as an image ({exc}): send a JPEG or PNG") from None
    return img


def fit_image(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` scaled and centre-cropped to exactly ``size`` (width, height)."""
    return ImageOps.fit(img, size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.4))


def output_path(request: ImageRequest, out_dir: Path, backend: str) -> Path:
    """Where a result goes: the request's own path, else a name derived from its content
    (the same request always lands on the same file)."""
    if request.output:
        p = Path(request.output)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
    key = "|".join(
        str(x) for x in (backend, request.prompt, request.negative_prompt, request.references, request.size,
                         request.steps, request.guidance, request.seed, request.mode, request.init_image,
                         request.strength, request.identity_scale)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{backend}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.png"
