"""Finishing: OGG/Opus that PyAV decodes as opus, WAV/MP3, loudness, trimming, Discord waveform."""

from __future__ import annotations

import base64

import av
import numpy as np
import pytest

from generators.voice.base import split_for_notes, split_sentences
from generators.voice.finishing import discord_waveform, finish, loudness, probe, trim_silence


def _tone(sr=24000, seconds=2.0, level=0.05):
    t = np.arange(int(sr * seconds)) / sr
    return (level * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_ogg_opus_voice_note(tmp_path):
    sr = 24000
    x = np.concatenate([np.zeros(sr), _tone(sr), np.zeros(sr)])  # silence around 2 s of sound
    done = finish(x, sr, tmp_path / "note.ogg")
    assert done.format == "ogg" and done.mime_type == "audio/ogg"
    with av.open(str(done.path)) as f:
        stream = f.streams.audio[0]
        assert f.format.name == "ogg" and stream.codec_context.name == "opus"
        assert stream.rate == 48000 and stream.channels == 1
        decoded = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(stream)])
    assert 2.0 <= done.duration <= 2.3  # leading/trailing silence trimmed
    assert abs(len(decoded) / 48000 - done.duration) < 0.1
    dur, codec, _ = probe(done.path)
    assert codec == "opus" and abs(dur - done.duration) < 0.1
    assert abs(done.loudness_lufs - (-16.0)) < 0.5
    wave = base64.b64decode(done.waveform)
    assert 15 <= len(wave) <= 256 and max(wave) == 255


@pytest.mark.parametrize("suffix,codec", [(".wav", "pcm_s16le"), (".mp3", "mp3")])
def test_wav_and_mp3(tmp_path, suffix, codec):
    done = finish(_tone(), 24000, tmp_path / f"note{suffix}")
    with av.open(str(done.path)) as f:
        stream = f.streams.audio[0]
        assert stream.codec_context.name in (codec, "mp3float")
        rate = stream.rate
        decoded = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(stream)]).astype(np.float64)
    if decoded.dtype.kind == "i" or np.abs(decoded).max() > 1.5:
        decoded /= 32768.0
    assert abs(loudness(_tone(), 24000) - (-16)) > 3  # the input was quieter
    assert abs(loudness(decoded, rate) - (-16.0)) < 1.0  # the file written was normalised


def test_trim_shortens_long_pauses():
    sr = 16000
    x = np.concatenate([_tone(sr, 1), np.zeros(sr * 3), _tone(sr, 1)])
    y = trim_silence(x, sr, max_pause_s=0.5)
    assert 2.3 < len(y) / sr < 2.8


def test_waveform_is_at_most_256_bytes():
    assert len(base64.b64decode(discord_waveform(_tone(seconds=60), 24000))) == 256


def test_text_too_long_is_split_between_sentences():
    text = " ".join(f"This is sentence number {i}, and it goes on for a little while." for i in range(30))
    notes = split_for_notes(text, 300)
    assert len(notes) > 5 and all(len(n) <= 300 for n in notes)
    assert " ".join(notes) == text
    assert split_sentences("Hi! How are you? Fine.") == ["Hi!", "How are you?", "Fine."]
    long_sentence = "word " * 100
    assert all(len(s) <= 50 for s in split_sentences(long_sentence, max_chars=50))
