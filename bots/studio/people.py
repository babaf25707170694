"""The studio's people pages: who a character knows, what it remembers of each, and
forgetting a person (the same deletion as the /forget command)."""

from __future__ import annotations


from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import RedirectResponse

from bots.studio.app import Id, back as _back, page as _page, context, persona_or_404

router = APIRouter()

PAGE = 200  # people a page lists



def _fact(f) -> str:
    if isinstance(f, dict):
        if "kind" in f and "value" in f:
            return f"{f['kind']}: {f['value']}"
        return ", ".join(f"{k}: {v}" for k, v in f.items())
    return str(f)


def _known_as(facts) -> str | None:
    """The name the person gave (the character calls them so), if they said one."""
    for f in facts or []:
        if isinstance(f, dict) and f.get("kind") == "name" and f.get("value"):
            return str(f["value"])
    return None


def _who(person: dict) -> str:
    return _known_as(person.get("facts")) or person["display_name"] or person["platform_user_id"]


async def _person(request: Request, persona, user_id: int) -> tuple[int, dict]:
    ctx = context(request)
    pid = await ctx.manager.persona_db_id(persona.id)
    person = await ctx.store.person(pid, user_id)
    if person is None:
        raise HTTPException(404, f"{persona.name} does not know anyone with the id {user_id}.")
    return pid, person


@router.get("/people")
async def people_home(request: Request):
    return RedirectResponse(f"/people/{context(request).registry.default_id}", status_code=303)


@router.get("/people/{persona_id}")
async def people_page(request: Request, persona_id: str, page: Annotated[int, Query(ge=0, le=100_000)] = 0):
    persona = persona_or_404(request, persona_id)
    ctx = context(request)
    pid = await ctx.manager.persona_db_id(persona.id)
    page = max(0, page)
    rows = [{**r, "who": _who(r)} for r in await ctx.store.people(pid, limit=PAGE + 1, offset=page * PAGE)]
    return _page(request, "people.html", section="people", persona=persona, people=rows[:PAGE],
                 more=len(rows) > PAGE, page=page)


@router.get("/people/{persona_id}/{user_id}")
async def person_page(request: Request, persona_id: str, user_id: Id):
    persona = persona_or_404(request, persona_id)
    ctx = context(request)
    pid, person = await _person(request, persona, user_id)
    memories = await ctx.store.list_memories(pid, user_id, limit=500)
    facts = [_fact(f) for f in person.get("facts") or []]
    return _page(request, "person.html", section="people", persona=persona, person=person, facts=facts,
                 memories=memories, who=_who(person))


@router.post("/people/{persona_id}/{user_id}/forget")
async def person_forget(request: Request, persona_id: str, user_id: Id):
    persona = persona_or_404(request, persona_id)
    _, person = await _person(request, persona, user_id)
    who = _who(person)
    counts = await context(request).manager.forget(persona.id, person["platform"], person["platform_user_id"])
    if counts is None:
        return _back(request, f"/people/{persona.id}", f"{persona.name} had already forgotten {who}.", bad=True)
    return _back(request, f"/people/{persona.id}",
                 f"{persona.name} forgot {who} ({person['platform']}): {counts.get('messages', 0)} messages, "
                 f"{counts.get('replies', 0)} replies, {counts.get('memories', 0)} memories and "
                 f"{counts.get('media', 0)} media files deleted.")


@router.post("/people/{persona_id}/{user_id}/memories/{memory_id}/erase")
async def memory_erase(request: Request, persona_id: str, user_id: Id, memory_id: Id):
    persona = persona_or_404(request, persona_id)
    _, person = await _person(request, persona, user_id)
    back = f"/people/{persona.id}/{user_id}"
    if not await context(request).manager.forget_memory(persona.id, user_id, memory_id):
        return _back(request, back, "That memory was already gone.", bad=True)
    return _back(request, back, f"{persona.name} no longer remembers that about {_who(person)}.")
