"""Music: short songs and instrumental clips.

A :class:`MusicRequest` (a style or a prompt, lyrics or a topic, duration, tempo, key,
seed, an optional voice profile) goes in; a :class:`Song` comes out: the mixed file,
its stems (``vocals.wav``, ``backing.wav``), the sung notes (``melody.mid``), the lyric
timings (``lyrics.lrc``) and metadata (tempo, key, sections, generator, seed). The same
request and seed make the same file.

Backends (``VCHAR_MUSIC_BACKEND``):
- ``lite`` (the default): CPU only, no weights, seconds. ``generators.music.composer``
  writes the song, FluidSynth plays it with a General MIDI SoundFont, the lite singer
  (espeak-ng moved onto the melody with WORLD, converted toward the character's voice by
  the lite voice) sings it, ``generators.music.mix`` mixes and masters it. It sounds like
  a General MIDI demo with a synthetic singer: a sketch, not a studio.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_DURATION = 120.0  # s, the lite tier's limit
MIN_DURATION = 8.0
FORMATS = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}


class MusicError(RuntimeError):
    """The song could not be made (a backend that cannot load, a missing synthesizer)."""


class MusicInputError(MusicError, ValueError):
    """The request cannot be sung as asked (refused lyrics, an unknown format)."""


@dataclass(frozen=True)
class MusicRequest:
    topic: str = ""  # what the song is about (the lite template's subject)
    lyrics: str | None = None  # [verse]/[chorus] text; None: written from the topic
    style: str | None = None  # a style name or words ("dreamy lo-fi"); None: pop
    duration: float = 30.0
    tempo: float | None = None
    key: str | None = None  # "A minor", "F#", ...
    seed: int = 0
    title: str | None = None
    artist: str = "vchar"
    voice: Any = None  # a generators.voice.VoiceProfile, or None
    language: str = "en"
    instrumental: bool = False
    stock_voice: bool = False  # no voice profile: sing with espeak-ng's own voice instead of playing it
    hint: str = ""  # a word of the character's world for template lyrics
    cover: str | None = None  # a picture for the cover (the character's portrait)
    fmt: str = "mp3"


@dataclass
class Song:
    path: Path
    mime: str
    title: str
    artist: str
    duration: float
    lyrics: str
    lrc: str
    metadata: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what was changed from the request, to say
    stems: dict[str, Path] = field(default_factory=dict)
    cover: str | None = None


def nearest_duration(seconds: float | None, limit: float = MAX_DURATION) -> tuple[float, str | None]:
    if seconds is None or not math.isfinite(float(seconds)):
        return min(30.0, limit), None
    s = float(seconds)
    if s > limit:
        return limit, f"songs here are at most {int(limit)} seconds, so this one is {int(limit)}"
    if s < MIN_DURATION:
        return MIN_DURATION, f"a song needs at least {int(MIN_DURATION)} seconds, so this one is {int(MIN_DURATION)}"
    return s, None


def request_key(req: MusicRequest, generator: str) -> str:
    d = dataclasses.asdict(req)
    v = req.voice
    d["voice"] = getattr(v, "sample_sha256", None) if v is not None else None
    d["generator"] = generator
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:24]


def encode(x: np.ndarray, sr: int, path: Path, *, title: str = "", artist: str = "", fmt: str | None = None) -> Path:
    """Stereo ``x`` (n, 2) as MP3 (192 kb/s), OGG/Opus (128 kb/s) or 16-bit WAV, with title
    and artist tags; written bit-exactly, so the same samples give the same bytes."""
    from generators.voice.finishing import encode_av

    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise MusicInputError(f"unknown audio format {fmt!r}: use .mp3, .ogg or .wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 1:
        x = np.stack([x, x], axis=1)
    if fmt == "wav":
        import soundfile

        soundfile.write(str(path), np.clip(x, -1, 1), sr, subtype="PCM_16")
        return path
    codec, rate, bit_rate = ("libmp3lame", 44100, 192000) if fmt == "mp3" else ("libopus", 48000, 128000)
    # per process and thread: the same song made twice at once must not share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    # LAME's quality 7 of 0-9 (ffmpeg's compression_level): about twice as fast as its default 5,
    # no difference a phone speaker shows at 192 kb/s
    encode_av(x, sr, tmp, "mp3" if fmt == "mp3" else "ogg", codec, rate, bit_rate, bitexact=True,
              metadata={"title": title, "artist": artist},
              options={"compression_level": "7"} if fmt == "mp3" else None)
    tmp.replace(path)
    return path


def lrc(lines: list[tuple[float, str]], title: str, artist: str) -> str:
    out = [f"[ti:{title}]", f"[ar:{artist}]", "[by:vchar]"]
    for t, text in lines:
        m, s = divmod(max(0.0, t), 60)
        out.append(f"[{int(m):02d}:{s:05.2f}]{text}")
    return "\n".join(out) + "\n"


def build_music_backend(name: str = "lite", *, model: str | None = None, accept_license: bool = False,
                        device: str | None = None, compile: bool = False, batch: int = 1, **kw):
    """``lite``, or ``musicgen`` (``model``: a hub id or a local folder; its weights'
    licence must be accepted). Nothing is loaded or downloaded here: on first use."""
    if name == "lite":
        from generators.music.lite import LiteMusic

        return LiteMusic(**kw)
    if name == "musicgen":
        from generators.music.neural import MusicGenMusic

        return MusicGenMusic(model=model, accept_license=accept_license, device=device, compile=compile, batch=batch,
                             **kw)
    if name == "stable-audio":
        from generators.music.neural import StableAudioMusic

        return StableAudioMusic(model=model, accept_license=accept_license, device=device, **kw)
    if name == "ace-step":
        from generators.music.neural import AceStepMusic

        return AceStepMusic(model=model, device=device, **kw)
    raise MusicError(f"unknown music backend {name!r} (VCHAR_MUSIC_BACKEND): use lite, musicgen, stable-audio "
                     "or ace-step")
