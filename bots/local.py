"""The local adapters: the terminal chat, and a queue-backed chat for tests and scripts."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import getpass
import io
import os
import sys
import uuid
from typing import TextIO

from bots.adapter import Adapter
from persona.types import IncomingMessage, MediaFile, Reply


def local_user(configured: str | None = None) -> str:
    """Who is at the terminal: ``configured`` (``VCHAR_CHAT_USER``), else the login name."""
    try:
        return configured or os.environ.get("VCHAR_CHAT_USER") or getpass.getuser()
    except Exception:
        return "you"


class LineReader:
    """Lines from a stream without blocking the event loop and without a thread that
    outlives it: a pipe or terminal is watched by the loop itself, so Ctrl-C ends the chat
    at once (a thread stuck in ``input()`` would hold the process until Enter). Streams
    the loop cannot watch (a regular file, an in-memory buffer) never block, and are read
    directly."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._fd: int | None = None
        self._queue: asyncio.Queue[str | None] | None = None
        self._buffer = ""
        self._decoder = codecs.getincrementaldecoder(getattr(stream, "encoding", None) or "utf-8")(errors="replace")
        self._watching = False
        self._eof = False

    def _start(self) -> None:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        try:
            loop.add_reader(fd, self._readable)
        except (OSError, NotImplementedError, ValueError):  # a regular file (epoll refuses it) and the like
            return
        self._fd, self._queue, self._watching = fd, queue, True

    def _readable(self) -> None:
        assert self._fd is not None and self._queue is not None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._buffer += self._decoder.decode(b"", final=True)
            if self._buffer:
                self._queue.put_nowait(self._buffer)
                self._buffer = ""
            self._queue.put_nowait(None)
            self.close()
            return
        self._buffer += self._decoder.decode(data)
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._queue.put_nowait(line + "\n")

    async def readline(self) -> str | None:
        """The next line with its newline (the last one may lack it); None at end of input."""
        if self._eof:
            return None
        if self._queue is None:
            self._start()
        if self._queue is None:
            line = self.stream.readline()
            if not line:
                self._eof = True
            return line or None
        line = await self._queue.get()
        if line is None:
            self._eof = True
        return line

    def close(self) -> None:
        if self._watching and self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            self._watching = False


def describe_media(media: MediaFile) -> str:
    """How a finished file shows in the terminal: its kind, its path, and the length of audio."""
    extra = f", {media.duration:.1f} s" if media.duration else ""
    return f"[{media.kind}: {media.path}{extra}]"


class TerminalAdapter(Adapter):
    """Chat in the terminal. With a terminal: a prompt and a typing indicator. Without
    one (a pipe): exactly one line of output for every line of input: the reply folded
    onto one line (with the path of any picture or voice note it made), and an empty line
    for a blank input line or a message the character does not answer."""

    platform = "local"

    def __init__(
        self,
        persona: str | None = None,
        *,
        user: str | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
        char_name: str = "",
    ):
        super().__init__(persona)
        self.user = user or local_user()
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty() and self.stdout.isatty() if interactive is None else interactive
        self.char_name = char_name
        self.chat_id = f"terminal:{self.user}"
        self._console = None
        if self.interactive:
            from rich.console import Console

            self._console = Console(file=self.stdout)

    def working(self, chat_id: str):
        if self._console is not None:
            return self._typing()
        return super().working(chat_id)

    @contextlib.asynccontextmanager
    async def _typing(self):
        assert self._console is not None
        with self._console.status(f"[dim]{self.char_name or 'typing'} is typing…[/dim]", spinner="dots"):
            yield

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        if self._console is not None:
            from rich.markup import escape

            self._console.print(f"[bold magenta]{escape(self.char_name or 'them')}[/]: {escape(text)}")
        else:
            self._write_line(text)

    async def send_media(self, reply: Reply, media: MediaFile) -> None:
        if self._console is None:  # piped: folded into the reply's one line by send()
            return await super().send_media(reply, media)
        from rich.markup import escape

        if media.caption:
            self._console.print(f"[bold magenta]{escape(self.char_name or 'them')}[/]: {escape(media.caption)}")
        self._console.print(f"  [dim]{escape(describe_media(media))}[/dim]")

    async def send(self, reply: Reply) -> None:
        if self._console is not None:
            return await super().send(reply)
        parts = []
        for media in reply.media:
            parts.extend(x for x in (media.caption, describe_media(media)) if x)
        if reply.text:
            parts.append(reply.text)
        self._write_line(" ".join(parts))

    def _write_line(self, text: str) -> None:
        self.stdout.write(" ".join(part.strip() for part in text.splitlines() if part.strip()) + "\n")
        self.stdout.flush()

    def message(self, text: str) -> IncomingMessage:
        return IncomingMessage(
            platform=self.platform,
            chat_id=self.chat_id,
            user_id=self.user,
            user_name=self.user.capitalize() if self.user.islower() else self.user,
            text=text,
            message_id=uuid.uuid4().hex,
            persona=self.persona,
        )

    async def run(self) -> int:
        """Read until end of input (or /quit); returns the number of messages answered."""
        answered = 0
        reader = LineReader(self.stdin)
        if self._console is not None:
            self._console.print("[dim]Type a message, /help for commands, /quit, Ctrl-D or Ctrl-C to leave.[/dim]")
        try:
            while True:
                if self._console is not None:
                    self._console.print("[bold cyan]you[/]: ", end="")
                line = await reader.readline()
                if line is None:
                    if self._console is not None:
                        self._console.print()
                    break
                text = line.strip()
                if text in ("/quit", "/exit"):
                    break
                if not text:
                    if self._console is None:
                        self._write_line("")  # one line out for every line in
                    continue
                reply = await self.dispatch(self.message(text))
                if reply is not None:
                    answered += 1
                elif self._console is None:
                    self._write_line("")
        finally:
            reader.close()
        return answered


class QueueAdapter(Adapter):
    """An adapter whose network is two queues: push messages in, pop replies out."""

    platform = "queue"

    def __init__(self, persona: str | None = None):
        super().__init__(persona)
        self.outbox: asyncio.Queue[Reply] = asyncio.Queue()
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        self.sent.append((chat_id, text))

    async def send(self, reply: Reply) -> None:
        await super().send(reply)
        await self.outbox.put(reply)
