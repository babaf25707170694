"""XTTS on a tiny model of the real architecture, saved and loaded through coqui's checkpoint code."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

pytest.importorskip("TTS", reason="coqui-tts is the optional 'voice' extra")

from generators.voice import VoiceBackendError, VoiceGenerator, build_voice_backend  # noqa: E402
from generators.voice.testing import build_xtts  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder, _ = build_xtts(tmp_path_factory.mktemp("xtts"), max_audio_tokens=30)
    assert {"config.json", "model.pth", "vocab.json"} <= {p.name for p in folder.iterdir()}
    return folder


def test_voice_note_and_latents_cached_by_sample(tiny_dir, slt_profile, tmp_path):
    xtts = build_voice_backend("xtts", model_dir=tiny_dir, cache_dir=tmp_path / "cache", device="cpu")
    gen = VoiceGenerator(xtts, tmp_path)
    [note] = gen.generate("Hello there, how are you?", slt_profile)
    with av.open(str(note.path)) as f:
        assert f.streams.audio[0].codec_context.name == "opus"
    assert note.duration > 0.2 and note.backend == "xtts"
    assert xtts.stats["latents_computed"] == 1
    path = xtts.latents_path(slt_profile)
    assert path.is_file() and path.name.startswith(slt_profile.sample_sha256)

    gen.generate("And a second note.", slt_profile)
    assert xtts.stats["latents_computed"] == 1 and xtts.stats["latents_from_memory"] >= 1

    # a new process (new backend, same cache folder) reads the file and never re-encodes the sample
    again = build_voice_backend("xtts", model_dir=tiny_dir, cache_dir=tmp_path / "cache", device="cpu")
    again._compute_latents = None  # would fail if called
    audio = again.synthesize("Third note.", slt_profile, language="en")
    assert again.stats == {"latents_computed": 0, "latents_from_file": 1, "latents_from_memory": 0}
    assert audio.dtype == np.float32 and len(audio) > 1000
    assert again.model is xtts.model  # loaded once per process


def test_streaming_yields_chunks_per_sentence(tiny_dir, slt_profile, tmp_path):
    xtts = build_voice_backend("xtts", model_dir=tiny_dir, cache_dir=tmp_path, device="cpu")
    xtts.stream_chunk_size = 8
    chunks = list(xtts.stream("Hi there. Bye now!", slt_profile, language="en"))
    assert {c.index for c in chunks} == {0, 1}
    assert sum(c.final for c in chunks) == 2 and len(chunks) > 2  # several chunks inside a sentence
    assert all(c.sample_rate == 24000 and len(c.samples) > 0 for c in chunks)


def test_licence_must_be_accepted_explicitly(monkeypatch, tiny_dir, slt_profile, tmp_path):
    from TTS.utils.manage import ModelManager

    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    calls = []

    def fake_download(self, name):  # stands in for the network: hands over the tiny checkpoint
        calls.append((name, os.environ.get("COQUI_TOS_AGREED"), self.progress_bar))
        return tiny_dir / "model.pth", tiny_dir / "config.json", {"tos_required": True}

    monkeypatch.setattr(ModelManager, "download_model", fake_download)
    refused = build_voice_backend("xtts", cache_dir=tmp_path, device="cpu")
    with pytest.raises(VoiceBackendError, match="VCHAR_XTTS_ACCEPT_LICENSE=1"):
        refused.synthesize("Hello.", slt_profile, language="en")
    assert calls == [] and "COQUI_TOS_AGREED" not in os.environ

    accepted = build_voice_backend("xtts", cache_dir=tmp_path, device="cpu", accept_license=True)
    assert len(accepted.synthesize("Hello.", slt_profile, language="en")) > 0
    assert calls == [("tts_models/multilingual/multi-dataset/xtts_v2", "1", True)]
