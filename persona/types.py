"""Frozen messages that cross the layers: what an adapter hands in, what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MediaKind = Literal["image", "voice", "audio", "video", "video_note"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came in with a message (a photo, a voice note, a document)."""

    kind: str  # "image", "audio", "video", "document", "sticker", ...
    url: str | None = None
    path: str | None = None
    mime: str | None = None
    name: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message from a person, as any adapter sees it.

    ``message_id`` is the platform's id for the message, unique within ``chat_id``;
    the same id delivered twice is answered once.
    """

    platform: str
    chat_id: str
    user_id: str
    text: str
    message_id: str | None = None
    persona: str | None = None  # which character this adapter speaks for
    user_name: str | None = None
    chat_kind: Literal["private", "group", "channel"] = "private"
    chat_title: str | None = None
    reply_to_message_id: str | None = None
    # the character's own words this message answers, when they matter for the reply: the
    # post a comment is written under (a Telegram discussion group), or the character's
    # message a Discord reply in a server answers
    quote: str | None = None
    attachments: tuple[Attachment, ...] = ()
    sent_at: datetime | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """Something a generator should make for a reply (a selfie, a voice note, ...)."""

    kind: MediaKind
    prompt: str = ""
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A finished piece of media to deliver."""

    kind: MediaKind
    path: str
    mime: str
    caption: str | None = None
    duration: float | None = None
    title: str | None = None  # a song's title and performer (Telegram's audio player shows them)
    performer: str | None = None
    thumbnail: str | None = None  # a small JPEG shown with it (a song's cover, a clip's first frame)
    width: int | None = None  # a video's size (Telegram shows the right shape before it loads)
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What the character says back; adapters deliver what their platform can show."""

    text: str
    chat_id: str
    persona: str
    reply_to_message_id: str | None = None
    media: tuple[MediaFile, ...] = ()
    media_requests: tuple[MediaRequest, ...] = ()
    fallback: bool = False  # True when the text backend failed and this is a stand-in line
    message_db_id: int | None = None
