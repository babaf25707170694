"""SQLAlchemy 2 models: the service's whole state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware timestamps on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Persona(Base):
    __tablename__ = "personas"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PlatformUser(Base):
    __tablename__ = "platform_users"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Relationship(Base):
    """What a persona knows of one person, and how they get along."""

    __tablename__ = "relationships"
    __table_args__ = (UniqueConstraint("persona_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_users.id", ondelete="CASCADE"), index=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    affinity: Mapped[float] = mapped_column(Float, default=0.0)
    facts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # 0 until the first memory, then microseconds since the epoch, bumped on every
    # change to this person's memories, so in-process recall caches (one per worker)
    # know when to reload; never repeats across a /forget (db.store.new_memory_version).
    memory_version: Mapped[int] = mapped_column(BigInteger, default=0)
    turns_since_memory: Mapped[int] = mapped_column(Integer, default=0)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("persona_id", "platform", "platform_chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    platform_chat_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16), default="private")
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime | None] = mapped_column()


class Message(Base):
    """A message in a conversation; incoming ones are stored before any generation."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "platform_message_id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # Only the few messages not yet answered: start-up recovery and retries find them
        # without scanning the whole table.
        Index(
            "ix_messages_status_open",
            "status",
            sqlite_where=text("status IN ('received', 'processing', 'failed')"),
            postgresql_where=text("status IN ('received', 'processing', 'failed')"),
        ),
        # The outbox: replies not yet delivered (few), found by when they may be tried.
        Index(
            "ix_messages_due",
            "status",
            "next_try_at",
            sqlite_where=text("status IN ('due', 'sending')"),
            postgresql_where=text("status IN ('due', 'sending')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("platform_users.id", ondelete="SET NULL"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | system
    text: Mapped[str] = mapped_column(Text, default="")
    platform_message_id: Mapped[str | None] = mapped_column(String(100))
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    media: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # incoming: received -> processing -> answered | failed (| ignored | limited)
    # replies (the outbox): due -> sending (a lease until next_try_at) -> delivered
    #   | failed (the platform refused it) | dropped (too old to send late)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # outbox bookkeeping: send attempts, parts (media, text chunks) the platform confirmed,
    # when the reply may next be tried (or when a sender's lease ends), when it arrived
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parts_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_try_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()


class Memory(Base):
    __tablename__ = "memories"
    __table_args__ = (Index("ix_memories_persona_user", "persona_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("platform_users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, unit length
    importance: Mapped[float] = mapped_column(Float, default=0.5)
    source: Mapped[str] = mapped_column(String(16), default="fact")  # fact | summary | told
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaAsset(Base):
    __tablename__ = "media_assets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    persona_id: Mapped[int | None] = mapped_column(ForeignKey("personas.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | voice | audio | video
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str] = mapped_column(String(100))
    duration: Mapped[float | None] = mapped_column(Float)
    generator: Mapped[str | None] = mapped_column(String(100))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A generation job; ``key`` makes a job delivered twice run once."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_requester_status", "requester", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    # queued -> running (a worker's lease, renewed by heartbeats) -> done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    requester: Mapped[str | None] = mapped_column(String(200))  # "platform:user:persona", for /cancel
    stage: Mapped[str | None] = mapped_column(String(100), default="")  # "composing", "singing 2/3"
    worker: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    max_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")


class Post(Base):
    """A scheduled post. ``status``: draft (its media being made) -> pending (waiting for an
    operator) -> approved -> publishing (claimed: a lease) -> published; or rejected,
    failed (with the error), unconfirmed (a send whose outcome is unknown: the operator
    decides, it is never sent again blindly), missed (due while nobody could post it,
    past the grace)."""

    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_status_due", "status", "due_at"),
        UniqueConstraint("persona_id", "slot_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(100))  # the plan's channel name
    status: Mapped[str] = mapped_column(String(16), default="draft")
    due_at: Mapped[datetime] = mapped_column()  # UTC
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # text, format, topic, media files
    claimed_at: Mapped[datetime | None] = mapped_column()
    posted_at: Mapped[datetime | None] = mapped_column()
    platform_post_id: Mapped[str | None] = mapped_column(String(100))  # the first message's id
    error: Mapped[str | None] = mapped_column(Text)
    chat_id: Mapped[str | None] = mapped_column(String(300))
    zone: Mapped[str | None] = mapped_column(String(64))
    slot_key: Mapped[str | None] = mapped_column(String(200))  # channel|local wall-clock time; None: one-off
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the media job
    worker: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_try_at: Mapped[datetime | None] = mapped_column()
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # parts the platform confirmed
    sending_part: Mapped[int | None] = mapped_column(Integer)  # a part whose request may have left
    message_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    reactions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    approved_by: Mapped[str | None] = mapped_column(String(100))
    notified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow)