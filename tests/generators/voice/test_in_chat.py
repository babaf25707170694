"""/voice in a chat: the persona manager with the lite voice and a stored voice profile."""

from __future__ import annotations

import av

from generators.text.lite import LiteTextGenerator
from generators.voice import VoiceGenerator, build_voice_backend
from generators.voice.base import VoiceBackendError
from persona.manager import ManagerConfig, PersonaManager
from persona.requests import VOICE_NONE
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage


def msg(text, user="u1"):
    import uuid

    return IncomingMessage(platform="telegram", chat_id=f"c-{user}", user_id=user, user_name="Zoe", text=text,
                           message_id=uuid.uuid4().hex, persona="mira")


import pytest


@pytest.fixture(scope="module")
def mira_voices(slt_wav, tmp_path_factory):
    """Mira given the SLT speaker's voice, with a consent record, as `vchar voice set` stores it."""
    from generators.voice.profile import create_voice_profile

    root = tmp_path_factory.mktemp("mira-voices")
    create_voice_profile("mira", slt_wav, consent_statement="I agree that my voice is used for this test character.",
                         consent_who="SLT (CMU Arctic speaker, via festvox)", voices_root=root)
    return root


async def manager(store, embedder, voice, voices_root):
    m = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                       voice=voice, voices_root=voices_root)
    await m.start()
    return m


async def test_voice_command_sends_an_opus_voice_note(store, embedder, mira_voices, tmp_path, need_espeak):
    voice = VoiceGenerator(build_voice_backend("lite", cache_dir=tmp_path / "cache"), tmp_path / "notes")
    m = await manager(store, embedder, voice, mira_voices)
    reply = await m.handle(msg("/voice Hello from the night market!"))
    assert len(reply.media) == 1 and reply.media[0].kind == "voice" and reply.media[0].mime == "audio/ogg"
    assert 0.5 < reply.media[0].duration < 10
    with av.open(reply.media[0].path) as f:
        assert f.streams.audio[0].codec_context.name == "opus"
    # Without text it speaks the character's last words in this chat.
    said = await m.handle(msg("tell me a joke"))
    again = await m.handle(msg("/voice"))
    assert again.media
    from db.models import Message
    from sqlalchemy import select

    async with store.engine.connect() as conn:
        spoken = (await conn.execute(select(Message.text).where(Message.id == again.message_db_id))).scalar_one()
    assert spoken == said.text


async def test_no_voice_yet_and_a_failing_backend_fall_back_to_text(store, embedder, mira_voices, tmp_path):
    voice = VoiceGenerator(build_voice_backend("lite", cache_dir=tmp_path / "cache"), tmp_path / "notes")
    m = await manager(store, embedder, voice, tmp_path / "nobody-has-a-voice")
    assert (await m.handle(msg("/voice hi"))).text == VOICE_NONE

    class Broken(VoiceGenerator):
        async def agenerate(self, text, profile, **kw):
            raise VoiceBackendError("espeak-ng vanished")

    m2 = await manager(store, embedder, Broken(voice.backend, tmp_path / "notes"), mira_voices)
    reply = await m2.handle(msg("/voice see you soon", user="u2"))
    assert not reply.media and "see you soon" in reply.text
