"""The lite voice: CPU only, no download. espeak-ng speaks the text; WORLD (pyworld) turns it
into the sample's voice.

How the conversion works, per voice (computed once, cached by the sample's sha256):
  * the sample is analysed by WORLD (F0, spectral envelope, aperiodicity every 5 ms) and its
    frames are described by mel-cepstral features (c1..c12 of WORLD's coded envelope);
  * espeak-ng reads a fixed calibration passage; an affine map from espeak's cepstral space to
    the sample's is fitted by iterated mutual nearest neighbours (INCA-style alignment).
Per note:
  * espeak-ng speaks the text (a female or male variant matching the sample's pitch);
  * every 5 ms frame is mapped into the sample's space and matched to the sample's own frames
    by a Viterbi search that prefers runs of consecutive sample frames (unit selection: the
    output is made of the sample's own spectral envelopes and aperiodicities, not a warp);
  * F0 follows espeak's intonation with the level and range of the sample's pitch;
  * WORLD resynthesises the result. Everything is deterministic: a persona sounds the same
    from one note to the next.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generators.voice.base import VoiceBackend, VoiceBackendError, VoiceError, VoiceProfile, split_sentences, style_params
from generators.voice.finishing import resample

log = logging.getLogger(__name__)

SR = 22050  # espeak-ng's native rate
FRAME_MS = 5.0
CEP_ORDER = 25  # WORLD coded envelope dimensions (c0 = level)
FEAT_DIMS = 12  # c1..c12 describe the envelope's shape; higher ones are mostly speaker detail
CONTEXT = 5  # frames either side stacked into a feature
JUMP_COST = 4.0  # Viterbi: leaving a run of consecutive sample frames
STAY_COST = 2.0  # Viterbi: repeating a sample frame (slowing down)
UV_COST = 20.0  # matching a voiced frame to an unvoiced one
F0_BLEND = 0.0  # share of the selected sample frames' own F0 movement in the output F0
FEMALE_F0 = 165.0  # Hz: median pitch above which espeak's female variant is the better source
CACHE_VERSION = 2

CALIBRATION_TEXT = (
    "Please call Stella. Ask her to bring these things with her from the store: six spoons of fresh "
    "snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. We also need "
    "a small plastic snake and a big toy frog for the kids. She can scoop these things into three red "
    "bags, and we will go meet her Wednesday at the train station. When the sunlight strikes raindrops "
    "in the air, they act as a prism and form a rainbow. The rainbow is a division of white light into "
    "many beautiful colours. These take the shape of a long round arch, with its path high above, and "
    "its two ends apparently beyond the horizon. Would you like some hot chocolate? I think the weather "
    "is just lovely today, isn't it? Judge the joy of the jovial azure zebra, who quickly vexed the "
    "dwarf with a huge pizza."
)

_ESPEAK_LANG = {"en": "en-us", "zh": "cmn", "zh-cn": "cmn", "pt": "pt-br"}


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """espeak-ng's speech for ``text`` as float64 samples at 22050 Hz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceBackendError("the lite voice needs espeak-ng: apt-get install espeak-ng (or scripts/system-deps.sh)")
    import soundfile

    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "--stdout", "-b", "1"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0 or len(proc.stdout) < 64:
        raise VoiceBackendError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    x, sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float64")
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SR:
        x = resample(x, sr, SR).astype(np.float64)
    return x


def espeak_voice_for(language: str) -> str:
    lang = (language or "en").lower()
    return _ESPEAK_LANG.get(lang, _ESPEAK_LANG.get(lang.split("-")[0], lang))


# ---- WORLD analysis ---------------------------------------------------------------------------


def _analyze(x: np.ndarray, with_ap: bool = True):
    import pyworld as pw

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(x, SR, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=600.0)
    f0 = pw.stonemask(x, f0, t, SR)
    sp = pw.cheaptrick(x, f0, t, SR)
    ap = pw.d4c(x, f0, t, SR) if with_ap else None
    return f0, sp, ap


def _coded(sp: np.ndarray) -> np.ndarray:
    import pyworld as pw

    return pw.code_spectral_envelope(sp, SR, CEP_ORDER)


