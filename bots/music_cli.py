"""``vchar music``: songs sung by a character, and instrumental clips.

Mounted by bots/cli.py as ``app.add_typer(music_app, name="music")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bots.voice_cli import _fail, _persona, _settings, err, out

music_app = typer.Typer(help="Songs sung by a character, and instrumental clips.", no_args_is_help=True)


def _backend(settings):
    from generators.music import MusicError, build_music_backend

    try:
        return build_music_backend(settings.music_backend, out_dir=settings.media_dir / "music",
                                   soundfont=settings.music_soundfont, model=settings.music_model,
                                   accept_license=settings.music_accept_license, device=settings.music_device,
                                   compile=settings.music_compile, batch=settings.music_batch)
    except MusicError as exc:
        _fail(str(exc))


def _make(settings, backend, request, output: Path, stems: Optional[Path], what: str):
    from generators.music import MusicError

    try:
        with out.status(what):
            return backend.generate(request, stems_dir=stems, out_path=output)
    except MusicError as exc:
        _fail(str(exc))


def _report(song, stems: Optional[Path]) -> None:
    md = song.metadata
    for note in song.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}")
    out.print(f"{song.path}  {song.duration:.1f} s  {md['style']}, {md['key']}, {md['tempo']:g} BPM, "
              f"{md['lufs']:.1f} LUFS, sung by: {md['singer']}", markup=False, highlight=False)
    if stems is not None:
        for name, path in sorted(song.stems.items()):
            out.print(f"  {name}: {path}", markup=False, highlight=False)


@music_app.command("song")
def song_command(
    persona: str = typer.Argument(..., help="The persona who sings (id or name)."),
    topic: str = typer.Argument(..., help="What the song is about."),
    output: Path = typer.Option(..., "--output", "-o", help="The file to write: .mp3, .ogg or .wav."),
    style: Optional[str] = typer.Option(None, "--style", help="pop, lo-fi, city pop, synthwave, ballad, rock, folk, "
                                        "chiptune (default: the persona's music_style)."),
    tempo: Optional[float] = typer.Option(None, "--tempo", help="Beats per minute (default: the style's)."),
    key: Optional[str] = typer.Option(None, "--key", help='A key such as "A minor" or "F#" (default: from the seed).'),
    duration: float = typer.Option(30.0, "--duration", help="Seconds (8 to 120)."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="A text file with [verse] and [chorus] sections "
                                          "(default: written from the topic)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="The same seed and options make the same file."),
    stems: Optional[Path] = typer.Option(None, "--stems", help="Also write vocals.wav, backing.wav, melody.mid and "
                                         "lyrics.lrc into this folder."),
    stock_voice: bool = typer.Option(False, "--stock-voice", help="Without a voice of its own, sing with espeak-ng's "
                                     "voice instead of playing an instrumental."),
) -> None:
    """Write a song the persona sings in its own voice (set with `vchar voice set`)."""
    from generators.image.base import seed_for
    from generators.music import MusicRequest
    from generators.voice.profile import load_voice_profile
    from persona.songs import _hint

    settings = _settings()
    p = _persona(settings, persona)
    text = None
    if lyrics is not None:
        try:
            text = lyrics.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read the lyrics file {lyrics}: {exc}")
    from bots.service import install_sample_voices

    install_sample_voices(settings)  # the sample characters' own voices, as `vchar run` installs them
    profile = load_voice_profile(settings.voices_dir, p.id)
    if profile is None and not stock_voice:
        err.print(f"[yellow]note:[/yellow] {escape(p.name)} has no voice yet (vchar voice set {p.id} SAMPLE "
                  "--consent '...'): an instrumental; --stock-voice sings it with espeak-ng's voice")
    cover = next((x for x in p.identity.portraits if Path(x).is_file()), None)
    request = MusicRequest(
        topic=topic, lyrics=text, style=style or p.identity.music_style or None, duration=duration, tempo=tempo,
        key=key, seed=seed if seed is not None else seed_for(p.identity.seed, f"song|{topic}"), artist=p.name,
        voice=profile, language=p.language or "en", instrumental=profile is None and not stock_voice,
        stock_voice=stock_voice, hint=_hint(p), cover=str(cover) if cover else None,
    )
    backend = _backend(settings)
    song = _make(settings, backend, request, output, stems, f"{p.name} is writing and singing...")
    from bots.service import record_media_sync

    record_media_sync(settings, p, [{"kind": "audio", "path": song.path, "mime": song.mime,
                                     "generator": song.metadata["generator"], "duration": song.duration,
                                     "parameters": song.metadata, "seed": request.seed}],
                      warn=lambda t: err.print(f"[yellow]warning:[/yellow] {escape(t)}"))
    _report(song, stems)


@music_app.command("clip")
def clip_command(
    prompt: str = typer.Argument(..., help='What it sounds like, e.g. "dreamy lo-fi for a rainy night".'),
    output: Path = typer.Option(..., "--output", "-o", help="The file to write: .mp3, .ogg or .wav."),
    duration: float = typer.Option(20.0, "--duration", help="Seconds (8 to 120)."),
    tempo: Optional[float] = typer.Option(None, "--tempo"),
    key: Optional[str] = typer.Option(None, "--key"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """An instrumental clip in the style the prompt names."""
    from generators.music import MusicRequest

    settings = _settings()
    request = MusicRequest(topic=prompt, style=prompt, duration=duration, tempo=tempo, key=key, seed=seed,
                           title=prompt[:60], instrumental=True)
    song = _make(settings, _backend(settings), request, output, None, "composing...")
    song.notes = [n for n in song.notes if "no voice" not in n]
    _report(song, None)
