"""The ``vchar`` command as a user runs it: a subprocess with only environment settings."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

VCHAR = str(Path(sys.executable).with_name("vchar"))

CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Rook",
        "description": "{{char}} is a retired airship captain.",
        "personality": "gruff, kind",
        "scenario": "A tavern in the clouds.",
        "first_mes": "Pull up a chair, {{user}}.",
        "mes_example": "<START>\n{{user}}: Any stories?\n{{char}}: Plenty. The storm of '09 nearly took my mast.",
        "creator_notes": "test card",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Wind's up today."],
        "character_book": {
            "name": "Skies",
            "entries": [
                {"keys": ["storm"], "content": "The storm of '09 wrecked six ships.", "extensions": {"depth": 4},
                 "enabled": True, "insertion_order": 1, "weird_field": [1, 2]},
            ],
            "extensions": {},
        },
        "tags": ["airship"],
        "creator": "someone",
        "character_version": "3",
        "extensions": {"talkativeness": "0.5", "some_tool": {"nested": True}},
        "unknown_data_key": "kept",
    },
}


def vchar(tmp_path: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_CHAT_USER": "zoe"}
    env.pop("VCHAR_DATABASE_URL", None)
    proc = subprocess.run([VCHAR, *args], input=input, capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_piped_chat_answers_each_line_and_stores_under_the_data_dir(tmp_path):
    out = vchar(tmp_path, "chat", input="Hi, I am Zoe and I love pierogi\nWhat's your favourite food?\n").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(lines)
    assert "pork buns" in lines[1]
    db = tmp_path / "data" / "vchar.db"
    assert db.exists()
    import sqlite3

    rows = sqlite3.connect(db).execute("select role, text from messages order by id").fetchall()
    assert rows[0] == ("user", "Hi, I am Zoe and I love pierogi")
    assert [r[0] for r in rows] == ["user", "assistant", "user", "assistant"]


def test_a_fact_told_before_a_restart_is_remembered_after(tmp_path):
    vchar(tmp_path, "chat", input="Hi, I am Zoe and I love pierogi\n")
    out = vchar(tmp_path, "chat", input="do you remember what food I love?\n").stdout
    assert "pierogi" in out
    shown = vchar(tmp_path, "memory", "show").stdout
    assert "Zoe loves pierogi." in shown
    vchar(tmp_path, "memory", "forget", "--yes")
    assert "remembers nothing" in vchar(tmp_path, "memory", "show").stdout
    out = vchar(tmp_path, "chat", input="what do you remember about me?\n").stdout
    assert "pierogi" not in out


def _png_card(path: Path, card: dict, key: str = "chara") -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, base64.b64encode(json.dumps(card).encode()).decode())
    Image.new("RGB", (64, 96), (30, 60, 90)).save(path, pnginfo=info)


@pytest.mark.parametrize("fmt", ["json", "png"])
def test_v2_card_import_then_export_keeps_every_field(tmp_path, fmt):
    src = tmp_path / f"rook.{fmt}"
    if fmt == "json":
        src.write_text(json.dumps(CARD))
    else:
        _png_card(src, CARD)
    assert "captain-rook" in vchar(tmp_path, "persona", "import", str(src)).stdout
    assert "captain-rook" in vchar(tmp_path, "persona", "list").stdout
    for out_fmt in ("json", "png"):
        target = tmp_path / f"out.{out_fmt}"
        vchar(tmp_path, "persona", "export", "captain-rook", "-o", str(target))
        if out_fmt == "json":
            exported = json.loads(target.read_text())
        else:
            exported = json.loads(base64.b64decode(Image.open(target).text["chara"]))
            if fmt == "png":  # the card's own picture travels with it
                assert Image.open(target).size == (64, 96)
        assert exported["spec"] == "chara_card_v2"
        assert exported["data"] == CARD["data"]


def test_chat_with_an_imported_persona_uses_its_card(tmp_path):
    src = tmp_path / "rook.json"
    src.write_text(json.dumps(CARD))
    vchar(tmp_path, "persona", "import", str(src))
    out = vchar(tmp_path, "chat", "--persona", "Captain Rook", input="/start\ngot any stories?\n").stdout.splitlines()
    assert out[0] == "Pull up a chair, Zoe."
    assert "storm" in out[1].lower()


def test_malformed_card_names_file_and_field_and_installs_nothing(tmp_path):
    bad = json.loads(json.dumps(CARD))
    bad["data"]["alternate_greetings"] = "not a list"
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(bad))
    proc = vchar(tmp_path, "persona", "import", str(src), check=False)
    assert proc.returncode != 0
    assert "bad.json" in proc.stderr and "alternate_greetings" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "personas").exists() or not list((tmp_path / "data" / "personas").iterdir())


def test_unknown_persona_is_a_clear_error(tmp_path):
    proc = vchar(tmp_path, "chat", "--persona", "nobody", input="hi\n", check=False)
    assert proc.returncode != 0 and "nobody" in proc.stderr and "mira" in proc.stderr


def test_db_upgrade_is_safe_twice(tmp_path):
    vchar(tmp_path, "db", "upgrade")
    vchar(tmp_path, "db", "upgrade")
    assert (tmp_path / "data" / "vchar.db").exists()