def _stack(F: np.ndarray, w: int | None = None) -> np.ndarray:
    w = CONTEXT if w is None else w
    if w == 0 or len(F) == 0:
        return F
    idx = np.clip(np.arange(len(F))[:, None] + np.arange(-w, w + 1)[None, :], 0, len(F) - 1)
    return F[idx].reshape(len(F), -1)


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = A.astype(np.float32)
    B = B.astype(np.float32)
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(d, 0.0)


def _inca(Xs: np.ndarray, Xt: np.ndarray, iters: int = 5, ridge: float = 1.0) -> np.ndarray:
    """Affine map (d+1, d) from source to target features, fitted on mutual nearest neighbours
    and refined by iterating (INCA, Erro et al. 2010, with a global affine transform)."""
    S1 = np.concatenate([Xs, np.ones((len(Xs), 1))], axis=1)
    W = np.zeros((S1.shape[1], Xs.shape[1]))
    W[:-1] = np.eye(Xs.shape[1])
    for _ in range(iters):
        Y = S1 @ W
        D = _sqdist(Y, Xt)
        a = np.argmin(D, axis=1)
        b = np.argmin(D, axis=0)
        S = np.concatenate([S1, S1[b]])
        T = np.concatenate([Xt[a], Xt])
        W = np.linalg.solve(S.T @ S + ridge * np.eye(S.shape[1]), S.T @ T)
    return W


def _viterbi(C: np.ndarray, jump: float | None = None, stay: float | None = None) -> np.ndarray:
    """Cheapest path through the cost matrix (source frames x sample frames) where moving to
    the next sample frame is free, staying costs ``stay`` and jumping anywhere costs ``jump``."""
    jump = JUMP_COST if jump is None else jump
    stay = STAY_COST if stay is None else stay
    N, M = C.shape
    D = C[0].astype(np.float64)
    back = np.zeros((N, M), np.int8)
    best_prev = np.zeros(N, np.int64)
    cons = np.empty(M)
    for i in range(1, N):
        cons[0] = np.inf
        cons[1:] = D[:-1]
        st = D + stay
        b = int(np.argmin(D))
        jp = D[b] + jump
        best_prev[i] = b
        choice = (cons > st).astype(np.int8)
        m = np.minimum(cons, st)
        jmask = jp < m
        choice[jmask] = 2
        m[jmask] = jp
        back[i] = choice
        D = C[i] + m
    path = np.empty(N, np.int64)
    j = int(np.argmin(D))
    for i in range(N - 1, -1, -1):
        path[i] = j
        if i == 0:
            break
        c = back[i, j]
        j = j - 1 if c == 0 else (j if c == 1 else int(best_prev[i]))
    return path


@dataclass
class _VoiceModel:
    """Everything the conversion needs about one sample (and its espeak calibration)."""

    sp: np.ndarray  # (M, bins) envelopes of the usable sample frames
    ap: np.ndarray  # (M, bins) aperiodicities
    voiced: np.ndarray  # (M,) bool
    lf0: np.ndarray  # (M,) log F0 of each frame (0 where unvoiced)
    feats: np.ndarray  # (M, (2w+1)d) stacked, normalised target features
    level: np.ndarray  # (M,) c0 of each frame
    lf0_mean: float
    lf0_std: float
    espeak_voice: str
    src_mean: np.ndarray  # espeak feature normalisation
    src_std: np.ndarray
    src_lf0_mean: float
    src_lf0_std: float
    W: np.ndarray  # affine map espeak -> sample feature space

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            sp=self.sp.astype(np.float32), ap=self.ap.astype(np.float32), voiced=self.voiced, lf0=self.lf0,
            feats=self.feats.astype(np.float32), level=self.level,
            scalars=np.array([self.lf0_mean, self.lf0_std, self.src_lf0_mean, self.src_lf0_std]),
            espeak_voice=np.array(self.espeak_voice), src_mean=self.src_mean, src_std=self.src_std, W=self.W,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> _VoiceModel:
        z = np.load(path, allow_pickle=False)
        s = z["scalars"]
        return cls(
            sp=z["sp"].astype(np.float64), ap=z["ap"].astype(np.float64), voiced=z["voiced"], lf0=z["lf0"], feats=z["feats"],
            level=z["level"], lf0_mean=float(s[0]), lf0_std=float(s[1]), espeak_voice=str(z["espeak_voice"]),
            src_mean=z["src_mean"], src_std=z["src_std"], src_lf0_mean=float(s[2]), src_lf0_std=float(s[3]), W=z["W"],
        )


