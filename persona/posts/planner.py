"""Drafts for a persona's slots, written in character, with their media made by jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from db.jobs import JobTable
from db.posts import PostRow, PostTable
from db.store import Store
from persona.card import Persona
from persona.posts.plan import FORMATS, Channel, PostPlan, SlotTime, slot_times

log = logging.getLogger(__name__)

SIMILAR = 0.55  # word overlap (Jaccard) above which two posts are "alike"
MEDIA_KIND = {"selfie": "image", "voice": "voice", "song": "music", "video": "video"}  # news: see prepare_news

# The lite planner's templates: it has no language model, so it says what a template can.
OPENERS = ("Quick one from me today:", "Okay, confession time.", "Can we talk about this for a second?",
           "Today's thought:", "Small update!", "Thinking out loud here.", "Tell me I'm not the only one.",
           "Something I keep coming back to:")
BODIES = ("{topic}. That's what's on my mind.", "{topic}, and honestly I could talk about it all day.",
          "Everyone should know about {topic}.", "{topic}. You know me by now.",
          "{topic}: here's my take.", "Today it's all about {topic}.")
CLOSERS = ("What about you?", "Tell me yours below.", "Who's with me?", "More soon.", "Thoughts?",
           "See you in the comments.", "")


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) > 2}


def similarity(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16], 16))


def _weighted(rng: random.Random, items: dict[str, float]) -> str:
    keys = [k for k, w in items.items() if w > 0]
    return rng.choices(keys, weights=[items[k] for k in keys])[0]


def _lore_for(persona: Persona, topic: str) -> str | None:
    """A lorebook entry whose keys appear in the topic: a fact to mention."""
    book = persona.lorebook
    if book is None:
        return None
    t = topic.lower()
    for e in book.entries:
        keys = [k for k in (e.keys or []) if isinstance(k, str) and not k.startswith("/")]
        if e.enabled and any(k.lower() in t for k in keys) and e.content:
            first = re.split(r"(?<=[.!?])\s", persona.render(e.content, "everyone").strip())[0]
            return first if len(first) < 200 else None
    return None


def lite_post(persona: Persona, topic: str, seed: Any, recent: list[str]) -> str:
    """A post from templates: the topic, maybe a fact from the lore, an opener and a
    question; the combination least like the recent posts is kept."""
    best, best_sim = "", 2.0
    lore = _lore_for(persona, topic)
    for attempt in range(12):
        rng = _rng(seed, attempt)
        body = rng.choice(BODIES).format(topic=topic[0].upper() + topic[1:] if topic else "Today")
        parts = [rng.choice(OPENERS), body]
        if lore and rng.random() < 0.6:
            parts.append(lore)
        parts.append(rng.choice(CLOSERS))
        text = " ".join(p for p in parts if p)
        sim = max((similarity(text, r) for r in recent), default=0.0)
        if sim < best_sim:
            best, best_sim = text, sim
        if sim < SIMILAR:
            break
    return best


@dataclasses.dataclass
class Drafted:
    text: str
    generator: str
    topic: str
    format: str


class Planner:
    """Fills a persona's slots with drafts. ``text``: the service's text backend."""

    def __init__(self, store: Store, posts: PostTable, text, *, jobs: JobTable | None = None,
                 voices_root: Path | None = None, media: dict[str, bool] | None = None, timeout: float = 60.0,
                 bell=None):
        self.store, self.posts, self.text, self.jobs = store, posts, text, jobs
        self.voices_root = voices_root
        self.media = media or {}  # which media kinds this service can make: {"image": True, ...}
        self.timeout = timeout
        self.bell = bell

    # -- writing ------------------------------------------------------------------------------

    async def write(self, persona: Persona, topic: str, fmt: str, seed: Any, recent: list[str]) -> Drafted:
        name = getattr(self.text, "name", "lite")
        if name != "lite":
            text = await self._model_post(persona, topic, fmt, recent)
            if text:
                return Drafted(text, name, topic, fmt)
        return Drafted(lite_post(persona, topic, seed, recent), "lite-template", topic, fmt)

    async def _model_post(self, persona: Persona, topic: str, fmt: str, recent: list[str]) -> str | None:
        from generators.text.base import ChatMessage, TextRequest
        from persona.prompt import system_prompt

        what = {"text": "a short post", "selfie": "the caption of a selfie you are posting",
                "voice": "what you say in a short voice note", "song": "the caption for a new song you wrote",
                "video": "what you say in a short video to camera", "news": "a short news bulletin"}[fmt]
        instruction = (f"Write {what} for your followers about {topic}. In your own voice, one to three sentences, "
                       "no hashtags unless you would really use them, no quotation marks. Answer with the post only.")
        if recent:
            instruction += " Say something new: do not repeat these recent posts: " + " | ".join(r[:120] for r in recent[-5:])
        for temperature in (0.9, 1.1):
            request = TextRequest(messages=(ChatMessage("system", system_prompt(persona, "followers", include_examples=False)),
                                            ChatMessage("user", instruction)),
                                  max_tokens=160, temperature=temperature, char_name=persona.name, user_name="followers")
            try:
                raw = await asyncio.wait_for(self.text.generate(request), self.timeout)
            except Exception as exc:  # noqa: BLE001 - the template writes it instead
                log.warning("posts for %s: the text backend failed (%s); using the template", persona.id, exc)
                return None
            text = raw.strip().strip('"').strip()
            if text and max((similarity(text, r) for r in recent), default=0.0) < SIMILAR:
                return text[:3000]
        return None

    def _topic_and_format(self, persona: Persona, plan: PostPlan, slot: SlotTime) -> tuple[str, str]:
        rng = _rng(persona.id, slot.key)
        pillars = {p.topic: p.weight for p in plan.pillars} or {
            (persona.tags[0] if persona.tags else "my day"): 1.0}
        topic = _weighted(rng, pillars)
        fmt = slot.format or _weighted(rng, {k: float(v) for k, v in plan.formats.items()})
        return topic, fmt

    # -- planning -----------------------------------------------------------------------------

    async def plan(self, persona: Persona, *, days: int | None = None, now: datetime | None = None) -> list[PostRow]:
        """Drafts for every slot of the next ``days`` (default: the plan's) that has none yet."""
        plan = persona.posts
        if plan is None or not plan.slots:
            return []
        now = now or datetime.now(timezone.utc)
        end = now + timedelta(days=plan.days_ahead if days is None else days)
        db_id = await self.store.persona_id(persona.id)
        if db_id is None:
            raise ValueError(f"{persona.id} is not in the database yet: start the service once (vchar run) or chat with it")
        existing = {p.slot_key for p in await self.posts.list(persona_db_id=db_id, start=now, end=end, limit=100000)}
        recent = await self.posts.recent_texts(db_id, now - timedelta(days=plan.repeat_window_days))
        made = []
        for slot in slot_times(plan, now, end):
            if slot.key in existing:
                continue
            topic, fmt = self._topic_and_format(persona, plan, slot)
            if fmt == "news":  # read at post time: the draft says where from
                drafted = Drafted(f"News bulletin from {slot.feed}: the newest items, read when it is due.",
                                  "news-feed", "news", fmt)
            else:
                drafted = await self.write(persona, topic, fmt, slot.key, recent)
            row = await self._store(persona, db_id, plan.channels[slot.channel], slot.channel, slot.at, drafted,
                                    approved=not plan.approval, zone=plan.zone, slot_key=slot.key,
                                    grace=plan.grace_minutes,
                                    extra={"feed": slot.feed, "news_items": plan.news_items} if fmt == "news" else None)
            if row is not None:
                recent.append(drafted.text)
                made.append(row)
        return made

    async def add(self, persona: Persona, channel: str, at: datetime, *, text: str | None = None, fmt: str = "text",
                  approved: bool = False, topic: str | None = None) -> PostRow:
        """A one-off post: ``channel`` is a plan channel's name or ``platform:chat``."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        plan = persona.posts
        if plan is not None and channel in plan.channels:
            ch, name = plan.channels[channel], channel
        elif ":" in channel:
            platform, chat = channel.split(":", 1)
            ch, name = Channel(platform=platform, chat=chat), channel  # type: ignore[arg-type]
        else:
            known = ", ".join(plan.channels) if plan else "none in its plan"
            raise ValueError(f"unknown channel {channel!r}: use a channel of {persona.id}'s plan ({known}) "
                             "or platform:chat, e.g. telegram:@mychannel")
        db_id = await self.store.persona_id(persona.id)
        if db_id is None:
            db_id = await self.store.ensure_persona(persona.id, persona.name, {}, None)
        recent = await self.posts.recent_texts(db_id, at - timedelta(days=14))
        if text:
            drafted = Drafted(text, "operator", topic or "", fmt)
        else:
            topic = topic or (plan.pillars[0].topic if plan and plan.pillars else "my day")
            drafted = await self.write(persona, topic, fmt, f"{channel}|{at.isoformat()}", recent)
        row = await self._store(persona, db_id, ch, name, at, drafted, approved=approved,
                                zone=plan.zone if plan else "UTC", slot_key=None,
                                grace=plan.grace_minutes if plan else 60.0)
        assert row is not None
        return row

    async def regenerate(self, persona: Persona, post: PostRow) -> PostRow | None:
        """A new draft for the same slot (waiting for approval again when the plan asks)."""
        recent = await self.posts.recent_texts(post.persona_id, post.due_at - timedelta(days=14))
        recent.append(post.text)
        seed = f"{post.slot_key or post.id}|again|{post.attempts}|{len(recent)}|{datetime.now(timezone.utc).isoformat()}"
        drafted = await self.write(persona, post.content.get("topic") or "my day", post.format, seed, recent)
        content = {k: v for k, v in post.content.items() if k not in ("asked", "media_note")}
        content.update(text=drafted.text, generator=drafted.generator, media=[])  # shown to the operators again
        needs_approval = persona.posts.approval if persona.posts else True
        status = "pending" if needs_approval else "approved"
        job_id = None
        if post.format in MEDIA_KIND and self.jobs is not None:
            status = "draft"
        row = await self.posts.set_content(post.id, content, status=status, job_id=job_id, error=None)
        if row is not None and status == "draft":
            row = await self._ask_media(persona, row) or row
        return row

    async def _store(self, persona: Persona, db_id: int, ch: Channel, name: str, at: datetime, d: Drafted, *,
                     approved: bool, zone: str, slot_key: str | None, grace: float,
                     extra: dict | None = None) -> PostRow | None:
        content = {"text": d.text, "format": d.format, "topic": d.topic, "generator": d.generator, "media": [],
                   "grace_minutes": grace, "persona": persona.id, **(extra or {})}
        wants_media = d.format in MEDIA_KIND
        status = "draft" if wants_media else ("approved" if approved else "pending")
        content["approve_when_ready"] = approved
        row = await self.posts.add(persona_db_id=db_id, platform=ch.platform, channel=name, chat_id=ch.chat,
                                   due_at=at, content=content, status=status, zone=zone, slot_key=slot_key)
        if row is not None and wants_media:
            row = await self._ask_media(persona, row) or row
        return row

    # -- media --------------------------------------------------------------------------------

    def media_params(self, persona: Persona, post: PostRow) -> tuple[str, dict[str, Any]] | None:
        """The job that makes a post's media: (kind, params), or None when this service
        cannot make it (the post then goes out as text, said in its metadata)."""
        from generators.image.base import seed_for

        fmt, text = post.format, post.text
        kind = "video" if fmt == "news" else MEDIA_KIND.get(fmt)
        if kind is None or not self.media.get(kind):
            return None
        profile = None
        if self.voices_root is not None:
            from generators.voice.profile import load_voice_profile

            profile = load_voice_profile(self.voices_root, persona.id)
        prof = ({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(profile).items()}
                if profile is not None else None)
        seed = seed_for(persona.identity.seed, f"post|{post.id}|{text}")
        portrait = next((str(x) for x in persona.identity.portraits if Path(x).is_file()), None)
        if fmt == "selfie":
            from generators.image import ImageRequest, selfie_prompt

            topic = post.content.get("topic") or ""
            req = ImageRequest(prompt=selfie_prompt(topic, appearance=persona.identity.appearance,
                                                    style=persona.identity.style_prompt),
                               references=tuple(persona.identity.portraits[:1]), seed=seed, safety=not persona.nsfw,
                               tags={"vchar:persona": persona.id, "vchar:post": str(post.id)})
            return "image", {"request": dataclasses.asdict(req)}
        if fmt == "voice":
            if prof is None:
                return None
            return "voice", {"text": text, "profile": prof, "language": profile.language or persona.language,
                             "style": persona.identity.voice.style}
        if fmt == "video":
            if portrait is None:
                return None
            return "video", {"portrait": portrait, "text": text[:600], "profile": prof, "layout": "selfie",
                             "language": (profile.language if profile else None) or persona.language or "en",
                             "seed": seed}
        if fmt == "news":
            if portrait is None or not self.media.get("video"):
                return None
            return "video", {"portrait": portrait, "layout": "news", "items": post.content.get("items") or [],
                             "text": "news", "profile": prof, "channel": persona.name.upper()[:30],
                             "language": (profile.language if profile else None) or persona.language or "en",
                             "seed": seed}
        if fmt == "song":
            from generators.music import MusicRequest
            from generators.music.lyrics import template_lyrics

            topic = post.content.get("topic") or "tonight"
            lyr = template_lyrics(topic, seed)
            req = MusicRequest(topic=topic, lyrics=lyr.text, style=persona.identity.music_style or "pop", duration=30,
                               seed=seed, title=lyr.title, artist=persona.name, language=persona.language or "en",
                               cover=portrait, instrumental=prof is None)
            params = dataclasses.asdict(dataclasses.replace(req, voice=None))
            if prof is not None:
                params["voice"] = prof
            return "music", {"request": params}
        return None

    async def _ask_media(self, persona: Persona, post: PostRow) -> PostRow | None:
        spec = self.media_params(persona, post) if self.jobs is not None else None
        if spec is None:
            # nothing here can make it: a text post, and the operator can see why
            content = {**post.content, "media_note": f"no {post.format} backend here: posted as text"}
            status = "approved" if post.content.get("approve_when_ready") else "pending"
            return await self.posts.set_content(post.id, content, status=status)
        kind, params = spec
        key = f"post:{post.id}:{post.content.get('generator')}:{hashlib.sha256(post.text.encode()).hexdigest()[:12]}"
        job, new = await self.jobs.enqueue(kind, {"params": params, "post": {"id": post.id}}, key,
                                           requester=f"post:{post.id}")
        if new and self.bell is not None:
            try:
                await self.bell(kind, job.id)
            except Exception as exc:  # noqa: BLE001 - the table is the truth; workers look anyway
                log.warning("post %d: the job bell did not ring (%s)", post.id, exc)
        return await self.posts.change(post.id, job_id=job.id)

    async def prepare_news(self, registry, *, now: datetime | None = None, lead: float = 600.0) -> int:
        """News posts due within ``lead`` seconds: the feed read now, its newest items the
        post's text, and (where video is set up and the anchor has a face) the bulletin
        filmed by a video job; the post waits for it as a draft. Returns how many."""
        from generators.video import VideoInputError
        from generators.video.news import read_feed

        now = now or datetime.now(timezone.utc)
        n = 0
        for post in await self.posts.list(status=["pending", "approved"], end=now + timedelta(seconds=lead), limit=200):
            c = post.content
            if post.format != "news" or c.get("news_read") or not c.get("feed"):
                continue
            try:
                persona = registry.get(str(c.get("persona")))
                items = await asyncio.to_thread(read_feed, str(c["feed"]), int(c.get("news_items") or 3))
            except (LookupError, VideoInputError) as exc:
                await self.posts.change(post.id, from_states=("pending", "approved"), status="failed",
                                        error=f"the news feed could not be read: {exc}")
                continue
            text = "\n\n".join(f"{it.headline}\n{it.text}" for it in items)
            approved = post.status == "approved"
            content = {**c, "text": text[:3900], "news_read": now.isoformat(), "approve_when_ready": approved,
                       "items": [{"headline": it.headline, "text": it.text} for it in items]}
            spec = self.media_params(persona, dataclasses.replace(post, content=content)) if self.jobs else None
            if spec is None:
                content["media_note"] = "no video (or no face) here: the bulletin went out as text"
                await self.posts.set_content(post.id, content, from_states=("pending", "approved"))
            else:
                row = await self.posts.set_content(post.id, content, from_states=("pending", "approved"), status="draft")
                if row is not None:
                    await self._ask_media(persona, row)
            n += 1
        return n

    async def collect_media(self) -> int:
        """Drafts whose media job finished: the files attached and the post moved on
        (approved, or pending the operator); a failed job fails the post with its error."""
        if self.jobs is None:
            return 0
        n = 0
        for post in await self.posts.list(status="draft", limit=500):
            if post.job_id is None:
                continue
            job = await self.jobs.get(post.job_id)
            if job is None or job.status in ("queued", "running"):
                continue
            files = [f for f in (job.result or {}).get("files", []) if isinstance(f, dict) and f.get("path")
                     and Path(f["path"]).is_file()]
            if job.status == "done" and files:
                content = {**post.content, "media": files}
                status = "approved" if post.content.get("approve_when_ready") else "pending"
                await self.posts.set_content(post.id, content, status=status, from_states=("draft",))
            else:
                why = job.error or ("the job gave no file" if job.status == "done" else job.status)
                await self.posts.change(post.id, from_states=("draft",), status="failed",
                                        error=f"its {post.format} could not be made: {why}")
            n += 1
        return n
