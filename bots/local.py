"""The local adapters: the terminal chat, and a queue-backed chat for tests and scripts."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import uuid
from typing import TextIO

from bots.adapter import Adapter
from persona.types import IncomingMessage, Reply


def local_user() -> str:
    try:
        return os.environ.get("VCHAR_CHAT_USER") or getpass.getuser()
    except Exception:
        return "you"


class TerminalAdapter(Adapter):
    """Chat in the terminal. With a terminal: a prompt and a typing indicator. Without
    one (a pipe): one reply per line of input, each on one line of output."""

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
            self.stdout.write(" ".join(text.split("\n")).strip() + "\n")
            self.stdout.flush()

    async def _read_line(self) -> str | None:
        if self._console is not None and self.stdin is sys.stdin:
            try:  # input() keeps line editing and history in a real terminal
                return await asyncio.to_thread(self._console.input, "[bold cyan]you[/]: ")
            except EOFError:
                return None
        line = await asyncio.to_thread(self.stdin.readline)
        return line if line else None

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
        if self._console is not None:
            self._console.print("[dim]Type a message, /help for commands, /quit or Ctrl-D to leave.[/dim]")
        while True:
            line = await self._read_line()
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            reply = await self.dispatch(self.message(text))
            if reply is not None:
                answered += 1
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
