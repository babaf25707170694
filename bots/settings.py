"""Service settings, from ``VCHAR_*`` environment variables and a ``.env`` file.

:func:`load_settings` is how the command line reads them: it checks the service, image
and voice settings together and raises one :class:`ConfigError` listing every problem,
each naming the variable, its bad value and what is allowed.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _default_data_dir() -> Path:
    return Path(user_data_dir("vchar", appauthor=False))


def parse_id_list(value: Any) -> list[int]:
    """User ids from ``42``, ``42,43`` (spaces allowed) or a JSON list ``[42, 43]``."""
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("not a valid JSON list; write 42, or 42,43, or [42, 43]") from None
            if not isinstance(value, list):  # pragma: no cover - a "[" that parses is a list
                raise ValueError("write 42, or 42,43, or [42, 43]")
        else:
            value = [part for part in text.replace(";", ",").split(",")]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError("write 42, or 42,43, or [42, 43]")
    ids = []
    for item in value:
        text = str(item).strip()
        if not text:
            continue
        try:
            if isinstance(item, bool):
                raise ValueError
            ids.append(int(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a user id (ids are numbers); write 42, or 42,43, or [42, 43]") from None
    return ids


IdList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VCHAR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where everything is written.")
    media_dir: Path | None = Field(
        default=None,  # filled in from data_dir below: always a Path once loaded
        description="Generated media and uploads (default DATA_DIR/media); shared storage (NFS) when workers run elsewhere.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in the data dir. postgresql://... works."
    )
    personas_dir: Path | None = Field(
        default=None, description="Folder of persona files (.yaml, .json/.png cards); default DATA_DIR/personas."
    )
    default_persona: str | None = Field(default=None, description="Persona used when none is named.")

    text_backend: Literal["lite", "transformers", "openai"] = "lite"
    music_backend: Literal["lite", "musicgen", "stable-audio", "ace-step"] = Field(
        default="lite", description="Songs and clips: lite (CPU, no weights), musicgen, stable-audio or ace-step "
        "(the model plays the backing, the character sings).")
    music_model: str | None = Field(default=None, description="musicgen: a hub id (default facebook/musicgen-small; "
                                    "facebook/musicgen-melody follows the tune) or a local folder.")
    music_accept_license: bool = Field(default=False, description="MusicGen's weights are CC-BY-NC-4.0 "
                                       "(non-commercial): set 1 to accept; nothing is downloaded before.")
    music_device: str | None = Field(default=None, description="Neural music: cuda or cpu (default: CUDA when present).")
    music_compile: bool = Field(default=False, description="musicgen on CUDA: torch.compile the decoder step "
                                "(CUDA graphs; the first song compiles for a minute).")
    music_batch: int = Field(default=1, ge=1, le=16, description="musicgen: songs made at once share one batch "
                             "(the worker runs this many music jobs at a time); a seed then no longer fixes the song.")
    video_backend: Literal["lite", "musetalk"] = Field(
        default="lite", description="Talking heads: lite (CPU, no weights) or musetalk (MuseTalk redraws the mouth).")
    video_model: str | None = Field(default=None, description="musetalk: a folder in MuseTalk's models/ layout, or a "
                                    "hub id (default TMElyralab/MuseTalk).")
    video_device: str | None = Field(default=None, description="musetalk: cuda or cpu (default: CUDA when present).")
    video_accept_license: bool = Field(default=False, description="MuseTalk's weights are published under CreativeML "
                                       "OpenRAIL-M (use restrictions to pass on): set 1 to accept.")
    music_soundfont: Path | None = Field(default=None, description="A General MIDI .sf2 for the lite music "
                                         "(default: Debian's FluidR3_GM, else pretty-midi's TimGM6mb).")
    text_model: str | None = Field(default=None, description="Model id or folder (transformers) or model name (openai).")
    text_base_url: str | None = Field(default=None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    text_api_key: SecretStr | None = None
    text_timeout: float = Field(default=60.0, gt=0)
    text_max_retries: int = Field(default=2, ge=0)
    text_max_tokens: int = Field(default=300, ge=16)
    text_temperature: float = Field(default=0.8, ge=0)
    context_tokens: int = Field(default=4096, ge=512, description="Prompt budget in tokens.")

    embed_model: str | None = Field(default=None, description="Sentence embedding model; default the bundled MiniLM.")
    max_message_chars: int = Field(default=4000, ge=100, description="Longer messages are trimmed for the model.")
    memory_every: int = Field(default=4, ge=1, description="Extract memories every N turns of a person.")
    memory_recall: int = Field(default=5, ge=0, description="Memories recalled into each prompt.")

    chat_rate: str = Field(default="20/minute", description="Messages a person may send a character (e.g. 20/minute; off).")
    media_rate: str = Field(default="5/hour", description="Generation commands (/selfie, /voice, ...) per person.")
    local_admin: bool = Field(default=True, description="The terminal chat's user may use admin commands.")
    chat_user: str | None = Field(default=None, description="Who you are in the terminal chat (default: your login name).")

    queue_url: str | None = Field(default=None, description="redis://HOST:6379/0: media jobs go to `vchar worker` processes through taskiq; unset: made in this process.")
    job_lease: float = Field(default=30.0, ge=1, description="Seconds a job worker may go silent before its job runs again elsewhere.")
    outbox_max_age: float = Field(default=6 * 3600, gt=0, description="Seconds after which an undelivered reply is dropped, not sent late.")
    outbox_lease: float = Field(default=60.0, gt=0, description="Seconds a sender holds a reply before another may send it again.")
    outbox_poll: float = Field(default=2.0, gt=0, description="Seconds between looks at the outbox for replies still due.")
    posts_poll: float = Field(default=1.0, gt=0, description="Seconds between looks for scheduled posts that are due.")
    posts_plan_every: float = Field(default=3600.0, gt=0,
                                    description="Seconds between planning rounds (drafts for the personas' coming slots).")
    posts_lease: float = Field(default=60.0, gt=0,
                               description="Seconds a process holds a post it is publishing before another takes over.")

    studio: bool = Field(default=True, description="`vchar run` serves the studio (the operators' web app) too.")
    studio_host: str = Field(default="127.0.0.1", description="Where the studio listens; anything but 127.0.0.1 or ::1 "
                             "belongs behind a TLS proxy (see the README).")
    studio_port: int = Field(default=8765, ge=0, le=65535,
                             description="The studio's port; when taken, the next free one (0: any free port).")
    studio_password: SecretStr | None = Field(default=None, description="A password that logs in to the studio, "
                                              "besides the token printed at start.")
    studio_max_upload: int = Field(default=25 * 1024 * 1024, ge=1024,
                                   description="Bytes a studio request may carry (a card, a portrait, a voice sample).")

    log_level: str = "INFO"
    log_format: Literal["auto", "rich", "plain", "json"] = Field(
        default="auto", description="auto: rich in a terminal, one plain line per record otherwise; json: JSON lines."
    )

    # Telegram (python-telegram-bot): set a token and the character is live there.
    telegram_token: SecretStr | None = None
    telegram_api_url: str = Field(default="https://api.telegram.org", description="Bot API server (self-hosted or official).")
    telegram_persona: str | None = Field(default=None, description="Persona the Telegram bot speaks for (default persona if unset).")
    telegram_admin_ids: IdList = Field(default_factory=list, description="42, 42,43 or [42, 43].")
    telegram_webhook_url: str | None = Field(default=None, description="Public URL for webhook mode; long polling when unset.")
    telegram_webhook_listen: str = "127.0.0.1"
    telegram_webhook_port: int = 8443
    telegram_webhook_path: str = "telegram"
    telegram_webhook_secret: SecretStr | None = None
    telegram_poll_timeout: float = Field(default=30, gt=0)
    telegram_max_retries: int = Field(default=3, ge=0)
    telegram_overall_rate: float = Field(default=30, ge=0, description="Messages/s across all chats (Telegram's limit is about 30).")

    # Discord (discord.py)
    discord_token: SecretStr | None = None
    discord_persona: str | None = Field(default=None, description="Persona the Discord bot speaks for (default persona if unset).")
    discord_api_url: str = Field(default="https://discord.com/api/v10", description="REST base, e.g. a REST proxy.")
    discord_gateway_url: str | None = Field(default=None, description="Gateway URL override (ws://...).")
    discord_admin_ids: IdList = Field(default_factory=list, description="42, 42,43 or [42, 43].")

    @field_validator("data_dir", "personas_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None

    @field_validator("chat_rate", "media_rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        from persona.limits import Rate

        Rate.parse(v)  # raises with a message that shows the expected form
        return v

    @field_validator("telegram_admin_ids", "discord_admin_ids", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> list[int]:
        return parse_id_list(v)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("text_base_url", "telegram_api_url", "discord_api_url", "telegram_webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("not an http:// or https:// URL")
        return v

    @cached_property
    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite:///{self.data_dir / 'vchar.db'}")

    @cached_property
    def resolved_personas_dir(self) -> Path:
        return self.personas_dir or self.data_dir / "personas"

    @model_validator(mode="after")
    def _media_under_data(self) -> Settings:
        if self.media_dir is None:
            self.media_dir = self.data_dir / "media"
        self.media_dir = self.media_dir.expanduser()
        return self

    @property
    def voices_dir(self) -> Path:
        """Voice samples and their consent records (``vchar voice set``)."""
        return self.data_dir / "voices"

    @property
    def voice_cache_dir(self) -> Path:
        """Per-voice caches of the voice backends (analyses, conditioning latents)."""
        return self.data_dir / "cache" / "voices"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.media_dir, self.data_dir / "cache"):
            d.mkdir(parents=True, exist_ok=True)


class ImageSettings(BaseSettings):
    """``VCHAR_IMAGE_*``: which image backend and how it is set up."""

    model_config = SettingsConfigDict(env_prefix="VCHAR_IMAGE_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    backend: Literal["lite", "diffusers", "remote"] = "lite"
    model: str | None = Field(default=None, description="diffusers: folder, .safetensors file or hub id; remote: checkpoint title.")
    base_url: str | None = Field(default=None, description="remote: the web UI, e.g. http://127.0.0.1:7860")
    username: str | None = None
    password: SecretStr | None = None
    device: str | None = None
    dtype: str | None = None
    sampler: str | None = Field(default=None, description="diffusers: default, euler, euler_a, dpm++, ddim, unipc, lcm, turbo.")
    ip_adapter: str | None = Field(default=None, description="diffusers: base, plus, plus-face, full-face, or none.")
    ip_adapter_repo: str | None = None
    ip_adapter_model: str | None = Field(default=None, description="remote: ControlNet IP-Adapter model name.")
    identity_scale: float | None = Field(default=None, ge=0)
    size: str = "512x512"
    steps: int | None = Field(default=None, ge=1)
    safety: bool = Field(default=True, description="Image safety check on by default; the blocklists always apply.")
    out_dir: Path | None = None
    batch_window_ms: float = Field(default=2.0, ge=0)
    max_batch: int = Field(default=8, ge=1)

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        t = v.lower().replace("*", "x").replace(" ", "")
        parts = t.split("x", 1) if "x" in t else [t, t]
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError("write WIDTHxHEIGHT in pixels, for example 512x512")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("not an http:// or https:// URL")
        return v


def normalize_database_url(url: str) -> str:
    """Pick the async drivers: aiosqlite for SQLite, psycopg for PostgreSQL."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# -- checking a whole configuration ---------------------------------------------------------


