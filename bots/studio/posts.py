"""The studio's posts pages: the content calendar (a week or a month, in the plan's zone)
and one post with the operator's actions: approve, reject, write again, edit the text.

The allowed transitions are the ones the command line (``vchar posts``) and the operators'
DM buttons (bots.service.PostApprovals) allow; the table refuses the rest atomically."""

from __future__ import annotations

import calendar as cal
import mimetypes
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from bots.studio.app import Id, Index, back as _back, page as _page, context, persona_or_404
from bots.studio.security import inside

router = APIRouter()

# what each action may change, as `vchar posts` (approve, reject, edit) and the DM buttons
# (regenerate) allow it
FROM = {
    "approve": ("pending", "draft"),
    "reject": ("draft", "pending", "approved", "failed", "unconfirmed", "missed"),
    "regenerate": ("pending", "approved", "draft"),
    "edit": ("draft", "pending", "approved", "failed", "rejected", "missed"),
}
DONE = {"approve": "approved", "reject": "rejected", "regenerate": "written again", "edit": "edited"}
MAX_TEXT = 10_000



def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:  # noqa: BLE001 - an old row's zone: UTC
        return ZoneInfo("UTC")


def _plan_zone(persona) -> ZoneInfo:
    return _zone(persona.posts.zone if persona.posts else "UTC")


def _where(post) -> str:
    """The chat, a webhook's secret token left out."""
    chat = str(post.chat_id or "")
    if post.platform == "discord-webhook":
        return chat.rsplit("/", 1)[0] + "/***"
    return chat


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@router.get("/posts")
async def posts_home(request: Request):
    return RedirectResponse(f"/posts/{context(request).registry.default_id}", status_code=303)


@router.get("/posts/{persona_id}")
async def posts_calendar(request: Request, persona_id: str, view: Literal["week", "month"] = "week",
                         day: date | None = None):
    persona = persona_or_404(request, persona_id)
    ctx = context(request)
    zone = _plan_zone(persona)
    today = datetime.now(zone).date()
    day = day or today
    if not date(2, 1, 1) <= day <= date(9998, 12, 31):  # a month either side must still be a date
        raise HTTPException(422, "That day is too far away for the calendar.")
    if view == "month":
        first = day.replace(day=1)
        last = first.replace(day=cal.monthrange(first.year, first.month)[1])
        start, end = first - timedelta(days=first.weekday()), last + timedelta(days=6 - last.weekday())
        prev, next_ = (first - timedelta(days=1)).replace(day=1), last + timedelta(days=1)
        title = f"{first:%B %Y}"
    else:
        first = start = day - timedelta(days=day.weekday())
        end = last = start + timedelta(days=6)
        prev, next_ = day - timedelta(days=7), day + timedelta(days=7)
        title = f"Week of {start:%d %b %Y}"
    pid = await ctx.manager.persona_db_id(persona.id)
    since = datetime.combine(start, time(), zone).astimezone(timezone.utc)
    until = datetime.combine(end + timedelta(days=1), time(), zone).astimezone(timezone.utc)
    rows = await ctx.posts.list(persona_db_id=pid, start=since, end=until, limit=10_000)
    cells: dict[date, list[dict]] = {}
    for post in rows:
        local = post.due_at.astimezone(zone)
        cells.setdefault(local.date(), []).append(
            {"id": post.id, "time": f"{local:%H:%M}", "channel": post.channel, "status": post.status,
             "format": post.format, "text": _short(post.text)})
    weeks, d = [], start
    while d <= end:
        weeks.append([{"date": x, "iso": x.isoformat(),
                       "label": f"{x:%d %b}" if x.day == 1 or x == start else f"{x:%d}", "other": not (first <= x <= last), "today": x == today, "posts": cells.get(x, [])}
                      for x in (d + timedelta(days=i) for i in range(7))])
        d += timedelta(days=7)
    counts = Counter(p.status for p in rows)
    return _page(request, "posts.html", section="posts", persona=persona, view=view, weeks=weeks, title=title,
                 zone=zone.key, counts=sorted(counts.items()), total=len(rows), prev=prev.isoformat(),
                 next=next_.isoformat(), today=today.isoformat(), day=day.isoformat(),
                 weekdays=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])


# -- one post --------------------------------------------------------------------------------

async def _post(request: Request, post_id: int):
    post = await context(request).posts.get(post_id)
    if post is None:
        raise HTTPException(404, f"There is no post {post_id}.")
    return post


