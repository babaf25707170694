"""Voice samples and profiles: read any common audio file, check it (3 to 30 s of speech by
silero-vad, not clipped, not silent), store the processed sample with the consent record."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from generators.voice.base import ConsentError, SampleError, VoiceProfile
from generators.voice.finishing import resample, to_mono_float, trim_silence

log = logging.getLogger(__name__)

MIN_SPEECH_S = 3.0
MAX_SPEECH_S = 30.0
MAX_FILE_S = 300.0  # a sample file longer than this is refused before it is decoded whole
SAMPLE_RATE = 24000  # the stored reference: mono 16-bit WAV at 24 kHz
CLIP_LEVEL = 0.999
CLIP_MAX_FRACTION = 0.001  # more than 0.1 % of samples stuck at full scale is clipped
SILENT_DBFS = -55.0
SAMPLE_FILE = "sample.wav"
PROFILE_FILE = "voice.json"

__all__ = [
    "SampleReport",
    "check_sample",
    "create_voice_profile",
    "load_audio",
    "load_voice_profile",
    "profile_from_dict",
    "profile_to_dict",
    "voice_dir",
]


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Float32 mono samples and the sample rate of any file soundfile or PyAV (FFmpeg) reads.
    Raises ``SampleError('unreadable', ...)`` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise SampleError("unreadable", f"{path} does not exist")
    reasons = []
    try:
        import soundfile

        info = soundfile.info(str(path))
        if info.frames and info.samplerate and info.frames / info.samplerate > MAX_FILE_S:
            raise SampleError("too_long", f"{path.name} is {info.frames / info.samplerate / 60:.0f} minutes long; "
                                          f"give at most {MAX_FILE_S / 60:.0f} minutes with {MAX_SPEECH_S:.0f} s of speech")
        x, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        if len(x):
            return to_mono_float(x), int(sr)
        reasons.append("soundfile: no samples")
    except SampleError:
        raise
    except Exception as exc:  # not a format libsndfile knows: try FFmpeg
        reasons.append(f"soundfile: {exc}")
    try:
        import av

        chunks, sr = [], None
        with av.open(str(path)) as f:
            if not f.streams.audio:
                raise ValueError("no audio stream")
            stream = f.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            got = 0
            for frame in f.decode(stream):
                sr = sr or frame.sample_rate
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    got += len(chunks[-1])
                if got > MAX_FILE_S * sr:
                    raise SampleError("too_long", f"{path.name} is longer than {MAX_FILE_S / 60:.0f} minutes; give at "
                                                  f"most that, with {MAX_SPEECH_S:.0f} s of speech")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        if chunks and sr:
            return np.concatenate(chunks).astype(np.float32), int(sr)
        reasons.append("PyAV: no audio frames")
    except SampleError:
        raise
    except Exception as exc:
        reasons.append(f"PyAV: {exc}")
    raise SampleError("unreadable", f"{path.name} is not an audio file I can read ({'; '.join(reasons)})")


@lru_cache(maxsize=1)
def _vad_model():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def speech_segments(x: np.ndarray, sr: int) -> list[tuple[float, float]]:
    """(start, end) seconds of speech found by silero-vad."""
    import torch
    from silero_vad import get_speech_timestamps

    x16 = resample(x, sr, 16000)
    peak = float(np.max(np.abs(x16))) if len(x16) else 0.0
    if peak > 0:
        x16 = x16 / peak * 0.9  # the VAD is level-sensitive; a quiet but clean sample is fine
    with torch.inference_mode():
        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(x16)), _vad_model(), sampling_rate=16000)
    return [(s["start"] / 16000, s["end"] / 16000) for s in stamps]


@dataclass(frozen=True, slots=True)
class SampleReport:
    duration: float  # seconds of audio
    speech: float  # seconds of speech
    sample_rate: int  # of the file given
    clipped_fraction: float
    peak_dbfs: float


def _clipped_fraction(x: np.ndarray) -> float:
    """Share of samples flat at the waveform's peak (in runs of 3 or more: a lone peak is not
    clipping). Catches clipping at full scale and clipping that was scaled down afterwards."""
    a = np.abs(x)
    if len(a) < 3:
        return 0.0
    peak = float(a.max())
    if peak < 0.25:
        return 0.0
    at_peak = a >= CLIP_LEVEL * peak
    run = at_peak[:-2] & at_peak[1:-1] & at_peak[2:]
    flat = np.zeros(len(a), bool)
    flat[:-2] |= run
    flat[1:-1] |= run
    flat[2:] |= run
    return float(flat.sum() / len(a))


def check_sample(path: str | Path) -> tuple[SampleReport, np.ndarray, int]:
    """Check a voice sample and return its report and audio. A failed check raises
    ``SampleError`` whose ``problem`` is unreadable, silent, clipped, too_short or too_long."""
    x, sr = load_audio(path)
    duration = len(x) / sr
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    peak_db = 20 * np.log10(peak + 1e-12)
    if peak_db < SILENT_DBFS:
        raise SampleError("silent", f"{Path(path).name} is silent (peak {peak_db:.0f} dBFS over {duration:.1f} s)")
    clipped = _clipped_fraction(x)
    if clipped > CLIP_MAX_FRACTION:
        raise SampleError(
            "clipped",
            f"{clipped * 100:.2f}% of the samples sit at full scale; record again with lower input gain",
        )
    segments = speech_segments(x, sr)
    speech = sum(e - s for s, e in segments)
    if speech <= 0.25:
        raise SampleError("silent", f"no speech found in {Path(path).name} ({duration:.1f} s of audio)")
    if speech < MIN_SPEECH_S:
        raise SampleError("too_short", f"{speech:.1f} s of speech; give at least {MIN_SPEECH_S:.0f} s (5 to 30 s is best)")
    if speech > MAX_SPEECH_S:
        raise SampleError("too_long", f"{speech:.1f} s of speech; give at most {MAX_SPEECH_S:.0f} s")
    return SampleReport(round(duration, 2), round(speech, 2), sr, clipped, round(peak_db, 1)), x, sr


def prepare_sample(x: np.ndarray, sr: int, out_path: Path, target_sr: int = SAMPLE_RATE) -> Path:
    """Resample to 24 kHz mono, trim long silences, peak-normalise to -3 dBFS, write 16-bit WAV."""
    import soundfile

    y = resample(x, sr, target_sr)
    y = trim_silence(y, target_sr, top_db=45, pad_s=0.15, max_pause_s=0.8)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = y / peak * 10 ** (-3 / 20)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(out_path), y.astype(np.float32), target_sr, subtype="PCM_16")
    return out_path


def voice_dir(voices_root: str | Path, persona_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", persona_id).strip(".-") or "voice"
    return Path(voices_root) / safe


def profile_to_dict(profile: VoiceProfile) -> dict:
    d = asdict(profile)
    d["sample_path"] = str(profile.sample_path)
    return d


def profile_from_dict(d: dict, base: Path | None = None) -> VoiceProfile:
    sample = Path(d["sample_path"])
    if base is not None and not sample.is_absolute():
        sample = base / sample
    return VoiceProfile(
        persona_id=d["persona_id"],
        sample_path=sample,
        consent_who=d["consent_who"],
        consent_statement=d["consent_statement"],
        consent_date=d["consent_date"],
        language=d.get("language") or "en",
    )


def create_voice_profile(
    persona_id: str,
    sample: str | Path,
    *,
    consent_statement: str,
    consent_who: str,
    voices_root: str | Path,
    language: str = "en",
    consent_date: str | None = None,
) -> tuple[VoiceProfile, SampleReport]:
    """Check ``sample``, store the processed copy and the consent record under
    ``voices_root/<persona>/`` (``sample.wav`` and ``voice.json``). No consent, no cloning."""
    if not (consent_statement or "").strip():
        raise ConsentError("no consent statement given: a voice is cloned only with its owner's consent")
    if not (consent_who or "").strip():
        raise ConsentError("say whose voice this is and who consented (--who)")
    report, x, sr = check_sample(sample)
    folder = voice_dir(voices_root, persona_id)
    tmp = folder / (SAMPLE_FILE + ".tmp.wav")
    prepare_sample(x, sr, tmp)
    final = folder / SAMPLE_FILE
    tmp.replace(final)
    profile = VoiceProfile(
        persona_id=persona_id,
        sample_path=final.resolve(),
        consent_who=consent_who.strip(),
        consent_statement=consent_statement.strip(),
        consent_date=consent_date or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        language=language or "en",
    )
    record = profile_to_dict(profile) | {
        "sample_sha256": profile.sample_sha256,
        "source_file": str(Path(sample).resolve()),
        "source": asdict(report),
    }
    (folder / PROFILE_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("voice of %s stored in %s (%.1f s of speech)", persona_id, folder, report.speech)
    return profile, report


def load_voice_profile(voices_root: str | Path, persona_id: str) -> VoiceProfile | None:
    """The stored profile of a persona, or None when it has no voice yet."""
    folder = voice_dir(voices_root, persona_id)
    f = folder / PROFILE_FILE
    if not f.is_file():
        return None
    d = json.loads(f.read_text(encoding="utf-8"))
    profile = profile_from_dict(d, base=folder)
    if not profile.sample_path.is_file():
        local = folder / SAMPLE_FILE
        if local.is_file():  # the data folder moved
            profile = profile_from_dict(d | {"sample_path": str(local)})
    return profile
