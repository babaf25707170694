"""The terminal adapter, in both its modes, against the real manager."""

from __future__ import annotations

import io

from bots.local import LineReader, QueueAdapter, TerminalAdapter
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
    assert await term.run() == 3  # the blank line is not a message
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # one line out for every line in
    assert lines[0] and lines[1] == "" and lines[3]
    assert "/forget" in lines[2]  # the multi-line help is folded onto one line


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


async def test_media_replies_show_their_file_paths_in_both_modes(tmp_path):
    """A picture or voice note the character made shows as its path, with the caption."""
    from persona.types import MediaFile, Reply

    picture = tmp_path / "selfie-beach.png"
    note = tmp_path / "hi.ogg"
    reply = Reply(text="", chat_id="terminal:zoe", persona="mira", media=(
        MediaFile(kind="image", path=str(picture), mime="image/png", caption="Sun's out!"),
    ))
    voice = Reply(text="", chat_id="terminal:zoe", persona="mira", media=(
        MediaFile(kind="voice", path=str(note), mime="audio/ogg", duration=2.5),
    ))
    piped = io.StringIO()
    term = TerminalAdapter("mira", user="zoe", stdin=io.StringIO(""), stdout=piped, interactive=False)
    await term.send(reply)
    await term.send(voice)
    assert piped.getvalue().splitlines() == [f"Sun's out! [image: {picture}]", f"[voice: {note}, 2.5 s]"]
    shown = io.StringIO()
    term = TerminalAdapter("mira", user="zoe", stdin=io.StringIO(""), stdout=shown, interactive=True, char_name="Mira")
    await term.send(reply)
    text = shown.getvalue()
    assert "Mira: Sun's out!" in text and str(picture) in text.replace("\n", "")


async def test_line_reader_reads_a_pipe_without_a_thread(tmp_path):
    """Lines from a pipe arrive through the event loop; the last one may lack its newline."""
    import os
    import threading

    r, w = os.pipe()
    os.write(w, "héllo\n\nlast".encode())
    os.close(w)
    threads = threading.active_count()
    with os.fdopen(r, encoding="utf-8") as stream:
        reader = LineReader(stream)
        got = [await reader.readline() for _ in range(4)]
    assert got == ["héllo\n", "\n", "last", None]
    assert threading.active_count() == threads
