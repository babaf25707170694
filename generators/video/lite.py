"""The lite talking head: a portrait that speaks, on the CPU, without weights.

Per portrait (once): mediapipe's face mesh (``generators.video.face``), a crop around the
face, and a Delaunay triangulation of the landmarks and the frame's border, from which
every output pixel's barycentric weights are kept as a sparse matrix.
Per frame: a displacement of the landmarks (the jaw, chin and lower lip drop with the
mouth's opening, the corners draw in, the eyelids close in a blink), spread to every pixel
through that matrix; a small seeded head motion and breathing folded into the same
sampling map; one ``cv2.remap``; then the inside of the mouth and the upper teeth drawn
in the opening.

The mouth follows the speech itself, so any voice works (the lite voice, XTTS, a recording,
a song): two viseme parameters a frame ahead of the sound (the mouth moves first), smoothed
with a fast attack and a slower release. The opening comes from the loudness envelope,
scaled by the first formant (an open "ah" drops the jaw further than an "ee" or "oo" at the
same loudness); the width from the second formant (a high F2 spreads the lips for "ee", a
low one rounds them for "oo"). Formants come from linear prediction (``librosa.lpc``) on
each voiced frame.

Layouts: ``square`` (1:1), ``selfie`` (9:16, a phone held upright: the crop runs down to the
shoulders), ``note`` (1:1, for Telegram's round video notes). The 16:9 news bulletin frames
a square head in a studio (``generators.video.news``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generators.video import VideoInputError
from generators.video import face as fm

log = logging.getLogger(__name__)

LAYOUTS = ("square", "selfie", "note")


def frame_size(layout: str, size: int) -> tuple[int, int]:
    """(width, height) of a layout whose short side is ``size``."""
    if layout not in LAYOUTS:
        raise VideoInputError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if layout == "selfie":
        return size, int(round(size * 16 / 9 / 2)) * 2
    return size, size


@dataclass(frozen=True)
class Motion:
    opening: np.ndarray  # (frames,) 0..1
    blink: np.ndarray  # (frames,) 0..1 (1: closed)
    yaw: np.ndarray  # small rotations (degrees), translations (px) and breathing (scale)
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    width: np.ndarray | None = None  # (frames,) -1 (rounded, "oo") .. 1 (spread, "ee")


def _attack_release(x: np.ndarray, attack: float = 0.75, release: float = 0.45) -> np.ndarray:
    out = np.zeros(len(x))
    level = 0.0
    for i, v in enumerate(x):
        level += (v - level) * (attack if abs(v) > abs(level) else release)
        out[i] = level
    return out


def formants(audio: np.ndarray, sr: int, fps: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """F1 and F2 in Hz on each frame (NaN where the frame is quiet or no formant is clear),
    from linear prediction on 30 ms around the frame's middle, at 10 kHz."""
    import librosa

    from generators.voice.finishing import resample

    rate = 10000
    x = resample(np.asarray(audio, np.float32), sr, rate).astype(np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1]) if len(x) else x  # pre-emphasis
    win = int(0.03 * rate)
    taper = np.hamming(win)
    f1 = np.full(frames, np.nan)
    f2 = np.full(frames, np.nan)
    def level(i: int) -> float:
        seg = x[max(0, int((i + 0.5) / fps * rate) - win // 2):][:win]
        return float(np.sqrt(np.mean(seg * seg))) if len(seg) else 0.0

    rms = np.array([level(i) for i in range(frames)])
    floor = 0.05 * float(np.percentile(rms, 95)) if frames and np.any(rms > 0) else np.inf
    for i in range(frames):
        a = int((i + 0.5) / fps * rate) - win // 2
        seg = x[max(0, a):max(0, a) + win]
        if len(seg) < win or rms[i] < floor:
            continue
        try:
            coef = librosa.lpc(seg * taper, order=12)
        except (FloatingPointError, ValueError):
            continue
        roots = np.roots(coef)
        roots = roots[np.imag(roots) > 0]
        freq = np.angle(roots) * rate / (2 * np.pi)
        bw = -np.log(np.maximum(np.abs(roots), 1e-9)) * rate / np.pi
        f = np.sort(freq[(freq > 200) & (freq < 4000) & (bw < 500)])
        if len(f) >= 2:
            f1[i], f2[i] = f[0], f[1]
    return f1, f2


def mouth_track(audio: np.ndarray, sr: int, fps: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The two viseme parameters per frame: how open the mouth is (0..1) and how wide
    (-1 rounded .. 1 spread), from the speech itself."""
    opening = opening_track(audio, sr, fps, frames)
    if not frames:
        return opening, np.zeros(0)
    f1, f2 = formants(audio, sr, fps, frames)
    f1, f2 = np.concatenate([f1[1:], [np.nan]]), np.concatenate([f2[1:], [np.nan]])  # lead by a frame, as the opening
    voiced = ~np.isnan(f1)
    jaw = np.where(voiced, np.clip((np.nan_to_num(f1) - 300) / 500, 0, 1), 0.5)
    opening = np.clip(opening * (0.6 + 0.6 * jaw), 0, 1)
    width = np.where(voiced, np.clip((np.nan_to_num(f2) - 1500) / 700, -1, 1), 0.0)
    return opening, _attack_release(width, 0.6, 0.3)


def opening_track(audio: np.ndarray, sr: int, fps: float, frames: int) -> np.ndarray:
    """How open the mouth is on each frame, from the speech's loudness envelope."""
    hop = sr / fps
    env = np.zeros(frames)
    x = np.asarray(audio, np.float64)
    for i in range(frames):
        a, b = int(i * hop), int((i + 1) * hop)
        seg = x[a:b]
        env[i] = math.sqrt(float(np.mean(seg * seg))) if len(seg) else 0.0
    top = float(np.percentile(env[env > 0], 95)) if np.any(env > 0) else 0.0
    if top <= 0:
        return np.zeros(frames)
    o = np.clip(env / top, 0, 1)
    o = np.where(o < 0.12, 0.0, (o - 0.12) / 0.88) ** 0.7
    o = np.concatenate([o[1:], [0.0]])  # the mouth leads the sound by a frame
    return _attack_release(o)


def motion(frames: int, fps: float, audio: np.ndarray, sr: int, seed: int) -> Motion:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    blink = np.zeros(frames)
    at = rng.uniform(0.6, 2.0)  # blinks of 0.16 s every 2.5 to 5 s
    while frames and at < t[-1]:
        blink = np.maximum(blink, np.clip(1 - np.abs(t - at) / 0.08, 0, 1))
        at += rng.uniform(2.5, 5.0)

    def wander(amount: float) -> np.ndarray:
        f = rng.uniform(0.15, 0.45, 3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        return amount * sum(np.sin(2 * np.pi * fi * t + p) for fi, p in zip(f, ph)) / 3

    breathing = 1.0 + 0.006 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    yaw, dx, dy = wander(1.6), wander(4.0), wander(3.0)
    opening, width = mouth_track(audio, sr, fps, frames)
    return Motion(opening, blink, yaw, dx, dy, breathing, width)


TURNED_TOO_FAR = 40.0  # degrees: past this the far cheek hides and a 2D warp tears it


class LiteHead:
    name = "lite"

    def __init__(self, portrait: np.ndarray, size: int = 512, *, height: int | None = None,
                 cache_dir: Path | None = None):
        """``size``: the frame's width; ``height`` (default: square) runs the crop further down
        (the ``selfie`` layout's 9:16); the face keeps the same width either way."""
        import cv2
        from scipy.sparse import csr_matrix
        from scipy.spatial import Delaunay

        height = size if height is None else height
        if size % 2 or size < 64 or height % 2 or height < 64:
            raise VideoInputError(f"the video size must be an even number of pixels, at least 64 (got {size}x{height})")
        h0, w0 = portrait.shape[:2]
        if max(h0, w0) > 4096:  # a huge photo: the face is found on a smaller copy
            k = 4096 / max(h0, w0)
            portrait = cv2.resize(portrait, (int(w0 * k), int(h0 * k)), interpolation=cv2.INTER_AREA)
        face = fm.find_face(portrait, cache_dir)
        if face.yaw > TURNED_TOO_FAR:
            raise VideoInputError("that face is turned too far from the camera to speak: a picture looking "
                                  "at the camera (or nearly) works best")
        self.faces_found = face.faces_found
        x0, y0, x1, y1 = face.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * (y1 - y0)
        face_side = max(x1 - x0, y1 - y0)
        h0, w0 = portrait.shape[:2]
        aspect = height / size
        # the crop in the picture: the face about 45% of the width; a taller frame keeps the
        # face a third of the way down and shows what is below it. Where the picture allows,
        # the crop is zoomed in (down to a face 75% of the width) and slid to stay inside it
        # rather than padded with the picture's smeared edge.
        side = face_side * 2.2
        side = max(min(side, w0, h0 / aspect), face_side * 1.35)
        fy = 0.5 if height == size else 0.36
        left, top_src = cx - side / 2, cy - fy * side * aspect
        left = min(max(left, 0.0), w0 - side) if side <= w0 else left
        top_src = min(max(top_src, 0.0), h0 - side * aspect) if side * aspect <= h0 else top_src
        k = size / side
        m = np.float32([[k, 0, -left * k], [0, k, -top_src * k]])
        self.image = cv2.warpAffine(portrait, m, (size, height), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_REPLICATE)
        pts = face.points @ m[:, :2].T + m[:, 2]
        self.points = pts.astype(np.float32)
        self.size, self.height = size, height
        self.center = (float(cx * k - left * k), float(cy * k - top_src * k))  # the head turns about its middle
        self.mouth_h = float(np.linalg.norm(pts[152] - pts[1]))
        self.mouth_w = float(np.linalg.norm(pts[291] - pts[61]))
        border = np.array([(x, y) for x in np.linspace(0, size - 1, 5) for y in (0, height - 1)]
                          + [(x, y) for y in np.linspace(0, height - 1, 5)[1:-1] for x in (0, size - 1)], np.float32)
        verts = np.concatenate([self.points, border])
        tri = Delaunay(verts)
        gy, gx = np.mgrid[0:height, 0:size]
        pix = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
        simplex = tri.find_simplex(pix)
        simplex[simplex < 0] = 0
        trans = tri.transform[simplex]
        bary2 = np.einsum("nij,nj->ni", trans[:, :2], pix - trans[:, 2])
        bary = np.concatenate([bary2, 1 - bary2.sum(axis=1, keepdims=True)], axis=1)
        rows = np.repeat(np.arange(len(pix)), 3)
        self.weights = csr_matrix((bary.ravel(), (rows, tri.simplices[simplex].ravel())), shape=(len(pix), len(verts)))
        self.n_verts = len(verts)
        self.gx, self.gy = gx.astype(np.float32), gy.astype(np.float32)
        self._jaw_weight = self._falloff()

    def _falloff(self) -> np.ndarray:
        """How much each landmark follows the jaw: 1 at the chin and lower lip, fading up the cheeks."""
        p = self.points
        chin = p[152]
        w = np.zeros(len(p))
        below = p[:, 1] > p[13, 1]  # under the upper lip
        d = np.linalg.norm(p - chin, axis=1) / max(self.mouth_h, 1.0)
        w[below] = np.clip(1.2 - d[below], 0, 1)
        for i in (*fm.LOWER_INNER, *fm.LOWER_OUTER, *fm.CHIN):
            w[i] = 1.0
        for i in (61, 291, 78, 308):  # the corners move half way
            w[i] = 0.5
        return w

    def displacement(self, opening: float, blink: float, width: float = 0.0) -> np.ndarray:
        p = self.points
        d = np.zeros((self.n_verts, 2), np.float32)
        drop = opening * 0.30 * self.mouth_h
        d[: len(p), 1] += self._jaw_weight * drop
        for i in fm.UPPER_INNER + fm.UPPER_OUTER:
            d[i, 1] -= opening * 0.04 * self.mouth_h
        for left, right in ((61, 291), (78, 308)):  # the corners draw in a little as the mouth opens
            c = (p[left] + p[right]) / 2
            d[left] += (c - p[left]) * 0.06 * opening
            d[right] += (c - p[right]) * 0.06 * opening
        if width:
            # spread ("ee") pulls the lip ring out sideways; rounded ("oo") draws it in and
            # pushes the lips' middles apart a little, a rounder opening
            lips = sorted(set(fm.UPPER_INNER + fm.UPPER_OUTER + fm.LOWER_INNER + fm.LOWER_OUTER))
            cx = (p[61, 0] + p[291, 0]) / 2
            k = 0.14 if width > 0 else 0.20
            d[lips, 0] += (p[lips, 0] - cx) * k * width
            if width < 0:
                rel = 1 - np.abs(p[lips, 0] - cx) / max(self.mouth_w / 2, 1.0)
                up = np.isin(lips, fm.UPPER_INNER + fm.UPPER_OUTER)
                d[lips, 1] += np.where(up, 1, -1) * np.clip(rel, 0, 1) * 0.03 * self.mouth_h * width * opening
        if blink > 0:
            for up, lo in zip(fm.LEFT_UPPER_LID + fm.RIGHT_UPPER_LID, fm.LEFT_LOWER_LID + fm.RIGHT_LOWER_LID):
                d[up] += (p[lo] - p[up]) * 0.9 * blink
        return d

    def frame(self, opening: float, blink: float, yaw: float = 0.0, dx: float = 0.0, dy: float = 0.0,
              scale: float = 1.0, width: float = 0.0) -> np.ndarray:
        import cv2

        d = self.displacement(opening, blink, width)
        dense = (self.weights @ d).astype(np.float32)  # (pixels, 2)
        cx, cy = self.center
        a = math.radians(yaw)
        cos, sin = math.cos(a) / scale, math.sin(a) / scale
        # where each output pixel comes from: the head motion undone, then the face's own motion
        ux, uy = self.gx - cx - dx, self.gy - cy - dy
        shape = (self.height, self.size)
        sx = cos * ux + sin * uy + cx - dense[:, 0].reshape(shape)
        sy = -sin * ux + cos * uy + cy - dense[:, 1].reshape(shape)
        out = cv2.remap(self.image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if opening > 0.04:
            self._mouth(out, d, yaw, dx, dy, scale)
        return out

    def _mouth(self, out: np.ndarray, d: np.ndarray, yaw: float, dx: float, dy: float, scale: float) -> None:
        import cv2

        p = self.points + d[: len(self.points)]
        c = np.array(self.center)
        a = math.radians(yaw)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale

        def place(idx) -> np.ndarray:
            q = (p[list(idx)] - c) @ rot.T + c + (dx, dy)
            return np.round(q * 16).astype(np.int32)  # cv2 subpixel: 4 fractional bits

        upper, lower = place(fm.UPPER_INNER), place(fm.LOWER_INNER)
        hole = np.concatenate([upper, lower[::-1]])
        cv2.fillPoly(out, [hole], (52, 18, 24), lineType=cv2.LINE_AA, shift=4)
        gap = float(np.mean(lower[:, 1] - upper[:, 1])) / 16
        teeth_h = min(gap * 0.45, 0.07 * self.mouth_h)
        if teeth_h > 1.0:
            mid = slice(2, len(upper) - 2)
            band = np.concatenate([upper[mid], (upper[mid] + (0, int(teeth_h * 16)))[::-1]])
            cv2.fillPoly(out, [band], (226, 222, 212), lineType=cv2.LINE_AA, shift=4)

    def render(self, audio: np.ndarray, sr: int, fps: float, seed: int = 0):
        """Frames for ``audio`` (a generator) and how many there are."""
        n = max(1, int(math.ceil(len(audio) / sr * fps)))
        mo = motion(n, fps, audio, sr, seed)

        def frames():
            for i in range(n):
                yield self.frame(float(mo.opening[i]), float(mo.blink[i]), float(mo.yaw[i]), float(mo.dx[i]),
                                 float(mo.dy[i]), float(mo.scale[i]), float(mo.width[i]))

        return frames(), n, mo


MAX_SECONDS = 120.0  # a clip's speech at most: a talking head, not a film


def read_portrait(portrait: str | Path) -> np.ndarray:
    """The picture as RGB uint8, or a clear VideoInputError."""
    from PIL import Image

    try:
        with Image.open(portrait) as im:
            if im.width * im.height > 80_000_000:
                raise VideoInputError(f"that picture is {im.width}x{im.height}: too big to film; "
                                      f"one under 80 megapixels works")
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as exc:
        raise VideoInputError(f"cannot read the picture {portrait}: {exc}") from exc


def check_speech(audio: np.ndarray, sr: int) -> None:
    seconds = len(audio) / sr if sr else 0.0
    if seconds > MAX_SECONDS:
        raise VideoInputError(f"the speech is {seconds:.0f} s long; clips here are at most {MAX_SECONDS:.0f} s")
    if not len(audio) or not np.all(np.isfinite(audio)):
        raise VideoInputError("the speech is empty or unreadable")


def say_video(portrait: str | Path, audio: np.ndarray, sr: int, out: str | Path, *, size: int = 512, fps: float = 25,
              seed: int = 0, cache_dir: Path | None = None, layout: str = "square",
              smooth_to: float | None = None) -> dict:
    """An MP4 of the portrait speaking ``audio``; returns its metadata. ``smooth_to``: a
    higher frame rate reached by motion-compensated in-betweens (``generators.video.smooth``)."""
    from generators.video.mp4 import thumb_path, thumbnail, write_mp4
    from generators.video.smooth import smooth
    from generators.voice.finishing import resample

    check_speech(audio, sr)
    img = read_portrait(portrait)
    t0 = time.perf_counter()
    width, height = frame_size(layout, size)
    head = LiteHead(img, width, height=height, cache_dir=cache_dir)
    frames, n, _ = head.render(audio, sr, fps, seed)
    rate = fps
    if smooth_to and smooth_to > fps:
        frames, rate = smooth(frames, fps, smooth_to)
    first: list[np.ndarray] = []
    written = [0]

    def keep_first():
        for f in frames:
            if not first:
                first.append(f)
            written[0] += 1
            yield f

    path = write_mp4(out, keep_first(), rate, audio=resample(audio, sr, 48000), sample_rate=48000)
    thumb = thumbnail(first[0], thumb_path(out))
    return {"path": str(path), "thumbnail": str(thumb), "frames": written[0], "fps": rate, "width": width, "height": height,
            "duration": n / fps, "faces_found": head.faces_found, "seconds": time.perf_counter() - t0,
            "generator": "vchar-lite-head", "seed": seed, "layout": layout}


class LiteVideo:
    """The lite tier as the service uses it: clips written under ``out_dir``, faces cached."""

    name = "lite"

    def __init__(self, out_dir: str | Path, *, cache_dir: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.out_dir / "faces"

    def make(self, portrait: str | Path, audio: np.ndarray, sr: int, *, size: int = 512, fps: float = 25,
             seed: int = 0, name: str = "clip", cache: bool = True, layout: str = "square",
             smooth_to: float | None = None) -> dict:
        """``cache``: keep the face's landmarks for next time (not for a person's own photo)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return say_video(portrait, audio, sr, self.out_dir / f"{name}.mp4", size=size, fps=fps, seed=seed,
                         cache_dir=self.cache_dir if cache else None, layout=layout, smooth_to=smooth_to)

    async def aclose(self) -> None:
        """Nothing held open."""
