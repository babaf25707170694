"""Every chat command, declared once, with its handler.

The help text, the media and admin lists, Telegram's command menu and Discord's slash
commands are all derived from :data:`COMMANDS`, and :func:`dispatch` runs a command
through it (who may use it, whether its backend is set up, its handler). A new command
is one entry here and one handler (media requests live in ``persona.requests``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from db.store import Incoming
from generators.text.base import to_second_person
from persona import requests, songs, videos
from persona.types import IncomingMessage, Reply

log = logging.getLogger(__name__)

UNKNOWN_COMMAND = "Hmm, I don't know /{name}. Try /help to see what I can do!"
ADMIN_ONLY = "That one's only for the people who run me, sorry!"
FORGOTTEN = "Done. I've let go of everything you told me and our whole chat. Nice to meet you... again?"
_COMMAND_WORD = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(slots=True)
class Ask:
    """One command (or media request) in a turn: who asked, where, for what."""

    manager: Any  # persona.manager.PersonaManager
    st: Any  # the manager's state for the persona
    incoming: Incoming
    msg: IncomingMessage
    name: str
    arg: str
    user_name: str

    @property
    def persona(self):
        return self.st.persona

    async def say(self, text: str) -> Reply:
        """Store ``text`` as the reply and return it."""
        return await self.manager._finish(self.st, self.incoming, self.msg, text)


Handler = Callable[[Ask], Awaitable["Reply | str"]]


async def _start(ask: Ask) -> str:
    p = ask.persona
    return p.render(p.greetings[0], ask.user_name) if p.greetings else f"Hi, I'm {p.name}!"


async def _help(ask: Ask) -> str:
    return HELP_TEXT + (ADMIN_HELP if ask.manager.is_admin(ask.persona, ask.msg) else "")


async def _about(ask: Ask) -> str:
    p = ask.persona
    about = p.render(p.description.strip(), ask.user_name) or f"I'm {p.name}."
    return f"{p.name}\n{about}"


async def memory(ask: Ask) -> str:
    rows = await ask.manager.store.list_memories(ask.st.db_id, ask.incoming.user_id, limit=12)
    name = ask.user_name
    if not rows:
        return f"Hmm, I don't think you've told me much about yourself yet, {name}. Tell me something?"
    lines = "\n".join(f"- {to_second_person(r.text, name)}" for r in rows)
    return f"Here's what I remember about you, {name}:\n{lines}\n(Say /forget and I'll let all of it go.)"


async def _forget(ask: Ask) -> Reply:
    await ask.manager.forget(ask.persona.id, ask.msg.platform, ask.msg.user_id)
    # Nothing of this exchange is stored: the person asked for it all to go.
    return Reply(text=FORGOTTEN, chat_id=ask.msg.chat_id, persona=ask.persona.id, reply_to_message_id=ask.msg.message_id)


async def _cancel(ask: Ask) -> str:
    from persona.media import CANCELLED, NOTHING_TO_CANCEL

    jobs = ask.manager.jobs
    n = await jobs.cancel(ask.msg, ask.persona.id) if jobs is not None else 0
    return CANCELLED if n else NOTHING_TO_CANCEL


async def _reload(ask: Ask) -> str:
    m = ask.manager
    m.registry.reload()
    for persona in m.registry:
        await m._state(persona)
    problems = "".join(f"\nnot loaded: {p.error}" for p in m.registry.problems)
    return f"Reloaded {len(m.registry)} personas: {', '.join(p.id for p in m.registry)}.{problems}"


async def _block(ask: Ask) -> str:
    m, name, platform = ask.manager, ask.name, ask.msg.platform
    if not ask.arg:
        return f"Usage: /{name} USER_ID (the person's {platform} id)"
    who = ask.arg.split()[0]
    uid = await m.store.find_user(platform, who)
    if uid is None or await m.store.relationship(ask.st.db_id, uid) is None:
        return f"I haven't met {platform} user {who}."
    await m.store.update_relationship(ask.st.db_id, uid, blocked=(name == "block"))
    return f"{'Blocked' if name == 'block' else 'Unblocked'} {platform} user {who}."


async def _stats(ask: Ask) -> str:
    m = ask.manager
    stats = await m.store.persona_stats(ask.st.db_id)
    line = (f"{ask.persona.name}: {stats['people']} people, {stats['messages']} messages, "
            f"{stats['memories']} memories, {stats['unanswered']} unanswered.")
    if m.jobs is not None:
        depth = await m.jobs.jobs.depth()
        line += " Jobs: " + (", ".join(f"{n} {what}" for what, n in sorted(depth.items())) or "none waiting") + "."
    return line


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str  # one line for the platform menus
    help: str  # the line in /help
    arg: str | None = None  # the optional argument's name
    arg_help: str = ""
    who: Literal["everyone", "admin"] = "everyone"
    rate: Literal["chat", "media"] = "chat"  # which per-person limit it spends
    unavailable: str = ""  # for media: what the character says where the backend is not set up
    caption_only: bool = False  # used as a photo's caption (no Discord slash command)
    aliases: tuple[str, ...] = ()
    handler: Handler | None = None  # None: not built yet (the ``unavailable`` line answers)
    needs: str | None = None  # the manager's backend it needs ("image", "voice", "music", "video")


COMMANDS: tuple[Command, ...] = (
    Command("start", "Say hello", "say hello again", handler=_start),
    Command("help", "What I can do", "this list", handler=_help),
    Command("persona", "Who I am", "who I am", handler=_about),
    Command("memory", "What I remember about you", "what I remember about you", aliases=("memories",), handler=memory),
    Command("forget", "Forget everything about you and our chat",
            "delete everything I remember about you and our chat history", handler=_forget),
    Command("selfie", "A selfie (if this host has it set up)", "a selfie of me, wherever you like", "scene",
            "Where or what the picture shows", rate="media",
            unavailable="I can't send pictures from here yet, my camera isn't set up on this server.",
            handler=requests.selfie, needs="image"),
    Command("voice", "A voice note (if this host has it set up)", "a voice note: these words, or my last ones", "text",
            "What I should say", rate="media",
            unavailable="I can't send voice notes here yet, nobody has given me a voice on this server.",
            handler=requests.voice_note, needs="voice"),
    Command("song", "A song (if this host has it set up)", "a short song I write for you", "style", "What kind of song",
            rate="media", unavailable="I'd love to make you a song, but my music studio isn't set up here yet.",
            handler=songs.song, needs="music"),
    Command("video", "A video (if this host has it set up)", "a short video of me talking (/video note: a round one, /video selfie: upright)",
            "text",
            "What the video is about", rate="media",
            unavailable="Videos aren't set up on this server yet, sorry! Words will have to do.",
            handler=videos.video, needs="video"),
    Command("art", "Send a photo with this caption: I redraw it in my style",
            "as a photo's caption: I redraw your photo in my style", "style", rate="media", caption_only=True,
            unavailable="I can't draw from here yet, my sketchbook isn't set up on this server.",
            handler=requests.redraw, needs="image"),
    Command("portrait", "Send a photo of a statue or painting with this caption: I bring it to life",
            "as a photo's caption: I bring a statue or painting to life", rate="media", caption_only=True,
            unavailable="I can't bring pictures to life here yet, my sketchbook isn't set up on this server.",
            handler=requests.redraw, needs="image"),
    Command("animate", "Send a photo of a painting or statue with this caption: it speaks",
            "as a photo's caption: the painting or statue in it speaks", "text", rate="media", caption_only=True,
            unavailable="Videos aren't set up on this server yet, sorry!", handler=videos.animate, needs="video"),
    Command("cancel", "Stop the picture or voice note I'm making for you", "stop what I'm making for you", handler=_cancel),
    Command("reload", "Re-read the persona files", "re-read the persona files", who="admin", handler=_reload),
    Command("block", "Stop answering a person", "stop answering a person", "id", "Their platform user id", who="admin",
            handler=_block),
    Command("unblock", "Answer a person again", "answer a person again", "id", "Their platform user id", who="admin",
            handler=_block),
    Command("stats", "People, messages, memories, jobs", "people, messages, memories and the job queue", who="admin",
            handler=_stats),
)

BY_NAME = {alias: c for c in COMMANDS for alias in (c.name, *c.aliases)}


def _line(c: Command) -> str:
    arg = "" if not c.arg else (f" {c.arg.upper()}" if c.who == "admin" else f" [{c.arg}]")
    return f"/{c.name}{arg} - {c.help}"


HELP_TEXT = "Just talk to me! Commands:\n" + "\n".join(_line(c) for c in COMMANDS if c.who == "everyone")
ADMIN_HELP = "\nFor the people who run me:\n" + "\n".join(_line(c) for c in COMMANDS if c.who == "admin")
MEDIA_COMMANDS = {c.name: c.unavailable for c in COMMANDS if c.rate == "media"}
ADMIN_COMMANDS = tuple(c.name for c in COMMANDS if c.who == "admin")
KNOWN_COMMANDS = frozenset(BY_NAME)


def platform_menu() -> tuple[tuple[str, str], ...]:
    """(name, description) for Telegram's command menu: what everyone may use."""
    return tuple((c.name, c.description) for c in COMMANDS if c.who == "everyone")


def slash_commands() -> dict[str, tuple[str, str | None, str]]:
    """Discord slash commands: name -> (description, option name, option description).
    Caption commands need a picture, which a slash command cannot carry."""
    return {c.name: (c.description[:100], c.arg, c.arg_help or c.help[:100])
            for c in COMMANDS if c.who == "everyone" and not c.caption_only}


async def dispatch(ask: Ask) -> Reply | None:
    """Run ``/name``: its handler, or the line for a command that is not for this person
    or not set up here. None: not a command word at all ("/shrug" is, "/ 2" is not), so
    the turn treats it as chat."""
    c = BY_NAME.get(ask.name)
    if c is None:
        if _COMMAND_WORD.fullmatch(ask.name):
            return await ask.say(UNKNOWN_COMMAND.format(name=ask.name))
        return None
    if c.who == "admin" and not ask.manager.is_admin(ask.persona, ask.msg):
        return await ask.say(ADMIN_ONLY)
    if c.handler is None or (c.needs and getattr(ask.manager, c.needs, None) is None):
        return await ask.say(c.unavailable)
    out = await c.handler(ask)
    return await ask.say(out) if isinstance(out, str) else out
