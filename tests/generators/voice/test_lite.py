"""The lite voice end to end against a real speaker's voice (festival's SLT), checked by a speaker encoder."""

from __future__ import annotations

import av
import numpy as np
import pytest

from generators.voice import VoiceGenerator, build_voice_backend
from generators.voice.lite import LiteVoice, espeak

SENTENCE = "Hello there, I was thinking about you today. Would you like to go for a walk by the river?"


@pytest.fixture(scope="module")
def lite(need_espeak, tmp_path_factory) -> LiteVoice:
    return build_voice_backend("lite", cache_dir=tmp_path_factory.mktemp("cache"))


def test_sounds_like_the_sample_not_like_espeak(lite, slt_profile, encoder, tmp_path):
    gen = VoiceGenerator(lite, tmp_path)
    [note] = gen.generate(SENTENCE, slt_profile)
    assert note.format == "ogg" and note.backend == "lite" and 3 < note.duration < 12
    with av.open(str(note.path)) as f:
        assert f.streams.audio[0].codec_context.name == "opus"
        y = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(f.streams.audio[0])])

    from generators.voice.profile import load_audio

    ref = encoder(*load_audio(slt_profile.sample_path))
    converted = float(ref @ encoder(y, 48000))
    plain = max(float(ref @ encoder(espeak(SENTENCE, v), 22050)) for v in ("en-us", "en-us+f3"))
    assert converted >= 0.75, (converted, plain)
    assert converted >= plain + 0.10, (converted, plain)


def test_same_voice_every_time_and_cached_per_sample(lite, slt_profile, tmp_path):
    a = lite.synthesize("See you tomorrow!", slt_profile, language="en")
    b = lite.synthesize("See you tomorrow!", slt_profile, language="en")
    assert np.array_equal(a, b)
    cache = lite.cache_path(slt_profile)
    assert cache.is_file() and slt_profile.sample_sha256 in cache.name
    fresh = LiteVoice(cache_dir=lite.cache_dir)  # another process: reads the cache file
    fresh._build_model = None  # would fail if called
    assert np.array_equal(fresh.synthesize("See you tomorrow!", slt_profile, language="en"), a)


def test_stream_sentence_by_sentence_and_long_text_as_several_notes(lite, slt_profile, tmp_path):
    gen = VoiceGenerator(lite, tmp_path, max_note_chars=60)
    chunks = list(gen.stream("First one. Second one! Third?", slt_profile))
    assert [c.text for c in chunks] == ["First one.", "Second one!", "Third?"]
    assert all(c.sample_rate == 22050 and c.duration > 0.3 for c in chunks)

    text = "I loved the film. The music was wonderful. Then we walked home along the beach, talking for hours."
    notes = gen.generate(text, slt_profile, style="happy", out_path=tmp_path / "reply.ogg")
    assert len(notes) == 2 and [n.part for n in notes] == [1, 2]
    assert notes[0].path == tmp_path / "reply.ogg" and notes[1].path == tmp_path / "reply-2.ogg"
    assert all(n.path.is_file() and n.duration > 1 for n in notes)
