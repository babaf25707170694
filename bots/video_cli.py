"""``vchar video``: clips of a character speaking, and smoothing any clip to a higher frame rate.

Mounted by bots/cli.py as ``app.add_typer(video_app, name="video")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rich.markup import escape

from bots.voice_cli import _fail, _persona, _settings, err, out

video_app = typer.Typer(help="Video clips: a character speaking; smooth a clip to a higher frame rate.",
                        no_args_is_help=True)


@video_app.command("say")
def say_command(
    persona: str = typer.Argument(..., help="The persona who speaks (id or name)."),
    text: str = typer.Argument("", help="What it says (or give --audio)."),
    output: Path = typer.Option(..., "--output", "-o", help="The MP4 to write."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Speech to lip-sync instead of the persona's voice."),
    size: int = typer.Option(512, "--size", help="The short side in pixels (even)."),
    layout: str = typer.Option("square", "--layout",
                               help="square (1:1), selfie (9:16, upright as a phone films) or note (1:1, "
                                    "for a round Telegram video note)."),
    fps: float = typer.Option(25.0, "--fps", help="Frames per second."),
    smooth_to: Optional[float] = typer.Option(None, "--smooth", metavar="FPS",
                                              help="Raise the frame rate with motion-compensated in-betweens "
                                                   "(e.g. 50)."),
    seed: int = typer.Option(0, "--seed", help="Blinks and head motion; the same seed, the same moves."),
) -> None:
    """A clip of the persona's portrait saying TEXT in its own voice, lips in sync."""
    from generators.video import VideoInputError
    from generators.video.lite import say_video

    settings = _settings()
    p = _persona(settings, persona)
    portrait = _portrait(p)
    if audio is not None:
        from generators.voice.profile import SampleError, load_audio

        try:
            samples, sr = load_audio(audio)
        except SampleError as exc:
            _fail(str(exc))
    elif text.strip():
        samples, sr = _speak(settings, p, text)
    else:
        _fail("give the TEXT to say, or --audio FILE")
    from generators.video import VideoError, build_video_backend

    try:
        with out.status(f"{p.name} is on camera..."):
            if settings.video_backend == "lite":
                meta = say_video(portrait, samples, sr, output, size=size, fps=fps, seed=seed,
                                 cache_dir=settings.data_dir / "cache" / "faces", layout=layout, smooth_to=smooth_to)
            else:
                if output.suffix.lower() != ".mp4":
                    _fail(f"{output} must end in .mp4")
                backend = build_video_backend(settings.video_backend, out_dir=output.parent,
                                              cache_dir=settings.data_dir / "cache" / "faces",
                                              model=settings.video_model, device=settings.video_device,
                                              accept_license=settings.video_accept_license)
                meta = backend.make(portrait, samples, sr, size=size, fps=fps, seed=seed, name=output.stem,
                                    layout=layout, smooth_to=smooth_to)
    except (VideoInputError, VideoError) as exc:
        _fail(str(exc))
    if meta["faces_found"] > 1:
        err.print(f"[yellow]note:[/yellow] {meta['faces_found']} faces in the portrait: the largest one speaks")
    from bots.service import record_media_sync

    record_media_sync(settings, p, [{"kind": "video", "path": meta["path"], "mime": "video/mp4",
                                     "generator": meta["generator"], "duration": meta["duration"],
                                     "parameters": {"text": text, **{k: meta[k] for k in ("fps", "width", "height", "seed", "layout")}},
                                     "seed": seed}],
                      warn=lambda t: err.print(f"[yellow]warning:[/yellow] {escape(t)}"))
    out.print(f"{meta['path']}  {meta['width']}x{meta['height']}  {meta['fps']:g} fps  {meta['duration']:.1f} s  "
              f"({meta['frames'] / meta['seconds']:.0f} frames a second to make)", markup=False, highlight=False)


def _portrait(p) -> str:
    """The persona's reference portrait, or a clear error naming the command that sets one."""
    portrait = next((x for x in p.identity.portraits if Path(x).is_file()), None)
    if portrait is None:
        _fail(f"{p.name} has no face yet: vchar persona portrait {p.id} --from PHOTO (or --generate 4)")
    return portrait


def _speak(settings, p, text: str):
    """The persona's own voice (set with `vchar voice set`), else espeak-ng's, said so."""
    from bots.service import install_sample_voices
    from generators.voice import VoiceError, VoiceSettings, backend_from_settings
    from generators.voice.profile import load_voice_profile

    install_sample_voices(settings)
    profile = load_voice_profile(settings.voices_dir, p.id)
    if profile is None:
        err.print(f"[yellow]note:[/yellow] {escape(p.name)} has no voice yet: espeak-ng's own voice speaks")
    try:
        backend = backend_from_settings(VoiceSettings(), cache_dir=settings.voice_cache_dir)
        return backend.synthesize(text, profile, language=p.language or "en"), backend.sample_rate
    except VoiceError as exc:
        _fail(str(exc))


