from __future__ import annotations

from pathlib import Path

import pytest

from persona.registry import SAMPLES


@pytest.fixture(scope="session")
def mira_profile(tmp_path_factory):
    """Mira's shipped voice, set up the way `vchar run` installs it (checks and consent)."""
    import json

    from generators.voice.profile import create_voice_profile

    spec = json.loads((Path(SAMPLES) / "media" / "mira-voice.json").read_text())
    profile, _ = create_voice_profile("mira", Path(SAMPLES) / "media" / spec["sample"],
                                      consent_statement=spec["consent_statement"], consent_who=spec.get("consent_who"),
                                      voices_root=tmp_path_factory.mktemp("voices"))
    return profile


@pytest.fixture(scope="session")
def lite_voice(tmp_path_factory):
    from generators.voice.lite import LiteVoice

    return LiteVoice(tmp_path_factory.mktemp("voice-cache"))


@pytest.fixture(scope="session")
def music(tmp_path_factory, lite_voice):
    from generators.music.lite import LiteMusic

    return LiteMusic(tmp_path_factory.mktemp("music"), voice=lite_voice)
