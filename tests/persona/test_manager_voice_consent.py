"""A voice is only ever a `vchar voice set` profile: checked sample, consent made here."""

from __future__ import annotations

import yaml

from persona.registry import PersonaRegistry
from tests.persona.test_manager import make


async def test_a_sample_and_consent_claimed_in_a_persona_file_give_no_voice(store, embedder, tmp_path, caplog):
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "echo.yaml").write_text(yaml.safe_dump({
        "id": "echo", "name": "Echo", "greetings": ["hi"],
        "identity": {"voice": {"sample": "/etc/passwd",
                               "consent": {"who": "Anyone", "statement": "I agree", "date": "2024-01-01T00:00:00Z"}}},
    }))
    registry = PersonaRegistry([folder])
    m = await make(store, registry, embedder)
    m.voices_root = tmp_path / "voices"
    assert m.voice_profile(registry.get("echo")) is None
    assert "vchar voice set echo" in caplog.text


async def test_unknown_commands_are_answered_as_such_and_admins_see_their_help(store, embedder):
    from persona.commands import UNKNOWN_COMMAND
    from persona.registry import SAMPLES
    from tests.persona.test_manager import msg

    m = await make(store, PersonaRegistry([SAMPLES]), embedder, admins={"telegram": frozenset({"boss"})})
    reply = await m.handle(msg("/dance now"))
    assert reply.text == UNKNOWN_COMMAND.format(name="dance") and "/help" in reply.text
    plain = (await m.handle(msg("/help"))).text
    admin = (await m.handle(msg("/help", user="boss"))).text
    assert "/reload" not in plain and "/stats" not in plain
    assert "/reload" in admin and "/block" in admin and "/stats" in admin


async def test_voice_note_asked_in_words_is_a_voice_note():
    from persona.requests import VOICE_REQUEST

    for said in ("send me a voice note", "can you send a voice message?", "record me a voice memo pls"):
        assert VOICE_REQUEST.search(said), said
    assert not VOICE_REQUEST.search("I love your voice")


async def test_admits_says_no_for_blocked_limited_or_disallowed_people_without_counting(store, embedder):
    from persona.limits import Rate
    from persona.manager import ManagerConfig, PersonaManager
    from persona.registry import SAMPLES
    from generators.text.lite import LiteTextGenerator
    from tests.persona.test_manager import msg

    registry = PersonaRegistry([SAMPLES])
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder,
                       ManagerConfig(media_rate=Rate(1, 3600), admins={"telegram": frozenset({"boss"})}))
    await m.start()
    art = msg("/art", user="ann")
    assert await m.admits(art) and await m.admits(art)  # asking counts nothing
    await m.handle(msg("/selfie", user="ann"))  # spends ann's one media request
    assert not await m.admits(art)
    assert await m.admits(msg("hello", user="ann"), media=False)
    await m.handle(msg("hi", user="bob"))
    await m.handle(msg("/block bob", user="boss"))
    assert not await m.admits(msg("/art", user="bob"))
    assert await m.admits(msg("/art", user="boss"))
