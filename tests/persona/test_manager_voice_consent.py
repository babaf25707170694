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
