"""Finishing a voice: silence trimmed, loudness normalised, encoded (OGG/Opus, WAV, MP3),
duration and the Discord waveform computed. Audio I/O through soundfile and PyAV."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from generators.voice.base import VoiceError

log = logging.getLogger(__name__)

TARGET_LUFS = -16.0
PEAK_DBFS = -1.0
FORMATS = {"ogg": "audio/ogg", "wav": "audio/wav", "mp3": "audio/mpeg"}
SUFFIX_FORMATS = {".ogg": "ogg", ".opus": "ogg", ".oga": "ogg", ".wav": "wav", ".mp3": "mp3"}


def format_for_path(path: str | Path, default: str = "ogg") -> str:
    suffix = Path(path).suffix.lower()
    if not suffix:
        return default
    if suffix not in SUFFIX_FORMATS:
        raise VoiceError(f"unsupported audio file type {suffix!r}; use .ogg (voice note), .wav or .mp3")
    return SUFFIX_FORMATS[suffix]


def to_mono_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] <= 8 else x.mean(axis=0)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(sr_from), int(sr_to))
    return resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)


def _frame_db(x: np.ndarray, sr: int, hop_s: float = 0.01) -> tuple[np.ndarray, int]:
    hop = max(1, int(sr * hop_s))
    n = len(x) // hop
    if n == 0:
        return np.array([-120.0]), hop
    frames = x[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms), hop


def trim_silence(
    x: np.ndarray, sr: int, top_db: float = 40.0, pad_s: float = 0.08, max_pause_s: float = 0.6
) -> np.ndarray:
    """Leading and trailing silence cut (keeping ``pad_s``); inner pauses longer than
    ``max_pause_s`` shortened to it. Silence is ``top_db`` below the loudest 10 ms."""
    if len(x) == 0:
        return x
    db, hop = _frame_db(x, sr)
    loud = db > db.max() - top_db
    if not loud.any():
        return x[:0]
    idx = np.flatnonzero(loud)
    pad = int(pad_s * sr / hop)
    first, last = max(0, idx[0] - pad), min(len(loud), idx[-1] + 1 + pad)
    keep = np.zeros(len(loud), bool)
    keep[first:last] = True
    # shorten long inner pauses
    max_pause = int(max_pause_s * sr / hop)
    run_start = None
    for i in range(first, last + 1):
        quiet = i < last and not loud[i]
        if quiet and run_start is None:
            run_start = i
        elif not quiet and run_start is not None:
            if i - run_start > max_pause:
                half = max_pause // 2
                keep[run_start + half : i - (max_pause - half)] = False
            run_start = None
    mask = np.repeat(keep, hop)
    tail = len(x) - len(mask)
    if tail > 0:
        mask = np.concatenate([mask, np.full(tail, keep[-1])])
    y = x[mask]
    # short fades at the ends avoid clicks
    fade = min(len(y) // 2, int(0.005 * sr))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        y = y.copy()
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    return y


def loudness(x: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770 via pyloudnorm); RMS dBFS for clips under 0.4 s."""
    if len(x) >= int(0.4 * sr) + 1:
        import pyloudnorm

        value = pyloudnorm.Meter(sr).integrated_loudness(x.astype(np.float64))
        if np.isfinite(value):
            return float(value)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))
    return 20 * np.log10(rms) - 0.7


