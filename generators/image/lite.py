"""The ``lite`` image backend: CPU only, no weights, a fraction of a second an image.

What it is, plainly: **not** an image generator. It makes "selfies" by compositing:

* **txt2img with a reference portrait** (selfies): the portrait's face is found with
  OpenCV's Haar cascade (centre of the picture when none is found), the person is cut
  out with GrabCut around it, then moved, scaled, tilted and sometimes mirrored (the
  pose variation) over a procedural background chosen by the words of the scene (beach,
  night market, city, forest, cafe, snow, sunset, space, rain, room, ...), colour-graded
  for that scene, with a vignette and grain; style words in the prompt (sketch, pencil,
  painting, watercolor, cartoon, anime) apply OpenCV's stylization and pencil filters.
  The character looks like its portrait because it IS its portrait; the scene is a
  backdrop, not a place the character stands in.
* **txt2img without a reference** (portrait candidates): a flat cartoon head drawn from
  the colour words of the prompt (hair, skin, eyes, clothes; glasses, freckles).
* **img2img** (``/art``, ``/portrait``): the photo itself, restyled (OpenCV filters,
  a warm "lifelike" grade for statues and paintings), blended by ``strength``.

Everything is deterministic: the same request (seed included) gives the same bytes.
The safety gate checks the prompt (blocklists) and the subject image (the portrait or
the photo) with the skin heuristic; the backgrounds are drawn here and need no check.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from generators.image.base import (
    ImageRefused,
    ImageRequest,
    ImageResult,
    load_image,
    output_path,
)
from generators.image.metadata import request_metadata, save_png
from generators.image.safety import SafetyConfig, check_prompt, skin_check

try:
    import cv2
except ImportError as exc:  # pragma: no cover
    raise ImportError(f"the lite image backend needs OpenCV: pip install 'opencv-python-headless<5' ({exc})") from exc

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h

# -- faces -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cascades() -> tuple:
    out = []
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        c = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
        if not c.empty():
            out.append(c)
    return tuple(out)


def detect_faces(image: Image.Image | np.ndarray) -> list[Box]:
    """Frontal faces (x, y, w, h) in image pixels, largest first."""
    arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY) if arr.ndim == 3 else arr
    scale = 1.0
    if max(gray.shape) > 640:
        scale = 640 / max(gray.shape)
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(24, min(gray.shape) // 10)
    for cascade in _cascades():
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(found):
            boxes = sorted((tuple(int(v / scale) for v in f) for f in found), key=lambda b: -b[2] * b[3])
            return boxes
    return []


def main_face(image: Image.Image) -> tuple[Box, bool]:
    """The largest face, or a guess (centred, upper half) and False when none is found."""
    faces = detect_faces(image)
    if faces:
        return faces[0], True
    w, h = image.size
    side = int(min(w, h) * 0.45)
    return ((w - side) // 2, int(h * 0.38 - side / 2), side, side), False


# -- scenes ----------------------------------------------------------------------------

_THEMES: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "sea", "ocean", "shore", "coast", "surf", "island", "pier", "harbour", "harbor", "lake"),
    "night": ("night", "market", "city", "street", "neon", "club", "concert", "party", "lantern", "downtown"),
    "forest": ("forest", "park", "garden", "woods", "tree", "trees", "hike", "hiking", "jungle", "field", "meadow"),
    "snow": ("snow", "winter", "ski", "mountain", "mountains", "ice", "cold"),
    "cafe": ("cafe", "café", "coffee", "restaurant", "kitchen", "bar", "noodle", "noodles", "dinner", "lunch", "food"),
    "sunset": ("sunset", "sunrise", "dusk", "dawn", "golden hour", "evening"),
    "space": ("space", "stars", "star", "telescope", "galaxy", "observatory", "moon", "planet", "sky at night"),
    "rain": ("rain", "rainy", "storm", "umbrella", "drizzle"),
    "room": ("room", "bedroom", "home", "house", "sofa", "couch", "bed", "office", "studio", "desk", "balcony"),
}


def scene_theme(text: str) -> str:
    """The backdrop for a scene: the theme whose words come earliest in the text."""
    low = text.lower()
    best, best_at = "plain", len(low) + 1
    for theme, words in _THEMES.items():
        for w in words:
            m = re.search(r"(?<![a-z])" + re.escape(w) + r"(?![a-z])", low)
            if m and m.start() < best_at:
                best, best_at = theme, m.start()
    return best


def _vgrad(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.repeat(col, w, axis=1)


def background(theme: str, size: tuple[int, int], rng: np.random.Generator, key: str = "") -> np.ndarray:
    """A procedural backdrop (RGB float32 0..255) for a theme."""
    w, h = size
    j = lambda c, d=12: np.clip(np.asarray(c, np.float32) + rng.uniform(-d, d, 3), 0, 255)  # noqa: E731
    if theme == "beach":
        img = _vgrad(h, w, j((110, 170, 230)), j((200, 225, 245)))
        horizon = int(h * rng.uniform(0.42, 0.52))
        img[horizon:] = _vgrad(h - horizon, w, j((40, 120, 170)), j((70, 160, 190)))
        shore = int(h * rng.uniform(0.70, 0.80))
        img[shore:] = _vgrad(h - shore, w, j((220, 205, 170)), j((200, 180, 140)))
        cv2.circle(img, (int(w * rng.uniform(0.1, 0.9)), int(horizon * 0.35)), max(4, w // 14), j((255, 244, 200), 5), -1)
    elif theme == "night":
        img = _vgrad(h, w, j((15, 18, 40)), j((45, 30, 60)))
        for _ in range(int(40 + 30 * rng.random())):
            c = (rng.choice([(255, 180, 80), (255, 90, 90), (120, 200, 255), (255, 220, 140)]) * rng.uniform(0.6, 1))
            cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.8))), int(rng.uniform(w / 60, w / 18)),
                       tuple(float(v) for v in c), -1)
    elif theme == "forest":
        img = _vgrad(h, w, j((150, 190, 120)), j((40, 80, 40)))
        for _ in range(int(8 + 6 * rng.random())):
            x = int(rng.uniform(0, w))
            cv2.rectangle(img, (x, 0), (x + int(rng.uniform(w / 40, w / 15)), h), j((70, 50, 35), 15), -1)
        for _ in range(30):
            cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.6))), int(rng.uniform(w / 30, w / 10)),
                       j((90, 150, 70), 30), -1)
    elif theme == "snow":
        img = _vgrad(h, w, j((190, 210, 235)), j((240, 245, 250)))
        base = int(h * 0.6)
        pts = [(0, base)] + [(int(w * t), int(base - rng.uniform(0.1, 0.35) * h)) for t in np.linspace(0.1, 0.9, 4)]
        pts += [(w, base), (w, h), (0, h)]
        cv2.fillPoly(img, [np.array(pts, np.int32)], j((235, 240, 248), 5))
    elif theme == "cafe":
        img = _vgrad(h, w, j((120, 80, 55)), j((70, 45, 30)))
        wx, wy = int(w * rng.uniform(0.05, 0.55)), int(h * 0.08)
        cv2.rectangle(img, (wx, wy), (wx + int(w * 0.4), wy + int(h * 0.35)), j((230, 210, 170)), -1)
        for _ in range(12):
            cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.4))), int(w / 40), j((255, 200, 120)), -1)
        cv2.rectangle(img, (0, int(h * 0.78)), (w, h), j((90, 60, 40)), -1)
    elif theme == "sunset":
        img = _vgrad(h, w, j((80, 60, 130)), j((250, 150, 80)))
        cv2.circle(img, (int(w * rng.uniform(0.2, 0.8)), int(h * 0.62)), max(5, w // 8), j((255, 210, 120), 5), -1)
        img[int(h * 0.7):] = _vgrad(h - int(h * 0.7), w, j((60, 40, 70)), j((30, 20, 40)))
    elif theme == "space":
        img = _vgrad(h, w, j((5, 5, 20)), j((20, 15, 45)))
        for _ in range(int(w * h / 900)):
            v = float(rng.uniform(150, 255))
            img[int(rng.uniform(0, h)), int(rng.uniform(0, w))] = (v, v, v * rng.uniform(0.85, 1))
    elif theme == "rain":
        img = _vgrad(h, w, j((90, 100, 115)), j((50, 55, 70)))
        for _ in range(int(w * h / 400)):
            x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            cv2.line(img, (x, y), (x - 2, y + int(h / 25)), (170, 180, 195), 1)
    elif theme == "room":
        img = _vgrad(h, w, j((200, 185, 165)), j((170, 150, 130)))
        cv2.rectangle(img, (int(w * rng.uniform(0.55, 0.7)), int(h * 0.1)), (int(w * 0.95), int(h * 0.5)),
                      j((170, 200, 225)), -1)
        cv2.rectangle(img, (0, int(h * 0.75)), (w, h), j((120, 95, 75)), -1)
    else:
        digest = hashlib.sha256(key.encode()).digest()
        a = np.array(list(digest[:3]), np.float32) * 0.6 + 60
        b = np.array(list(digest[3:6]), np.float32) * 0.6 + 40
        img = _vgrad(h, w, a, b)
    return np.clip(img, 0, 255).astype(np.float32)


_GRADES = {  # per-channel gain, lift, saturation
    "beach": ((1.04, 1.02, 0.98), (4, 4, 0), 1.10),
    "night": ((0.92, 0.92, 1.08), (0, 0, 10), 1.05),
    "forest": ((0.98, 1.04, 0.96), (0, 4, 0), 1.05),
    "snow": ((0.97, 1.0, 1.06), (8, 8, 14), 0.9),
    "cafe": ((1.08, 1.0, 0.90), (8, 4, 0), 1.0),
    "sunset": ((1.10, 0.98, 0.88), (10, 2, 0), 1.1),
    "space": ((0.9, 0.92, 1.05), (0, 0, 8), 0.95),
    "rain": ((0.94, 0.97, 1.03), (4, 6, 10), 0.8),
    "room": ((1.04, 1.0, 0.96), (4, 2, 0), 1.0),
    "plain": ((1.0, 1.0, 1.0), (0, 0, 0), 1.0),
}


def grade(img: np.ndarray, theme: str, rng: np.random.Generator) -> np.ndarray:
    """Scene colour grade, vignette and grain, on RGB float32."""
    gain, lift, sat = _GRADES.get(theme, _GRADES["plain"])
    out = img * np.asarray(gain, np.float32) + np.asarray(lift, np.float32)
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * sat
    h, w = out.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    out *= (1 - 0.22 * np.clip(r - 0.55, 0, 1) ** 1.5)[..., None]
    out += rng.normal(0, 2.5, out.shape).astype(np.float32)
    return np.clip(out, 0, 255)


_STYLE_WORDS = {
    "pencil": ("pencil", "sketch", "drawing", "charcoal", "graphite"),
    "paint": ("painting", "painted", "oil", "watercolor", "watercolour", "impressionist", "gouache", "art style"),
    "cartoon": ("cartoon", "anime", "comic", "manga", "illustration", "toon", "cel"),
    "lifelike": ("lifelike", "realistic", "photorealistic", "real person", "photo", "photograph", "alive"),
}


def style_of(text: str) -> str | None:
    low = text.lower()
    for style in ("pencil", "paint", "cartoon", "lifelike"):
        if any(re.search(r"(?<![a-z])" + re.escape(w) + r"(?![a-z])", low) for w in _STYLE_WORDS[style]):
            return style
    return None


def stylize(rgb: np.ndarray, style: str | None) -> np.ndarray:
    """OpenCV's art filters, on uint8 RGB."""
    if style is None:
        return rgb
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if style == "pencil":
        _, colour = cv2.pencilSketch(bgr, sigma_s=50, sigma_r=0.07, shade_factor=0.05)
        out = colour
    elif style == "paint":
        out = cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)
    elif style == "cartoon":
        smooth = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
        smooth = (smooth // 32) * 32 + 16
        edges = cv2.adaptiveThreshold(cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5), 255,
                                      cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
        out = cv2.bitwise_and(smooth, smooth, mask=edges)
    elif style == "lifelike":
        out = cv2.detailEnhance(bgr, sigma_s=10, sigma_r=0.15)
    else:
        return rgb
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def lifelike_grade(rgb: np.ndarray) -> np.ndarray:
    """Statue or painting to 'lifelike': warm the greys toward skin tones, more contrast."""
    f = rgb.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    warm = grey * np.asarray([1.12, 0.95, 0.82], np.float32) + np.asarray([12, 4, 0], np.float32)
    out = 0.55 * warm + 0.45 * f
    out = (out - 128) * 1.12 + 128
    return np.clip(out, 0, 255).astype(np.uint8)


# -- the backend -----------------------------------------------------------------------


class LiteImageGenerator:
    """Selfies composed from the reference portrait; see the module notes for what it is."""

    name = "lite"
    model_name = "lite-compositor-1"

    def __init__(self, *, out_dir: str | Path, safety: SafetyConfig | None = None):
        self.out_dir = Path(out_dir)
        self.safety = safety or SafetyConfig()
        self._subjects: dict[tuple, tuple[Box, bool, np.ndarray]] = {}

    def defaults(self) -> tuple[int, float]:
        return 1, 0.0

    async def generate(self, request: ImageRequest) -> ImageResult:
        request = request.checked().with_defaults(*self.defaults())
        check_prompt(request, self.safety)
        return await asyncio.to_thread(self.generate_sync, request)

    def generate_sync(self, request: ImageRequest) -> ImageResult:
        request = request.checked().with_defaults(*self.defaults())
        check_prompt(request, self.safety)
        if request.mode == "img2img":
            img, extra = self._restyle(request)
        elif request.references:
            img, extra = self._selfie(request)
        else:
            img, extra = self._avatar(request)
        meta = request_metadata(request, backend=self.name, model=self.model_name, sampler="composite", extra=extra)
        return ImageResult(save_png(img, output_path(request, self.out_dir, self.name), meta), meta)

    async def aclose(self) -> None:
        pass

    # -- internals -------------------------------------------------------------------

    def _rng(self, request: ImageRequest, salt: str) -> np.random.Generator:
        digest = hashlib.sha256(f"{request.seed}|{salt}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "big"))

    def _check_subject(self, img: Image.Image, request: ImageRequest) -> None:
        if request.safety and self.safety.image_check:
            try:
                skin_check(img, self.safety)
            except ImageRefused as exc:
                raise ImageRefused("the picture to work from shows too much bare skin", stage="image") from exc

    def _selfie(self, request: ImageRequest) -> tuple[Image.Image, dict[str, str]]:
        W, H = request.size
        rng = self._rng(request, request.prompt)
        ref = request.references[int(rng.integers(len(request.references)))]
        portrait = load_image(ref, what="reference portrait")
        portrait.thumbnail((768, 768), Image.Resampling.LANCZOS)
        self._check_subject(portrait, request)
        src = np.asarray(portrait, dtype=np.uint8)
        (fx, fy, fw, fh), found, mask = self._subject(ref, src)

        # pose and scale: the face lands near the upper third, sized and tilted by the seed
        face_frac = rng.uniform(0.26, 0.36)
        scale = (H * face_frac) / fh
        angle = rng.uniform(-8, 8)
        cx, cy = fx + fw / 2, fy + fh / 2
        tx, ty = W * (0.5 + rng.uniform(-0.09, 0.09)), H * rng.uniform(0.36, 0.44)
        M = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        M[0, 2] += tx - cx
        M[1, 2] += ty - cy
        fg = cv2.warpAffine(src, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        m = cv2.warpAffine(mask, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # body below the frame edge stays: extend the mask down from the lowest cut-out row
        flip = bool(rng.random() < 0.5)
        if flip:
            fg, m = fg[:, ::-1], m[:, ::-1]

        theme = scene_theme(request.prompt)
        bg = background(theme, (W, H), rng, key=request.prompt)
        bg = cv2.GaussianBlur(bg, (0, 0), max(1.0, W / 160))  # shallow depth of field
        alpha = (m.astype(np.float32) / 255.0)[..., None]
        comp = bg * (1 - alpha) + fg.astype(np.float32) * alpha
        comp = grade(comp, theme, rng).astype(np.uint8)
        comp = stylize(comp, style_of(request.prompt))
        face_box = self._face_after(M, (fx, fy, fw, fh), W, flip)
        extra = {"theme": theme, "face_detected": "yes" if found else "no",
                 "face_box": ",".join(str(v) for v in face_box), "pose": f"angle {angle:.1f} scale {scale:.3f}"
                 + (" mirrored" if flip else "")}
        return Image.fromarray(np.ascontiguousarray(comp)), extra

    @staticmethod
    def _face_after(M: np.ndarray, box: Box, W: int, flip: bool) -> tuple[int, int, int, int]:
        x, y, w, h = box
        c = M @ np.array([x + w / 2, y + h / 2, 1.0])
        s = math.hypot(M[0, 0], M[0, 1])
        cx = W - c[0] if flip else c[0]
        return int(cx - w * s / 2), int(c[1] - h * s / 2), int(w * s), int(h * s)

    def _subject(self, ref: str, src: np.ndarray) -> tuple[Box, bool, np.ndarray]:
        """Face box, whether it was detected, and the person mask; cached per portrait file."""
        key = (str(ref), Path(ref).stat().st_mtime_ns, src.shape)
        hit = self._subjects.get(key)
        if hit is None:
            face, found = main_face(Image.fromarray(src))
            hit = (face, found, self._cutout(src, face))
            if len(self._subjects) > 64:
                self._subjects.clear()
            self._subjects[key] = hit
        return hit

    @staticmethod
    def _cutout(src: np.ndarray, face: Box) -> np.ndarray:
        """A soft person mask (uint8) from GrabCut seeded by the face box."""
        h, w = src.shape[:2]
        fx, fy, fw, fh = face
        x0, x1 = max(0, int(fx - 0.9 * fw)), min(w - 1, int(fx + 1.9 * fw))
        y0 = max(0, int(fy - 0.5 * fh))
        mask = np.zeros((h, w), np.uint8)  # GC_BGD
        mask[y0:, x0:x1] = cv2.GC_PR_FGD
        mask[fy + fh // 6: fy + fh - fh // 8, fx + fw // 6: fx + fw - fw // 6] = cv2.GC_FGD
        if x0 == 0 and x1 == w - 1 and y0 == 0:
            mask[:, :2] = mask[:, -2:] = mask[:2, :] = cv2.GC_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(cv2.cvtColor(src, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
            fg = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
        except cv2.error:
            fg = np.zeros((h, w), np.uint8)
            cv2.ellipse(fg, (fx + fw // 2, fy + fh), (int(fw * 1.2), int(fh * 1.6)), 0, 0, 360, 255, -1)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        return cv2.GaussianBlur(fg, (0, 0), max(1.5, fw / 40))

    def _restyle(self, request: ImageRequest) -> tuple[Image.Image, dict[str, str]]:
        W, H = request.size
        from generators.image.base import fit_image

        photo = fit_image(load_image(request.init_image, what="photo"), (W, H))
        self._check_subject(photo, request)
        src = np.asarray(photo, dtype=np.uint8)
        style = style_of(request.prompt) or "paint"
        out = stylize(src, style)
        if style == "lifelike":
            out = lifelike_grade(out)
        a = float(request.strength)
        mixed = np.clip(src.astype(np.float32) * (1 - a) + out.astype(np.float32) * a, 0, 255).astype(np.uint8)
        return Image.fromarray(mixed), {"style": style}

    # -- the procedural avatar (portrait candidates) -----------------------------------------

    _COLOURS = {
        "black": (25, 22, 25), "dark": (45, 35, 30), "brown": (100, 65, 40), "chestnut": (120, 70, 40),
        "auburn": (140, 60, 35), "red": (175, 60, 40), "ginger": (200, 100, 45), "blonde": (225, 195, 120),
        "blond": (225, 195, 120), "golden": (220, 180, 90), "silver": (195, 195, 205), "grey": (150, 150, 155),
        "gray": (150, 150, 155), "white": (235, 235, 235), "pink": (235, 140, 180), "blue": (60, 110, 200),
        "teal": (40, 150, 150), "green": (60, 140, 70), "purple": (130, 70, 170), "yellow": (240, 200, 40),
        "orange": (235, 130, 40),
    }
    _SKIN = {"pale": (245, 220, 205), "fair": (240, 210, 185), "light": (235, 200, 175), "olive": (200, 165, 120),
             "tan": (205, 160, 120), "brown": (150, 100, 70), "dark": (105, 70, 50), "deep": (90, 60, 45)}

    def _colour_before(self, text: str, nouns: tuple[str, ...], table: dict, default):
        for m in re.finditer(r"\b([a-z]+)[- ](?:([a-z]+) )?(?:" + "|".join(nouns) + r")\b", text):
            for word in (m.group(2), m.group(1)):  # the nearer word first
                if word in table:
                    return table[word]
        return default

    def _avatar(self, request: ImageRequest) -> tuple[Image.Image, dict[str, str]]:
        W, H = request.size
        low = request.prompt.lower()
        rng = self._rng(request, low)
        j = lambda c, d=10: tuple(float(np.clip(v + rng.uniform(-d, d), 0, 255)) for v in c)  # noqa: E731
        hair = j(self._colour_before(low, ("hair",), self._COLOURS, (70, 45, 30)))
        skin_word = next((w for w in self._SKIN if re.search(rf"\b{w}[- ](skin|skinned|complexion)", low)), None)
        skin = j(self._SKIN[skin_word] if skin_word else (230, 190, 160), 6)
        eyes = j(self._colour_before(low, ("eyes", "eyed"), self._COLOURS, (70, 50, 35)))
        clothes = j(self._colour_before(low, ("raincoat", "coat", "jacket", "hoodie", "dress", "shirt", "sweater",
                                              "top", "blouse", "suit"), self._COLOURS, (80, 90, 130)))
        theme = scene_theme(low)
        img = background(theme, (W, H), rng, key=low)
        img = cv2.GaussianBlur(img, (0, 0), max(1.0, W / 100))
        cx = int(W * (0.5 + rng.uniform(-0.04, 0.04)))
        s = H * rng.uniform(0.9, 1.05)
        hy = int(H * 0.42)
        hw, hh = int(s * 0.17), int(s * 0.22)
        long_hair = bool(re.search(r"\blong\b|shoulder[- ]length", low)) or rng.random() < 0.3
        cv2.ellipse(img, (cx, int(H * 1.02)), (int(s * 0.42), int(s * 0.30)), 0, 180, 360, clothes, -1)  # shoulders
        cv2.rectangle(img, (cx - hw // 3, hy + hh - 4), (cx + hw // 3, hy + hh + int(s * 0.08)), skin, -1)  # neck
        if long_hair:
            cv2.ellipse(img, (cx, hy + hh // 3), (int(hw * 1.25), int(hh * 1.25)), 0, 0, 360, hair, -1)
        cv2.ellipse(img, (cx, hy), (hw, hh), 0, 0, 360, skin, -1)  # face
        cv2.ellipse(img, (cx, hy - int(hh * 0.55)), (int(hw * 1.08), int(hh * 0.55)), 0, 180, 360, hair, -1)
        if "teal" in low and "streak" in low:
            cv2.ellipse(img, (cx - hw // 2, hy - int(hh * 0.6)), (hw // 5, hh // 3), 20, 180, 360, self._COLOURS["teal"], -1)
        ey, ex = hy - hh // 6, int(hw * 0.45)
        for dx in (-ex, ex):
            cv2.ellipse(img, (cx + dx, ey - hh // 6), (int(hw * 0.26), max(2, hh // 22)), 0, 0, 360, hair, -1)
            cv2.ellipse(img, (cx + dx, ey), (int(hw * 0.2), max(2, hh // 10)), 0, 0, 360, (250, 250, 250), -1)
            cv2.circle(img, (cx + dx, ey), max(2, hw // 11), eyes, -1)
            if "glasses" in low:
                cv2.circle(img, (cx + dx, ey), int(hw * 0.32), (30, 30, 30), max(1, W // 160))
        nose = tuple(v * 0.85 for v in skin)
        cv2.ellipse(img, (cx, hy + hh // 6), (max(2, hw // 10), hh // 6), 0, 0, 360, nose, -1)
        cv2.ellipse(img, (cx, hy + int(hh * 0.5)), (int(hw * 0.32), max(2, hh // 14)), 0, 0, 180, (150, 60, 70), -1)
        if "freckle" in low:
            for _ in range(14):
                cv2.circle(img, (int(cx + rng.uniform(-hw * 0.6, hw * 0.6)), int(hy + rng.uniform(0, hh * 0.25))),
                           max(1, W // 256), tuple(v * 0.7 for v in skin), -1)
        img = cv2.GaussianBlur(img, (0, 0), max(0.6, W / 400))
        img = grade(img, theme, rng).astype(np.uint8)
        img = stylize(img, style_of(low))
        return Image.fromarray(np.ascontiguousarray(img)), {"theme": theme, "avatar": "procedural"}