class LiteVoice(VoiceBackend):
    """espeak-ng converted toward the sample with WORLD; see the module docstring."""

    name = "lite"
    sample_rate = SR

    def __init__(self, cache_dir: str | Path | None = None, *, rate: int = 165, max_voices: int = 8):
        if not espeak_available():
            raise VoiceBackendError("the lite voice needs espeak-ng: apt-get install espeak-ng (or scripts/system-deps.sh)")
        try:
            import pyworld  # noqa: F401
        except ImportError as exc:
            raise VoiceBackendError(f"the lite voice needs pyworld: pip install pyworld ({exc})") from exc
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.rate = rate
        self._models: OrderedDict[str, _VoiceModel] = OrderedDict()
        self._max_voices = max_voices
        self._lock = threading.Lock()

    # -- per voice ------------------------------------------------------------------------------
    def cache_path(self, profile: VoiceProfile, language: str | None = None) -> Path | None:
        if self.cache_dir is None:
            return None
        lang = espeak_voice_for(language or profile.language).replace("/", "_")
        return self.cache_dir / "lite" / f"{profile.sample_sha256}-{lang}-v{CACHE_VERSION}.npz"

    def prepare(self, profile: VoiceProfile, language: str | None = None) -> None:
        self._model(profile, language or profile.language)

    def _model(self, profile: VoiceProfile, language: str) -> _VoiceModel:
        key = f"{profile.sample_sha256}:{espeak_voice_for(language)}"
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            path = self.cache_path(profile, language)
            model = None
            if path is not None and path.is_file():
                try:
                    model = _VoiceModel.load(path)
                except Exception as exc:  # a damaged cache is rebuilt
                    log.warning("lite voice cache %s unreadable (%s); rebuilding", path, exc)
            if model is None:
                model = self._build_model(profile, language)
                if path is not None:
                    model.save(path)
            self._models[key] = model
            while len(self._models) > self._max_voices:
                self._models.popitem(last=False)
            return model

    def _build_model(self, profile: VoiceProfile, language: str) -> _VoiceModel:
        from generators.voice.profile import load_audio

        x, sr = load_audio(profile.sample_path)
        x = resample(x, sr, SR).astype(np.float64)
        f0, sp, ap = _analyze(x)
        c = _coded(sp)
        level = c[:, 0]
        usable = level > np.percentile(level, 20)  # drop pauses and breaths
        voiced = f0 > 0
        if voiced.sum() < 50:
            raise VoiceError("the voice sample has too little voiced speech for the lite voice")
        lf0 = np.log(f0[voiced])
        median_f0 = float(np.exp(np.median(lf0)))
        base = espeak_voice_for(language)
        variant = f"{base}+f3" if median_f0 > FEMALE_F0 else base
        t_feat = c[:, 1 : 1 + FEAT_DIMS]
        t_mean, t_std = t_feat[usable].mean(0), t_feat[usable].std(0) + 1e-8
        Xt = (t_feat - t_mean) / t_std

        # calibration: espeak's own space, mapped onto the sample's
        try:
            cal = espeak(CALIBRATION_TEXT, variant, self.rate)
        except VoiceBackendError:
            log.warning("espeak-ng has no voice %r; using en-us", variant)
            variant = "en-us+f3" if median_f0 > FEMALE_F0 else "en-us"
            cal = espeak(CALIBRATION_TEXT, variant, self.rate)
        cf0, csp, _ = _analyze(cal, with_ap=False)
        cc = _coded(csp)
        c_active = cc[:, 0] > np.percentile(cc[:, 0], 20)
        s_feat = cc[:, 1 : 1 + FEAT_DIMS]
        s_mean, s_std = s_feat[c_active].mean(0), s_feat[c_active].std(0) + 1e-8
        Xs = (s_feat - s_mean) / s_std
        W = _inca(Xs[c_active], Xt[usable])
        cvo = cf0 > 0
        clf0 = np.log(cf0[cvo])

        idx = np.flatnonzero(usable)
        f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731  (as stored in the cache file)
        return _VoiceModel(
            sp=f32(sp[idx]), ap=f32(ap[idx]), voiced=voiced[idx], lf0=np.log(np.maximum(f0, 1.0))[idx], feats=_stack(Xt)[idx].astype(np.float32), level=level[idx],
            lf0_mean=float(lf0.mean()), lf0_std=float(lf0.std()), espeak_voice=variant,
            src_mean=s_mean, src_std=s_std, src_lf0_mean=float(clf0.mean()), src_lf0_std=float(clf0.std() + 1e-6), W=W,
        )

    # -- per note -------------------------------------------------------------------------------
    def synthesize(self, text: str, profile: VoiceProfile | None, *, language: str = "en", style: str | None = None) -> np.ndarray:
        parts = [self._sentence(s, profile, language, style) for s in split_sentences(text)]
        if not parts:
            raise VoiceError("nothing to say: the text is empty")
        gap = np.zeros(int(0.12 * SR), np.float32)
        out: list[np.ndarray] = []
        for i, p in enumerate(parts):
            if i:
                out.append(gap)
            out.append(p)
        return np.concatenate(out)

    def _sentence(self, text: str, profile: VoiceProfile | None, language: str, style: str | None) -> np.ndarray:
        import pyworld as pw

        st = style_params(style)
        rate = int(round(self.rate * st.rate))
        if profile is None:  # the stock voice
            return espeak(text, espeak_voice_for(language), rate).astype(np.float32)
        m = self._model(profile, language)
        src = espeak(text, m.espeak_voice, rate)
        f0, out_sp, out_ap, path = self.convert_frames(src, profile, language)
        voiced = f0 > 0

        # pitch: espeak's intonation, the sample's level and range, the style's shift and range
        out_f0 = np.zeros_like(f0)
        if st.whisper:
            out_ap[:] = np.maximum(out_ap, 0.95)
        elif voiced.any():
            z = (np.log(f0[voiced]) - m.src_lf0_mean) / m.src_lf0_std
            if F0_BLEND > 0:  # the sample's own F0 movement inside the selected runs
                zt = np.where(m.voiced[path], (m.lf0[path] - m.lf0_mean) / max(m.lf0_std, 1e-3), 0.0)
                from scipy.ndimage import median_filter

                zt = median_filter(zt, size=7)[voiced]
                z = (1 - F0_BLEND) * z + F0_BLEND * zt
            lf0 = m.lf0_mean + st.pitch_shift * np.log(2) / 12 + z * m.lf0_std * st.pitch_range
            out_f0[voiced] = np.exp(lf0)
        y = pw.synthesize(out_f0, np.ascontiguousarray(out_sp), np.ascontiguousarray(out_ap), SR, FRAME_MS)
        peak = float(np.max(np.abs(y))) if len(y) else 0.0
        if peak > 0:
            y = y / peak * 0.9
        return y.astype(np.float32)

    def espeak_voice(self, profile: VoiceProfile | None, language: str = "en") -> str:
        """The espeak-ng voice the conversion starts from (the stock voice without a profile)."""
        return self._model(profile, language).espeak_voice if profile is not None else espeak_voice_for(language)

    def convert_frames(self, src: np.ndarray, profile: VoiceProfile, language: str = "en", analysis=None):
        """WORLD frames (5 ms) of espeak-ng speech ``src`` in the sample's voice: espeak's
        F0, and the spectral envelopes and aperiodicities of the sample frames the Viterbi
        search picks, at espeak's loudness contour. ``analysis``: ``src``'s own (f0, sp)
        when the caller has it. Returns (f0, sp, ap, path)."""
        from scipy.ndimage import uniform_filter1d

        m = self._model(profile, language)
        f0, sp = analysis if analysis is not None else _analyze(src, with_ap=False)[:2]
        c = _coded(sp)
        Xs = (c[:, 1 : 1 + FEAT_DIMS] - m.src_mean) / m.src_std
        Xs = np.concatenate([Xs, np.ones((len(Xs), 1))], axis=1) @ m.W
        C = _sqdist(_stack(Xs), m.feats) / m.feats.shape[1]
        voiced = f0 > 0
        C += UV_COST * (voiced[:, None] != m.voiced[None, :])
        path = _viterbi(C)
        out_sp = m.sp[path].copy()
        out_ap = m.ap[path].copy()
        # loudness contour from espeak, level from the sample
        gain = (c[:, 0] - c[:, 0].max()) - (m.level[path] - m.level.max())
        out_sp *= np.exp(uniform_filter1d(gain, 3))[:, None]
        return f0, out_sp, out_ap, path

    def describe(self) -> dict:
        return {"backend": self.name, "engine": "espeak-ng + WORLD unit selection", "sample_rate": SR}
