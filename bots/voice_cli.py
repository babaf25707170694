"""``vchar voice``: give a character a voice (with consent) and make voice notes.

Mounted by bots/cli.py as ``app.add_typer(voice_app, name="voice")``.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

voice_app = typer.Typer(help="Give a character a cloned voice (with consent) and make voice notes.", no_args_is_help=True)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)
log = logging.getLogger(__name__)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _settings():
    from bots.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2) from None


def _persona(settings, name: str):
    from bots.service import registry_for

    try:
        return registry_for(settings).get(name)
    except LookupError as exc:
        _fail(str(exc))


def voices_root(settings) -> Path:
    return settings.voices_dir


@voice_app.command("set")
def set_voice(
    persona: str = typer.Argument(..., help="The persona (id or name)."),
    sample: Path = typer.Argument(..., help="A 5 to 30 second recording of the voice (wav, flac, ogg, mp3, m4a...)."),
    consent: str = typer.Option(..., "--consent", help="The consent statement of the person whose voice this is."),
    who: Optional[str] = typer.Option(None, "--who", help="Whose voice it is / who gave the consent."),
    language: Optional[str] = typer.Option(None, "--language", "-l", help="The sample's language (default: the persona's)."),
    prepare: bool = typer.Option(True, "--prepare/--no-prepare", help="Precompute the voice for the configured backend now."),
) -> None:
    """Check a voice sample and store it with its consent record. No consent, no cloning."""
    from generators.voice import ConsentError, SampleError, VoiceError, VoiceSettings, backend_from_settings
    from generators.voice.profile import create_voice_profile

    settings = _settings()
    p = _persona(settings, persona)
    who = who or f"the operator ({getpass.getuser()}), on behalf of the voice's owner"
    try:
        profile, report = create_voice_profile(
            p.id, sample, consent_statement=consent, consent_who=who, voices_root=voices_root(settings),
            language=language or p.language or "en",
        )
    except (SampleError, ConsentError) as exc:
        _fail(str(exc))
    out.print(
        f"voice of [bold]{escape(p.name)}[/bold] set: {report.speech:.1f} s of speech in {report.duration:.1f} s "
        f"(from {report.sample_rate} Hz), consent by {escape(profile.consent_who)} on {profile.consent_date}"
    )
    out.print(f"stored in {profile.sample_path.parent}", markup=False, highlight=False)
    if prepare:
        vs = VoiceSettings()
        try:
            backend = backend_from_settings(vs, cache_dir=settings.voice_cache_dir)
            backend.prepare(profile)
            out.print(f"prepared for the {backend.name} voice")
        except VoiceError as exc:
            err.print(f"[yellow]warning:[/yellow] not prepared for the {vs.voice_backend} voice: {escape(str(exc))}")


@voice_app.command("say")
def say(
    persona: str = typer.Argument(..., help="The persona (id or name)."),
    text: str = typer.Argument(..., help="What to say."),
    output: Path = typer.Option(..., "--output", "-o", help="The file to write: .ogg (voice note), .wav or .mp3."),
    style: Optional[str] = typer.Option(None, "--style", help="neutral, happy, excited, sad, calm, angry, whisper."),
    language: Optional[str] = typer.Option(None, "--language", "-l", help="Default: the voice's language."),
    backend: Optional[str] = typer.Option(None, "--backend", help="lite or xtts (default VCHAR_VOICE_BACKEND, lite)."),
) -> None:
    """Write a voice note in the persona's voice (several files when the text is long)."""
    from generators.voice import VoiceError, VoiceGenerator, VoiceSettings, backend_from_settings
    from generators.voice.profile import load_voice_profile

    settings = _settings()
    p = _persona(settings, persona)
    profile = load_voice_profile(voices_root(settings), p.id)
    if profile is None:
        _fail(f"{p.name} has no voice yet: vchar voice set {p.id} SAMPLE --consent '...'")
    vs = VoiceSettings()
    try:
        engine = backend_from_settings(vs, cache_dir=settings.voice_cache_dir, name=backend)
        gen = VoiceGenerator(engine, Path(settings.data_dir) / "media", max_note_chars=vs.voice_max_note_chars)
        with out.status(f"{p.name} is speaking ({engine.name} voice)..."):
            notes = gen.generate(text, profile, language=language, style=style, out_path=output)
    except VoiceError as exc:
        _fail(str(exc))
    from bots.service import record_media_sync

    record_media_sync(settings, p, [
        {"kind": "voice", "path": n.path, "mime": n.mime_type, "generator": n.backend, "duration": n.duration,
         "parameters": {"text": n.text, "language": n.language, "style": n.style or "", "part": n.part, "parts": n.parts}}
        for n in notes
    ], warn=lambda text: err.print(f"[yellow]warning:[/yellow] {escape(text)}"))
    if len(notes) > 1:
        out.print(f"the text was long: {len(notes)} voice notes")
    for n in notes:
        out.print(f"{n.path}  {n.duration:.1f} s  {n.format}  ({n.backend})", markup=False, highlight=False)


if __name__ == "__main__":  # python -m bots.voice_cli
    voice_app()
