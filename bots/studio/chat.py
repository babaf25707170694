"""The studio's chat: talk with a character as the operator (streamed, regenerated, edited),
or read any platform's conversation with it."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import RedirectResponse
from sse_starlette import EventSourceResponse

from bots.studio.app import Id, IdQuery, context, persona_or_404, render

log = logging.getLogger(__name__)
router = APIRouter()

PAGE = 50  # messages a page shows; older ones come a page at a time
_turns: set[asyncio.Task] = set()  # turns whose page went away still finish and are stored


async def _studio_conv(request: Request, persona) -> tuple[int, int | None]:
    """The persona's row id and its studio conversation's (None before the first message)."""
    ctx = context(request)
    pid = await ctx.manager.persona_db_id(persona.id)
    return pid, await ctx.store.conversation_id(pid, "studio", (await ctx.adapter(persona.id)).chat_id)


async def _thread(request: Request, persona, conv: int | None, before: int | None) -> dict:
    ctx = context(request)
    pid, studio_conv = await _studio_conv(request, persona)
    chosen = None
    if conv is not None:
        chosen = await ctx.store.conversation(conv)
        if chosen is None or chosen["persona_id"] != pid:
            raise HTTPException(404, "That conversation is not this character's.")
    elif studio_conv is not None:
        chosen = await ctx.store.conversation(studio_conv)
    messages = await ctx.store.page(chosen["id"], PAGE + 1, before) if chosen else []
    more = len(messages) > PAGE
    messages = messages[-PAGE:]
    editable = chosen is None or chosen["platform"] == "studio"
    last_reply = next((m["id"] for m in reversed(messages) if m["role"] == "assistant"), None)
    if messages and messages[-1]["role"] != "assistant":
        last_reply = None
    return dict(conv=chosen, messages=messages, more=more, editable=editable, last_reply=last_reply,
                studio_conv=studio_conv, older=messages[0]["id"] if more and messages else None)


@router.get("/chat")
async def chat_home(request: Request):
    return RedirectResponse(f"/chat/{context(request).registry.default_id}", status_code=303)


@router.get("/chat/{persona_id}")
async def chat_page(request: Request, persona_id: str, conv: IdQuery = None, before: IdQuery = None):
    persona = persona_or_404(request, persona_id)
    ctx = context(request)
    pid = await ctx.manager.persona_db_id(persona.id)
    convs = await ctx.store.conversations(pid)
    thread = await _thread(request, persona, conv, before)
    return render(request, "chat.html", section="chat", persona=persona, convs=convs, **thread)


@router.get("/chat/{persona_id}/messages")
async def chat_messages(request: Request, persona_id: str, conv: IdQuery = None, before: IdQuery = None):
    persona = persona_or_404(request, persona_id)
    thread = await _thread(request, persona, conv, before)
    return render(request, "_messages.html", section="chat", persona=persona, **thread)


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _streamed(run) -> EventSourceResponse:
    """A turn as server-sent events: ``token`` for each piece as it is written, then
    ``done`` with the stored reply (or ``error``). The turn finishes even if the page
    goes away; its reply is in the conversation when the page comes back."""
    queue: asyncio.Queue = asyncio.Queue()

    async def on_text(piece: str) -> None:
        queue.put_nowait(("token", piece))

    async def go() -> None:
        try:
            reply = await run(on_text)
            queue.put_nowait(("done", {"id": reply.message_db_id if reply else None,
                                       "text": reply.text if reply else "", "fallback": bool(reply and reply.fallback)}))
        except Exception as exc:  # noqa: BLE001 - the page shows it; the log has the rest
            log.exception("studio: a turn failed")
            queue.put_nowait(("error", f"{type(exc).__name__}: {exc}"))

    task = asyncio.create_task(go(), name="studio turn")
    _turns.add(task)
    task.add_done_callback(_turns.discard)

    async def events():
        while True:
            kind, data = await queue.get()
            yield {"event": kind, "data": json.dumps(data)}
            if kind != "token":
                return

    return EventSourceResponse(events(), ping=15)


@router.post("/chat/{persona_id}/send")
async def chat_send(request: Request, persona_id: str, text: str = Form(..., max_length=100_000)):
    persona = persona_or_404(request, persona_id)
    adapter = await context(request).adapter(persona.id)
    text = text.strip()
    if not text:
        raise HTTPException(422, "Say something first.")
    if _wants_stream(request):
        return _streamed(lambda on_text: adapter.converse(text, on_text))
    await adapter.converse(text)
    return RedirectResponse(f"/chat/{persona.id}", status_code=303)


async def _own_message(request: Request, persona, message_id: int) -> dict:
    """A message of the persona's studio conversation (the only one the studio changes)."""
    ctx = context(request)
    _, studio_conv = await _studio_conv(request, persona)
    row = await ctx.store.message(message_id)
    if row is None or studio_conv is None or row["conversation_id"] != studio_conv:
        raise HTTPException(404, "That message is not in the studio's conversation with this character.")
    return row