def _persona_of(request: Request, post):
    try:
        return context(request).registry.get(str(post.content.get("persona")))
    except LookupError:
        return None


def _show(request: Request, post, status_code: int = 200, **values):
    persona = _persona_of(request, post)
    zone = _zone(post.zone)
    media = [{"index": i, "kind": str(f.get("kind") or "file"), "name": Path(str(f.get("path") or "")).name,
              "caption": f.get("caption") or ""}
             for i, f in enumerate(post.content.get("media") or []) if isinstance(f, dict)]
    allowed = {a for a, states in FROM.items() if post.status in states}
    if persona is None:
        allowed.discard("regenerate")
    local = post.due_at.astimezone(zone)
    return _page(request, "post.html", status_code=status_code, section="posts", persona=persona, post=post,
                 when=f"{local:%a %d %b %Y %H:%M} {post.zone or 'UTC'}", when_utc=f"{post.due_at:%Y-%m-%d %H:%M} UTC",
                 week=local.date().isoformat(), where=_where(post), media=media, allowed=allowed,
                 reactions=sorted((post.reactions or {}).items(), key=lambda kv: -_int(kv[1])), **values)


def _int(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _refused(request: Request, post, action: str, why: str | None = None):
    """The post is as it was: its page, saying why (409)."""
    states = " or ".join(FROM[action])
    message = why or (f"Post {post.id} is {post.status}: it can be {DONE[action]} only when it is {states}. "
                      "Nothing changed.")
    return _show(request, post, status_code=409, flash=message, bad=True)


@router.get("/posts/item/{post_id}")
async def post_page(request: Request, post_id: Id):
    return _show(request, await _post(request, post_id))


@router.get("/posts/item/{post_id}/media/{index}")
async def post_media(request: Request, post_id: Id, index: Index):
    post = await _post(request, post_id)
    files = [f for f in post.content.get("media") or [] if isinstance(f, dict)]
    path = inside(str(files[index].get("path") or ""), context(request).roots()) if 0 <= index < len(files) else None
    if path is None:
        raise HTTPException(404, "That file is gone.")
    mime = files[index].get("mime") or mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return FileResponse(path, media_type=mime)


@router.post("/posts/item/{post_id}/approve")
async def post_approve(request: Request, post_id: Id):
    post = await _post(request, post_id)
    row = await context(request).posts.change(post_id, from_states=FROM["approve"], status="approved",
                                              approved_by="studio")
    if row is None:
        return _refused(request, await _post(request, post_id), "approve")
    return _back(request, f"/posts/item/{post_id}", f"Post {post_id} approved: it goes out on {post.channel} on time.")


@router.post("/posts/item/{post_id}/reject")
async def post_reject(request: Request, post_id: Id):
    await _post(request, post_id)
    row = await context(request).posts.change(post_id, from_states=FROM["reject"], status="rejected")
    if row is None:
        return _refused(request, await _post(request, post_id), "reject")
    return _back(request, f"/posts/item/{post_id}", f"Post {post_id} rejected: it will not be posted.")


@router.post("/posts/item/{post_id}/regenerate")
async def post_regenerate(request: Request, post_id: Id):
    ctx = context(request)
    post = await _post(request, post_id)
    if post.status not in FROM["regenerate"]:
        return _refused(request, post, "regenerate")
    persona = _persona_of(request, post)
    if persona is None:
        return _refused(request, post, "regenerate",
                        f"Post {post_id}'s character ({post.content.get('persona')}) is gone: nothing changed.")
    row = await ctx.planner.regenerate(persona, post)
    if row is None:  # it moved on meanwhile (published, rejected elsewhere)
        return _refused(request, await _post(request, post_id), "regenerate")
    return _back(request, f"/posts/item/{post_id}", f"Post {post_id} written again: it is {row.status} now.")


@router.post("/posts/item/{post_id}/edit")
async def post_edit(request: Request, post_id: Id, text: str = Form("", max_length=MAX_TEXT)):
    post = await _post(request, post_id)
    if not text.strip():
        return _show(request, post, status_code=422, flash="The text is empty: nothing changed.", bad=True)
    content = {**post.content, "text": text.strip(), "generator": "operator"}
    row = await context(request).posts.set_content(post_id, content, from_states=FROM["edit"])
    if row is None:
        return _refused(request, await _post(request, post_id), "edit")
    return _back(request, f"/posts/item/{post_id}", f"Post {post_id} edited ({row.status}).")
