"""Every setting is documented, and a bad one is reported by name, value and choices."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from bots.settings import ConfigError, Settings, load_settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bots", "persona", "generators", "db")
NAME = re.compile(r"VCHAR_[A-Z0-9_]*[A-Z0-9]\b")
ENV_READ = re.compile(r"""(?:environ(?:\.get)?\s*[(\[]|getenv\s*\()\s*["'](VCHAR_[A-Z0-9_]+)["']""")


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _env_reads() -> set[str]:
    """``VCHAR_*`` variables the code reads from the environment by hand."""
    return {m for f in _sources() for m in ENV_READ.findall(f.read_text(encoding="utf-8"))}


def _names_in_strings() -> dict[str, set[str]]:
    """``VCHAR_*`` names the code mentions in its strings (messages, help), except Python
    constants that happen to start with VCHAR_."""
    mentioned: dict[str, set[str]] = {}
    identifiers: set[str] = set()
    for f in _sources():
        for tok in tokenize.generate_tokens(io.StringIO(f.read_text(encoding="utf-8")).readline):
            if tok.type == tokenize.NAME and tok.string.startswith("VCHAR_"):
                identifiers.add(tok.string)
            elif tok.type == tokenize.STRING:
                for name in NAME.findall(tok.string):
                    mentioned.setdefault(name, set()).add(str(f.relative_to(ROOT)))
    return {k: v for k, v in mentioned.items() if k not in identifiers}


def _settings_everywhere() -> list[str]:
    return sorted(set(setting_names()) | _env_reads())


def test_the_settings_include_what_the_code_reads_by_hand():
    assert "VCHAR_CHAT_USER" in _env_reads()  # the grep finds them
    assert {"VCHAR_IMAGE_SIZE", "VCHAR_CHAT_USER", "VCHAR_VOICE_BACKEND", "VCHAR_XTTS_MODEL"} <= set(_settings_everywhere())


def test_every_setting_is_in_the_readme_tables():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table_rows = "\n".join(line for line in readme.splitlines() if line.startswith("| `VCHAR_"))
    missing = [name for name in _settings_everywhere() if f"`{name}`" not in table_rows]
    assert not missing, f"settings missing from README.md's configuration tables: {missing}"


def test_every_setting_is_in_env_example_and_nothing_else():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = re.findall(r"^#?\s*(VCHAR_[A-Z0-9_]+)=", example, flags=re.M)
    missing = [name for name in _settings_everywhere() if name not in listed]
    assert not missing, f"settings missing from .env.example: {missing}"
    unknown = [name for name in listed if name not in _settings_everywhere()]
    assert not unknown, f".env.example lists settings that do not exist: {unknown}"
    assert len(listed) == len(set(listed))


def test_every_setting_the_code_mentions_exists():
    """An error message that says "set VCHAR_X" names a real setting."""
    known = set(_settings_everywhere())
    stale = {name: files for name, files in _names_in_strings().items() if name not in known}
    assert not stale, f"the code mentions settings that do not exist: {stale}"


def test_env_example_copied_to_dot_env_gives_the_defaults(tmp_path, monkeypatch):
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text(encoding="utf-8"))
    s = load_settings()
    assert s.text_backend == "lite" and s.telegram_admin_ids == [] and s.chat_user is None


@pytest.mark.parametrize("value,ids", [("42", [42]), ("42,43", [42, 43]), (" 42 , 43 ", [42, 43]),
                                       ("[42, 43]", [42, 43]), ("[]", []), ("", [])])
def test_admin_ids_accept_one_id_a_comma_list_or_a_json_list(monkeypatch, value, ids):
    monkeypatch.setenv("VCHAR_TELEGRAM_ADMIN_IDS", value)
    monkeypatch.setenv("VCHAR_DISCORD_ADMIN_IDS", value)
    s = Settings(_env_file=None)
    assert s.telegram_admin_ids == ids and s.discord_admin_ids == ids


def test_all_problems_are_reported_at_once_by_variable_value_and_choices(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VCHAR_TEXT_BACKEND", "gpt4")
    monkeypatch.setenv("VCHAR_VOICE_BACKEND", "bogus")
    monkeypatch.setenv("VCHAR_TELEGRAM_ADMIN_IDS", "[42, x]")
    monkeypatch.setenv("VCHAR_IMAGE_SAFETY", "maybe")
    monkeypatch.setenv("VCHAR_TEXT_TIMEOUT", "-3")
    monkeypatch.setenv("VCHAR_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as info:
        load_settings()
    problems = info.value.problems
    assert "VCHAR_TEXT_BACKEND=gpt4: not allowed; use lite, transformers or openai" in problems
    assert "VCHAR_VOICE_BACKEND=bogus: not allowed; use lite or xtts" in problems
    assert any(p.startswith("VCHAR_TELEGRAM_ADMIN_IDS='[42, x]': ") and "[42, 43]" in p for p in problems)
    assert any(p.startswith("VCHAR_IMAGE_SAFETY=maybe: ") and "true or false" in p for p in problems)
    assert "VCHAR_TEXT_TIMEOUT=-3: must be greater than 0" in problems
    assert any(p.startswith("VCHAR_LOG_LEVEL=loud: ") and "DEBUG" in p for p in problems)
    assert len(problems) == 6


def test_a_bad_value_in_dot_env_says_where_it_is(monkeypatch, tmp_path):
    monkeypatch.delenv("VCHAR_TEXT_BACKEND", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VCHAR_TEXT_BACKEND=gpt4\nVCHAR_TEXT_API_KEY=sk-secret\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems == ["VCHAR_TEXT_BACKEND=gpt4 (in .env): not allowed; use lite, transformers or openai"]


def test_backends_that_need_another_setting_say_which(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VCHAR_TEXT_BACKEND", "openai")
    monkeypatch.setenv("VCHAR_IMAGE_BACKEND", "remote")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = "\n".join(info.value.problems)
    assert "VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_BASE_URL" in text
    assert "VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_MODEL" in text
    assert "VCHAR_IMAGE_BACKEND=remote needs VCHAR_IMAGE_BASE_URL" in text
    monkeypatch.setenv("VCHAR_TEXT_BASE_URL", "localhost:8000")
    with pytest.raises(ConfigError, match=r"VCHAR_TEXT_BASE_URL=localhost:8000: not an http:// or https:// URL"):
        load_settings()
