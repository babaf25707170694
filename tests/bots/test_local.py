"""The terminal adapter, in both its modes, against the real manager."""

from __future__ import annotations

import io

from bots.local import QueueAdapter, TerminalAdapter
from generators.text.lite import LiteTextGenerator
from persona.manager import PersonaManager
from persona.registry import SAMPLES, PersonaRegistry


async def manager(store, embedder):
    m = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder)
    await m.start()
    return m


async def test_piped_mode_prints_one_line_per_reply(store, embedder):
    m = await manager(store, embedder)
    out = io.StringIO()
    term = TerminalAdapter("mira", user="zoe", stdin=io.StringIO("hello\n\n/help\ntell me a joke\n"), stdout=out, interactive=False)
    await term.start(m.handle)
    assert await term.run() == 3  # the blank line is skipped
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "/forget" in lines[1]  # the multi-line help is folded onto one line


async def test_interactive_mode_shows_typing_and_names(store, embedder):
    m = await manager(store, embedder)
    out = io.StringIO()
    term = TerminalAdapter("mira", user="zoe", stdin=io.StringIO("tell me a joke\n/quit\nnever read\n"), stdout=out,
                           interactive=True, char_name="Mira Vale")
    await term.start(m.handle)
    assert await term.run() == 1
    assert "Mira Vale: Why did the dumpling" in out.getvalue()


async def test_queue_adapter_carries_a_conversation(store, embedder):
    m = await manager(store, embedder)
    q = QueueAdapter("mira")
    await q.start(m.handle)
    from persona.types import IncomingMessage

    await q.dispatch(IncomingMessage(platform="queue", chat_id="c", user_id="u", text="/start", message_id="1", persona="mira"))
    reply = q.outbox.get_nowait()
    assert reply.text == PersonaRegistry([SAMPLES]).get("mira").greetings[0] and q.sent == [("c", reply.text)]
