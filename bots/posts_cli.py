"""``vchar posts``: the content calendar. Plan drafts, read and edit them, approve or
reject, publish now, a week as a table, and how the published posts did.

Mounted by bots/cli.py as ``app.add_typer(posts_app, name="posts")``. The running service
(`vchar run`) publishes what is approved when it is due; these commands only change the
calendar in the database, so they are safe while it runs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer
from rich.table import Table

from bots.voice_cli import _fail, _persona, _settings, out

posts_app = typer.Typer(help="Scheduled posts: plan, review, approve, publish.", no_args_is_help=True)
SHOWN_STATES = "draft, pending, approved, publishing, published, failed, unconfirmed, rejected or missed"


class _Ctx:
    def __init__(self, settings, store, posts, jobs, registry):
        self.settings, self.store, self.posts, self.jobs, self.registry = settings, store, posts, jobs, registry
        self._planner = None

    def planner(self, text_needed: bool = True):
        if self._planner is None:
            from generators.embed import get_embedder
            from generators.text import build_text_generator
            from persona.posts.planner import Planner

            s = self.settings
            text = None
            if text_needed:
                text = build_text_generator(
                    s.text_backend, model=s.text_model, base_url=s.text_base_url,
                    api_key=s.text_api_key.get_secret_value() if s.text_api_key else None, timeout=s.text_timeout,
                    max_retries=s.text_max_retries, embedder=get_embedder(s.embed_model) if s.text_backend == "lite" else None)
            self._planner = Planner(self.store, self.posts, text, jobs=self.jobs, voices_root=s.voices_dir,
                                    media={"image": True, "voice": True, "music": True, "video": True})
        return self._planner

    async def persona_row(self, persona) -> int:
        return await self.store.ensure_persona(persona.id, persona.name, persona.model_dump(mode="json"), None)


async def _with(settings, fn):
    from bots.service import registry_for
    from db.jobs import JobTable
    from db.migrate import upgrade_async
    from db.posts import PostTable
    from db.store import Store

    settings.ensure_dirs()
    url = settings.resolved_database_url
    await upgrade_async(url)
    store = Store.from_url(url)
    try:
        return await fn(_Ctx(settings, store, PostTable(store), JobTable(store), registry_for(settings)))
    finally:
        await store.close()


def _run(fn):
    from pydantic import ValidationError

    settings = _settings()
    try:
        return asyncio.run(_with(settings, fn))
    except ValidationError as exc:  # a platform:chat that is not a channel
        _fail("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()))
    except (ValueError, LookupError) as exc:
        _fail(str(exc))


def _local(post, fmt: str = "%a %d %b %H:%M") -> str:
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(post.zone or "UTC")
    except Exception:  # noqa: BLE001 - an old row's zone: show UTC
        zone = ZoneInfo("UTC")
    return post.due_at.astimezone(zone).strftime(fmt) + f" {post.zone or 'UTC'}"


def _where(post) -> str:
    """The chat, a webhook's secret token left out."""
    chat = str(post.chat_id or "")
    if post.platform == "discord-webhook":
        return chat.rsplit("/", 1)[0] + "/***"
    return chat


def _table(rows, title: str) -> Table:
    t = Table("id", "when", "channel", "format", "state", "text", title=title)
    for p in rows:
        t.add_row(str(p.id), _local(p), p.channel, p.format, p.status, (p.text[:70] + "...") if len(p.text) > 70 else p.text)
    return t


async def _persona_posts(ctx, persona_id: str | None, **kw):
    db_id = None
    if persona_id:
        p = ctx.registry.get(persona_id)
        db_id = await ctx.store.persona_id(p.id)
        if db_id is None:
            return []
    return await ctx.posts.list(persona_db_id=db_id, **kw)


def _post_or_fail(ctx_post, post_id: int):
    if ctx_post is None:
        _fail(f"there is no post {post_id} (see vchar posts list)")
    return ctx_post


@posts_app.command("plan")
def plan_command(
    persona: str = typer.Argument(..., help="The persona whose plan (posts: in its file) is drafted."),
    days: Optional[int] = typer.Option(None, "--days", help="How many days ahead (default: the plan's days_ahead)."),
) -> None:
    """Draft a post for every slot of the coming days that has none yet."""
    p = _persona(_settings(), persona)
    if p.posts is None or not p.posts.slots:
        _fail(f"{p.name} has no posting plan: add a posts: section with channels and slots to its persona file")

    async def go(ctx):
        await ctx.persona_row(p)
        return await ctx.planner().plan(p, days=days)

    made = _run(go)
    if not made:
        out.print(f"Nothing new to draft: every slot of the coming {days if days is not None else p.posts.days_ahead} "
                  "days has its post.", markup=False, highlight=False)
        return
    out.print(_table(made, f"{len(made)} drafts for {p.name}"))
    if p.posts.approval:
        out.print("They wait for approval: vchar posts approve ID (or --all).", markup=False, highlight=False)


