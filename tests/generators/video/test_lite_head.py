"""The lite talking head: a portrait speaks, lips following the speech as mediapipe sees it."""

from __future__ import annotations

import numpy as np
import pytest

from generators.video import VideoInputError
from generators.video import face as fm
from generators.video.lite import LiteHead, say_video
from generators.video.mp4 import probe, read_frames
from persona.registry import SAMPLES
from tests.bots.test_cli import vchar

PORTRAIT = f"{SAMPLES}/media/mira-portrait.png"


def _speech(seconds: float = 3.0, sr: int = 22050) -> np.ndarray:
    """Syllable-like bursts of a voiced tone: loud, quiet, loud..."""
    t = np.arange(int(seconds * sr)) / sr
    bursts = np.clip(np.sin(2 * np.pi * 2.2 * t) * 1.6, 0, 1)
    return (0.4 * np.sin(2 * np.pi * 190 * t) * bursts).astype(np.float32)


def test_the_portrait_speaks_with_its_mouth_opening_on_the_loud_parts(tmp_path):
    sr = 22050
    audio = _speech(sr=sr)
    meta = say_video(PORTRAIT, audio, sr, tmp_path / "say.mp4", size=256, fps=25, seed=3, cache_dir=tmp_path / "faces")
    p = probe(meta["path"])
    assert (p.width, p.height, p.video_codec, p.has_audio) == (256, 256, "h264", True)
    assert p.frames == 75 and abs(p.duration - 3.0) < 0.1 and meta["faces_found"] == 1
    frames, fps = read_frames(meta["path"])
    opening, fixed = [], []
    for f in frames:
        [pts] = fm.landmarks(f)[:1] or [None]
        assert pts is not None  # the face is found on every frame
        opening.append(np.linalg.norm(pts[14] - pts[13]) / np.linalg.norm(pts[152] - pts[1]))
        fixed.append(pts[list(fm.FIXED)])
    hop = sr / fps
    loud = np.array([np.sqrt(np.mean(audio[int(i * hop): int((i + 1) * hop)] ** 2)) for i in range(len(opening))])
    r = max(np.corrcoef(np.roll(opening, lag), loud)[0, 1] for lag in (-2, -1, 0, 1, 2))
    assert r >= 0.6
    jitter = np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in zip(fixed, fixed[1:])])
    assert jitter < 2.0  # the head moves a little, it does not shake


def test_the_same_seed_moves_the_same_and_a_picture_without_a_face_is_refused(tmp_path):
    img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(PORTRAIT).convert("RGB"))
    head = LiteHead(img, 128, cache_dir=tmp_path)
    a = [f for f, _ in zip(head.render(_speech(1.0), 22050, 25, seed=5)[0], range(25))]
    b = [f for f, _ in zip(head.render(_speech(1.0), 22050, 25, seed=5)[0], range(25))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert (tmp_path / next(p.name for p in tmp_path.iterdir())).suffix == ".npz"  # landmarks cached
    with pytest.raises(VideoInputError, match="can't find a face"):
        LiteHead(np.full((200, 200, 3), 120, np.uint8), 128)


def test_vchar_video_say_has_mira_speak_in_her_own_voice(tmp_path):
    res = vchar(tmp_path, "video", "say", "mira", "Hi there, see you at the market!", "--size", "256",
                "-o", str(tmp_path / "hi.mp4"))
    p = probe(tmp_path / "hi.mp4")
    assert p.has_audio and p.width == 256 and p.duration > 1.0 and "256x256" in res.stdout
    assert (tmp_path / "hi.thumb.jpg").is_file()
