"""The lite singer: espeak-ng's speech moved onto the melody with WORLD.

espeak-ng reads the lyrics once, a comma after every word (a pause to cut at); WORLD analyses it (5 ms
frames) and, for a character with a voice, the lite voice's unit selection replaces the
spectral envelopes with the character's own (``LiteVoice.convert_frames``). The words
are cut apart at the pauses and each word into its syllables at the valleys of its
loudness; each syllable's consonants keep their spoken length (the onset lands just
before the note, so the vowel falls on the beat) and its vowel is stretched to the
note. F0 is the note's pitch, with a short glide from the previous note and a vibrato
that grows into long notes. WORLD then sings the whole part at once.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from generators.music.composer import VocalNote
from generators.music.theory import midi_to_hz

log = logging.getLogger(__name__)

SR = 22050  # espeak-ng's and the lite voice's rate
FRAME = 0.005
ONSET_MAX = 0.09  # s of a syllable's leading consonants kept as spoken
CODA_MAX = 0.12
VIBRATO_HZ = 5.4
VIBRATO_CENTS = 28.0


class SingerError(RuntimeError):
    pass


def _words(notes: list[VocalNote]) -> list[list[int]]:
    """Indices of ``notes`` grouped by word (a word's syllables are consecutive notes)."""
    groups: list[list[int]] = [[]]
    for i, n in enumerate(notes):
        groups[-1].append(i)
        if n.syllable.word_end:
            groups.append([])
    return [g for g in groups if g]


def _spoken(word: str) -> str:
    w = re.sub(r"[^A-Za-z0-9']", "", word)
    return w or "ah"


def _segments(energy: np.ndarray, n_words: int) -> list[tuple[int, int]] | None:
    """Frame ranges of the words, cut at the silences espeak put between them."""
    db = 10 * np.log10(np.maximum(energy, 1e-20))
    # over the quietest frames, and near enough to the speech (espeak's female voices
    # breathe a little noise into the pauses)
    loud = db > max(float(np.percentile(db, 10)) + 18, float(np.percentile(db, 95)) - 28)
    runs, start = [], None
    for i, on in enumerate(loud):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append([start, i])
            start = None
    if start is not None:
        runs.append([start, len(loud)])
    if not runs:
        return None
    # join runs split by short gaps (stop consonants): gaps under 120 ms are inside a word
    merged = [runs[0]]
    for a, b in runs[1:]:
        if a - merged[-1][1] < int(0.12 / FRAME):
            merged[-1][1] = b
        else:
            merged.append([a, b])
    if len(merged) != n_words:
        return None
    return [(a, b) for a, b in merged]


def _syllable_cuts(energy: np.ndarray, voiced: np.ndarray, a: int, b: int, k: int) -> list[int]:
    """k-1 frame indices in (a, b) between a word's syllables: loudness valleys between
    its k loudest voiced peaks, else equal parts."""
    if k <= 1:
        return []
    e = np.convolve(np.log(energy[a:b] + 1e-12), np.ones(5) / 5, mode="same")
    v = voiced[a:b]
    peaks = [i for i in range(1, len(e) - 1) if v[i] and e[i] >= e[i - 1] and e[i] >= e[i + 1]]
    peaks.sort(key=lambda i: -e[i])
    chosen: list[int] = []
    for p in peaks:
        if all(abs(p - q) >= 8 for q in chosen):
            chosen.append(p)
        if len(chosen) == k:
            break
    if len(chosen) == k:
        chosen.sort()
        return [a + chosen[j] + int(np.argmin(e[chosen[j]:chosen[j + 1]])) for j in range(k - 1)]
    return [a + (b - a) * j // k for j in range(1, k)]


def sing(notes: list[VocalNote], length: float, *, voice=None, profile=None, language: str = "en",
         seed: int = 0) -> np.ndarray:
    """The vocal part: ``notes`` sung over ``length`` seconds, float32 at 22050 Hz.
    ``voice`` is a ``LiteVoice`` (for espeak-ng and the conversion); with a ``profile``
    the character's own voice sings, without one espeak-ng's stock voice."""
    import pyworld as pw

    from generators.voice.lite import _analyze, espeak, espeak_voice_for

    frames_total = int(np.ceil(length / FRAME)) + 1
    if not notes:
        return np.zeros(int(length * SR), np.float32)
    words = _words(notes)
    text = ", ".join(_spoken(notes[g[0]].syllable.word) for g in words)
    ev = voice.espeak_voice(profile, language) if voice is not None else espeak_voice_for(language)
    src = espeak(text, ev, 150)
    convert = profile is not None and voice is not None
    f0_src, sp, ap = _analyze(src, with_ap=not convert)
    n_src = min(len(f0_src), len(sp))
    energy = sp[:n_src].sum(axis=1)  # espeak's own loudness: silent between words
    voiced = f0_src[:n_src] > 0
    segs = _segments(energy, len(words))
    if segs is not None and convert:
        f0_src, sp, ap, _ = voice.convert_frames(src, profile, language, analysis=(f0_src, sp))
    if segs is None:  # espeak ran words together: read each word on its own
        log.debug("singer: word cuts did not match (%d words); reading words one by one", len(words))
        pieces_sp, pieces_ap, pieces_f0, segs = [], [], [], []
        at = 0
        for g in words:
            w = espeak(_spoken(notes[g[0]].syllable.word), ev, 150)
            if profile is not None and voice is not None:
                f, s_, a_, _ = voice.convert_frames(w, profile, language)
            else:
                f, s_, a_ = _analyze(w)
            e = s_.sum(axis=1)
            on = np.flatnonzero(e > max(float(np.percentile(e, 10)), 1e-10) * 10 ** 1.8)
            lo, hi = (int(on[0]), int(on[-1]) + 1) if len(on) else (0, len(f))
            pieces_sp.append(s_[lo:hi]), pieces_ap.append(a_[lo:hi]), pieces_f0.append(f[lo:hi])
            segs.append((at, at + hi - lo))
            at += hi - lo
        sp, ap, f0_src = np.concatenate(pieces_sp), np.concatenate(pieces_ap), np.concatenate(pieces_f0)
        n_src = len(f0_src)
        energy, voiced = sp.sum(axis=1), f0_src > 0

    bins = sp.shape[1]
    out_sp = np.full((frames_total, bins), 1e-12)
    out_ap = np.ones((frames_total, bins))
    out_f0 = np.zeros(frames_total)
    rng = np.random.default_rng(seed)
    prev_pitch: float | None = None
    prev_end = -1.0
    for g, (a, b) in zip(words, segs):
        cuts = [a, *_syllable_cuts(energy, voiced, a, b, len(g)), b]
        for j, ni in enumerate(g):
            note = notes[ni]
            sa, sb = cuts[j], max(cuts[j] + 1, cuts[j + 1])
            v = np.flatnonzero(voiced[sa:sb])
            if len(v):
                va, vb = sa + int(v[0]), sa + int(v[-1]) + 1
            else:  # no vowel found: treat the middle as one
                va, vb = sa + (sb - sa) // 3, sa + 2 * (sb - sa) // 3 + 1
            onset = list(range(sa, va))[-int(ONSET_MAX / FRAME):]
            coda = list(range(vb, sb))[: int(CODA_MAX / FRAME)]
            n_start = int(round(note.start / FRAME))
            n_end = max(n_start + 4, int(round(note.end / FRAME)))
            # the onset before the beat, unless the previous note is still sounding there
            o_start = max(n_start - len(onset), int(round(max(prev_end, 0.0) / FRAME)))
            onset = onset[len(onset) - (n_start - o_start):] if n_start > o_start else []
            body = max(4, n_end - n_start - len(coda))
            src_idx = np.linspace(va, vb - 1, body) if vb > va else np.full(body, va)
            idx = np.concatenate([np.array(onset, float), src_idx, np.array(coda, float)]).round().astype(int)
            idx = np.clip(idx, 0, n_src - 1)
            t0 = n_start - len(onset)
            t1 = min(frames_total, t0 + len(idx))
            idx = idx[: t1 - t0]
            if t1 <= t0:
                continue
            out_sp[t0:t1] = sp[idx]
            out_ap[t0:t1] = ap[idx]
            # pitch: the note, a glide in from the last one, vibrato growing into long notes
            hz = midi_to_hz(note.pitch)
            n_body = min(body, t1 - n_start - 0)
            tt = np.arange(n_body) * FRAME
            cents = np.zeros(n_body)
            if prev_pitch is not None and note.start - prev_end < 0.15:
                glide = np.exp(-tt / 0.035)
                cents += 1200 * np.log2(prev_pitch / hz) * glide
            if n_body * FRAME > 0.3:
                ramp = np.clip((tt - 0.15) / 0.25, 0, 1)
                phase = rng.uniform(0, 2 * np.pi)
                cents += VIBRATO_CENTS * ramp * np.sin(2 * np.pi * VIBRATO_HZ * tt + phase)
            f = hz * 2 ** (cents / 1200)
            seg_voiced = voiced[idx[len(onset): len(onset) + n_body]] if len(idx) > len(onset) else np.zeros(0, bool)
            body_frames = np.arange(n_start, n_start + n_body)
            keep = body_frames < frames_total
            # the stretched vowel is voiced throughout; its edges keep the spoken voicing
            vmask = np.ones(n_body, bool)
            if len(seg_voiced) == n_body:
                vmask[:2] = seg_voiced[:2]
                vmask[-2:] = seg_voiced[-2:]
            out_f0[body_frames[keep]] = np.where(vmask, f, 0.0)[keep]
            for k, si in enumerate(onset):  # voiced onset consonants (l, m, n, w) glide in at the pitch
                if voiced[si]:
                    out_f0[t0 + k] = hz
            for k, si in enumerate(coda):
                fi = n_start + n_body + k
                if fi < frames_total and voiced[si]:
                    out_f0[fi] = hz
            prev_pitch, prev_end = hz, note.end
    # voiced frames need a real aperiodicity: keep the sample's (or espeak's) per frame
    y = pw.synthesize(out_f0, np.ascontiguousarray(out_sp), np.ascontiguousarray(out_ap), SR, FRAME * 1000)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = y / peak * 0.9
    n = int(length * SR)
    out = np.zeros(n, np.float32)
    out[: min(n, len(y))] = y[:n]
    return out
