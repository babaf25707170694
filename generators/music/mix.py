"""Mixing and mastering: levels, panning, reverb, ducking, -14 LUFS without clipping.

Each track is brought to a level set per role (measured as RMS over its sounding part),
panned, and sent to a reverb (a fixed, seeded, exponentially decaying noise impulse,
decorrelated left and right). The backing ducks under the vocal (a smoothed envelope
follower). The master is normalised to the integrated loudness streaming services play
at (-14 LUFS, ITU-R BS.1770 by pyloudnorm) and held under -1 dBFS by a look-ahead
limiter, so it never clips.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import butter, oaconvolve, sosfilt

SR = 44100
TARGET_LUFS = -14.0
CEILING_DB = -1.0
LEVELS = {  # dBFS RMS of each role while it sounds
    "vocal": -17.0, "lead": -23.0, "chords": -23.0, "bass": -21.0, "pad": -29.0, "drums": -21.0,
    "backing": -18.0,  # a neural model's whole backing in one track
}
PANS = {"vocal": 0.0, "lead": 0.25, "chords": -0.3, "bass": 0.0, "pad": 0.0, "drums": 0.05, "backing": 0.0}
SENDS = {"vocal": 0.22, "lead": 0.18, "chords": 0.12, "bass": 0.0, "pad": 0.2, "drums": 0.06, "backing": 0.03}


def _db(x: float) -> float:
    return 10 ** (x / 20)


def _level(x: np.ndarray, target_db: float) -> np.ndarray:
    sounding = np.abs(x) > 1e-4
    if sounding.sum() < SR // 20:
        return x
    rms = float(np.sqrt(np.mean(x[sounding] ** 2)))
    return x * (_db(target_db) / max(rms, 1e-9))


def _pan(x: np.ndarray, pos: float) -> np.ndarray:
    a = (pos + 1) * np.pi / 4
    return np.stack([x * np.cos(a), x * np.sin(a)], axis=1) * np.sqrt(2)


def impulse_response(seconds: float = 1.6, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = np.exp(-t * 6.9 / seconds)  # -60 dB at the end
    ir = rng.standard_normal((n, 2)) * env[:, None]
    ir[: int(0.012 * SR)] = 0.0  # pre-delay
    sos = butter(2, 6000, "low", fs=SR, output="sos")
    ir = sosfilt(sos, ir, axis=0)
    return ir / np.sqrt((ir ** 2).sum(axis=0, keepdims=True))


def _reverb(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    out = np.stack([oaconvolve(x, ir[:, c])[: len(x)] for c in range(2)], axis=1)
    return out


def _envelope(x: np.ndarray, window: float = 0.05) -> np.ndarray:
    e = uniform_filter1d(np.abs(x), int(window * SR))
    e = maximum_filter1d(e, int(0.2 * SR))  # hold through the gaps between syllables
    return uniform_filter1d(e, int(0.1 * SR))


def limit(x: np.ndarray, ceiling_db: float = CEILING_DB, lookahead: float = 0.005) -> np.ndarray:
    """A look-ahead peak limiter: the gain is lowered before a peak arrives and held
    as long after it (a minimum filter), then smoothed over the look-ahead."""
    ceiling = _db(ceiling_db)
    peak = np.max(np.abs(x), axis=1) if x.ndim == 2 else np.abs(x)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    la = max(1, int(lookahead * SR))
    g = -maximum_filter1d(-need, size=2 * la + 1)  # the lowest gain around each sample
    g = uniform_filter1d(g, la)  # smooth: still at or under what each peak needs
    out = x * (g[:, None] if x.ndim == 2 else g)
    return np.clip(out, -ceiling, ceiling)  # anything the smoothing let through


def loudness(x: np.ndarray) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(SR).integrated_loudness(x))


def master(x: np.ndarray, target: float = TARGET_LUFS) -> tuple[np.ndarray, float]:
    """Normalise to ``target`` LUFS under the limiter's ceiling; returns (audio, LUFS)."""
    y = x
    for _ in range(3):  # the limiter takes a little loudness back: measure again
        lufs = loudness(y)
        if not np.isfinite(lufs):
            return y, lufs
        gain = target - lufs
        if abs(gain) < 0.2:
            break
        y = limit(y * _db(gain))
    return y, loudness(y)


def mix(tracks: dict[str, np.ndarray], vocal: np.ndarray | None, *, instrumental: bool = False
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(master, backing stem, vocal stem, LUFS): every array stereo float32 at 44.1 kHz."""
    n = max([len(t) for t in tracks.values()] + [len(vocal) if vocal is not None else 0])
    ir = impulse_response()
    dry = np.zeros((n, 2))
    send = np.zeros(n)
    for name, x in tracks.items():
        x = np.pad(x.astype(np.float64), (0, n - len(x)))
        role = name if name in LEVELS else "chords"
        lvl = LEVELS[role] + (4.0 if instrumental and role == "lead" else 0.0)
        x = _level(x, lvl)
        dry += _pan(x, PANS[role])
        send += x * SENDS[role]
    backing = dry + _reverb(send, ir)
    voc = None
    if vocal is not None and np.any(vocal):
        v = np.pad(vocal.astype(np.float64), (0, n - len(vocal)))
        v = sosfilt(butter(2, 110, "high", fs=SR, output="sos"), v)
        v = _level(v, LEVELS["vocal"])
        env = _envelope(v)
        duck = 1.0 - 0.3 * np.clip(env / max(float(env.max()), 1e-9), 0, 1)  # about -3 dB under the voice
        backing = backing * duck[:, None]
        voc = _pan(v, 0.0) + _reverb(v * SENDS["vocal"], ir)
    total = backing + (voc if voc is not None else 0.0)
    mastered, lufs = master(total)
    # the stems carry the master's gain, so vocals + backing sound like the song
    g = float(np.sqrt(np.mean(mastered ** 2)) / max(np.sqrt(np.mean(total ** 2)), 1e-12))
    backing_stem = np.clip(backing * g, -1, 1).astype(np.float32)
    vocal_stem = np.clip(voc * g, -1, 1).astype(np.float32) if voc is not None else None
    return mastered.astype(np.float32), backing_stem, vocal_stem, lufs
