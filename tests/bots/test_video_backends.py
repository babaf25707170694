"""Choosing the talking-head tier by settings: VCHAR_VIDEO_BACKEND=musetalk asks for its
weights' licence first, then `vchar video say` films with MuseTalk loaded from a folder in
the official layout (a tiny random instance of the real architecture)."""

from __future__ import annotations

from generators.video.mp4 import probe
from tests.bots.test_cli import vchar
from tests.generators.video.test_neural import save_tiny_musetalk


def test_musetalk_needs_its_licence_accepted_then_films_the_clip(tmp_path, monkeypatch):
    models = save_tiny_musetalk(tmp_path / "MuseTalk" / "models")
    monkeypatch.setenv("VCHAR_VIDEO_BACKEND", "musetalk")
    monkeypatch.setenv("VCHAR_VIDEO_MODEL", str(models))
    monkeypatch.setenv("VCHAR_VIDEO_DEVICE", "cpu")
    refused = vchar(tmp_path, "video", "say", "mira", "Hello!", "--size", "128", "-o", str(tmp_path / "a.mp4"),
                    check=False)
    assert refused.returncode == 1 and "VCHAR_VIDEO_ACCEPT_LICENSE=1" in refused.stderr
    assert not (tmp_path / "a.mp4").exists()
    monkeypatch.setenv("VCHAR_VIDEO_ACCEPT_LICENSE", "1")
    made = vchar(tmp_path, "video", "say", "mira", "Hello from the market!", "--size", "128",
                 "-o", str(tmp_path / "a.mp4"))
    assert "128x128" in made.stdout
    p = probe(tmp_path / "a.mp4")
    assert (p.width, p.height, p.has_audio) == (128, 128, True) and p.frames > 10


def test_the_service_turns_videos_off_with_a_reason_when_the_licence_is_not_accepted(tmp_path, monkeypatch, caplog):
    from bots.service import media_backends
    from bots.settings import Settings

    monkeypatch.setenv("VCHAR_VIDEO_BACKEND", "musetalk")
    s = Settings(data_dir=tmp_path / "data")
    _, voice, _, video = media_backends(s)
    assert voice is not None and video is None
    assert "VCHAR_VIDEO_ACCEPT_LICENSE" in caplog.text
    monkeypatch.setenv("VCHAR_VIDEO_ACCEPT_LICENSE", "true")
    _, _, _, video = media_backends(Settings(data_dir=tmp_path / "data"))
    assert video.name == "musetalk" and video.model is None  # nothing loaded before the first clip
