"""Videos in chats: ``/video [text]`` (the character says it on camera, in its own voice;
``/video note [text]`` as a round video note where the platform has them, ``/video selfie
[text]`` upright 9:16 as a phone films itself) and
``/animate`` as a photo's caption (the painting or statue in it speaks)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from persona.types import Reply

if TYPE_CHECKING:
    from persona.commands import Ask

log = logging.getLogger(__name__)

VIDEO_CAPTIONS = ("Hi! Just for you.", "Okay, I'm on camera!", "Recorded this one for you.")
ANIMATE_CAPTIONS = ("Look, they're talking!", "They had something to say!")
VIDEO_NO_PORTRAIT = "I can't film myself yet: nobody has given me a face on this server!"
VIDEO_FAILED = "My camera just gave up on me. Try asking again in a bit?"
NO_FACE = "I can't find a face in that picture. Send one where the face is clear and facing the camera?"
ANIMATE_NEEDS_PHOTO = "Send me the photo with /animate as its caption!"
ANIMATE_LINE = "Hello there! I've been waiting a very long time to say that."
STAND_IN = "(No voice of my own here yet, so that's a stand-in voice.)"


def _profile_dict(profile) -> dict | None:
    if profile is None:
        return None
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(profile).items()}


async def _submit(ask: Ask, portrait: str, text: str, caption: str, *, upload: str | None = None,
                  layout: str = "video") -> Reply:
    from generators.image.base import seed_for

    m, p = ask.manager, ask.persona
    if m.jobs is None:
        return await ask.say(next(c.unavailable for c in _commands() if c.name == "video"))
    profile = m.voice_profile(p)
    if profile is None:
        caption = f"{caption}\n{STAND_IN}"
    seed = seed_for(p.identity.seed, f"video|{text}")
    return await m.jobs.submit(
        persona_id=p.id, persona_db_id=ask.st.db_id, incoming=ask.incoming, msg=ask.msg, kind="video",
        params={"portrait": portrait, "text": text, "profile": _profile_dict(profile), "person_photo": bool(upload),
                "language": (profile.language if profile else None) or p.language or "en", "layout": layout,
                "seed": seed},
        caption=caption, text=text, seed=seed, upload=upload,
        failure={"failed": VIDEO_FAILED, "invalid": VIDEO_FAILED, "noface": NO_FACE, "unreadable": NO_FACE,
                 "unconfigured": VIDEO_FAILED},
    )


def _commands():
    from persona.commands import COMMANDS

    return COMMANDS


async def video(ask: Ask) -> Reply:
    """/video [text]: the text, or the character's last words here, said on camera."""
    m, p = ask.manager, ask.persona
    portrait = next((str(x) for x in p.identity.portraits if Path(x).is_file()), None)
    if portrait is None:
        return await ask.say(VIDEO_NO_PORTRAIT)
    text, layout = ask.arg, "video"
    first = text.split(maxsplit=1)[0].lower() if text.split() else ""
    if first == "note":  # a round video note where the platform has them
        text, layout = text[4:].strip(), "note" if ask.msg.platform == "telegram" else "video"
    elif first in ("selfie", "vertical"):  # 9:16, as a phone films itself
        text, layout = text[len(first):].strip(), "selfie"
    if not text:
        last = [h for h in await m.store.history(ask.incoming.conversation_id, 10, before_id=ask.incoming.message_id)
                if h.role == "assistant" and h.text]
        text = last[-1].text if last else (p.render(p.greetings[0], ask.user_name) if p.greetings else f"Hi, I'm {p.name}!")
    caption = VIDEO_CAPTIONS[ask.incoming.message_id % len(VIDEO_CAPTIONS)]
    return await _submit(ask, portrait, text[:600], caption, layout=layout)


async def animate(ask: Ask) -> Reply:
    """/animate as a photo's caption: the face in it (a painting, a statue) says the words."""
    from persona.media import keep_upload

    photo = next((a for a in ask.msg.attachments if a.kind == "image" and a.path), None)
    if photo is None:
        return await ask.say(ANIMATE_NEEDS_PHOTO)
    m = ask.manager
    try:
        upload = keep_upload(photo.path, m.jobs.uploads if m.jobs else None, str(ask.incoming.message_id))
    except OSError as exc:
        log.warning("/animate: the photo could not be kept for the job: %s", exc)
        return await ask.say(NO_FACE)
    caption = ANIMATE_CAPTIONS[ask.incoming.message_id % len(ANIMATE_CAPTIONS)]
    return await _submit(ask, upload, (ask.arg or ANIMATE_LINE)[:600], caption, upload=upload)
