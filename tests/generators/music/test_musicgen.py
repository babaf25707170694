"""The musicgen tier on tiny MusicGen and MusicGen-Melody checkpoints of the real
architectures (random weights), loaded through from_pretrained as downloaded ones are."""

from __future__ import annotations

import numpy as np
import pytest

from generators.music import MusicRequest, build_music_backend


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from generators.music.testing import build_musicgen

    root = tmp_path_factory.mktemp("musicgen")
    return build_musicgen(root / "small"), build_musicgen(root / "melody", melody=True)


@pytest.mark.parametrize("which", ["small", "melody"])
def test_musicgen_plays_the_backing_and_the_character_sings_over_it(checkpoints, which, mira_profile, lite_voice,
                                                                     tmp_path):
    path = checkpoints[0] if which == "small" else checkpoints[1]
    music = build_music_backend("musicgen", model=str(path), device="cpu", out_dir=tmp_path, voice=lite_voice)
    steps = []
    song = music.generate(MusicRequest(topic="the rain", style="lo-fi", duration=10, seed=3, voice=mira_profile),
                          stems_dir=tmp_path / "stems", progress=lambda f, s: steps.append((f, s)))
    assert song.metadata["generator"] == f"musicgen:{which}" and song.metadata["singer"] == "voice"
    assert music.melody == (which == "melody")
    assert "playing" in [s for _, s in steps] and "singing" in [s for _, s in steps]
    import soundfile

    backing, sr = soundfile.read(tmp_path / "stems" / "backing.wav")
    assert sr == 44100 and np.abs(backing).max() > 0.01  # the model's audio is in the mix
    assert abs(song.metadata["lufs"] + 14) < 1.0
    again = music.generate(MusicRequest(topic="the rain", style="lo-fi", duration=10, seed=3, voice=mira_profile),
                           out_path=tmp_path / "again.mp3")
    assert again.path.read_bytes() == song.path.read_bytes()  # seeded sampling: the same song


def test_a_hub_model_without_the_licence_accepted_falls_back_to_the_lite_song_and_says_so(tmp_path, caplog):
    music = build_music_backend("musicgen", out_dir=tmp_path)  # facebook/musicgen-small, not accepted
    song = music.generate(MusicRequest(topic="cats", duration=9, seed=1, instrumental=True))
    assert song.metadata["generator"] == "vchar-lite-music"
    assert any("simple version" in n for n in song.notes)
    assert "VCHAR_MUSIC_ACCEPT_LICENSE=1" in caplog.text and "CC-BY-NC-4.0" in caplog.text
    assert song.duration <= 30 + 3  # the neural tier's limit applies


def test_stable_audio_plays_the_backing_of_a_short_clip(tmp_path, mira_profile, lite_voice):
    from generators.music.testing import build_stable_audio

    ckpt = build_stable_audio(tmp_path / "sa")
    music = build_music_backend("stable-audio", model=str(ckpt), device="cpu", out_dir=tmp_path, voice=lite_voice)
    music.steps = 4
    # the tiny model's DiT holds about 3 s: the backing is that long, the song as long as asked
    steps = []
    song = music.generate(MusicRequest(topic="the sea", style="ballad", duration=9, seed=2, voice=mira_profile),
                          stems_dir=tmp_path / "stems", progress=lambda f, s: steps.append(s))
    assert song.metadata["generator"] == "stable-audio:sa" and song.metadata["singer"] == "voice"
    assert steps.count("playing") >= 4  # one per denoising step
    assert abs(song.metadata["lufs"] + 14) < 1.0


def test_ace_step_plays_an_instrumental_at_the_songs_tempo_and_key_and_the_character_sings(tmp_path, mira_profile,
                                                                                            lite_voice, monkeypatch):
    from diffusers import AceStepPipeline

    from generators.music.testing import build_ace_step

    ckpt = build_ace_step(tmp_path / "ace")
    music = build_music_backend("ace-step", model=str(ckpt), device="cpu", out_dir=tmp_path, voice=lite_voice)
    music.steps = 3
    asked = {}
    call = AceStepPipeline.__call__

    def recording(self, *a, **kw):  # what the pipeline is asked for, then the real call
        asked.update(kw)
        return call(self, *a, **kw)

    monkeypatch.setattr(AceStepPipeline, "__call__", recording)
    song = music.generate(MusicRequest(topic="the rain", style="synthwave", key="F# minor", tempo=100, duration=9,
                                       seed=4, voice=mira_profile), stems_dir=tmp_path / "stems")
    assert song.metadata["generator"] == "ace-step:ace" and song.metadata["singer"] == "voice"
    assert asked["bpm"] == 100 and asked["keyscale"] == "F# minor" and asked["lyrics"] == "[Instrumental]"
    assert (tmp_path / "stems" / "vocals.wav").exists() and abs(song.metadata["lufs"] + 14) < 1.0


def test_songs_made_at_the_same_time_share_one_musicgen_batch(checkpoints, tmp_path, caplog):
    import logging
    from concurrent.futures import ThreadPoolExecutor

    music = build_music_backend("musicgen", model=str(checkpoints[0]), device="cpu", out_dir=tmp_path, batch=2)
    music.batch.window = 5.0  # the second song surely joins
    caplog.set_level(logging.INFO, logger="generators.music.neural")
    requests = [MusicRequest(topic=t, style="pop", duration=9, seed=i, instrumental=True)
                for i, t in enumerate(("cats", "dogs"))]
    with ThreadPoolExecutor(2) as pool:
        songs = list(pool.map(music.generate, requests))
    assert "2 songs' backings in one batch" in caplog.text
    assert all(s.metadata["generator"] == "musicgen:small" for s in songs)
    assert songs[0].path != songs[1].path and all(s.path.stat().st_size > 10_000 for s in songs)


def test_more_songs_than_a_batch_all_finish(checkpoints, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    music = build_music_backend("musicgen", model=str(checkpoints[0]), device="cpu", out_dir=tmp_path, batch=2)
    music.batch.window = 0.5
    requests = [MusicRequest(topic=f"t{i}", duration=8, seed=i, instrumental=True) for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        songs = list(pool.map(music.generate, requests, timeout=300))
    assert len({s.path for s in songs}) == 3