class ConfigError(ValueError):
    """Bad settings: ``problems`` holds one line per problem, each naming its variable."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class the service reads: its own, the image and the voice settings."""
    from generators.voice import VoiceSettings

    return [Settings, ImageSettings, VoiceSettings]


def env_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def setting_names() -> list[str]:
    """The ``VCHAR_*`` names of every setting, in declaration order."""
    names: list[str] = []
    for cls in settings_classes():
        for field in cls.model_fields:
            name = env_name(cls, field)
            if name not in names:
                names.append(name)
    return names


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(a) for a in get_args(annotation))


def _literal_choices(annotation: Any) -> tuple[str, ...]:
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    for arg in get_args(annotation):
        found = _literal_choices(arg)
        if found:
            return found
    return ()


def _show(value: Any) -> str:
    text = str(value)
    return repr(text) if not text.strip() or any(ch.isspace() for ch in text) else text


def _or_list(items: tuple[str, ...] | list[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _where(var: str) -> str:
    return " (in .env)" if var not in os.environ and Path(".env").is_file() else ""


_REASONS = {
    "bool_parsing": "use true or false (1/0, yes/no, on/off also work)",
    "bool_type": "use true or false",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "path_type": "must be a folder or file path",
}


def describe_validation_error(exc: ValidationError, cls: type[BaseSettings]) -> list[str]:
    """One line per error: the variable, the bad value, and what is allowed."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        var = env_name(cls, field)
        info = cls.model_fields.get(field)
        annotation = info.annotation if info is not None else None
        value = "(hidden)" if _is_secret(annotation) else _show(err.get("input", ""))
        kind = err.get("type", "")
        if kind == "literal_error":
            reason = f"not allowed; use {_or_list(_literal_choices(annotation))}"
        elif kind in _REASONS:
            reason = _REASONS[kind]
        else:
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            reason = msg[:1].lower() + msg[1:] if msg.startswith("Input should") else msg
            reason = reason.replace("input should be", "must be")
        lines.append(f"{var}={value}{_where(var)}: {reason}")
    return lines


def _settings_error_line(exc: SettingsError, cls: type[BaseSettings]) -> str:
    import re

    m = re.search(r'field "([^"]+)"', str(exc))
    var = env_name(cls, m.group(1)) if m else (str(cls.model_config.get("env_prefix", "")) + "*")
    return f"{var}: cannot be read ({exc.__cause__ or exc})"


def _build(cls: type[BaseSettings], problems: list[str], **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc, cls))
    except SettingsError as exc:
        problems.append(_settings_error_line(exc, cls))
    return None


def cross_check(settings: Settings, image: ImageSettings | None = None) -> list[str]:
    """Problems no single setting shows: a backend that needs another setting."""
    problems = []
    if settings.text_backend == "openai":
        if not settings.text_base_url:
            problems.append(
                "VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_BASE_URL, the server's OpenAI-compatible URL: e.g. "
                "http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 (Ollama), http://127.0.0.1:8080/v1 (llama.cpp)"
            )
        if not settings.text_model:
            problems.append("VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_MODEL, the name of the model the server serves")
    if settings.database_url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(settings.resolved_database_url)
        except ArgumentError:
            problems.append(f"VCHAR_DATABASE_URL={_show(settings.database_url)}: not a database URL; write "
                            "sqlite:///path/to/vchar.db or postgresql://user:password@host/database")
    if image is not None and image.backend == "remote" and not image.base_url:
        problems.append("VCHAR_IMAGE_BACKEND=remote needs VCHAR_IMAGE_BASE_URL, the image server: e.g. "
                        "http://127.0.0.1:7860 (AUTOMATIC1111 or SD.Next started with --api)")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """The service settings, with the image and voice settings checked too. Raises
    :class:`ConfigError` listing every problem at once."""
    problems: list[str] = []
    settings = _build(Settings, problems, **overrides)
    image = _build(ImageSettings, problems)
    try:
        from generators.voice import VoiceSettings
    except ImportError as exc:  # pragma: no cover - part of the install
        logging.getLogger(__name__).debug("voice settings not checked: %s", exc)
    else:
        _build(VoiceSettings, problems)
    if settings is not None:
        problems.extend(cross_check(settings, image))
    if problems:
        raise ConfigError(problems)
    return settings
