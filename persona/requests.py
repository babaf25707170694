"""Media requests: what a person asks the character to make (a selfie, a redrawn photo,
a voice note), said as a command or in plain words, turned into a job (or, for the
command line's own tools, made inside the turn).

Each handler takes a :class:`persona.commands.Ask` and returns the reply; every failure
is an in-character line, never an exception out of the turn.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from persona.outbox import media_record
from persona.types import MediaFile, Reply

if TYPE_CHECKING:
    from persona.commands import Ask

log = logging.getLogger(__name__)

PICTURE_REQUEST = re.compile(
    r"\b(send|show|give|take)\b[^.?!]{0,20}\b(pic|pics|picture|photo|selfie|snap)\b"
    r"(?:\s+of\s+(?:yourself|you))?(?:\s+(?P<scene>(?:at|in|on|with|while|by|from)\b[^.?!]{1,80}))?",
    re.I,
)
VOICE_REQUEST = re.compile(
    r"\b(send|give|record|leave)\b[^.?!]{0,20}\b(voice ?(note|message|memo|msg)|audio message)s?\b", re.I
)
SELFIE_CAPTIONS = (
    "Here you go! {scene}",
    "Took this just for you. {scene}",
    "Okay okay, one picture. {scene}",
)
SELFIE_REFUSED = "Hmm, no, I'm not sending that kind of picture. Ask me for something else?"
SELFIE_FAILED = "Ugh, my camera is acting up right now. Try asking again in a bit?"
SELFIE_NO_PORTRAIT = "I can't take selfies yet: nobody has given me a face on this server!"
VOICE_NONE = "I can't send voice notes yet: nobody has given me a voice on this server."
VOICE_FAILED = "My voice is gone for a moment, so text will have to do: {text}"
ART_NEEDS_PHOTO = "Send me the photo with /{name} as its caption!"
ART_UNREADABLE = "I couldn't open that picture, could you send it as a normal photo?"
ART_CAPTIONS = {
    "art": ("Here you are, the way I see it!", "I had fun with this one!", "Drawn just for you."),
    "portrait": ("Look, they're alive!", "As if they could step right out of the frame.", "Here they are, for real!"),
}
PORTRAIT_PROMPT = "lifelike photo portrait of a real person, natural skin, detailed, photographic"


def detect(manager, text: str) -> tuple[str, str] | None:
    """A media request in plain words ("send me a pic of you at the beach", "send me a
    voice note"): the command it means and its argument, where that backend is set up."""
    if manager.image is not None:
        asked = PICTURE_REQUEST.search(text)
        if asked:
            return "selfie", asked.group("scene") or ""
    if manager.voice is not None and VOICE_REQUEST.search(text):
        return "voice", ""  # its last words, spoken
    if getattr(manager, "music", None) is not None:
        from persona.songs import detect as song_topic

        topic = song_topic(text)
        if topic is not None:
            return "song", f"about {topic}" if topic else ""
    return None


async def selfie(ask: Ask) -> Reply:
    """A selfie in the persona's likeness, with a caption in its voice."""
    from generators.image import ImageRequest, seed_for, selfie_prompt

    p, scene = ask.persona, ask.arg
    ident = p.identity
    if not ident.portraits and ask.manager.image.name == "lite":
        return await ask.say(SELFIE_NO_PORTRAIT)
    request = ImageRequest(
        prompt=selfie_prompt(scene, appearance=ident.appearance, style=ident.style_prompt),
        references=tuple(ident.portraits[:1]),
        seed=seed_for(ident.seed, scene),
        safety=not p.nsfw,
        tags={"vchar:persona": p.id},
    )
    caption = SELFIE_CAPTIONS[request.seed % len(SELFIE_CAPTIONS)].format(scene=scene.capitalize()).strip()
    return await _picture(ask, request, "selfie", caption, unreadable=SELFIE_FAILED)


async def redraw(ask: Ask) -> Reply:
    """/art [style words] (the person's photo redrawn in the character's style) and
    /portrait [notes] (a statue or painting made lifelike): img2img on the photo that
    came with the message."""
    from generators.image import ImageRequest, seed_for

    p, name, arg = ask.persona, ask.name, ask.arg
    photo = next((a for a in ask.msg.attachments if a.kind == "image" and a.path), None)
    if photo is None:
        return await ask.say(ART_NEEDS_PHOTO.format(name=name))
    if name == "art":
        prompt = ", ".join(x for x in (arg or "in my art style", p.identity.style_prompt.strip()) if x)
        strength = 0.6
    else:
        prompt = PORTRAIT_PROMPT + (f", {arg}" if arg else "")
        strength = 0.55
    request = ImageRequest(
        prompt=prompt,
        mode="img2img",
        init_image=photo.path,
        strength=strength,
        seed=seed_for(p.identity.seed, f"{name}|{arg}"),
        safety=not p.nsfw,
        tags={"vchar:persona": p.id, "vchar:command": name},
    )
    captions = ART_CAPTIONS[name]
    return await _picture(ask, request, f"/{name}", captions[request.seed % len(captions)], unreadable=ART_UNREADABLE)


async def _picture(ask: Ask, request, what: str, caption: str, *, unreadable: str) -> Reply:
    """Queue the picture as a job, or (no job queue) make it here, record it as a media
    asset and reply with it; every failure is an in-character line (refused, unusable
    input, a backend that failed)."""
    from generators.image import ImageError, ImageInputError, ImageRefused

    m, p, incoming, msg = ask.manager, ask.persona, ask.incoming, ask.msg
    if m.jobs is not None:
        from persona.media import keep_upload

        upload = None
        if request.init_image:
            try:
                upload = keep_upload(request.init_image, m.jobs.uploads, str(incoming.message_id))
            except OSError as exc:
                log.warning("%s for %s: the photo could not be kept for the job: %s", what, p.id, exc)
                return await ask.say(unreadable)
            request = dataclasses.replace(request, init_image=upload)
        return await m.jobs.submit(
            persona_id=p.id, persona_db_id=ask.st.db_id, incoming=incoming, msg=msg, kind="image",
            params={"request": dataclasses.asdict(request)}, caption=caption, text=caption, seed=request.seed,
            failure={"refused": SELFIE_REFUSED, "unreadable": unreadable, "failed": SELFIE_FAILED,
                     "invalid": SELFIE_FAILED},
            upload=upload,
        )
    try:
        result = await m.image.generate(request)
    except ImageRefused as exc:
        log.info("%s for %s refused: %s", what, p.id, exc)
        return await ask.say(SELFIE_REFUSED)
    except ImageInputError as exc:
        log.info("%s for %s: unusable input: %s", what, p.id, exc)
        return await ask.say(unreadable)
    except ImageError as exc:
        log.error("%s for %s failed: %s", what, p.id, exc)
        return await ask.say(SELFIE_FAILED)
    except Exception:
        log.exception("image backend crashed on %s for %s", what, p.id)
        return await ask.say(SELFIE_FAILED)
    asset = await m.store.add_media_asset(
        persona_id=ask.st.db_id, kind="image", path=str(result.path), mime="image/png",
        generator=result.metadata.get("model") or m.image.name, parameters=dict(result.metadata), seed=result.seed,
    )
    media = MediaFile(kind="image", path=str(result.path), mime="image/png", caption=caption)
    rid = await m.store.store_reply(incoming.conversation_id, incoming.message_id, caption, media=[media_record(media, asset)])
    return Reply(text="", chat_id=msg.chat_id, persona=p.id, reply_to_message_id=msg.message_id, media=(media,),
                 message_db_id=rid)


async def voice_note(ask: Ask) -> Reply:
    """/voice [text]: the text, or the character's last words here, as voice notes."""
    from generators.voice.base import VoiceError

    m, p, incoming, msg = ask.manager, ask.persona, ask.incoming, ask.msg
    text = ask.arg
    if not text:
        last = [h for h in await m.store.history(incoming.conversation_id, 10, before_id=incoming.message_id)
                if h.role == "assistant" and h.text]
        text = last[-1].text if last else (p.render(p.greetings[0], ask.user_name) if p.greetings else f"Hi, I'm {p.name}!")
    profile = m.voice_profile(p)
    if profile is None:
        return await ask.say(VOICE_NONE)
    if m.jobs is not None:
        prof = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(profile).items()}
        failed = VOICE_FAILED.format(text=text)
        return await m.jobs.submit(
            persona_id=p.id, persona_db_id=ask.st.db_id, incoming=incoming, msg=msg, kind="voice",
            params={"text": text, "profile": prof, "language": profile.language or p.language,
                    "style": p.identity.voice.style},
            caption=None, text=text, seed=incoming.message_id,
            failure={"failed": failed, "invalid": failed, "unconfigured": VOICE_NONE},
        )
    try:
        notes = await m.voice.agenerate(text, profile, language=profile.language or p.language, style=p.identity.voice.style)
    except VoiceError as exc:
        log.error("voice note for %s failed: %s", p.id, exc)
        return await ask.say(VOICE_FAILED.format(text=text))
    except Exception:
        log.exception("voice backend crashed for %s", p.id)
        return await ask.say(VOICE_FAILED.format(text=text))
    files, records = [], []
    for note in notes:
        asset = await m.store.add_media_asset(
            persona_id=ask.st.db_id, kind="voice", path=str(note.path), mime=note.mime_type, generator=note.backend,
            parameters={"text": note.text, "language": note.language, "style": note.style or "",
                        "part": note.part, "parts": note.parts}, duration=note.duration,
        )
        files.append(MediaFile(kind="voice", path=str(note.path), mime=note.mime_type, duration=note.duration))
        records.append(media_record(files[-1], asset))
    rid = await m.store.store_reply(incoming.conversation_id, incoming.message_id, text, media=records)
    return Reply(text="", chat_id=msg.chat_id, persona=p.id, reply_to_message_id=msg.message_id,
                 media=tuple(files), message_db_id=rid)