@video_app.command("smooth")
def smooth_command(
    source: Path = typer.Argument(..., help="An MP4 (or any video PyAV reads)."),
    output: Path = typer.Argument(..., help="The MP4 to write."),
    fps: float = typer.Option(60.0, "--fps", help="The frame rate wanted (a whole multiple of the clip's is used)."),
) -> None:
    """Raise a clip's frame rate by motion-compensated interpolation (its sound kept)."""
    from generators.video import VideoInputError
    from generators.video.mp4 import probe, read_audio, read_frames, write_mp4
    from generators.video.smooth import smooth

    if output.suffix.lower() != ".mp4":
        _fail(f"{output}: the output is an MP4 (.mp4)")
    try:
        frames, src_fps = read_frames(source)
        if fps <= src_fps:
            _fail(f"{source} already plays at {src_fps:g} fps; ask for more with --fps")
        audio = read_audio(source)
        smoothed, new_fps = smooth(frames, src_fps, fps)
        with out.status(f"interpolating {src_fps:g} -> {new_fps:g} fps..."):
            write_mp4(output, smoothed, new_fps, audio=audio)
        p = probe(output)
    except VideoInputError as exc:
        _fail(str(exc))
    out.print(f"{output}  {p.width}x{p.height}  {p.fps:g} fps  {p.frames} frames  {p.duration:.1f} s"
              f"{'  with sound' if p.has_audio else ''}", markup=False, highlight=False)


@video_app.command("news")
def news_command(
    persona: str = typer.Argument(..., help="The anchor (id or name)."),
    script: Optional[Path] = typer.Option(None, "--script", help="A YAML list of items, each with a headline and a text."),
    feed: Optional[str] = typer.Option(None, "--feed", help="An RSS or Atom feed (URL or file) to read instead: its "
                                       "newest items, rewritten for the anchor by the text backend."),
    output: Path = typer.Option(..., "--output", "-o", help="The MP4 to write."),
    height: int = typer.Option(720, "--height", help="Frame height (16:9)."),
    fps: float = typer.Option(25.0, "--fps"),
    seed: int = typer.Option(0, "--seed"),
    channel: str = typer.Option("NEWS", "--channel", help="The name in the lower third."),
) -> None:
    """A news bulletin: the persona reads each item at a studio desk, headline and ticker on screen."""
    from generators.video import VideoInputError
    from generators.video.news import load_script, news_video

    settings = _settings()
    p = _persona(settings, persona)
    portrait = _portrait(p)
    if (script is None) == (feed is None):
        _fail("give --script FILE or --feed URL_OR_FILE")
    try:
        items = load_script(script) if script is not None else _from_feed(settings, p, feed)
        with out.status(f"{p.name} is reading the news ({len(items)} items)..."):
            meta = news_video(portrait, items, lambda text: _speak(settings, p, text), output, height=height, fps=fps,
                              seed=seed, channel=channel, cache_dir=settings.data_dir / "cache" / "faces")
    except VideoInputError as exc:
        _fail(str(exc))
    out.print(f"{meta['path']}  {meta['width']}x{meta['height']}  {meta['items']} items  {meta['duration']:.1f} s",
              markup=False, highlight=False)


def _from_feed(settings, p, feed: str):
    """The feed's items; a model text backend rewrites each as the anchor would read it
    (the lite backend reads the feed's own first sentences)."""
    import asyncio

    from generators.text import build_text_generator
    from generators.text.base import ChatMessage, TextRequest
    from generators.video.news import NewsItem, read_feed
    from persona.prompt import system_prompt

    items = read_feed(feed)
    if settings.text_backend == "lite":
        return items
    text = build_text_generator(settings.text_backend, model=settings.text_model, base_url=settings.text_base_url,
                                api_key=settings.text_api_key.get_secret_value() if settings.text_api_key else None,
                                timeout=settings.text_timeout)

    async def rewrite() -> list:
        out = []
        for it in items:
            req = TextRequest(messages=(ChatMessage("system", system_prompt(p, "viewers", include_examples=False)),
                                        ChatMessage("user", f"Read this news item on air in two or three short "
                                                    f"sentences, in your voice, facts only.\nHeadline: {it.headline}"
                                                    f"\n{it.text}")), max_tokens=160, temperature=0.5)
            try:
                said = (await text.generate(req)).strip()
            except Exception as exc:  # noqa: BLE001 - the feed's own words are read instead
                err.print(f"[yellow]note:[/yellow] the text backend failed ({escape(str(exc))}); reading the feed's words")
                said = ""
            out.append(NewsItem(it.headline, said or it.text))
        await text.aclose()
        return out

    return asyncio.run(rewrite())