@posts_app.command("list")
def list_command(
    persona: Optional[str] = typer.Argument(None, help="Only this persona's posts."),
    state: Optional[str] = typer.Option(None, "--state", "-s", help=f"Only posts in this state: {SHOWN_STATES}."),
    limit: int = typer.Option(50, "--limit", "-n"),
) -> None:
    """Posts in time order."""
    from db.posts import STATES

    if state and state not in STATES:
        _fail(f"unknown state {state!r}: use {SHOWN_STATES}")
    rows = _run(lambda ctx: _persona_posts(ctx, persona, status=state, limit=limit))
    if not rows:
        out.print("No posts" + (f" {state}." if state else "."), markup=False, highlight=False)
        return
    out.print(_table(rows, "posts"))


@posts_app.command("show")
def show_command(post_id: int = typer.Argument(...)) -> None:
    """Everything about one post."""
    post = _post_or_fail(_run(lambda ctx: ctx.posts.get(post_id)), post_id)
    lines = [f"post {post.id}: {post.status}", f"when: {_local(post, '%Y-%m-%d %H:%M')} ({post.due_at:%Y-%m-%d %H:%M} UTC)",
             f"channel: {post.channel} ({post.platform} {_where(post)})", f"format: {post.format}",
             f"topic: {post.content.get('topic') or ''}", f"written by: {post.content.get('generator') or ''}"]
    for f in post.content.get("media") or []:
        lines.append(f"media: {f.get('kind')} {f.get('path')}")
    if post.content.get("media_note"):
        lines.append(f"note: {post.content['media_note']}")
    if post.message_ids:
        lines.append("message ids: " + ", ".join(str(m) for m in post.message_ids))
    if post.reactions:
        lines.append("reactions: " + ", ".join(f"{k} {v}" for k, v in post.reactions.items()))
    if post.error:
        lines.append(f"error: {post.error}")
    lines += ["", post.text]
    out.print("\n".join(lines), markup=False, highlight=False)


def _change(post_id: int, from_states: tuple[str, ...], what: str, **values) -> None:
    async def go(ctx):
        row = await ctx.posts.change(post_id, from_states=from_states, **values)
        return row, await ctx.posts.get(post_id)

    row, now = _run(go)
    if now is None:
        _fail(f"there is no post {post_id} (see vchar posts list)")
    if row is None:
        _fail(f"post {post_id} is {now.status}; it can be {what} when it is {' or '.join(from_states)}")
    out.print(f"post {post_id}: {row.status}", markup=False, highlight=False)


@posts_app.command("approve")
def approve_command(
    post_id: Optional[int] = typer.Argument(None, help="The post (or --all)."),
    all_pending: bool = typer.Option(False, "--all", help="Every post waiting for approval."),
    persona: Optional[str] = typer.Option(None, "--persona", help="With --all: only this persona's."),
) -> None:
    """Approve a draft: it is published when its time comes."""
    if all_pending:
        async def go(ctx):
            n = 0
            for p in await _persona_posts(ctx, persona, status="pending", limit=100000):
                if await ctx.posts.change(p.id, from_states=("pending",), status="approved", approved_by="cli"):
                    n += 1
            return n

        out.print(f"{_run(go)} posts approved.", markup=False, highlight=False)
        return
    if post_id is None:
        _fail("give the post's id, or --all")
    _change(post_id, ("pending", "draft"), "approved", status="approved", approved_by="cli")


@posts_app.command("reject")
def reject_command(post_id: int = typer.Argument(...)) -> None:
    """Reject a post: it is never published (its slot stays empty)."""
    _change(post_id, ("draft", "pending", "approved", "failed", "unconfirmed", "missed"), "rejected", status="rejected")


@posts_app.command("edit")
def edit_command(post_id: int = typer.Argument(...), text: str = typer.Option(..., "--text", help="The new text.")) -> None:
    """Change a post's text (it keeps its media; approved posts stay approved)."""
    if not text.strip():
        _fail("the text is empty")

    async def go(ctx):
        post = await ctx.posts.get(post_id)
        if post is None:
            return None, None
        content = {**post.content, "text": text.strip(), "generator": "operator"}
        return post, await ctx.posts.set_content(post_id, content, from_states=("draft", "pending", "approved", "failed",
                                                                                "rejected", "missed"))

    post, row = _run(go)
    _post_or_fail(post, post_id)
    if row is None:
        _fail(f"post {post_id} is {post.status}: it can no longer be edited")
    out.print(f"post {post_id}: edited ({row.status})", markup=False, highlight=False)


@posts_app.command("regenerate")
def regenerate_command(post_id: int = typer.Argument(...)) -> None:
    """Write the post again (and its media): it waits for approval again when the plan asks."""
    async def go(ctx):
        post = await ctx.posts.get(post_id)
        if post is None:
            return None, None
        if post.status in ("publishing", "published"):
            return post, None
        persona = ctx.registry.get(str(post.content.get("persona")))
        return post, await ctx.planner().regenerate(persona, post)

    post, row = _run(go)
    _post_or_fail(post, post_id)
    if row is None:
        _fail(f"post {post_id} is {post.status}: it can no longer be written again")
    out.print(f"post {post_id}: {row.status}\n{row.text}", markup=False, highlight=False)


