"""The outbox: every reply is stored as due, sent by an adapter, and marked delivered
with the platform's message id when the platform confirms it.

A reply row (``messages``, role ``assistant``) moves ``due -> sending -> delivered``. A
sender claims it with a lease (``sending`` until ``next_try_at``); each part it sends (a
media file, a text chunk) is recorded as it is confirmed, so a resend after a crash
starts at the first part the platform never confirmed. A transient failure puts the
reply back to ``due`` for later; a refusal marks it ``failed``; a reply still undelivered
after ``max_age`` seconds is ``dropped`` with a log line rather than sent late.

How a stored row becomes a :class:`Reply` again: when the row carries media, the media
are the reply (the row's text is what was said, for history: a caption, a voice note's
words); otherwise the text is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from db.store import OUTBOX_LEASE, Store
from persona.types import MediaFile, Reply

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 6 * 3600.0  # seconds: a reply older than this is dropped, not sent late


def media_record(media: MediaFile, asset_id: int | None = None) -> dict[str, Any]:
    """How a reply's media file is kept in its row, enough to send it again."""
    rec = {"kind": media.kind, "asset_id": asset_id, "path": media.path, "mime": media.mime,
           "caption": media.caption, "duration": media.duration}
    for k in ("title", "performer", "thumbnail", "width", "height"):
        if getattr(media, k):
            rec[k] = getattr(media, k)
    return rec


def reply_from_row(row: dict[str, Any], persona: str) -> Reply:
    media = tuple(
        MediaFile(kind=m["kind"], path=m["path"], mime=m.get("mime") or "application/octet-stream",
                  caption=m.get("caption"), duration=m.get("duration"), title=m.get("title"),
                  performer=m.get("performer"), thumbnail=m.get("thumbnail"), width=m.get("width"),
                  height=m.get("height"))
        for m in (row.get("media") or []) if isinstance(m, dict) and m.get("path")
    )
    return Reply(
        text="" if media else (row.get("text") or ""),
        chat_id=str(row["platform_chat_id"]),
        persona=persona,
        reply_to_message_id=row.get("reply_to"),
        media=media,
        message_db_id=int(row["id"]),
    )


class Outbox:
    """What adapters and the sweeper ask of the database about replies."""

    def __init__(self, store: Store, *, max_age: float = DEFAULT_MAX_AGE, lease: float = OUTBOX_LEASE):
        self.store = store
        self.max_age = max_age
        self.lease = lease
        self.started_at = datetime.now(timezone.utc)  # replies due from before this are a crash's leftovers

    async def claim(self, reply_id: int) -> int | None:
        """Parts already delivered, or None when this reply is not ours to send."""
        return await self.store.claim_reply(reply_id, self.lease)

    async def part_delivered(self, reply_id: int, parts_done: int, platform_message_id: str | None, *, last: bool) -> None:
        await self.store.reply_part_delivered(reply_id, parts_done, platform_message_id, last=last)

    async def retry_later(self, reply_id: int, error: str, delay: float) -> None:
        await self.store.reply_retry_later(reply_id, error, delay)

    async def failed(self, reply_id: int, error: str) -> None:
        await self.store.reply_failed(reply_id, error)

    async def due(self, platform: str, persona: str, limit: int = 50) -> list[Reply]:
        """Replies for one adapter to send now, oldest first."""
        rows = await self.store.due_replies(platform, persona, limit, made_before=self.started_at)
        return [reply_from_row(r, persona) for r in rows]

    async def drop_stale(self) -> list[int]:
        dropped = await self.store.drop_stale_replies(self.max_age)
        for rid in dropped:
            log.warning("outbox: reply %d was not delivered within %.0f s; dropped rather than sent late", rid, self.max_age)
        return dropped

    async def depth(self) -> int:
        return await self.store.outbox_depth()
