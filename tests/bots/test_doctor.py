"""`vchar doctor` as an operator runs it: a subprocess, settings from the environment only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

VCHAR = str(Path(sys.executable).with_name("vchar"))
ESPEAK = shutil.which("espeak-ng") is not None


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCHAR_")}
    env.update({"VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_CHAT_USER": "zoe", "HF_HUB_OFFLINE": "1", **extra})
    return env


def doctor(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([VCHAR, "doctor"], capture_output=True, text=True, env=_env(tmp_path, **extra), timeout=120,
                          cwd=tmp_path)


def _line(out: str, *words: str) -> str:
    found = [line for line in out.splitlines() if all(w in line for w in words)]
    assert found, f"no line with {words} in:\n{out}"
    return found[0]


def _fix_after(out: str, *words: str) -> str:
    lines = out.splitlines()
    i = lines.index(_line(out, *words))
    assert i + 1 < len(lines) and "fix:" in lines[i + 1], f"no fix after {words} in:\n{out}"
    return lines[i + 1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not installed (scripts/system-deps.sh)")
def test_a_fresh_install_passes_and_says_what_each_persona_lacks(tmp_path):
    proc = doctor(tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "✓ espeak-ng" in _line(out, "espeak-ng")
    assert "✓" in _line(out, "backend", "lite: replies")
    assert "mira (default)" in out
    assert "✓" in _line(out, "face") and "mira-portrait.png" in _line(out, "face")  # the sample ships a face
    assert "✓" in _line(out, "voice:") and "first start" in _line(out, "voice:")  # ... and a voice
    assert "not created yet" in _line(out, "vchar.db")
    assert "vchar db upgrade" in _fix_after(out, "not created yet")
    assert "in-process" in _line(out, "jobs")
    assert not (tmp_path / "data" / "vchar.db").exists()  # the doctor creates nothing
    # after a migration the database is at head; one revision behind is a warning
    env = _env(tmp_path)
    subprocess.run([VCHAR, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    assert "migrated to the latest revision" in _line(doctor(tmp_path).stdout, "vchar.db")
    subprocess.run([VCHAR, "db", "downgrade", "0001", "--yes"], env=env, check=True, capture_output=True, timeout=120)
    proc = doctor(tmp_path)
    assert proc.returncode == 0 and "behind" in _line(proc.stdout, "vchar.db")


def test_a_persona_with_a_portrait_and_a_voice_shows_both(tmp_path):
    import yaml

    from generators.image.testing import portrait_on_canvas
    from persona.registry import SAMPLES

    personas = tmp_path / "personas"
    personas.mkdir()
    data = yaml.safe_load((SAMPLES / "mira.yaml").read_text())
    data["identity"]["portraits"] = [str(portrait_on_canvas(personas / "face.png"))]
    (personas / "mira.yaml").write_text(yaml.safe_dump(data))
    voice = tmp_path / "data" / "voices" / "mira"
    voice.mkdir(parents=True)
    (voice / "sample.wav").write_bytes(b"RIFF")
    (voice / "voice.json").write_text(json.dumps({
        "persona_id": "mira", "sample_path": str(voice / "sample.wav"), "consent_who": "Ann Example",
        "consent_statement": "I, Ann Example, agree that my voice is used for Mira.", "consent_date": "2026-01-02",
        "language": "en"}))
    out = doctor(tmp_path, VCHAR_PERSONAS_DIR=str(personas)).stdout
    assert "✓" in _line(out, "face:") and str(personas / "face.png") in _line(out, "face:")
    assert "✓" in _line(out, "voice:") and "Ann Example" in _line(out, "voice:")


def test_broken_required_pieces_fail_with_their_fixes(tmp_path):
    """No espeak-ng on the PATH, an OpenAI server that is not there, a typo in a variable."""
    env_path = str(Path(sys.executable).parent)  # the venv only: no espeak-ng, no festival
    proc = doctor(tmp_path, PATH=env_path, VCHAR_TEXT_BACKEND="openai", VCHAR_TEXT_MODEL="m",
                  VCHAR_TEXT_BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1", VCHAR_TEXT_BACKNED="lite")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "✗" in _line(out, "espeak-ng") and "scripts/system-deps.sh" in _fix_after(out, "espeak-ng", "not found")
    assert "✗" in _line(out, "cannot be reached") and "VCHAR_TEXT_BASE_URL" in _fix_after(out, "cannot be reached")
    assert "did you mean VCHAR_TEXT_BACKEND" in _fix_after(out, "VCHAR_TEXT_BACKNED")
    assert "problems to fix" in out.splitlines()[-1]


def test_a_bad_setting_is_reported_and_the_doctor_fails(tmp_path):
    proc = doctor(tmp_path, VCHAR_TEXT_BACKEND="gpt4")
    assert proc.returncode == 1
    assert "VCHAR_TEXT_BACKEND=gpt4: not allowed; use lite, transformers or openai" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_transformers_model_that_cannot_load_offline_is_an_error(tmp_path):
    proc = doctor(tmp_path, VCHAR_TEXT_BACKEND="transformers", VCHAR_TEXT_MODEL="vchar-tests/never-downloaded",
                  HF_HUB_CACHE=str(tmp_path / "empty-cache"))
    assert proc.returncode == 1
    line = _line(proc.stdout, "never-downloaded")
    assert "✗" in line and "offline" in line


async def test_a_reachable_openai_server_and_its_model(tmp_path):
    from tests.fakes.openai_server import FakeOpenAIServer

    async with FakeOpenAIServer(models=("served-model",)) as server:
        env = _env(tmp_path, VCHAR_TEXT_BACKEND="openai", VCHAR_TEXT_BASE_URL=server.base_url,
                   VCHAR_TEXT_MODEL="served-model")
        proc = await asyncio.create_subprocess_exec(VCHAR, "doctor", env=env, cwd=tmp_path,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert "✓" in _line(out.decode(), "is up, model served-model")
        env["VCHAR_TEXT_MODEL"] = "other-model"
        proc = await asyncio.create_subprocess_exec(VCHAR, "doctor", env=env, cwd=tmp_path,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert "does not list 'other-model'" in out.decode() and "served-model" in out.decode()
