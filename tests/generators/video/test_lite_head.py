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


def _vowel(f1: float, f2: float, seconds: float = 0.6, sr: int = 22050) -> np.ndarray:
    """A sung vowel made the way a vocal tract makes one: a 140 Hz pulse train through two
    resonances at the vowel's first two formants."""
    from scipy.signal import lfilter

    x = np.zeros(int(seconds * sr))
    x[:: int(sr / 140)] = 1.0
    for f, bw in ((f1, 80.0), (f2, 120.0), (2900.0, 200.0)):
        r = np.exp(-np.pi * bw / sr)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], x)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def test_ee_spreads_the_lips_oo_rounds_them_and_ah_opens_the_jaw_wider():
    from generators.video.lite import mouth_track

    sr, fps = 22050, 25
    vowels = {"ee": (270, 2290), "oo": (300, 870), "ah": (730, 1090)}
    # the same loudness for all three (a loud burst first so the envelope's top is shared)
    clip = np.concatenate([_vowel(*vowels[v]) for v in ("ee", "oo", "ah")])
    n = int(len(clip) / sr * fps)
    opening, width = mouth_track(clip, sr, fps, n)
    per = int(0.6 * fps)
    mid = {v: slice(i * per + 5, (i + 1) * per - 3) for i, v in enumerate(("ee", "oo", "ah"))}
    w = {v: float(np.mean(width[s])) for v, s in mid.items()}
    o = {v: float(np.mean(opening[s])) for v, s in mid.items()}
    assert w["ee"] > 0.4 and w["oo"] < -0.4, w
    assert o["ah"] > o["ee"] + 0.1 and o["ah"] > o["oo"] + 0.1, o


def test_a_selfie_clip_is_9_by_16_with_the_face_in_the_upper_half_and_smoothing_doubles_its_rate(tmp_path):
    sr = 22050
    meta = say_video(PORTRAIT, _speech(1.0), sr, tmp_path / "s.mp4", size=256, fps=12, seed=1,
                     cache_dir=tmp_path / "faces", layout="selfie", smooth_to=24)
    p = probe(meta["path"])
    assert (p.width, p.height) == (256, 456) and (meta["width"], meta["height"]) == (256, 456)
    assert meta["fps"] == 24 and p.frames == meta["frames"] == 2 * 12 - 1 and p.has_audio
    frames, _ = read_frames(meta["path"])
    [pts] = fm.landmarks(next(iter(frames)))[:1]
    assert pts[:, 1].mean() < 456 / 2  # the face sits high, like a phone held at arm's length
    assert pts[:, 1].max() < 456 * 0.7  # and shows what is below the chin


def test_a_face_turned_away_from_the_camera_is_refused_with_a_reason(tmp_path):
    from PIL import Image

    from generators.video.lite import TURNED_TOO_FAR

    img = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    [pts] = fm.landmarks(img, depth=True)[:1]
    assert fm.yaw_of(pts) < 10  # Mira looks at the camera
    LiteHead(img, 128, cache_dir=tmp_path)  # and speaks

    def turn(p: np.ndarray, degrees: float) -> np.ndarray:
        a = np.radians(degrees)
        c = p - p[1]  # about the nose tip
        x = c[:, 0] * np.cos(a) + c[:, 2] * np.sin(a)
        z = -c[:, 0] * np.sin(a) + c[:, 2] * np.cos(a)
        return np.stack([x, c[:, 1], z], axis=1) + p[1]

    assert abs(fm.yaw_of(turn(pts, 25)) - 25) < 10 and abs(fm.yaw_of(turn(pts, -60)) - 60) < 10
    # the same picture, its landmarks as a head turned 60 degrees would have them (through the cache)
    [entry] = tmp_path.glob("face-*.npz")
    z = dict(np.load(entry))
    z["points"] = turn(pts, 60)[:, :2].astype(np.float32)
    z["yaw"] = np.array(fm.yaw_of(turn(pts, 60)))
    assert z["yaw"] > TURNED_TOO_FAR
    np.savez(entry, **z)
    with pytest.raises(VideoInputError, match="turned too far"):
        LiteHead(img, 128, cache_dir=tmp_path)
