"""``vchar voice set`` and ``vchar voice say`` on the lite voice, through typer's runner."""

from __future__ import annotations

import json

import av
from typer.testing import CliRunner

from bots.voice_cli import voice_app


def test_set_then_say(need_espeak, slt_wav, tmp_path, monkeypatch):
    monkeypatch.setenv("VCHAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCHAR_VOICE_BACKEND", "lite")
    runner = CliRunner()

    no_consent = runner.invoke(voice_app, ["set", "mira", str(slt_wav)])
    assert no_consent.exit_code == 2 and "--consent" in no_consent.output

    empty = runner.invoke(voice_app, ["set", "mira", str(slt_wav), "--consent", " "])
    assert empty.exit_code == 1 and "consent" in empty.output

    unknown = runner.invoke(voice_app, ["set", "nobody-here", str(slt_wav), "--consent", "yes"])
    assert unknown.exit_code == 1 and "no persona" in unknown.output

    ok = runner.invoke(voice_app, ["set", "mira", str(slt_wav), "--consent", "I agree to lend Mira my voice.", "--who", "Sam"])
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "data" / "voices" / "mira" / "voice.json").read_text())
    assert record["consent_who"] == "Sam" and record["consent_statement"] == "I agree to lend Mira my voice."

    out = tmp_path / "hi.ogg"
    said = runner.invoke(voice_app, ["say", "mira", "Hi! It's so good to hear from you.", "-o", str(out)])
    assert said.exit_code == 0, said.output
    with av.open(str(out)) as f:
        assert f.streams.audio[0].codec_context.name == "opus"

    bad = runner.invoke(voice_app, ["say", "mira", "Hi.", "-o", str(tmp_path / "x.ogg"), "--style", "sarcastic"])
    assert bad.exit_code == 1 and "unknown voice style" in bad.output
