"""The MP4 writer and the frame-rate doubler, read back with PyAV."""

from __future__ import annotations

import numpy as np
import pytest

from generators.video import VideoInputError
from generators.video.mp4 import probe, read_audio, read_frames, thumbnail, write_mp4
from generators.video.smooth import between, smooth
from tests.bots.test_cli import vchar


def _square(x: int, size: int = 96) -> np.ndarray:
    img = np.full((size, size, 3), 30, np.uint8)
    img[36:60, x: x + 24] = 240  # a bright square on a dark ground
    return img


def _centroid_x(img: np.ndarray) -> float:
    bright = img.mean(axis=2) > 200
    return float(np.nonzero(bright)[1].mean())


def test_an_mp4_is_h264_with_aac_and_its_index_up_front(tmp_path):
    sr = 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    path = write_mp4(tmp_path / "a.mp4", [_square(10 + i) for i in range(25)], 25, audio=tone, sample_rate=sr)
    p = probe(path)
    assert (p.width, p.height, p.video_codec, p.has_audio) == (96, 96, "h264", True)
    assert p.frames == 25 and abs(p.fps - 25) < 0.01 and abs(p.duration - 1.0) < 0.05
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: plays while downloading
    audio = read_audio(path, sr)
    assert abs(len(audio) / sr - 1.0) < 0.05 and np.abs(audio).max() > 0.2
    frames, fps = read_frames(path)
    first = next(frames)
    assert first.shape == (96, 96, 3) and fps == 25
    thumb = thumbnail(first, tmp_path / "t.jpg")
    from PIL import Image

    assert Image.open(thumb).format == "JPEG"
    with pytest.raises(VideoInputError):
        write_mp4(tmp_path / "odd.mp4", [np.zeros((95, 96, 3), np.uint8)], 25)


def test_an_in_between_frame_moves_the_object_half_way_instead_of_showing_two_ghosts():
    a, b = _square(20), _square(36)
    [mid] = between(a, b, 2)
    assert abs(_centroid_x(mid) - 28 - 11.5) < 2.5  # the square's centre, half way
    bright = (mid.mean(axis=2) > 200).sum()
    assert abs(bright - 24 * 24) < 24 * 24 * 0.25  # one whole square, not two faint ones
    blend = ((a.astype(int) + b) // 2).astype(np.uint8)
    assert (blend.mean(axis=2) > 200).sum() < bright / 2  # what a plain cross-fade would show


def test_smooth_doubles_the_frame_rate_and_vchar_video_smooth_keeps_the_sound(tmp_path):
    frames, fps = smooth([_square(10 + 4 * i) for i in range(6)], 12, 24)
    out = list(frames)
    assert fps == 24 and len(out) == 11
    centres = [_centroid_x(f) for f in out]
    assert all(b > a for a, b in zip(centres, centres[1:]))  # the square moves on every frame
    sr = 48000
    src = write_mp4(tmp_path / "in.mp4", [_square(10 + 3 * i) for i in range(12)], 12,
                    audio=np.zeros(sr, np.float32) + 0.1, sample_rate=sr)
    res = vchar(tmp_path, "video", "smooth", str(src), str(tmp_path / "out.mp4"), "--fps", "24")
    p = probe(tmp_path / "out.mp4")
    assert p.fps == 24 and p.frames == 23 and p.has_audio and "24 fps" in res.stdout
    bad = vchar(tmp_path, "video", "smooth", str(tmp_path / "missing.mp4"), str(tmp_path / "x.mp4"), check=False)
    assert bad.returncode == 1 and "cannot read" in bad.stderr


def test_smoothing_to_a_rate_that_is_not_a_multiple_still_raises_it_and_a_failed_write_leaves_nothing(tmp_path):
    frames, fps = smooth([_square(10 + 4 * i) for i in range(3)], 25, 30)
    assert fps == 50 and len(list(frames)) == 5
    with pytest.raises(VideoInputError):
        write_mp4(tmp_path / "odd.mp4", [np.zeros((95, 96, 3), np.uint8)], 25)
    assert not list(tmp_path.iterdir())  # no half-written temp file