def normalize_loudness(x: np.ndarray, sr: int, target_lufs: float = TARGET_LUFS, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Gain to ``target_lufs``, then a peak limiter (a smoothed gain envelope, 5 ms attack and
    release, no waveshaping) keeps peaks under ``peak_dbfs``."""
    if len(x) == 0 or not np.any(x):
        return x.astype(np.float32)
    current = loudness(x, sr)
    y = x.astype(np.float32) * np.float32(10 ** ((target_lufs - current) / 20))
    ceiling = np.float32(10 ** (peak_dbfs / 20))
    if float(np.max(np.abs(y))) > ceiling:
        from scipy.ndimage import minimum_filter1d, uniform_filter1d

        win = max(3, int(0.005 * sr) | 1)
        need = np.minimum(1.0, ceiling / (np.abs(y) + 1e-9))
        gain = uniform_filter1d(minimum_filter1d(need, size=win), size=win)
        y = np.clip(y * gain, -ceiling, ceiling)
    return y.astype(np.float32)


def discord_waveform(x: np.ndarray, sr: int, max_points: int = 256) -> str:
    """Discord's voice-message waveform: base64 of up to 256 amplitude bytes (about one per 100 ms)."""
    dur = len(x) / sr if sr else 0
    n = int(max(1, min(max_points, round(dur * 10))))
    if len(x) == 0:
        return base64.b64encode(bytes(n)).decode()
    edges = np.linspace(0, len(x), n + 1).astype(int)
    amps = np.array([np.sqrt(np.mean(np.square(x[a:b], dtype=np.float64))) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    top = amps.max()
    values = np.zeros(n) if top <= 0 else np.clip(np.round(amps / top * 255), 0, 255)
    return base64.b64encode(values.astype(np.uint8).tobytes()).decode()


def encode_av(x: np.ndarray, sr: int, path: Path, container: str, codec: str, rate: int, bit_rate: int, *,
              metadata: dict[str, str] | None = None, options: dict[str, str] | None = None,
              bitexact: bool = False) -> None:
    """Encode mono ``x`` (n,) or stereo ``x`` (n, 2) with PyAV: ``codec`` in ``container`` at
    ``rate``; ``metadata`` as tags; ``bitexact``: the same samples give the same bytes
    (no random stream serial numbers, no encoder version string)."""
    import av

    stereo = x.ndim == 2
    y = np.stack([resample(x[:, c], sr, rate) for c in range(2)], axis=1) if stereo else resample(x, sr, rate)
    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    layout = "stereo" if stereo else "mono"
    with av.open(str(path), "w", format=container,
                 container_options={"fflags": "+bitexact"} if bitexact else {}) as out:
        for k, v in (metadata or {}).items():
            if v:
                out.metadata[k] = v
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.bit_rate = bit_rate
        stream.layout = layout
        frame_size = 960 if codec == "libopus" else 1152
        pts = 0
        for start in range(0, len(pcm), frame_size):
            block = pcm[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += len(block)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def encode_audio(x: np.ndarray, sr: int, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``x`` as OGG/Opus (48 kHz mono, 48 kb/s: a Telegram/Discord voice note), WAV (16-bit) or MP3."""
    path = Path(path)
    fmt = fmt or format_for_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "ogg":
        encode_av(x, sr, path, "ogg", "libopus", 48000, 48000)
    elif fmt == "mp3":
        encode_av(x, sr, path, "mp3", "libmp3lame", 44100 if sr > 24000 else 24000, 96000)
    elif fmt == "wav":
        import soundfile

        soundfile.write(str(path), np.clip(x, -1, 1), sr, subtype="PCM_16")
    else:
        raise VoiceError(f"unknown audio format {fmt!r}; use ogg, wav or mp3")
    return path


def probe(path: str | Path) -> tuple[float, str, int]:
    """Duration in seconds, codec name and sample rate of an audio file, read by PyAV."""
    import av

    with av.open(str(path)) as f:
        s = f.streams.audio[0]
        if s.duration is not None and s.time_base is not None:
            dur = float(s.duration * s.time_base)
        elif f.duration is not None:
            dur = f.duration / 1_000_000
        else:
            dur = sum(fr.samples for fr in f.decode(s)) / s.rate
        return dur, s.codec_context.name, s.rate


@dataclass(frozen=True, slots=True)
class Finished:
    path: Path
    format: str
    mime_type: str
    duration: float
    sample_rate: int
    waveform: str
    loudness_lufs: float


def finish(x: np.ndarray, sr: int, path: str | Path, fmt: str | None = None, *, trim: bool = True,
           target_lufs: float = TARGET_LUFS) -> Finished:
    """Trim, normalise and encode a voice; the duration is that of the audio written."""
    path = Path(path)
    fmt = fmt or format_for_path(path)
    x = to_mono_float(x)
    if trim:
        x = trim_silence(x, sr)
    if len(x) == 0:
        raise VoiceError("the voice came out silent")
    x = normalize_loudness(x, sr, target_lufs)
    encode_audio(x, sr, path, fmt)
    return Finished(
        path=path,
        format=fmt,
        mime_type=FORMATS[fmt],
        duration=round(len(x) / sr, 3),
        sample_rate=48000 if fmt == "ogg" else sr,
        waveform=discord_waveform(x, sr),
        loudness_lufs=round(loudness(x, sr), 2),
    )
