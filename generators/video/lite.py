"""The lite talking head: a portrait that speaks, on the CPU, without weights.

Per portrait (once): mediapipe's face mesh (``generators.video.face``), a crop around the
face, and a Delaunay triangulation of the landmarks and the frame's border, from which
every output pixel's barycentric weights are kept as a sparse matrix.
Per frame: a displacement of the landmarks (the jaw, chin and lower lip drop with the
mouth's opening, the corners draw in, the eyelids close in a blink), spread to every pixel
through that matrix; a small seeded head motion and breathing folded into the same
sampling map; one ``cv2.remap``; then the inside of the mouth and the upper teeth drawn
in the opening. The opening follows the speech: its loudness envelope, a frame ahead
(the mouth moves before the sound), smoothed.
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

@dataclass(frozen=True)
class Motion:
    opening: np.ndarray  # (frames,) 0..1
    blink: np.ndarray  # (frames,) 0..1 (1: closed)
    yaw: np.ndarray  # small rotations (degrees), translations (px) and breathing (scale)
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray


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
    out = np.zeros(frames)
    level = 0.0
    for i, v in enumerate(o):  # fast attack, slower release
        level += (v - level) * (0.75 if v > level else 0.45)
        out[i] = level
    return out


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
    return Motion(opening_track(audio, sr, fps, frames), blink, wander(1.6), wander(4.0), wander(3.0), breathing)


class LiteHead:
    name = "lite"

    def __init__(self, portrait: np.ndarray, size: int = 512, *, cache_dir: Path | None = None):
        import cv2
        from scipy.sparse import csr_matrix
        from scipy.spatial import Delaunay

        if size % 2 or size < 64:
            raise VideoInputError(f"the video size must be an even number of pixels, at least 64 (got {size})")
        h0, w0 = portrait.shape[:2]
        if max(h0, w0) > 4096:  # a huge photo: the face is found on a smaller copy
            k = 4096 / max(h0, w0)
            portrait = cv2.resize(portrait, (int(w0 * k), int(h0 * k)), interpolation=cv2.INTER_AREA)
        face = fm.find_face(portrait, cache_dir)
        self.faces_found = face.faces_found
        x0, y0, x1, y1 = face.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * (y1 - y0)
        side = max(x1 - x0, y1 - y0) * 2.2
        # the crop, padded with the picture's edge where the face is near it
        m = np.float32([[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]])
        self.image = cv2.warpAffine(portrait, m, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_REPLICATE)
        pts = face.points @ m[:, :2].T + m[:, 2]
        self.points = pts.astype(np.float32)
        self.size = size
        self.mouth_h = float(np.linalg.norm(pts[152] - pts[1]))
        border = np.array([(x, y) for x in np.linspace(0, size - 1, 5) for y in (0, size - 1)]
                          + [(x, y) for y in np.linspace(0, size - 1, 5)[1:-1] for x in (0, size - 1)], np.float32)
        verts = np.concatenate([self.points, border])
        tri = Delaunay(verts)
        gy, gx = np.mgrid[0:size, 0:size]
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

    def displacement(self, opening: float, blink: float) -> np.ndarray:
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
        if blink > 0:
            for up, lo in zip(fm.LEFT_UPPER_LID + fm.RIGHT_UPPER_LID, fm.LEFT_LOWER_LID + fm.RIGHT_LOWER_LID):
                d[up] += (p[lo] - p[up]) * 0.9 * blink
        return d

    def frame(self, opening: float, blink: float, yaw: float = 0.0, dx: float = 0.0, dy: float = 0.0,
              scale: float = 1.0) -> np.ndarray:
        import cv2

        d = self.displacement(opening, blink)
        dense = (self.weights @ d).astype(np.float32)  # (pixels, 2)
        c = self.size / 2
        a = math.radians(yaw)
        cos, sin = math.cos(a) / scale, math.sin(a) / scale
        # where each output pixel comes from: the head motion undone, then the face's own motion
        ux, uy = self.gx - c - dx, self.gy - c - dy
        sx = cos * ux + sin * uy + c - dense[:, 0].reshape(self.size, self.size)
        sy = -sin * ux + cos * uy + c - dense[:, 1].reshape(self.size, self.size)
        out = cv2.remap(self.image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if opening > 0.04:
            self._mouth(out, d, yaw, dx, dy, scale)
        return out

    def _mouth(self, out: np.ndarray, d: np.ndarray, yaw: float, dx: float, dy: float, scale: float) -> None:
        import cv2

        p = self.points + d[: len(self.points)]
        c = self.size / 2
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
                                 float(mo.dy[i]), float(mo.scale[i]))

        return frames(), n, mo


def say_video(portrait: str | Path, audio: np.ndarray, sr: int, out: str | Path, *, size: int = 512, fps: float = 25,
              seed: int = 0, cache_dir: Path | None = None) -> dict:
    """An MP4 of the portrait speaking ``audio``; returns its metadata."""
    from PIL import Image

    from generators.video.mp4 import thumb_path, thumbnail, write_mp4
    from generators.voice.finishing import resample

    try:
        with Image.open(portrait) as im:
            img = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise VideoInputError(f"cannot read the picture {portrait}: {exc}") from exc
    t0 = time.perf_counter()
    head = LiteHead(img, size, cache_dir=cache_dir)
    frames, n, _ = head.render(audio, sr, fps, seed)
    first: list[np.ndarray] = []

    def keep_first():
        for i, f in enumerate(frames):
            if i == 0:
                first.append(f)
            yield f

    path = write_mp4(out, keep_first(), fps, audio=resample(audio, sr, 48000), sample_rate=48000)
    thumb = thumbnail(first[0], thumb_path(out))
    return {"path": str(path), "thumbnail": str(thumb), "frames": n, "fps": fps, "width": size, "height": size,
            "duration": n / fps, "faces_found": head.faces_found, "seconds": time.perf_counter() - t0,
            "generator": "vchar-lite-head", "seed": seed}


class LiteVideo:
    """The lite tier as the service uses it: clips written under ``out_dir``, faces cached."""

    name = "lite"

    def __init__(self, out_dir: str | Path, *, cache_dir: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.out_dir / "faces"

    def make(self, portrait: str | Path, audio: np.ndarray, sr: int, *, size: int = 512, fps: float = 25,
             seed: int = 0, name: str = "clip", cache: bool = True) -> dict:
        """``cache``: keep the face's landmarks for next time (not for a person's own photo)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return say_video(portrait, audio, sr, self.out_dir / f"{name}.mp4", size=size, fps=fps, seed=seed,
                         cache_dir=self.cache_dir if cache else None)

    async def aclose(self) -> None:
        """Nothing held open."""
