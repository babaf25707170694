"""The persona file format (YAML) and its validation.

A persona is everything needed to play a character: who it is (description,
personality, scenario), how it talks (greetings, example dialogue, system prompt,
style rules), what it knows (the lorebook), and how it looks and sounds (media
identity, filled in by the image, voice and music features).

Character Card V2/V3 import and export live in :mod:`persona.cards`.
"""

from __future__ import annotations

import logging
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generators.text.base import Example

log = logging.getLogger(__name__)

# Bounds on what a persona file or card may hold, checked where the data comes in, so
# that an oversized card is refused with a clear error instead of failing later (a
# database column, a prompt, a lorebook scan).
MAX_ID_CHARS = 64
MAX_NAME_CHARS = 100
MAX_TEXT_CHARS = 100_000  # each long text: description, prompts, one greeting, one lore entry
MAX_LABEL_CHARS = 1_000  # short texts: creator, version, a tag, a language, a platform id
MAX_PATH_CHARS = 4_096
MAX_GREETINGS = 500
MAX_LIST_ITEMS = 500  # tags, style rules, portraits, chats, admins
MAX_LORE_ENTRIES = 5_000
MAX_LORE_KEYS = 200  # keys (and secondary keys) of one entry
MAX_KEY_CHARS = 1_000

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
LocalPath = Annotated[str, Field(max_length=MAX_PATH_CHARS)]
LoreKey = Annotated[str, Field(max_length=MAX_KEY_CHARS)]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


class PersonaError(ValueError):
    """A persona file or card that cannot be loaded; names the file and the field."""

    def __init__(self, source: str | Path, message: str, field: str | None = None):
        self.source = str(source)
        self.field = field
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        super().__init__(where + message)


from persona.posts.plan import PostPlan  # noqa: E402 - no imports back into this module

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StyleRules(_Model):
    """How replies are shaped after generation."""

    max_sentences: int | None = Field(default=None, ge=1)
    max_chars: int | None = Field(default=None, ge=20)
    forbidden_phrases: list[Text] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    notes: list[Text] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)  # free-text rules for the system prompt


class LoreEntry(BaseModel):
    """One lorebook entry (Character Card V2 ``character_book.entries[]``)."""

    model_config = ConfigDict(extra="allow")

    keys: list[LoreKey] = Field(default_factory=list, max_length=MAX_LORE_KEYS)
    content: Text = ""
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int = 0
    case_sensitive: bool | None = None
    name: Text | None = None
    priority: int | None = None
    id: int | Label | None = None
    comment: Text | None = None
    selective: bool | None = None
    secondary_keys: list[LoreKey] = Field(default_factory=list, max_length=MAX_LORE_KEYS)
    constant: bool | None = None
    position: Label | None = None


class Lorebook(BaseModel):
    """A character book (Character Card V2 ``character_book``)."""

    model_config = ConfigDict(extra="allow")

    name: Text | None = None
    description: Text | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[LoreEntry] = Field(default_factory=list, max_length=MAX_LORE_ENTRIES)


class Consent(_Model):
    """Who gave their voice or likeness, what they agreed to, and when."""

    who: Label
    statement: Text
    date: datetime


class VoiceIdentity(_Model):
    sample: LocalPath | None = None  # path to the reference recording
    consent: Consent | None = None
    language: Label | None = None
    style: Text | None = None


class Identity(_Model):
    """Media identity: filled in by the selfie, voice and music features."""

    appearance: Text = ""  # how the character looks, for image prompts
    portraits: list[LocalPath] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)  # reference portrait paths
    style_prompt: Text = ""
    seed: int | None = None
    voice: VoiceIdentity = Field(default_factory=VoiceIdentity)
    music_style: Text = ""