@posts_app.command("publish-now")
def publish_now_command(post_id: int = typer.Argument(...)) -> None:
    """Publish a post at once (the running service sends it within a second or two),
    including one that is unconfirmed, failed or missed: check the channel first."""
    _publish_now(post_id)


def _publish_now(post_id: int) -> None:
    async def go(ctx):
        post = await ctx.posts.get(post_id)
        if post is None:
            return None, None
        content = {**post.content, "grace_minutes": max(float(post.content.get("grace_minutes", 60)), 10.0)}
        return post, await ctx.posts.change(post_id, from_states=("pending", "approved", "failed", "unconfirmed", "missed"),
                                            status="approved", due_at=datetime.now(timezone.utc), next_try_at=None,
                                            error=None, notified=False, attempts=0, content=content,
                                            approved_by=post.approved_by or "cli")

    post, row = _run(go)
    _post_or_fail(post, post_id)
    if row is None:
        _fail(f"post {post_id} is {post.status}: it cannot be published now")
    out.print(f"post {post_id}: approved, due now; `vchar run` publishes it", markup=False, highlight=False)


@posts_app.command("add")
def add_command(
    persona: str = typer.Argument(...),
    channel: str = typer.Option(..., "--channel", help="A channel of the persona's plan, or platform:chat "
                                                       "(telegram:@mychannel, discord:123...)."),
    at: str = typer.Option("now", "--at", help="When: an ISO time (2026-12-24T18:00+01:00; no offset: the plan's zone) "
                                              "or now."),
    text: Optional[str] = typer.Option(None, "--text", help="What it says (default: written in character)."),
    fmt: str = typer.Option("text", "--format", help="text, selfie, voice, song or video."),
    approved: bool = typer.Option(False, "--approved", help="Approved already: published when due."),
    topic: Optional[str] = typer.Option(None, "--topic", help="What it is about, when it is written for you."),
) -> None:
    """A one-off post."""
    from zoneinfo import ZoneInfo

    p = _persona(_settings(), persona)
    if at == "now":
        when = datetime.now(timezone.utc)
    else:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            _fail(f"--at {at!r} is not an ISO time like 2026-12-24T18:00 or 2026-12-24T18:00+01:00")
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(p.posts.zone if p.posts else "UTC"))
        when = when.astimezone(timezone.utc)

    async def go(ctx):
        await ctx.persona_row(p)
        return await ctx.planner(text_needed=not text).add(p, channel, when, text=text, fmt=fmt, approved=approved,
                                                             topic=topic)

    row = _run(go)
    out.print(f"post {row.id}: {row.status}, {_local(row, '%Y-%m-%d %H:%M')} on {row.channel}\n{row.text}",
              markup=False, highlight=False)


@posts_app.command("calendar")
def calendar_command(
    persona: str = typer.Argument(...),
    start: Optional[str] = typer.Option(None, "--from", help="The week's first day, YYYY-MM-DD (default: today)."),
) -> None:
    """A week of posts as a table: a column per day, in the plan's zone."""
    from zoneinfo import ZoneInfo

    p = _persona(_settings(), persona)
    zone = ZoneInfo(p.posts.zone if p.posts else "UTC")
    day0 = datetime.fromisoformat(start).date() if start else datetime.now(zone).date()
    begin = datetime.combine(day0, datetime.min.time(), zone)
    rows = _run(lambda ctx: _persona_posts(ctx, p.id, start=begin.astimezone(timezone.utc) - timedelta(hours=1),
                                           end=(begin + timedelta(days=8)).astimezone(timezone.utc), limit=10000))
    days = [day0 + timedelta(days=i) for i in range(7)]
    cells: dict = {d: [] for d in days}
    for post in rows:
        local = post.due_at.astimezone(zone)
        if local.date() in cells:
            cells[local.date()].append(f"{local:%H:%M} {post.format}\n({post.status})\n{post.channel}")
    t = Table(*[f"{d:%a %d %b}" for d in days], title=f"{p.name}: week of {day0:%d %b %Y} ({zone.key})", show_lines=True)
    t.add_row(*["\n".join(cells[d]) or "-" for d in days])
    out.print(t)


@posts_app.command("stats")
def stats_command(persona: Optional[str] = typer.Argument(None)) -> None:
    """How many posts are in each state, and the reactions the published ones got."""
    async def go(ctx):
        db_id = None
        if persona:
            p = ctx.registry.get(persona)
            db_id = await ctx.store.persona_id(p.id)
        counts = await ctx.posts.counts(db_id) if (db_id is not None or not persona) else {}
        published = await ctx.posts.list(persona_db_id=db_id, status="published", limit=100000) if counts else []
        return counts, published

    counts, published = _run(go)
    if not counts:
        out.print("No posts yet.", markup=False, highlight=False)
        return
    out.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())), markup=False, highlight=False)
    reactions: dict[str, int] = {}
    for post in published:
        for k, v in (post.reactions or {}).items():
            reactions[k] = reactions.get(k, 0) + int(v)
    if reactions:
        out.print("reactions: " + ", ".join(f"{k} {v}" for k, v in sorted(reactions.items(), key=lambda kv: -kv[1])),
                  markup=False, highlight=False)