@router.post("/chat/{persona_id}/regenerate/{reply_id}")
async def chat_regenerate(request: Request, persona_id: str, reply_id: Id):
    persona = persona_or_404(request, persona_id)
    await _own_message(request, persona, reply_id)
    ctx = context(request)
    adapter = await ctx.adapter(persona.id)

    async def run(on_text=None):
        reply = await ctx.manager.regenerate(persona.id, reply_id, on_text=on_text)
        if reply is None:
            raise ValueError("only the last reply can be written again")
        await adapter.deliver(reply)
        return reply

    if _wants_stream(request):
        return _streamed(run)
    try:
        await run()
    except ValueError as exc:
        raise HTTPException(409, f"Not written again: {exc}.") from None
    return RedirectResponse(f"/chat/{persona.id}", status_code=303)


@router.post("/chat/{persona_id}/choose/{reply_id}")
async def chat_choose(request: Request, persona_id: str, reply_id: Id):
    persona = persona_or_404(request, persona_id)
    row = await _own_message(request, persona, reply_id)
    if row["role"] != "assistant" or not await context(request).store.choose_alternative(reply_id):
        raise HTTPException(409, "That is not one of a reply's alternatives.")
    return await _after_change(request, persona)


@router.post("/chat/{persona_id}/edit/{message_id}")
async def chat_edit(request: Request, persona_id: str, message_id: Id, text: str = Form(..., max_length=100_000)):
    persona = persona_or_404(request, persona_id)
    await _own_message(request, persona, message_id)
    if not text.strip():
        raise HTTPException(422, "A message cannot be empty: delete it instead.")
    await context(request).store.edit_message(message_id, text.strip())
    return await _after_change(request, persona)


@router.post("/chat/{persona_id}/delete/{message_id}")
async def chat_delete(request: Request, persona_id: str, message_id: Id):
    persona = persona_or_404(request, persona_id)
    await _own_message(request, persona, message_id)
    await context(request).store.delete_message(message_id)
    return await _after_change(request, persona)


async def _after_change(request: Request, persona):
    if request.headers.get("hx-request"):
        thread = await _thread(request, persona, None, None)
        return render(request, "_messages.html", section="chat", persona=persona, **thread)
    return RedirectResponse(f"/chat/{persona.id}", status_code=303)


@router.get("/chat/{persona_id}/events")
async def chat_events(request: Request, persona_id: str):
    """What happens in this character's studio chat while the page is open: a reply was
    delivered (``changed``), a job's progress on its acknowledgement, what it is making."""
    persona = persona_or_404(request, persona_id)
    hub = context(request).hub
    topic = f"chat:{persona.id}"
    queue = hub.listen(topic)

    async def events():
        try:
            while True:
                event = await queue.get()
                yield {"event": event["type"], "data": json.dumps(event)}
        finally:
            hub.leave(topic, queue)

    return EventSourceResponse(events(), ping=15)