class PlatformConfig(_Model):
    """How a persona appears on one platform (its own bot, where it may speak, its operators)."""

    token_env: Label | None = None  # name of the environment variable holding this persona's bot token
    allowed_chats: list[Label] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)  # group/channel ids; empty: any
    admin_ids: list[Label] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)  # platform user ids allowed admin commands

    @field_validator("allowed_chats", "admin_ids", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v


class Platforms(_Model):
    telegram: PlatformConfig = Field(default_factory=PlatformConfig)
    discord: PlatformConfig = Field(default_factory=PlatformConfig)


class Persona(_Model):
    """A character. ``id`` is the short name used on the command line, in file names
    and in the database: a slug (see :func:`check_slug`), derived from the name
    when not given."""

    id: str = ""
    name: str
    description: Text = ""
    personality: Text = ""
    scenario: Text = ""
    greetings: list[Text] = Field(default_factory=list, max_length=MAX_GREETINGS)
    example_dialogue: Text = ""
    system_prompt: Text = ""
    post_history_instructions: Text = ""
    style: StyleRules = Field(default_factory=StyleRules)
    lorebook: Lorebook | None = None
    identity: Identity = Field(default_factory=Identity)
    language: Label = "en"
    nsfw: bool = False  # adult content; off unless the operator turns it on
    platforms: Platforms = Field(default_factory=Platforms)
    posts: PostPlan | None = None  # scheduled posts (persona.posts.plan)
    tags: list[Label] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    creator: Label = ""
    creator_notes: Text = ""
    character_version: Label = ""
    # Card fields and extensions this format has no place for, kept for export.
    extensions: dict[str, Any] = Field(default_factory=dict)
    card_extra: dict[str, Any] = Field(default_factory=dict)
    # Local copies of the card's embedded assets: asset URI -> file path.
    card_assets: dict[Label, LocalPath] = Field(default_factory=dict, max_length=MAX_LIST_ITEMS)

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, v: str) -> str:
        return check_slug(v) if v else v

    @field_validator("name")
    @classmethod
    def _name_fits(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        if len(v) > MAX_NAME_CHARS:
            raise ValueError(f"must be at most {MAX_NAME_CHARS} characters (this one has {len(v)})")
        return v

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            object.__setattr__(self, "id", slugify(self.name))

    # -- derived views -------------------------------------------------------

    def examples(self, user_name: str = "User") -> tuple[Example, ...]:
        """Example dialogue as (what someone said, how the character answered) pairs."""
        return parse_example_dialogue(self.example_dialogue, self.name, user_name)

    def render(
        self,
        text: str,
        user_name: str = "User",
        *,
        now: datetime | None = None,
        idle: timedelta | None = None,
        seed: int | str | None = None,
    ) -> str:
        """Replace the card macros in ``text`` (see :func:`render_macros`)."""
        return render_macros(text, self.name, user_name, now=now, idle=idle, seed=seed)


def check_slug(value: str) -> str:
    """``value`` if it is a slug: lower-case letters a-z, digits and inner hyphens,
    at most :data:`MAX_ID_CHARS` characters; else :class:`ValueError`."""
    if len(value) > MAX_ID_CHARS or not _SLUG.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ValueError(
            f"must be a slug of lower-case letters a-z, digits and '-', at most {MAX_ID_CHARS} characters, not {shown!r}"
        )
    return value


def slugify(name: str) -> str:
    """A slug for a display name (at most :data:`MAX_ID_CHARS` characters)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_ID_CHARS].rstrip("-")
    return slug or "persona"


# {{char}} {{user}} {{time}} ... and {{random:a,b}}, whose items may hold simple macros
_MACRO = re.compile(
    r"\{\{\s*(?:(?P<name>char|user|time|date|weekday|isotime|isodate|idle_duration)\s*"
    r"|random\s*:(?P<items>(?:[^{}]|\{\{[^{}]*\}\})*))\}\}"
    r"|<(?P<tag>BOT|USER)>",
    re.IGNORECASE,
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_ESCAPED_COMMA = "\x00comma\x00"


def render_macros(
    text: str,
    char: str,
    user: str,
    *,
    now: datetime | None = None,
    idle: timedelta | None = None,
    seed: int | str | None = None,
) -> str:
    """Replace the SillyTavern macros in ``text`` (names in any case):

    * ``{{char}}`` / ``<BOT>``: the character's name; ``{{user}}`` / ``<USER>``: the person's;
    * ``{{time}}`` ("3:05 PM"), ``{{date}}`` ("November 5, 2026"), ``{{weekday}}``
      ("Thursday"), ``{{isotime}}`` ("15:05"), ``{{isodate}}`` ("2026-11-05"): at ``now``
      (default: the local time);
    * ``{{idle_duration}}``: ``idle``, the time since the person last wrote, as "3 hours"
      ("just now" when ``None``);
    * ``{{random:a,b,c}}`` (items trimmed, ``\\,`` for a comma) or ``{{random::a::b}}``:
      one of the items; the same ``seed`` picks the same items (no seed: random).
    """
    rng: random.Random | None = None
    clock = now

    def one(which: str) -> str:
        nonlocal clock
        if which in ("char", "bot"):
            return char
        if which == "user":
            return user
        if which == "idle_duration":
            return humanize_duration(idle) if idle is not None else "just now"
        if clock is None:
            clock = datetime.now().astimezone()
        if which == "time":
            return f"{clock.hour % 12 or 12}:{clock.minute:02d} {'AM' if clock.hour < 12 else 'PM'}"
        if which == "date":
            return f"{_MONTHS[clock.month - 1]} {clock.day}, {clock.year}"
        if which == "weekday":
            return _WEEKDAYS[clock.weekday()]
        if which == "isotime":
            return f"{clock.hour:02d}:{clock.minute:02d}"
        return clock.date().isoformat()  # isodate

    def sub(m: re.Match[str]) -> str:
        nonlocal rng
        items = m.group("items")
        if items is None:
            return one((m.group("name") or m.group("tag")).lower())
        if items.startswith(":") or "::" in items:
            choices = items.removeprefix(":").split("::")
        else:
            choices = [c.strip().replace(_ESCAPED_COMMA, ",") for c in items.replace("\\,", _ESCAPED_COMMA).split(",")]
        if rng is None:
            rng = random.Random(seed) if seed is not None else random.Random()
        return _MACRO.sub(sub, rng.choice(choices))

    return _MACRO.sub(sub, text)


def humanize_duration(delta: timedelta) -> str:
    """A duration in words, rounded as chat apps say it: "a few seconds", "a minute",
    "5 minutes", "an hour", "3 hours", "a day", "4 days", "a month", "2 months", "a year"."""
    seconds = abs(delta.total_seconds())
    minutes, hours, days = seconds / 60, seconds / 3600, seconds / 86400
    if seconds < 45:
        return "a few seconds"
    if seconds < 90:
        return "a minute"
    if minutes < 45:
        return f"{round(minutes)} minutes"
    if minutes < 90:
        return "an hour"
    if hours < 22:
        return f"{round(hours)} hours"
    if hours < 36:
        return "a day"
    if days < 26:
        return f"{round(days)} days"
    if days < 45:
        return "a month"
    if days < 320:
        return f"{max(2, round(days / 30.4))} months"
    if days < 548:
        return "a year"
    return f"{max(2, round(days / 365.25))} years"


_SPEAKER = re.compile(r"^\s*(\{\{\s*(?:char|user)\s*\}\}|<(?:BOT|USER)>|[^:\n]{1,40}):\s?(.*)$", re.I)


def parse_example_dialogue(text: str, char: str, user: str) -> tuple[Example, ...]:
    """Parse ``<START>``-separated example dialogue into prompt/response pairs.

    A speaker line is ``{{user}}: ...`` or ``{{char}}: ...`` (or the literal names; the
    character also by any word of its name, "Brann:" for "Captain Brann"); lines
    without a speaker continue the previous turn.
    """
    char_names = {char.lower()} | {w.lower() for w in re.findall(r"[\w'-]{3,}", char)}
    char_names.discard(user.lower())
    pairs: list[Example] = []
    for block in re.split(r"<START>", text, flags=re.I):
        turns: list[tuple[str, str]] = []
        for line in block.splitlines():
            m = _SPEAKER.match(line)
            speaker = None
            if m:
                tag = m.group(1).strip().lower()
                if tag in ("{{char}}", "<bot>") or tag in char_names or re.fullmatch(r"\{\{\s*char\s*\}\}", tag):
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


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a persona file has no use for them, and a few
    nested aliases expand into gigabytes when the persona is written back."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in a persona file, "
                                 f"at line {event.start_mark.line + 1}; write the value out")
        return super().compose_node(parent, index)


def load_persona_file(path: str | Path) -> Persona:
    """Load a persona YAML file (``.yaml``/``.yml``), or a card (``.json``/``.png``/``.charx``).

    A card comes from elsewhere, wherever it lies: it is loaded without local file
    paths or a consent record (see :func:`strip_local_identity`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".json", ".png", ".charx"):
        from persona.cards import import_card

        return strip_local_identity(import_card(path))
    if suffix not in (".yaml", ".yml"):
        raise PersonaError(path, "unsupported persona file type; use .yaml, or a card: .json, .png or .charx")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonaError(path, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PersonaError(path, "file is not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader that refuses aliases
    except RecursionError:
        raise PersonaError(path, "the YAML is nested too deeply to be a persona") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PersonaError(path, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    persona = persona_from_dict(data, path)
    return _resolve_paths(persona, path.parent)


def _resolve_paths(persona: Persona, base: Path) -> Persona:
    """Make media paths (identity, card assets) relative to the persona file absolute."""

    def absolute(p: str) -> str:
        return p if Path(p).is_absolute() else str((base / p).resolve())

    ident = persona.identity
    portraits = [absolute(p) for p in ident.portraits]
    voice = ident.voice
    if voice.sample:
        voice = voice.model_copy(update={"sample": absolute(voice.sample)})
    assets = {uri: absolute(p) for uri, p in persona.card_assets.items()}
    return persona.model_copy(
        update={
            "identity": ident.model_copy(update={"portraits": portraits, "voice": voice}),
            "card_assets": assets,
        }
    )


def strip_local_identity(persona: Persona) -> Persona:
    """A persona from elsewhere may not point at this machine's files or claim a voice
    consent: its portraits, voice sample, consent record and asset paths are dropped."""
    ident = persona.identity
    if ident.portraits or ident.voice.sample or ident.voice.consent or persona.card_assets:
        log.warning("%s: the file's portrait, voice-sample and asset paths and consent record were not loaded", persona.id)
        ident = ident.model_copy(update={"portraits": [], "voice": ident.voice.model_copy(update={"sample": None, "consent": None})})
        persona = persona.model_copy(update={"identity": ident, "card_assets": {}})
    return persona


def dump_persona_yaml(persona: Persona) -> str:
    """The persona as YAML: fields at their defaults left out, except in the lorebook,
    which keeps every field its source set (empty lists and nulls too) for export."""
    data = persona.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("name", persona.name)
    if persona.lorebook is not None:
        data["lorebook"] = persona.lorebook.model_dump(mode="json", exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
