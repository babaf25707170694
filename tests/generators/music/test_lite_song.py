"""The lite song end to end: sung in the character's voice, mastered, stems, same seed same file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from generators.music import MusicInputError, MusicRequest


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decode(path):
    import av

    with av.open(str(path)) as f:
        s = f.streams.audio[0]
        chunks = [fr.to_ndarray() for fr in f.decode(s)]
        rate = s.rate
    x = np.concatenate(chunks, axis=1).astype(np.float64)
    return (x.T if x.shape[0] <= 2 else x), rate


@pytest.fixture(scope="module")
def sung(music, mira_profile, tmp_path_factory):
    stems = tmp_path_factory.mktemp("stems")
    req = MusicRequest(topic="the rain", style="pop", duration=16, seed=21, voice=mira_profile, artist="Mira")
    return music.generate(req, stems_dir=stems), req, stems


def test_a_song_is_sung_on_its_melody_and_mastered_to_streaming_loudness(sung):
    import librosa
    import mir_eval
    import pretty_midi
    import pyloudnorm
    import soundfile

    song, _, stems = sung
    assert song.path.suffix == ".mp3" and song.metadata["singer"] == "voice"
    assert {"vocals", "backing", "melody", "lyrics"} <= set(song.stems)
    x, sr = _decode(song.path)
    assert x.shape[1] == 2 and abs(len(x) / sr - song.duration) < 0.2
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(x) - (-14.0)) < 1.0
    assert np.max(np.abs(x)) < 1.0  # no clipping

    # the sung vocal against melody.mid, measured by librosa's pYIN and mir_eval
    vocal, vsr = soundfile.read(stems / "vocals.wav")
    vocal = vocal.mean(axis=1)
    hop = 256
    f0, voiced, _ = librosa.pyin(vocal, fmin=80, fmax=1000, sr=vsr, frame_length=2048, hop_length=hop)
    t = librosa.times_like(f0, sr=vsr, hop_length=hop)
    ref = np.zeros_like(t)
    for n in pretty_midi.PrettyMIDI(str(stems / "melody.mid")).instruments[0].notes:
        ref[(t >= n.start) & (t < n.end)] = pretty_midi.note_number_to_hz(n.pitch)
    est = np.where(voiced, np.nan_to_num(f0), 0.0)
    rv, rc, ev, ec = mir_eval.melody.to_cent_voicing(t, ref, t, est)
    assert mir_eval.melody.raw_pitch_accuracy(rv, rc, ev, ec) >= 0.75
    assert mir_eval.melody.voicing_recall(rv, ev) >= 0.75
    lrc = (stems / "lyrics.lrc").read_text()
    assert "[ar:Mira]" in lrc and "[00:" in lrc


def test_the_same_request_and_seed_make_the_same_file_and_another_seed_another(music, sung, tmp_path):
    song, req, _ = sung
    again = music.generate(req, out_path=tmp_path / "again.mp3")
    assert _sha(again.path) == _sha(song.path)
    other = music.generate(req.__class__(**{**req.__dict__, "seed": 22}), out_path=tmp_path / "other.mp3")
    assert _sha(other.path) != _sha(song.path)


def test_without_a_voice_a_song_is_an_instrumental_and_says_so(music, tmp_path):
    song = music.generate(MusicRequest(topic="cats", style="chiptune", duration=10, seed=1), out_path=tmp_path / "c.ogg",
                          stems_dir=tmp_path / "stems")
    assert song.metadata["singer"] == "instrumental" and "vocals" not in song.stems
    assert any("instrumental" in n for n in song.notes)
    import av

    with av.open(str(song.path)) as f:
        assert f.streams.audio[0].codec_context.name == "opus"
        assert f.metadata.get("title") or f.streams.audio[0].metadata.get("title")


def test_bad_requests_are_changed_to_what_can_be_sung_and_named(music, tmp_path):
    song = music.generate(MusicRequest(topic="space", style="polka", key="Q major", duration=900, seed=2,
                                       instrumental=True), out_path=tmp_path / "s.wav")
    said = " ".join(song.notes)
    assert "polka" in said and "Q major" in said and "120 seconds" in said
    assert song.duration <= 120 + 3
    with pytest.raises(MusicInputError):
        music.generate(MusicRequest(topic="x", instrumental=True), out_path=tmp_path / "s.flac")
    with pytest.raises(MusicInputError):
        music.generate(MusicRequest(lyrics="[verse]\n...\n", instrumental=True), out_path=tmp_path / "e.wav")


async def test_a_cancelled_song_stops_in_its_own_thread(music):
    from generators.jobs import JobCancelled

    stages = []

    async def progress(fraction, stage):
        stages.append(stage)
        raise JobCancelled("the person cancelled it")

    with pytest.raises(JobCancelled):
        await music.agenerate(MusicRequest(topic="x", duration=9, instrumental=True, seed=9), progress=progress)
    assert "mixing" not in stages  # stopped at the next stage, not made to the end
