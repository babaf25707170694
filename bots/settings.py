"""Service settings, from ``VCHAR_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("vchar", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VCHAR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where everything is written.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in the data dir. postgresql://... works."
    )
    personas_dir: Path | None = Field(
        default=None, description="Folder of persona files (.yaml, .json/.png cards); default DATA_DIR/personas."
    )
    default_persona: str | None = Field(default=None, description="Persona used when none is named.")

    text_backend: Literal["lite", "transformers", "openai"] = "lite"
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

    log_level: str = "INFO"

    # Telegram (python-telegram-bot): set a token and the character is live there.
    telegram_token: SecretStr | None = None
    telegram_api_url: str = Field(default="https://api.telegram.org", description="Bot API server (self-hosted or official).")
    telegram_persona: str | None = Field(default=None, description="Persona the Telegram bot speaks for (default persona if unset).")
    telegram_admin_ids: list[int] = Field(default_factory=list)
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
    discord_admin_ids: list[int] = Field(default_factory=list)

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

    @cached_property
    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite:///{self.data_dir / 'vchar.db'}")

    @cached_property
    def resolved_personas_dir(self) -> Path:
        return self.personas_dir or self.data_dir / "personas"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.media_dir, self.data_dir / "cache"):
            d.mkdir(parents=True, exist_ok=True)


def normalize_database_url(url: str) -> str:
    """Pick the async drivers: aiosqlite for SQLite, psycopg for PostgreSQL."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
