"""Voice notes in a character's own cloned voice.

One interface: text, a ``VoiceProfile``, a language and an optional style go in; finished
voice notes (OGG/Opus, WAV or MP3 files with duration, Discord waveform and metadata) come
out, several when the text is too long for one note. ``VoiceGenerator.stream`` yields audio
sentence by sentence for long replies.

Backends: ``lite`` (espeak-ng converted toward the sample with WORLD; CPU, no download,
the default) and ``xtts`` (coqui-tts XTTS v2; its licence must be accepted explicitly).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from generators.voice.base import (
    STYLES,
    AudioChunk,
    ConsentError,
    SampleError,
    VoiceBackend,
    VoiceBackendError,
    VoiceError,
    VoiceNote,
    VoiceProfile,
    split_for_notes,
    split_sentences,
    style_params,
)

log = logging.getLogger(__name__)

__all__ = [
    "STYLES",
    "AudioChunk",
    "ConsentError",
    "SampleError",
    "VoiceBackend",
    "VoiceBackendError",
    "VoiceError",
    "VoiceGenerator",
    "VoiceNote",
    "VoiceProfile",
    "VoiceSettings",
    "build_voice_backend",
    "split_for_notes",
    "split_sentences",
]

BACKENDS = ("lite", "xtts")


class VoiceSettings(BaseSettings):
    """Voice settings from ``VCHAR_*`` variables (the service's Settings may carry the same names)."""

    model_config = SettingsConfigDict(env_prefix="VCHAR_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    voice_backend: Literal["lite", "xtts"] = "lite"
    voice_format: Literal["ogg", "wav", "mp3"] = "ogg"
    voice_max_note_chars: int = Field(default=600, ge=40, description="Longer text becomes several notes.")
    xtts_accept_license: bool = Field(
        default=False, description="Set to 1 to accept the Coqui Public Model License (CPML) of the XTTS v2 weights."
    )
    xtts_model: str = "tts_models/multilingual/multi-dataset/xtts_v2"
    xtts_model_dir: Path | None = Field(default=None, description="A local XTTS checkpoint folder (config.json, model.pth, vocab.json).")
    xtts_device: str | None = Field(default=None, description="cuda, cuda:1 or cpu; default CUDA when present.")


def build_voice_backend(
    name: str = "lite",
    *,
    cache_dir: str | Path | None = None,
    accept_license: bool = False,
    model_name: str | None = None,
    model_dir: str | Path | None = None,
    device: str | None = None,
) -> VoiceBackend:
    """The named backend. Heavy imports happen only for the backend chosen.

    ``cache_dir`` holds per-voice caches (lite analyses, XTTS conditioning latents).
    ``accept_license`` (XTTS): the operator's explicit acceptance of the CPML, needed before
    coqui's model manager downloads or loads the official weights."""
    if name == "lite":
        from generators.voice.lite import LiteVoice

        return LiteVoice(cache_dir=cache_dir)
    if name == "xtts":
        try:
            from generators.voice.xtts import XttsVoice
        except ImportError as exc:
            raise VoiceBackendError(f"the xtts voice needs its extra: pip install 'vchar[voice]' ({exc})") from exc
        kwargs = {}
        if model_name:
            kwargs["model_name"] = model_name
        return XttsVoice(cache_dir=cache_dir, accept_license=accept_license, model_dir=model_dir, device=device, **kwargs)
    raise VoiceBackendError(f"unknown voice backend {name!r}; use {' or '.join(BACKENDS)}")


def backend_from_settings(settings: VoiceSettings | None = None, *, cache_dir: str | Path | None = None,
                          name: str | None = None) -> VoiceBackend:
    s = settings or VoiceSettings()
    return build_voice_backend(
        name or s.voice_backend,
        cache_dir=cache_dir,
        accept_license=s.xtts_accept_license,
        model_name=s.xtts_model,
        model_dir=s.xtts_model_dir,
        device=s.xtts_device,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "voice"


class VoiceGenerator:
    """Finished voice notes from a backend. Thread-safe (one synthesis at a time per generator)."""

    def __init__(self, backend: VoiceBackend, out_dir: str | Path, *, max_note_chars: int = 600, fmt: str = "ogg"):
        self.backend = backend
        self.out_dir = Path(out_dir)
        self.max_note_chars = max_note_chars
        self.fmt = fmt
        self._lock = threading.Lock()

    def generate(
        self,
        text: str,
        profile: VoiceProfile | None,
        *,
        language: str | None = None,
        style: str | None = None,
        fmt: str | None = None,
        out_path: str | Path | None = None,
    ) -> list[VoiceNote]:
        """One note per ``max_note_chars`` of text (cut between sentences). With ``out_path``,
        the first note is written there and the next ones beside it as ``NAME-2.ogg``, ..."""
        from generators.voice.finishing import finish, format_for_path

        style_params(style)  # an unknown style is an error before any work
        lang = language or (profile.language if profile else "en")
        if out_path is not None:
            fmt = fmt or format_for_path(out_path, self.fmt)
        fmt = fmt or self.fmt
        chunks = split_for_notes(text, self.max_note_chars)
        if not chunks:
            raise VoiceError("nothing to say: the text is empty")
        if len(chunks) > 1:
            log.info("text of %d characters split into %d voice notes", len(text), len(chunks))
        notes: list[VoiceNote] = []
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(text)}-{uuid.uuid4().hex[:6]}"
        for i, chunk in enumerate(chunks, 1):
            if out_path is not None:
                base = Path(out_path)
                path = base if i == 1 else base.with_name(f"{base.stem}-{i}{base.suffix or '.' + fmt}")
            else:
                path = self.out_dir / f"{stem}{'' if len(chunks) == 1 else f'-{i}'}.{fmt}"
            t0 = time.perf_counter()
            with self._lock:
                audio = self.backend.synthesize(chunk, profile, language=lang, style=style)
            took = time.perf_counter() - t0
            done = finish(audio, self.backend.sample_rate, path, fmt)
            notes.append(
                VoiceNote(
                    path=done.path, duration=done.duration, format=done.format, mime_type=done.mime_type,
                    sample_rate=done.sample_rate, waveform=done.waveform, text=chunk, backend=self.backend.name,
                    language=lang, style=style, part=i, parts=len(chunks),
                    metadata={
                        "persona_id": profile.persona_id if profile else None,
                        "sample_sha256": profile.sample_sha256 if profile else None,
                        "loudness_lufs": done.loudness_lufs,
                        "synthesis_seconds": round(took, 3),
                        **self.backend.describe(),
                    },
                )
            )
        return notes

    def stream(
        self, text: str, profile: VoiceProfile | None, *, language: str | None = None, style: str | None = None
    ) -> Iterator[AudioChunk]:
        """Audio as it is made, sentence by sentence (XTTS cuts finer inside a sentence)."""
        style_params(style)
        lang = language or (profile.language if profile else "en")
        with self._lock:
            yield from self.backend.stream(text, profile, language=lang, style=style)

    async def agenerate(self, text: str, profile: VoiceProfile | None, **kwargs) -> list[VoiceNote]:
        """``generate`` in a worker thread, for the event loop."""
        return await asyncio.to_thread(self.generate, text, profile, **kwargs)
