"""Voice samples: each bad sample gives an error naming the problem; a good one is stored with its consent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from generators.voice import ConsentError, SampleError, VoiceProfile
from generators.voice.finishing import encode_audio
from generators.voice.profile import check_sample, create_voice_profile, load_audio, load_voice_profile


def _problem(path) -> str:
    with pytest.raises(SampleError) as info:
        check_sample(path)
    assert info.value.problem.replace("_", " ") in str(info.value)
    return info.value.problem


def test_too_short(bench_similarity, slt_wav, tmp_path):
    short = bench_similarity.make_reference("festival:cmu_us_slt_arctic_hts", tmp_path / "short.wav", text="Hi there.")
    assert _problem(short) == "too_short"


def test_too_long(slt_wav, tmp_path):
    x, sr = sf.read(slt_wav)
    sf.write(tmp_path / "long.wav", np.concatenate([x, x]), sr)  # about 45 s of speech
    assert _problem(tmp_path / "long.wav") == "too_long"


def test_an_hour_long_file_is_refused_before_it_is_decoded(tmp_path):
    # compressed silence is tiny on disk and huge decoded: refused by its length first
    sf.write(tmp_path / "hour.flac", np.zeros(8000 * 3600, np.int16), 8000, subtype="PCM_16")
    assert (tmp_path / "hour.flac").stat().st_size < 5_000_000
    with pytest.raises(SampleError, match="60 minutes long") as info:
        load_audio(tmp_path / "hour.flac")
    assert info.value.problem == "too_long"


def test_silent(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(16000 * 6), 16000)
    assert _problem(tmp_path / "zero.wav") == "silent"
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hiss.wav", rng.normal(0, 0.01, 16000 * 6), 16000)  # noise, no speech
    assert _problem(tmp_path / "hiss.wav") == "silent"


def test_clipped(slt_wav, tmp_path):
    x, sr = sf.read(slt_wav)
    sf.write(tmp_path / "clipped.wav", np.clip(x / np.abs(x).max() * 6, -1, 1), sr)
    assert _problem(tmp_path / "clipped.wav") == "clipped"


def test_unreadable(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio")
    assert _problem(tmp_path / "notes.wav") == "unreadable"
    assert _problem(tmp_path / "missing.wav") == "unreadable"


def test_good_sample_in_any_format_is_resampled_and_stored_with_consent(slt_wav, tmp_path):
    x, sr = load_audio(slt_wav)
    assert sr == 32000  # the HTS voice records at 32 kHz
    ogg = encode_audio(x, sr, tmp_path / "sample.ogg")  # Opus: read through PyAV, not libsndfile
    report, _, _ = check_sample(ogg)
    assert 15 < report.speech <= 30

    with pytest.raises(ConsentError):
        create_voice_profile("zoe", ogg, consent_statement="  ", consent_who="Zoe", voices_root=tmp_path / "v")
    profile, report = create_voice_profile(
        "zoe", ogg, consent_statement="I, Zoe, agree.", consent_who="Zoe", voices_root=tmp_path / "v", language="en"
    )
    info = sf.info(profile.sample_path)
    assert (info.samplerate, info.channels) == (24000, 1)
    record = json.loads((profile.sample_path.parent / "voice.json").read_text())
    assert record["consent_statement"] == "I, Zoe, agree." and record["consent_who"] == "Zoe"
    assert record["consent_date"][:4].isdigit() and record["sample_sha256"] == profile.sample_sha256
    assert load_voice_profile(tmp_path / "v", "zoe") == profile
    assert load_voice_profile(tmp_path / "v", "nobody") is None


def test_profile_without_consent_cannot_exist(tmp_path):
    with pytest.raises(ConsentError):
        VoiceProfile("p", tmp_path / "s.wav", consent_who="Ann", consent_statement="", consent_date="2026-01-01")
