"""The voice interface: profiles, requests, results, the backend protocol and text splitting.

Nothing here imports torch or a TTS engine; backends do that lazily.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


class VoiceError(Exception):
    """Anything that stops a voice note from being made."""


class SampleError(VoiceError):
    """A voice sample that cannot be used. ``problem`` says which check failed:
    ``unreadable``, ``too_short``, ``too_long``, ``silent`` or ``clipped``."""

    def __init__(self, problem: str, message: str):
        super().__init__(f"voice sample {problem.replace('_', ' ')}: {message}")
        self.problem = problem


class ConsentError(VoiceError):
    """No consent, no cloning."""


class VoiceBackendError(VoiceError):
    """A backend that is missing a dependency, a model, a licence acceptance, or failed."""


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    """A character's voice: the processed reference sample and the consent behind it."""

    persona_id: str
    sample_path: Path
    consent_who: str
    consent_statement: str
    consent_date: str  # ISO 8601 date (or datetime) the consent was recorded
    language: str = "en"

    def __post_init__(self) -> None:
        if not (self.consent_statement or "").strip():
            raise ConsentError(f"voice of {self.persona_id!r}: no consent statement, so no cloning")
        if not (self.consent_who or "").strip():
            raise ConsentError(f"voice of {self.persona_id!r}: consent must say who gave it")
        object.__setattr__(self, "sample_path", Path(self.sample_path))

    @property
    def sample_sha256(self) -> str:
        """The sample's content hash: the key of every per-voice cache."""
        p = self.sample_path
        st = p.stat()
        return _sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Styles: a small shared vocabulary; each backend maps it onto what it can vary.
@dataclass(frozen=True, slots=True)
class StyleParams:
    pitch_shift: float = 0.0  # semitones
    pitch_range: float = 1.0  # scale of the intonation around the mean
    rate: float = 1.0  # speaking rate factor
    temperature: float | None = None  # sampling temperature for neural backends
    whisper: bool = False


STYLES: dict[str, StyleParams] = {
    "neutral": StyleParams(),
    "happy": StyleParams(pitch_shift=1.0, pitch_range=1.3, rate=1.06, temperature=0.8),
    "excited": StyleParams(pitch_shift=2.0, pitch_range=1.5, rate=1.12, temperature=0.85),
    "sad": StyleParams(pitch_shift=-1.0, pitch_range=0.6, rate=0.88, temperature=0.7),
    "calm": StyleParams(pitch_shift=-0.5, pitch_range=0.8, rate=0.93, temperature=0.65),
    "angry": StyleParams(pitch_shift=0.5, pitch_range=1.4, rate=1.08, temperature=0.8),
    "whisper": StyleParams(rate=0.95, whisper=True),
}


def style_params(style: str | None) -> StyleParams:
    """The parameters of a named style; ``None`` or empty is neutral; unknown names are an error."""
    if not style:
        return STYLES["neutral"]
    key = style.strip().lower()
    if key not in STYLES:
        raise VoiceError(f"unknown voice style {style!r}; use one of {', '.join(STYLES)}")
    return STYLES[key]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of a streamed voice: float32 mono samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    text: str  # the sentence this chunk belongs to
    index: int  # sentence number, from 0
    final: bool = True  # the last chunk of that sentence

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class VoiceNote:
    """A finished voice note on disk."""

    path: Path
    duration: float  # seconds
    format: str  # ogg, wav or mp3
    mime_type: str
    sample_rate: int
    waveform: str  # base64 amplitude bytes for Discord voice messages
    text: str
    backend: str
    language: str
    style: str | None = None
    part: int = 1
    parts: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


class VoiceBackend(ABC):
    """Text plus a voice profile to audio. Blocking; callers run it off the event loop."""

    name: str = "base"
    sample_rate: int = 24000

    def prepare(self, profile: VoiceProfile) -> None:
        """Precompute and cache what the backend needs for this voice (optional)."""

    @abstractmethod
    def synthesize(
        self, text: str, profile: VoiceProfile | None, *, language: str, style: str | None = None
    ) -> np.ndarray:
        """The whole text as float32 mono samples at ``self.sample_rate``."""

    def stream(
        self, text: str, profile: VoiceProfile | None, *, language: str, style: str | None = None
    ) -> Iterator[AudioChunk]:
        """Chunks sentence by sentence (backends may cut finer inside a sentence)."""
        for i, sentence in enumerate(split_sentences(text)):
            yield AudioChunk(self.synthesize(sentence, profile, language=language, style=style), self.sample_rate, sentence, i)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


# ---- text -------------------------------------------------------------------------------

_SENT_END = re.compile(r"(?<=[.!?…。！？])[\"')\]]*\s+")


def normalize_text(text: str) -> str:
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # code blocks are not for speaking
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"[*_~`#>|]+", " ", text)  # markdown
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def split_sentences(text: str, max_chars: int = 220) -> list[str]:
    """Sentences, each at most ``max_chars`` (long ones are cut at commas, then at spaces)."""
    text = normalize_text(text)
    if not text:
        return []
    out: list[str] = []
    for sent in _SENT_END.split(text):
        sent = sent.strip()
        if not sent:
            continue
        out.extend(_cut(sent, max_chars))
    return out


def _cut(sent: str, max_chars: int) -> list[str]:
    if len(sent) <= max_chars:
        return [sent]
    parts: list[str] = []
    cur = ""
    for piece in re.split(r"(?<=[,;:—])\s+", sent):
        if len(piece) > max_chars:
            words, piece_parts, line = piece.split(), [], ""
            for w in words:
                if line and len(line) + 1 + len(w) > max_chars:
                    piece_parts.append(line)
                    line = w
                else:
                    line = f"{line} {w}".strip()
            if line:
                piece_parts.append(line)
            if cur:
                parts.append(cur)
                cur = ""
            parts.extend(piece_parts[:-1])
            cur = piece_parts[-1] if piece_parts else ""
            continue
        if cur and len(cur) + 1 + len(piece) > max_chars:
            parts.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}".strip()
    if cur:
        parts.append(cur)
    return parts


def split_for_notes(text: str, max_chars: int) -> list[str]:
    """Text too long for one note, as several notes cut between sentences."""
    sentences = split_sentences(text, max_chars=min(220, max_chars))
    notes: list[str] = []
    cur = ""
    for s in sentences:
        if cur and len(cur) + 1 + len(s) > max_chars:
            notes.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}".strip()
    if cur:
        notes.append(cur)
    return notes
