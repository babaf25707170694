"""Job runners: a job's parameters in, files and their metadata out.

Parameters are plain JSON (they cross machines through the jobs table): an image job
carries an ``ImageRequest`` as a dict, a voice job the text and the voice profile (a
sample path under the shared media root and its consent record). A runner knows nothing
of personas or chats; the asking side turns the result into a reply.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from generators.jobs import JobInputError, Progress, Runner


def image_runner(backend) -> Runner:
    from generators.image import ImageError, ImageInputError, ImageRefused, ImageRequest

    fields = {f.name for f in dataclasses.fields(ImageRequest)}

    async def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        raw = params.get("request")
        if not isinstance(raw, dict) or not set(raw) <= fields:
            raise JobInputError(f"an image job needs a 'request' with the fields of ImageRequest, got {raw!r}"[:300])
        for k in ("references", "size"):
            if k in raw and isinstance(raw[k], list):
                raw[k] = tuple(raw[k])
        request = ImageRequest(**raw)
        await progress(0.1, "drawing")
        try:
            result = await backend.generate(request)
        except ImageRefused as exc:
            raise JobInputError(str(exc), "refused") from exc
        except ImageInputError as exc:
            raise JobInputError(str(exc), "unreadable") from exc
        except ImageError:
            raise
        await progress(0.95, "saving")
        return {"files": [{"kind": "image", "path": str(result.path), "mime": "image/png", "seed": result.seed,
                           "generator": result.metadata.get("model") or backend.name,
                           "metadata": dict(result.metadata)}]}

    return run


def voice_runner(generator) -> Runner:
    from generators.voice.base import ConsentError, VoiceProfile

    async def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise JobInputError("a voice job needs the text to speak")
        try:
            profile = VoiceProfile(**params["profile"]) if params.get("profile") else None
        except (TypeError, ConsentError) as exc:
            raise JobInputError(f"the voice profile is not usable: {exc}", "unconfigured") from exc
        await progress(0.1, "recording")
        notes = await generator.agenerate(text, profile, language=params.get("language"), style=params.get("style"))
        await progress(0.95, "saving")
        return {"files": [{"kind": "voice", "path": str(n.path), "mime": n.mime_type, "duration": n.duration,
                           "generator": n.backend,
                           "metadata": {"text": n.text, "language": n.language, "style": n.style or "",
                                        "part": n.part, "parts": n.parts}} for n in notes]}

    return run


def music_runner(backend) -> Runner:
    """A song: ``params["request"]`` holds a ``MusicRequest`` as a dict (its ``voice`` a
    VoiceProfile as a dict, checked like a voice job's). The cover (the character's
    portrait) becomes the small JPEG Telegram shows with the song."""
    from generators.music import MusicError, MusicInputError, MusicRequest
    from generators.voice.base import ConsentError, VoiceProfile

    fields = {f.name for f in dataclasses.fields(MusicRequest)}

    async def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        raw = params.get("request")
        if not isinstance(raw, dict) or not set(raw) <= fields:
            raise JobInputError(f"a music job needs a 'request' with the fields of MusicRequest, got {raw!r}"[:300])
        raw = dict(raw)
        if raw.get("voice"):
            try:
                raw["voice"] = VoiceProfile(**raw["voice"])
            except (TypeError, ConsentError) as exc:
                raise JobInputError(f"the voice profile is not usable: {exc}", "unconfigured") from exc
        request = MusicRequest(**raw)
        await progress(0.02, "writing")
        try:
            song = await backend.agenerate(request, progress=progress)
        except MusicInputError as exc:
            raise JobInputError(str(exc)) from exc
        except MusicError:
            raise
        await progress(0.97, "saving")
        from generators.video.mp4 import thumb_path

        thumb = cover_thumbnail(request.cover, thumb_path(song.path)) if request.cover else None
        return {"files": [{"kind": "audio", "path": str(song.path), "mime": song.mime, "duration": song.duration,
                           "title": song.title, "performer": song.artist, "thumbnail": thumb,
                           "generator": song.metadata.get("generator", backend.name), "seed": request.seed,
                           "metadata": song.metadata}]}

    return run


def cover_thumbnail(image: str, out) -> str | None:
    """A square JPEG of at most 320 px and under 200 kB (what Telegram takes as a thumbnail)."""
    from pathlib import Path

    from PIL import Image, ImageOps

    try:
        with Image.open(image) as im:
            im = ImageOps.fit(im.convert("RGB"), (320, 320))
            out = Path(out)
            for quality in (85, 70, 50):
                im.save(out, "JPEG", quality=quality)
                if out.stat().st_size < 200_000:
                    return str(out)
    except OSError:
        return None
    return None


def video_runner(video, voice) -> Runner:
    """A talking clip: ``params`` hold the portrait (a path under the media root), the text,
    the voice profile (or None: espeak-ng's own voice), the layout ("video", or "note" for a
    round Telegram video note), size, fps and seed. ``voice`` is the service's
    VoiceGenerator (its backend speaks)."""
    import asyncio
    import hashlib
    from pathlib import Path

    from generators.video import VideoError, VideoInputError
    from generators.voice.base import ConsentError, VoiceProfile

    async def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        text, portrait = params.get("text"), params.get("portrait")
        if not isinstance(text, str) or not text.strip() or not isinstance(portrait, str):
            raise JobInputError("a video job needs the text and the portrait")
        if not Path(portrait).is_file():
            raise JobInputError(f"the portrait {portrait} is not there", "unreadable")
        try:
            profile = VoiceProfile(**params["profile"]) if params.get("profile") else None
        except (TypeError, ConsentError) as exc:
            raise JobInputError(f"the voice profile is not usable: {exc}", "unconfigured") from exc
        backend = voice.backend
        layout = params.get("layout") or "video"
        if layout == "news":
            return await _news(params, portrait, profile, backend, progress)
        await progress(0.1, "recording")
        audio = await asyncio.to_thread(backend.synthesize, text, profile, language=params.get("language") or "en")
        await progress(0.4, "filming")
        frame = {"video": "square", "square": "square", "selfie": "selfie", "note": "note"}.get(layout)
        if frame is None:
            raise JobInputError(f"unknown video layout {layout!r}")
        size = int(params.get("size") or (384 if layout == "note" else 512))
        key = hashlib.sha256(f"{portrait}|{text}|{layout}|{size}|{params.get('seed')}".encode()).hexdigest()[:20]
        try:
            meta = await asyncio.to_thread(video.make, portrait, audio, backend.sample_rate, size=size,
                                           fps=float(params.get("fps") or 25), seed=int(params.get("seed") or 0),
                                           name=f"clip-{key}", cache=not params.get("person_photo"), layout=frame)
        except VideoInputError as exc:
            raise JobInputError(str(exc), "noface" if "face" in str(exc) else "unreadable") from exc
        except VideoError:
            raise
        await progress(0.95, "saving")
        faces = int(meta.get("faces_found") or 1)
        note = f"({faces} faces in that picture: the biggest one did the talking.)" if faces > 1 else None
        return {"files": [{"kind": "video_note" if layout == "note" else "video", "path": meta["path"], "note": note,
                           "mime": "video/mp4", "duration": meta["duration"], "width": meta["width"],
                           "height": meta["height"], "thumbnail": meta["thumbnail"], "generator": meta["generator"],
                           "seed": meta["seed"], "metadata": {"text": text, "fps": meta["fps"],
                                                              "faces_found": meta["faces_found"]}}]}

    async def _news(params, portrait, profile, backend, progress) -> dict[str, Any]:
        """A news bulletin (a scheduled news post): the anchor reads ``params["items"]``."""
        from generators.video.news import NewsItem, news_video

        raw = params.get("items")
        if not isinstance(raw, list) or not raw:
            raise JobInputError("a news bulletin needs its items")
        items = [NewsItem(str(i.get("headline") or "News")[:90], str(i.get("text") or "")) for i in raw
                 if isinstance(i, dict) and (i.get("text") or i.get("headline"))]
        language = params.get("language") or "en"
        await progress(0.1, "on air")

        def speak(t: str):
            return backend.synthesize(t, profile, language=language), backend.sample_rate

        key = hashlib.sha256(f"{portrait}|news|{raw}|{params.get('seed')}".encode()).hexdigest()[:20]
        out_dir = Path(getattr(video, "out_dir", Path(portrait).parent))
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            meta = await asyncio.to_thread(news_video, portrait, items, speak, out_dir / f"news-{key}.mp4",
                                           height=int(params.get("height") or 720), seed=int(params.get("seed") or 0),
                                           channel=str(params.get("channel") or "NEWS"),
                                           cache_dir=getattr(video, "cache_dir", None))
        except VideoInputError as exc:
            raise JobInputError(str(exc), "noface" if "face" in str(exc) else "unreadable") from exc
        await progress(0.95, "saving")
        return {"files": [{"kind": "video", "path": meta["path"], "mime": "video/mp4", "duration": meta["duration"],
                           "width": meta["width"], "height": meta["height"], "thumbnail": meta.get("thumbnail"),
                           "generator": "vchar-lite-news", "seed": params.get("seed"),
                           "metadata": {"items": len(items)}}]}

    return run
