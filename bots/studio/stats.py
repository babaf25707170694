"""The studio's stats page: a character's headline numbers, its messages and new people
per day (bar charts drawn server-side as SVG), and where its people are."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from bots.studio.app import context, persona_or_404, render

router = APIRouter()


@router.get("/stats")
async def stats_home(request: Request):
    return RedirectResponse(f"/stats/{context(request).registry.default_id}", status_code=303)


@router.get("/stats/{persona_id}")
async def stats_page(request: Request, persona_id: str, days: int = Query(30, ge=1, le=366)):
    persona = persona_or_404(request, persona_id)
    ctx = context(request)
    pid = await ctx.manager.persona_db_id(persona.id)
    today = datetime.now(timezone.utc).date()
    first = today - timedelta(days=days - 1)
    counts = await ctx.store.daily_counts(pid, datetime.combine(first, time(), timezone.utc))
    series = []
    for i in range(days):
        d = first + timedelta(days=i)
        c = counts.get(d.isoformat(), {})
        series.append({"day": d.isoformat(), "label": f"{d:%d %b}", "received": c.get("received", 0),
                       "sent": c.get("sent", 0), "people": c.get("people", 0)})
    totals = {k: sum(p[k] for p in series) for k in ("received", "sent", "people")}
    platforms = sorted((await ctx.store.people_by_platform(pid)).items(), key=lambda kv: (-kv[1], kv[0]))
    return render(request, "stats.html", section="stats", persona=persona, days=days, series=series, totals=totals,
                  headline=await ctx.store.persona_stats(pid), platforms=platforms, first=first.isoformat(),
                  today=today.isoformat())
