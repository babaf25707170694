"""A frame-rate doubler: motion-compensated interpolation on dense optical flow.

Between two frames A and B, OpenCV's DIS optical flow gives the motion both ways; each
in-between frame is A warped forward and B warped back along it, blended by time, and
where the two warps disagree (an occlusion) the nearer original wins. Used on the lite
talking head's output and on any clip (`vchar video smooth IN OUT --fps 60`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np


def _flow(dis, a_gray: np.ndarray, b_gray: np.ndarray) -> np.ndarray:
    return dis.calc(a_gray, b_gray, None)


def _warp(img: np.ndarray, flow: np.ndarray, t: float) -> np.ndarray:
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    # backward warping: the pixel at x in the middle frame came from x - t * flow in ``img``
    return cv2.remap(img, gx - t * flow[..., 0], gy - t * flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def between(a: np.ndarray, b: np.ndarray, steps: int, dis=None) -> list[np.ndarray]:
    """``steps - 1`` frames between ``a`` and ``b`` (RGB uint8), evenly spaced in time."""
    import cv2

    if steps <= 1:
        return []
    if dis is None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    f_ab = _flow(dis, ga, gb)
    f_ba = _flow(dis, gb, ga)
    out = []
    af, bf = a.astype(np.float32), b.astype(np.float32)
    for k in range(1, steps):
        t = k / steps
        from_a = _warp(af, f_ab, t)
        from_b = _warp(bf, f_ba, 1 - t)
        disagree = np.abs(from_a - from_b).mean(axis=2, keepdims=True)
        w_b = np.where(disagree > 40, float(t >= 0.5), t)  # occluded: the nearer frame
        out.append(np.clip(from_a * (1 - w_b) + from_b * w_b, 0, 255).astype(np.uint8))
    return out


def smooth(frames: Iterable[np.ndarray], fps: float, target_fps: float) -> tuple[Iterator[np.ndarray], float]:
    """The frames at (about) ``target_fps``: each gap filled with interpolated frames, a
    whole number of them. Returns the frames and the frame rate they play at."""
    import cv2

    steps = max(2, int(math.ceil(target_fps / fps - 1e-9))) if target_fps > fps else 1
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def run() -> Iterator[np.ndarray]:
        prev = None
        for f in frames:
            if prev is not None:
                yield from between(prev, f, steps, dis)
            yield f
            prev = f

    return run(), fps * steps
