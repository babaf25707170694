"""The persona file format (YAML) and its validation.

A persona is everything needed to play a character: who it is (description,
personality, scenario), how it talks (greetings, example dialogue, system prompt,
style rules), what it knows (the lorebook), and how it looks and sounds (media
identity, filled in by the image, voice and music features).

Character Card V2/V3 import and export live in :mod:`persona.cards`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generators.text.base import Example


class PersonaError(ValueError):
    """A persona file or card that cannot be loaded; names the file and the field."""

    def __init__(self, source: str | Path, message: str, field: str | None = None):
        self.source = str(source)
        self.field = field
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        super().__init__(where + message)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StyleRules(_Model):
    """How replies are shaped after generation."""

    max_sentences: int | None = Field(default=None, ge=1)
    max_chars: int | None = Field(default=None, ge=20)
    forbidden_phrases: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # free-text rules for the system prompt


class LoreEntry(BaseModel):
    """One lorebook entry (Character Card V2 ``character_book.entries[]``)."""

    model_config = ConfigDict(extra="allow")

    keys: list[str] = Field(default_factory=list)
    content: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int = 0
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] = Field(default_factory=list)
    constant: bool | None = None
    position: str | None = None


class Lorebook(BaseModel):
    """A character book (Character Card V2 ``character_book``)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[LoreEntry] = Field(default_factory=list)


class Consent(_Model):
    """Who gave their voice or likeness, what they agreed to, and when."""

    who: str
    statement: str
    date: datetime


class VoiceIdentity(_Model):
    sample: str | None = None  # path to the reference recording
    consent: Consent | None = None
    language: str | None = None
    style: str | None = None


class Identity(_Model):
    """Media identity: filled in by the selfie, voice and music features."""

    appearance: str = ""  # how the character looks, for image prompts
    portraits: list[str] = Field(default_factory=list)  # reference portrait paths
    style_prompt: str = ""
    seed: int | None = None
    voice: VoiceIdentity = Field(default_factory=VoiceIdentity)
    music_style: str = ""


class PlatformConfig(_Model):
    """How a persona appears on one platform (its own bot, where it may speak, its operators)."""

    token_env: str | None = None  # name of the environment variable holding this persona's bot token
    allowed_chats: list[str] = Field(default_factory=list)  # group/channel ids; empty: any it is addressed in
    admin_ids: list[str] = Field(default_factory=list)  # platform user ids allowed admin commands

    @field_validator("allowed_chats", "admin_ids", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v


class Platforms(_Model):
    telegram: PlatformConfig = Field(default_factory=PlatformConfig)
    discord: PlatformConfig = Field(default_factory=PlatformConfig)


class Persona(_Model):
    """A character. ``id`` is the short name used on the command line."""

    id: str = ""
    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    greetings: list[str] = Field(default_factory=list)
    example_dialogue: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    style: StyleRules = Field(default_factory=StyleRules)
    lorebook: Lorebook | None = None
    identity: Identity = Field(default_factory=Identity)
    language: str = "en"
    nsfw: bool = False  # adult content; off unless the operator turns it on
    platforms: Platforms = Field(default_factory=Platforms)
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    creator_notes: str = ""
    character_version: str = ""
    # Card fields and extensions this format has no place for, kept for export.
    extensions: dict[str, Any] = Field(default_factory=dict)
    card_extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            object.__setattr__(self, "id", slugify(self.name))

    # -- derived views -------------------------------------------------------

    def examples(self, user_name: str = "User") -> tuple[Example, ...]:
        """Example dialogue as (what someone said, how the character answered) pairs."""
        return parse_example_dialogue(self.example_dialogue, self.name, user_name)

    def render(self, text: str, user_name: str = "User") -> str:
        """Replace the card macros ``{{char}}`` and ``{{user}}``."""
        return render_macros(text, self.name, user_name)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "persona"


_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)


def render_macros(text: str, char: str, user: str) -> str:
    def sub(m: re.Match[str]) -> str:
        which = (m.group(1) or m.group(2)).lower()
        return char if which in ("char", "bot") else user

    return _MACRO.sub(sub, text)


_SPEAKER = re.compile(r"^\s*(\{\{\s*(?:char|user)\s*\}\}|<(?:BOT|USER)>|[^:\n]{1,40}):\s?(.*)$", re.I)


def parse_example_dialogue(text: str, char: str, user: str) -> tuple[Example, ...]:
    """Parse ``<START>``-separated example dialogue into prompt/response pairs.

    A speaker line is ``{{user}}: ...`` or ``{{char}}: ...`` (or the literal names);
    lines without a speaker continue the previous turn.
    """
    pairs: list[Example] = []
    for block in re.split(r"<START>", text, flags=re.I):
        turns: list[tuple[str, str]] = []
        for line in block.splitlines():
            m = _SPEAKER.match(line)
            speaker = None
            if m:
                tag = m.group(1).strip().lower()
                if tag in ("{{char}}", "<bot>") or tag == char.lower() or re.fullmatch(r"\{\{\s*char\s*\}\}", tag):
                    speaker = "char"
                elif tag in ("{{user}}", "<user>", "user", "you") or tag == user.lower() or re.fullmatch(r"\{\{\s*user\s*\}\}", tag):
                    speaker = "user"
            if speaker:
                turns.append((speaker, m.group(2).strip()))
            elif turns and line.strip():
                who, said = turns[-1]
                turns[-1] = (who, (said + "\n" + line.strip()).strip())
        for (a, said_a), (b, said_b) in zip(turns, turns[1:]):
            if a == "user" and b == "char" and said_a and said_b:
                pairs.append(
                    Example(render_macros(said_a, char, user), render_macros(said_b, char, user))
                )
    return tuple(pairs)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


def persona_from_dict(data: Any, source: str | Path) -> Persona:
    """Validate a mapping into a Persona; errors name the source and the field."""
    if not isinstance(data, dict):
        raise PersonaError(source, f"expected a mapping of persona fields, got {type(data).__name__}")
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(err.get("loc", ())))
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        raise PersonaError(source, err.get("msg", "invalid") + more, field) from None


def load_persona_file(path: str | Path) -> Persona:
    """Load a persona YAML file (``.yaml``/``.yml``), or a card (``.json``/``.png``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".json", ".png"):
        from persona.cards import import_card

        return import_card(path)
    if suffix not in (".yaml", ".yml"):
        raise PersonaError(path, "unsupported persona file type; use .yaml, .json (card) or .png (card)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonaError(path, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PersonaError(path, "file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PersonaError(path, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    persona = persona_from_dict(data, path)
    return _resolve_paths(persona, path.parent)


def _resolve_paths(persona: Persona, base: Path) -> Persona:
    """Make media paths in the identity relative to the persona file absolute."""
    ident = persona.identity
    portraits = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in ident.portraits]
    voice = ident.voice
    if voice.sample and not Path(voice.sample).is_absolute():
        voice = voice.model_copy(update={"sample": str((base / voice.sample).resolve())})
    return persona.model_copy(update={"identity": ident.model_copy(update={"portraits": portraits, "voice": voice})})


def dump_persona_yaml(persona: Persona) -> str:
    data = persona.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("name", persona.name)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
