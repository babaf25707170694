"""Every chat command, declared once.

The manager's help text and its media and admin lists, Telegram's command menu and
Discord's slash commands are all derived from :data:`COMMANDS`, so a new command is one
entry here (and its handling in the manager).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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


COMMANDS: tuple[Command, ...] = (
    Command("start", "Say hello", "say hello again"),
    Command("help", "What I can do", "this list"),
    Command("persona", "Who I am", "who I am"),
    Command("memory", "What I remember about you", "what I remember about you", aliases=("memories",)),
    Command("forget", "Forget everything about you and our chat",
            "delete everything I remember about you and our chat history"),
    Command("selfie", "A selfie (if this host has it set up)", "a selfie of me, wherever you like", "scene",
            "Where or what the picture shows", rate="media",
            unavailable="I can't send pictures from here yet, my camera isn't set up on this server."),
    Command("voice", "A voice note (if this host has it set up)", "a voice note: these words, or my last ones", "text",
            "What I should say", rate="media",
            unavailable="I can't send voice notes here yet, nobody has given me a voice on this server."),
    Command("song", "A song (if this host has it set up)", "a short song I write for you", "style", "What kind of song",
            rate="media", unavailable="I'd love to make you a song, but my music studio isn't set up here yet."),
    Command("video", "A video (if this host has it set up)", "a short video of me talking", "text",
            "What the video is about", rate="media",
            unavailable="Videos aren't set up on this server yet, sorry! Words will have to do."),
    Command("art", "Send a photo with this caption: I redraw it in my style",
            "as a photo's caption: I redraw your photo in my style", "style", rate="media", caption_only=True,
            unavailable="I can't draw from here yet, my sketchbook isn't set up on this server."),
    Command("portrait", "Send a photo of a statue or painting with this caption: I bring it to life",
            "as a photo's caption: I bring a statue or painting to life", rate="media", caption_only=True,
            unavailable="I can't bring pictures to life here yet, my sketchbook isn't set up on this server."),
    Command("cancel", "Stop the picture or voice note I'm making for you", "stop what I'm making for you"),
    Command("reload", "Re-read the persona files", "re-read the persona files", who="admin"),
    Command("block", "Stop answering a person", "stop answering a person", "id", "Their platform user id", who="admin"),
    Command("unblock", "Answer a person again", "answer a person again", "id", "Their platform user id", who="admin"),
    Command("stats", "People, messages, memories, jobs", "people, messages, memories and the job queue", who="admin"),
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
