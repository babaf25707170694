"""Songs in chats: ``/song [style] [about ...]`` and "sing me a song about the rain".

The character writes the lyrics in character (a model backend writes a verse and a
chorus that rhyme, to the syllable counts the melody has room for; the lite text backend
fills a rhyming template from the topic and a word of the character's world), the
lyrics pass the same blocklists as everything else made on request, and the song is a
music job sung in the character's own voice, or played instrumentally where it has none
(never a clone without consent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from generators.image.base import seed_for
from generators.image.safety import blocked_term
from generators.music import MusicRequest, nearest_duration
from generators.music.lyrics import Lyrics, parse_lyrics, template_lyrics
from generators.music.theory import ALIASES, STYLES, nearest_style
from generators.text.base import ChatMessage, TextRequest
from persona.outbox import media_record
from persona.prompt import system_prompt
from persona.types import MediaFile, Reply

if TYPE_CHECKING:
    from persona.commands import Ask

log = logging.getLogger(__name__)

SONG_REQUEST = re.compile(
    r"\b(?:sing|write|make|compose|record)\b(?:\s+(?:me|us))?\s+(?:a\s+|another\s+|one\s+)?(?:little\s+|short\s+)?"
    r"(?:song|tune|ballad)\b(?:\s+(?:about|for|of|on)\s+(?P<topic>[^.?!\n]{1,80}))?"
    r"|\bsing\s+(?:me|us)\s+(?:something|anything)\b(?:\s+(?:about|for)\s+(?P<topic2>[^.?!\n]{1,80}))?",
    re.I,
)
SONG_DURATION = 30.0
SONG_REFUSED = "Hmm, I'm not writing a song about that. Give me another idea?"
SONG_FAILED = "My studio just crashed in the middle of the take! Ask me again in a bit?"
SONG_CAPTIONS = ("I wrote this one for you!", "Fresh out of my little studio!", "Here, I made you a song!")
_STYLE_WORDS = sorted(set(STYLES) | set(ALIASES), key=len, reverse=True)


def detect(text: str) -> str | None:
    """The topic (or "") of a song asked for in plain words; None if none was asked for."""
    m = SONG_REQUEST.search(text)
    if not m:
        return None
    return (m.group("topic") or m.group("topic2") or "").strip()


def split_arg(arg: str) -> tuple[str, str]:
    """``"lo-fi about the rain"`` -> ("lo-fi", "the rain"); ``"the rain"`` -> ("", "the rain")."""
    arg = arg.strip()
    m = re.match(r"^(?P<style>.*?)\s*\babout\b\s*(?P<topic>.*)$", arg, re.I)
    if m:
        return m.group("style").strip(), m.group("topic").strip()
    low = arg.lower()
    for w in _STYLE_WORDS:
        if low == w or low.startswith(w + " "):
            return arg[: len(w)], arg[len(w):].strip()
    return "", arg


def _hint(persona) -> str:
    """A word of the character's world for template lyrics: a phrase of its music style
    that is not a style name ("rainy night" of "lo-fi city pop, rainy night")."""
    for part in re.split(r"[,;/]", persona.identity.music_style or ""):
        part = part.strip()
        if part and nearest_style(part)[1] is not None and len(part.split()) <= 3:
            return part
    return ""


async def write_lyrics(ask: Ask, topic: str, style_name: str) -> Lyrics:
    """Lyrics in character: the model writes them, or the lite template fills them."""
    m, p = ask.manager, ask.persona
    seed = seed_for(p.identity.seed, f"song|{topic}")
    hint = _hint(p)
    if m.text.name == "lite":
        return template_lyrics(topic or "you", seed, hint=hint)
    instruction = (
        f"Write the lyrics of a short {style_name} song about {topic or 'us'}, in your own voice, for {ask.user_name}. "
        "Exactly this form: a line [verse], then 2 lines; a line [chorus], then 4 lines. Each line 6 to 10 syllables, "
        "lines in rhyming pairs, simple singable words. Answer with the lyrics only, no title, no comments."
    )
    request = TextRequest(
        messages=(ChatMessage("system", system_prompt(p, ask.user_name, include_examples=False)),
                  ChatMessage("user", instruction)),
        max_tokens=220, temperature=0.9, char_name=p.name, user_name=ask.user_name,
    )
    try:
        raw = await asyncio.wait_for(m.text.generate(request), m.config.generation_timeout)
    except Exception as exc:  # noqa: BLE001 - the template sings instead
        log.warning("lyrics for %s: the text backend failed (%s); using the template", p.id, exc)
        return template_lyrics(topic or "you", seed, hint=hint)
    lyr = parse_lyrics(raw)
    lines = sum(len(s.lines) for s in lyr.sections)
    if lines < 3 or not any(s.kind == "chorus" for s in lyr.sections) or blocked_term(lyr.text, safe=not p.nsfw):
        log.info("lyrics for %s were not usable (%d lines); using the template", p.id, lines)
        return template_lyrics(topic or "you", seed, hint=hint)
    if topic and len(topic.split()) <= 4:
        lyr.title = topic.title()
    return lyr


async def song(ask: Ask) -> Reply:
    """/song [style] [about topic]: a short song, sung by the character where it has a voice."""
    m, p, incoming, msg = ask.manager, ask.persona, ask.incoming, ask.msg
    style_text, topic = split_arg(ask.arg)
    if blocked_term(f"{style_text} {topic}", safe=not p.nsfw):
        return await ask.say(SONG_REFUSED)
    style, _ = nearest_style(style_text or p.identity.music_style or None)
    lyrics = await write_lyrics(ask, topic, style.name)
    profile = m.voice_profile(p)
    duration, _ = nearest_duration(SONG_DURATION)
    seed = seed_for(p.identity.seed, f"song|{style.name}|{topic}|{incoming.message_id}")
    cover = next((x for x in p.identity.portraits if Path(x).is_file()), None)
    request = MusicRequest(topic=topic, lyrics=lyrics.text, style=style.name, duration=duration, seed=seed,
                           title=lyrics.title, artist=p.name, language=p.language or "en", hint=_hint(p),
                           cover=str(cover) if cover else None, instrumental=profile is None)
    said = [SONG_CAPTIONS[seed % len(SONG_CAPTIONS)], f"\u266a {lyrics.title} ({style.name})"]
    if style_text and nearest_style(style_text)[1]:
        said.append(f"(I don't know {style_text!r} as a style, so I went with {style.name}.)")
    if profile is None:
        said.append("(Nobody has given me a singing voice here yet, so it's an instrumental.)")
    caption = "\n".join(said)
    if m.jobs is not None:
        params = dataclasses.asdict(dataclasses.replace(request, voice=None))
        if profile is not None:
            params["voice"] = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(profile).items()}
        return await m.jobs.submit(
            persona_id=p.id, persona_db_id=ask.st.db_id, incoming=incoming, msg=msg, kind="music",
            params={"request": params}, caption=caption, text=lyrics.text, seed=seed,
            failure={"failed": SONG_FAILED, "invalid": SONG_FAILED, "unconfigured": SONG_FAILED},
        )
    try:  # no job queue (the command line's own chat): made here
        result = await m.music.agenerate(dataclasses.replace(request, voice=profile))
    except Exception as exc:  # noqa: BLE001 - an in-character line, the error in the log
        log.error("song for %s failed: %s", p.id, exc)
        return await ask.say(SONG_FAILED)
    asset = await m.store.add_media_asset(
        persona_id=ask.st.db_id, kind="audio", path=str(result.path), mime=result.mime,
        generator=result.metadata.get("generator", "music"), parameters=result.metadata, seed=seed,
        duration=result.duration,
    )
    media = MediaFile(kind="audio", path=str(result.path), mime=result.mime, caption=caption, duration=result.duration,
                      title=result.title, performer=result.artist)
    rid = await m.store.store_reply(incoming.conversation_id, incoming.message_id, lyrics.text,
                                    media=[media_record(media, asset)])
    return Reply(text="", chat_id=msg.chat_id, persona=p.id, reply_to_message_id=msg.message_id, media=(media,),
                 message_db_id=rid)
