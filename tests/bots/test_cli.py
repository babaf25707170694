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


# -- what a user sees: versions, errors, pipes --------------------------------------------------


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version_prints_the_installed_version(tmp_path):
    from importlib.metadata import version

    assert vchar(tmp_path, "--version").stdout.strip() == f"vchar {version('vchar')}"


def test_configuration_errors_name_variable_value_and_choices_all_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VCHAR_TEXT_BACKEND", "gpt4")
    monkeypatch.setenv("VCHAR_VOICE_BACKEND", "bogus")
    monkeypatch.setenv("VCHAR_IMAGE_SIZE", "huge")
    monkeypatch.setenv("VCHAR_TELEGRAM_ADMIN_IDS", "42, bob")
    proc = vchar(tmp_path, "chat", input="hi\n", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "pydantic" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "error: VCHAR_TEXT_BACKEND=gpt4: not allowed; use lite, transformers or openai" in lines
    assert "error: VCHAR_VOICE_BACKEND=bogus: not allowed; use lite or xtts" in lines
    assert any(line.startswith("error: VCHAR_IMAGE_SIZE=huge: ") and "512x512" in line for line in lines)
    assert any(line.startswith("error: VCHAR_TELEGRAM_ADMIN_IDS='42, bob': ") and "'bob'" in line for line in lines)
    assert len(lines) == 4


def test_the_openai_backend_without_a_url_or_a_model_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VCHAR_TEXT_BACKEND", "openai")
    proc = vchar(tmp_path, "chat", input="hi\n", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_BASE_URL") and "/v1" in lines[0]
    assert lines[1].startswith("error: VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_MODEL")


def test_cli_errors_are_one_line_on_stderr(tmp_path):
    line = _one_line_error(vchar(tmp_path, "persona", "export", "mira", "-o", str(tmp_path / "no" / "such" / "mira.json"),
                                 check=False))
    assert str(tmp_path / "no" / "such") in line and "does not exist" in line
    line = _one_line_error(vchar(tmp_path, "db", "upgrade", "nonsense", check=False))
    assert "'nonsense'" in line and "head" in line and "0001" in line
    line = _one_line_error(vchar(tmp_path, "chat", "--colour", check=False))
    assert "--colour" in line and "vchar chat --help" in line
    line = _one_line_error(vchar(tmp_path, "persona", "show", "nobody", check=False))
    assert "nobody" in line
    line = _one_line_error(vchar(tmp_path, "persona", "import", str(tmp_path / "missing.json"), check=False))
    assert "missing.json" in line


def test_db_upgrade_base_is_refused_and_downgrade_base_empties_the_schema(tmp_path):
    import sqlite3

    vchar(tmp_path, "db", "upgrade")
    db = tmp_path / "data" / "vchar.db"

    def tables() -> set[str]:
        with sqlite3.connect(db) as conn:
            return {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}

    assert "messages" in tables()
    line = _one_line_error(vchar(tmp_path, "db", "upgrade", "base", check=False))
    assert "vchar db downgrade base --yes" in line
    assert "messages" in tables()  # refused: nothing changed
    refused = vchar(tmp_path, "db", "downgrade", "base", input="n\n", check=False)
    assert refused.returncode != 0 and "messages" in tables()
    assert "base" in vchar(tmp_path, "db", "downgrade", "base", "--yes").stdout
    assert tables() <= {"alembic_version"}
    from db.migrate import current_heads

    assert current_heads()[0] in vchar(tmp_path, "db", "upgrade").stdout
    assert "messages" in tables()


def test_persona_show_in_a_pipe_is_valid_yaml(tmp_path):
    import yaml

    from persona.card import dump_persona_yaml
    from persona.registry import SAMPLES, PersonaRegistry

    shown = vchar(tmp_path, "persona", "show", "mira").stdout
    expected = dump_persona_yaml(PersonaRegistry([SAMPLES]).get("mira"))
    assert any(len(line) > 80 for line in expected.splitlines())  # would be wrapped by a console
    assert yaml.safe_load(shown) == yaml.safe_load(expected)
    assert "\x1b[" not in shown


def test_piped_chat_answers_one_line_per_input_line_blank_ones_included(tmp_path):
    out = vchar(tmp_path, "chat", input="Hi, I am Zoe\n\n   \n/help\nWhat's your favourite food?").stdout
    lines = out.split("\n")
    assert lines[-1] == ""  # every answer ends with a newline
    lines = lines[:-1]
    assert len(lines) == 5
    assert lines[0] and lines[1] == "" and lines[2] == ""
    assert "/forget" in lines[3]  # the multi-line help folded onto its line
    assert "pork buns" in lines[4]  # the last line needs no newline of its own


def test_the_terminal_chat_shows_the_path_of_a_selfie_it_made(tmp_path, monkeypatch):
    from tests.bots.test_run import _persona_with_portrait

    monkeypatch.setenv("VCHAR_PERSONAS_DIR", str(_persona_with_portrait(tmp_path)))
    out = vchar(tmp_path, "chat", input="/selfie at the beach\n").stdout.splitlines()
    assert len(out) == 1
    paths = [Path(word.rstrip("],")) for word in out[0].split() if word.rstrip("],").endswith(".png")]
    assert paths and paths[0].is_file() and "[image: " in out[0]


def test_image_selfie_is_recorded_as_a_media_asset(tmp_path, monkeypatch):
    import sqlite3

    from tests.bots.test_run import _persona_with_portrait

    monkeypatch.setenv("VCHAR_PERSONAS_DIR", str(_persona_with_portrait(tmp_path)))
    target = tmp_path / "beach.png"
    vchar(tmp_path, "image", "selfie", "mira", "at the beach", "-o", str(target))
    assert target.is_file()
    with sqlite3.connect(tmp_path / "data" / "vchar.db") as conn:
        rows = conn.execute(
            "select p.slug, m.kind, m.path, m.mime, m.seed from media_assets m join personas p on p.id = m.persona_id"
        ).fetchall()
    assert len(rows) == 1
    slug, kind, path, mime, seed = rows[0]
    assert (slug, kind, mime) == ("mira", "image", "image/png")
    assert Path(path) == target.resolve() and seed is not None


# -- Ctrl-C ------------------------------------------------------------------------------------


class _Pty:
    """The chat in a real terminal: a pseudo-terminal whose output is collected as it comes."""

    def __init__(self):
        import pty
        import threading

        self.master, self.slave = pty.openpty()
        self.output = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.output += data

    def text(self) -> str:
        with self._lock:
            return self.output.decode(errors="replace")

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())


def _wait_for(predicate, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _chat_in_a_terminal(tmp_path, extra_env: dict[str, str] | None = None):
    term = _Pty()
    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data"), "VCHAR_CHAT_USER": "zoe", "COLUMNS": "200",
           "TERM": "xterm", **(extra_env or {})}
    env.pop("VCHAR_DATABASE_URL", None)
    proc = subprocess.Popen([VCHAR, "chat"], stdin=term.slave, stdout=term.slave, stderr=term.slave, env=env,
                            start_new_session=True)
    return term, proc


def test_ctrl_c_stops_the_terminal_chat_at_once_while_it_waits_for_input(tmp_path):
    import signal
    import time

    term, proc = _chat_in_a_terminal(tmp_path)
    try:
        assert _wait_for(lambda: "you" in term.text(), 60), term.text()
        term.write("tell me a joke\n")
        assert _wait_for(lambda: "dumpling" in term.text(), 60), term.text()
        assert _wait_for(lambda: term.text().count("you") >= 2, 10)  # waiting for the next line
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code in (0, 130)
    assert _wait_for(lambda: "bye" in term.text(), 2), term.text()
    assert "Traceback" not in term.text()


async def test_ctrl_c_stops_the_terminal_chat_at_once_while_a_reply_is_generated(tmp_path):
    import asyncio
    import signal
    import time

    from tests.fakes.openai_server import FakeOpenAIServer

    async with FakeOpenAIServer(reply="Hi there!") as server:
        server.hang_next(5, seconds=60)
        term, proc = _chat_in_a_terminal(tmp_path, {
            "VCHAR_TEXT_BACKEND": "openai", "VCHAR_TEXT_BASE_URL": server.base_url, "VCHAR_TEXT_MODEL": "fake-model",
        })
        try:
            for _ in range(600):
                if "you" in term.text():
                    break
                await asyncio.sleep(0.1)
            term.write("what's up?\n")
            for _ in range(600):  # the request reached the (hanging) server
                if server.requests:
                    break
                await asyncio.sleep(0.1)
            assert server.requests, term.text()
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            for _ in range(100):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert proc.poll() is not None, "the chat did not stop"
            assert time.monotonic() - start < 5
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode in (0, 130)
    assert "bye" in term.text() and "Traceback" not in term.text()


def test_jobs_list_show_retry_and_cancel(tmp_path):
    import asyncio

    from db.jobs import JobTable
    from db.migrate import upgrade_async
    from db.store import Store

    env = {**os.environ, "VCHAR_DATA_DIR": str(tmp_path / "data")}
    env.pop("VCHAR_DATABASE_URL", None)
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'vchar.db'}"
    (tmp_path / "data").mkdir()

    async def seed():
        await upgrade_async(url)
        store = Store.from_url(url)
        t = JobTable(store)
        a, _ = await t.enqueue("image", {"params": {"request": {"prompt": "beach"}}}, "a", requester="telegram:1:mira")
        b, _ = await t.enqueue("voice", {"params": {}}, "b")
        await t.claim("w", ["voice"], 30)
        await t.fail(b.id, "w", "no voice here", retry=False)
        await store.close()
        return a.id, b.id

    a, b = asyncio.run(seed())

    def vchar(*args):
        return subprocess.run([VCHAR, "jobs", *args], capture_output=True, text=True, env=env, timeout=120)

    listed = vchar("list")
    assert listed.returncode == 0 and "image" in listed.stdout and "failed" in listed.stdout
    assert "image queued: 1" in listed.stdout  # the queue depth by kind
    shown = vchar("show", str(b))
    assert shown.returncode == 0 and json.loads(shown.stdout)["error"] == "no voice here"
    assert vchar("retry", str(a)).returncode == 1  # only failed or cancelled jobs
    assert vchar("retry", str(b)).returncode == 0
    assert json.loads(vchar("show", str(b)).stdout)["status"] == "queued"
    assert vchar("cancel", str(a)).returncode == 0
    again = vchar("cancel", str(a))
    assert again.returncode == 1 and "already cancelled" in again.stderr
    missing = vchar("show", "999")
    assert missing.returncode == 1 and "no job 999" in missing.stderr
