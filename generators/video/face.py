"""Face landmarks of a portrait: mediapipe's face mesh (478 points with the irises),
found once per picture and cached by its content.

The mesh's indices used here (mediapipe's canonical face model): the lips' outer and
inner rings, the eyelids, the jaw line, and fixed points (forehead, nose bridge) that the
benchmark uses to measure jitter.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generators.video import VideoInputError

log = logging.getLogger(__name__)

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
JAW = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)
CHIN = (152, 148, 377, 176, 400)
LEFT_UPPER_LID = (386, 385, 387, 384, 398, 466, 388)
LEFT_LOWER_LID = (374, 380, 373, 381, 382, 390, 249)
RIGHT_UPPER_LID = (159, 158, 160, 157, 173, 246, 161)
RIGHT_LOWER_LID = (145, 153, 144, 154, 155, 163, 7)
FIXED = (10, 151, 9, 168, 6)  # forehead to nose bridge: they do not move when a person talks
_lock = threading.Lock()


@dataclass(frozen=True)
class Face:
    points: np.ndarray  # (478, 2) pixel coordinates in the portrait
    faces_found: int
    size: tuple[int, int]  # (width, height) of the picture
    yaw: float = 0.0  # degrees the head is turned from the camera (either way)

    @property
    def box(self) -> tuple[float, float, float, float]:
        x, y = self.points[:, 0], self.points[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def mouth_height(self) -> float:
        """The distance nose-to-chin scale the mouth opens by (about a third of it)."""
        return float(np.linalg.norm(self.points[152] - self.points[1]))


@contextlib.contextmanager
def _quiet_stderr():
    """mediapipe's C++ side prints protobuf notices straight to the stderr file descriptor."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def yaw_of(points3d: np.ndarray) -> float:
    """How far a face is turned, in degrees (0: facing the camera), from its mesh's depth:
    the angle of the line between the cheek edges (234, 454) out of the picture's plane."""
    v = points3d[454] - points3d[234]
    return abs(float(np.degrees(np.arctan2(v[2], v[0]))))


def landmarks(image: np.ndarray, *, depth: bool = False) -> list[np.ndarray]:
    """Every face's 478 landmarks in pixels (largest first) of an RGB uint8 image; with
    ``depth`` a third column, mediapipe's relative depth on the same scale as x."""
    with _lock, _quiet_stderr():
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:
            raise VideoInputError(f"the talking head needs mediapipe: make install (or pip install --no-deps "
                                  f"mediapipe==0.10.21) ({exc})") from exc
        with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, refine_landmarks=True) as fm:
            result = fm.process(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    faces = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32)
             for f in (result.multi_face_landmarks or [])]
    if not depth:
        faces = [f[:, :2] for f in faces]
    faces.sort(key=lambda pts: -float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])))
    return faces


def find_face(image: np.ndarray, cache_dir: Path | None = None) -> Face:
    """The largest face of ``image`` (cached by content under ``cache_dir``)."""
    key = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:24]
    path = cache_dir / f"face-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        z = np.load(path)
        if "yaw" in z:  # an entry from before the turn was measured is found again
            return Face(z["points"], int(z["faces"]), (image.shape[1], image.shape[0]), float(z["yaw"]))
    faces = landmarks(image, depth=True)
    if not faces:
        raise VideoInputError("I can't find a face in that picture")
    face = Face(np.ascontiguousarray(faces[0][:, :2]), len(faces), (image.shape[1], image.shape[0]), yaw_of(faces[0]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, points=face.points, faces=np.array(len(faces)), yaw=np.array(face.yaw))
    return face
