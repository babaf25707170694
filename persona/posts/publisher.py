"""Publishing: due approved posts claimed with a lease and sent once through the adapters.

Each tick: claims whose process died are taken over (``db.posts``), drafts whose media is
ready move on, and the due posts are claimed and published. For each post, every part
(each media file, then the text) is written down as "sending" before it goes on the wire
and recorded with its message id when the platform confirms it, so:

- a send the platform clearly refused (4xx) fails the post with the platform's reason,
  and the operator is told once;
- a send that clearly did not happen (the connection refused, a 5xx, a rate limit) is
  tried again later with backoff, up to ``max_attempts``, then failed;
- a send whose outcome is unknown (a timeout after the request left) makes the post
  ``unconfirmed``: the operator looks at the channel and decides, it is never posted twice;
- a post found due later than its grace (the service was down) is ``missed``, not late.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from db.posts import PostRow, PostTable
from persona.types import MediaFile, Reply

log = logging.getLogger(__name__)

CAPTION_LIMIT = {"telegram": 1024, "discord": 2000}
LEASE = 60.0  # seconds; a claim not renewed within it is taken over
BACKOFF = (30.0, 120.0, 600.0, 1800.0)


def split_caption(text: str, limit: int) -> tuple[str, str]:
    """The caption (within ``limit`` characters, cut at a sentence or a word) and the rest."""
    text = text.strip()
    if len(text) <= limit:
        return text, ""
    cut = max(text.rfind(". ", 0, limit), text.rfind("! ", 0, limit), text.rfind("? ", 0, limit))
    if cut < limit // 2:
        cut = text.rfind(" ", 0, limit)
    cut = cut + 1 if cut > 0 else limit
    return text[:cut].strip(), text[cut:].strip()


def post_reply(post: PostRow) -> Reply:
    """The post as a reply to its channel: its media (the text as the first one's caption,
    what does not fit following as text), or its text."""
    files = [f for f in post.content.get("media") or [] if isinstance(f, dict) and f.get("path")]
    text = post.text
    if not files:
        return Reply(text=text, chat_id=str(post.chat_id), persona=str(post.content.get("persona") or ""))
    caption, rest = split_caption(text, CAPTION_LIMIT.get(post.platform, 1024))
    if files[0].get("kind") == "video_note":
        caption, rest = "", text
    media = tuple(
        MediaFile(kind=f["kind"], path=f["path"], mime=f.get("mime") or "application/octet-stream",
                  caption=caption if i == 0 and caption else None, duration=f.get("duration"), title=f.get("title"),
                  performer=f.get("performer"), thumbnail=f.get("thumbnail"), width=f.get("width"),
                  height=f.get("height"))
        for i, f in enumerate(files)
    )
    return Reply(text=rest, chat_id=str(post.chat_id), persona=str(post.content.get("persona") or ""), media=media)


def outcome_unknown(adapter, exc: BaseException) -> bool:
    """Whether the request may have reached the platform before it failed."""
    check = getattr(adapter, "outcome_unknown", None)
    if check is not None:
        return bool(check(exc))
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


class Publisher:
    """``adapters``: (platform, persona id) -> a started adapter. ``notify(post, line)``:
    tells the persona's operator (a DM) about a post that needs them; called once per post."""

    def __init__(self, posts: PostTable, adapters: dict[tuple[str, str], Any], *, planner=None,
                 worker: str | None = None, lease: float = LEASE, max_attempts: int = 4,
                 notify: Callable[[PostRow, str], Awaitable[None]] | None = None,
                 clock: Callable[[], datetime] | None = None, registry=None):
        self.posts, self.adapters, self.planner = posts, adapters, planner
        self.registry = registry  # the personas: news posts read their feed shortly before they are due
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.lease, self.max_attempts = lease, max_attempts
        self.notify = notify
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.published = 0

    async def tick(self) -> int:
        """One round; returns how many posts were published."""
        now = self.clock()
        back, unsure = await self.posts.take_over_expired(now=now)
        if back:
            log.warning("posts %s: their publisher stopped before sending; taken over", back)
        for pid in unsure:
            log.warning("post %d: its publisher stopped mid-send; marked unconfirmed for the operator", pid)
            post = await self.posts.get(pid)
            if post is not None:
                await self._tell(post, "I'm not sure this post went out (the service stopped while sending): "
                                       "please check the channel.")
        if self.planner is not None:
            if self.registry is not None:
                await self.planner.prepare_news(self.registry, now=now)
            await self.planner.collect_media()
        n = 0
        claimed = await self.posts.claim_due(self.worker, self.lease, now=now)
        for post in claimed:
            if await self.publish(post, now=now):
                n += 1
        self.published += n
        return n

    async def publish(self, post: PostRow, *, now: datetime | None = None) -> bool:
        """Publish a post this worker has claimed. True when it went out."""
        now = now or self.clock()
        grace = float(post.content.get("grace_minutes", 60.0))
        # late on its first try (nobody was running): missed; a post being retried is not
        if post.parts_sent == 0 and post.attempts <= 1 and now - post.due_at > timedelta(minutes=grace):
            await self.posts.finish(post.id, self.worker, "missed",
                                    error=f"due {post.due_at:%Y-%m-%d %H:%M} UTC, found {now - post.due_at} late "
                                          f"(the grace is {grace:g} minutes)")
            log.warning("post %d missed its slot (%s late); not posted late", post.id, now - post.due_at)
            return False
        persona = str(post.content.get("persona") or "")
        adapter = self.adapters.get((post.platform, persona)) or self.adapters.get((post.platform, "*"))
        if adapter is None:
            return await self._refused(post, f"no {post.platform} bot is running for {persona}")
        reply = post_reply(post)
        reply = Reply(text=reply.text, chat_id=reply.chat_id, persona=persona, media=reply.media)
        parts = adapter.parts(reply)
        for i, part in enumerate(parts):
            if i < post.parts_sent:
                continue  # confirmed before: never sent twice
            if part.text == "" and part.media is None and not part.whole:
                continue
            if not await self.posts.sending(post.id, self.worker, i):
                log.info("post %d is no longer this publisher's; stopping", post.id)
                return False
            try:
                mid = await adapter.send_part(reply, part, f"vcpost{post.id}p{i}")
            except Exception as exc:  # noqa: BLE001 - classified below
                what = f"{type(exc).__name__}: {exc}"[:500]
                if outcome_unknown(adapter, exc):
                    await self.posts.finish(post.id, self.worker, "unconfirmed",
                                            error=f"part {i + 1} of {len(parts)}: {what} (it may have been posted)")
                    log.warning("post %d: the outcome of a send is unknown (%s); unconfirmed", post.id, what)
                    await self._tell(post, f"I don't know whether this post went out ({what}): please check.")
                    return False
                await self.posts.not_sent(post.id, self.worker)
                if adapter.retry_delay(exc) is not None and post.attempts < self.max_attempts:
                    wait = max(adapter.retry_delay(exc) or 0.0, BACKOFF[min(post.attempts, len(BACKOFF)) - 1])
                    await self.posts.finish(post.id, self.worker, "approved", error=what, retry_in=wait)
                    log.warning("post %d not sent (%s); trying again in %.0f s", post.id, what, wait)
                    return False
                return await self._refused(post, what)
            await self.posts.part_sent(post.id, self.worker, i, mid)
        await self.posts.finish(post.id, self.worker, "published")
        log.info("post %d published to %s %s", post.id, post.platform, post.chat_id)
        announce = getattr(adapter, "announce", None)
        if announce is not None:  # an announcement channel: crossposted to its followers
            row = await self.posts.get(post.id)
            for mid in (row.message_ids if row else None) or []:
                try:
                    if mid and not await announce(str(post.chat_id), str(mid)):
                        break
                except Exception as exc:  # noqa: BLE001 - it is posted; only the crosspost failed
                    log.warning("post %d: crossposting message %s failed: %s", post.id, mid, exc)
        return True

    async def _refused(self, post: PostRow, why: str) -> bool:
        await self.posts.finish(post.id, self.worker, "failed", error=why)
        log.error("post %d to %s %s failed: %s", post.id, post.platform, post.chat_id, why)
        await self._tell(post, f"This post could not be published: {why}")
        return False

    async def _tell(self, post: PostRow, line: str) -> None:
        if self.notify is None or not await self.posts.mark_notified(post.id):
            return
        try:
            await self.notify(post, line)
        except Exception as exc:  # noqa: BLE001 - the post's state says it anyway
            log.warning("post %d: the operator could not be told (%s)", post.id, exc)

    async def run(self, interval: float = 1.0, stop: asyncio.Event | None = None) -> None:
        """Tick until ``stop`` is set (the service's publishing loop)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("posts: a publishing round failed")
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
