"""The lite composer: lyrics, a style, a key and a tempo in; a score out.

A song form (intro, verses and choruses, outro) sized to the duration; one chord a bar
from the style's progressions; a vocal melody fitted to the lyrics' syllables (stressed
syllables on strong beats by a small dynamic programme, chord tones on strong beats,
steps between them, the chorus higher than the verse, a repeated chorus sung to the
same tune); bass, chords, pad and drums in the style's manner. Everything random comes
from one seeded generator, so the same request writes the same score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from generators.music.lyrics import Line, Lyrics, Syllable
from generators.music.render import load_pretty_midi
from generators.music.theory import GROOVES, Key, Style

pretty_midi = load_pretty_midi()

SLOTS_PER_BAR = 8  # the vocal's grid: eighth notes
BARS_PER_LINE = 2


@dataclass(frozen=True, slots=True)
class VocalNote:
    start: float  # seconds
    end: float
    pitch: int  # MIDI
    syllable: Syllable
    line: int  # index into Score.lines


@dataclass(frozen=True, slots=True)
class Part:
    name: str  # "intro", "verse", "chorus", "bridge", "outro"
    start: float
    end: float
    bars: int


@dataclass
class Score:
    key: Key
    tempo: float
    style: Style
    parts: list[Part]
    backing: pretty_midi.PrettyMIDI  # chords, bass, pad, drums and the lead's own lines
    vocal: list[VocalNote]  # the tune (sung, or played by the lead in an instrumental)
    lines: list[tuple[float, str]]  # (start, text) of each sung line
    duration: float
    notes: list[str] = field(default_factory=list)

    @property
    def bar(self) -> float:
        return 240.0 / self.tempo

    def melody_midi(self) -> pretty_midi.PrettyMIDI:
        """The sung notes alone, as a MIDI file would hold them (``melody.mid``)."""
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.tempo)
        inst = pretty_midi.Instrument(program=self.style.lead, name="vocal melody")
        inst.notes = [pretty_midi.Note(velocity=100, pitch=n.pitch, start=n.start, end=n.end) for n in self.vocal]
        pm.instruments.append(inst)
        return pm


def plan_form(lyrics: Lyrics, bars_available: int) -> tuple[list[tuple[str, int]], list[str]]:
    """Sections in singing order, as (kind, index into lyrics.sections), fitted to the bars
    there are: verse, chorus, verse, chorus..., a chorus sung again where a verse runs out."""
    notes: list[str] = []
    verses = [i for i, s in enumerate(lyrics.sections) if s.kind != "chorus"]
    choruses = [i for i, s in enumerate(lyrics.sections) if s.kind == "chorus"]
    order: list[int] = []
    if not choruses:
        order = list(range(len(lyrics.sections)))
    else:
        vi = 0
        while vi < len(verses) or not order:
            if vi < len(verses):
                order.append(verses[vi])
                vi += 1
            order.append(choruses[min(len(order) // 2, len(choruses) - 1)] if len(choruses) > 1 else choruses[0])
            if vi >= len(verses):
                break
    fitted, used = [], 0
    sung_chorus = False
    for i in order:
        need = len(lyrics.sections[i].lines) * BARS_PER_LINE
        if used + need > bars_available:
            room = (bars_available - used) // BARS_PER_LINE
            if not fitted and choruses:  # not even one section fits: what fits of the chorus
                i = choruses[0]
                room = max(1, bars_available // BARS_PER_LINE)
            if room >= 1 and (not sung_chorus or not fitted):
                # the first chorus is the song's point: as many of its lines as fit
                i = i if lyrics.sections[i].kind == "chorus" or not choruses else choruses[0]
                lyrics.sections[i].lines = lyrics.sections[i].lines[:room]
                fitted.append((lyrics.sections[i].kind, i))
                sung_chorus = sung_chorus or lyrics.sections[i].kind == "chorus"
            notes.append("the lyrics were longer than the song, so I sang the first part")
            break
        fitted.append((lyrics.sections[i].kind, i))
        sung_chorus = sung_chorus or lyrics.sections[i].kind == "chorus"
        used += need
    else:  # room left: the chorus once more
        if choruses:
            need = len(lyrics.sections[choruses[0]].lines) * BARS_PER_LINE
            if used + need <= bars_available and bars_available - used >= need:
                fitted.append(("chorus", choruses[0]))
    return fitted, notes


def _slot_weight(slot: int) -> int:
    if slot % SLOTS_PER_BAR == 0:
        return 3
    if slot % (SLOTS_PER_BAR // 2) == 0:
        return 2
    return 1 if slot % 2 == 0 else 0


def fit_rhythm(line: Line, slots: int, density: float, rng: random.Random) -> list[tuple[int, int]]:
    """(start slot, length in slots) for each syllable of ``line`` within ``slots`` eighths:
    stressed syllables on strong slots, the last syllable held, a breath at the end."""
    syl = line.syllables
    n = len(syl)
    usable = slots - 1  # the last eighth is a breath
    if n >= usable:  # more syllables than eighths: sixteenth pairs would be better; squeeze evenly
        step = usable / n
        starts = [int(i * step) for i in range(n)]
        return [(s, max(1, (starts[i + 1] if i + 1 < n else usable) - s)) for i, s in enumerate(starts)]
    inf = float("inf")
    latest_start = max(0, usable - n - 1)
    # cost[i][s]: syllable i starts at slot s
    cost = [[inf] * usable for _ in range(n)]
    back = [[-1] * usable for _ in range(n)]

    def here(i: int, s: int) -> float:
        w = _slot_weight(s)
        c = 0.0
        if syl[i].stressed:
            c += (3 - w) * 1.2
        elif w == 3:
            c += 1.5
        return c

    for s in range(0, min(latest_start, 3) + 1):
        cost[0][s] = here(0, s) + 0.4 * s + rng.random() * 0.3
    for i in range(1, n):
        for s in range(i, usable - (n - 1 - i)):
            best, arg = inf, -1
            for p in range(max(0, s - 4), s):
                if cost[i - 1][p] == inf:
                    continue
                gap = s - p
                c = cost[i - 1][p]
                if gap > 1:  # a syllable held: fine when stressed or at a word's end
                    c += (gap - 1) * (0.3 if syl[i - 1].stressed or syl[i - 1].word_end else 0.9)
                c += (1.0 - density) * (1 if gap == 1 else 0) * 0.5
                if c < best:
                    best, arg = c, p
            if arg >= 0:
                cost[i][s] = best + here(i, s) + rng.random() * 0.25
                back[i][s] = arg
    # the last syllable: prefer a strong slot with room to hold
    ends = [(cost[n - 1][s] + (0 if usable - s >= 2 else 1.0), s) for s in range(usable) if cost[n - 1][s] < inf]
    _, s = min(ends)
    starts = [0] * n
    for i in range(n - 1, -1, -1):
        starts[i] = s
        s = back[i][s]
    out = []
    for i, st in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < n else usable
        length = nxt - st
        if i + 1 < n and length > 2 and not syl[i].stressed and not syl[i].word_end:
            length = 2  # an unstressed syllable inside a word is not held long
        out.append((st, length))
    return out


class _Melodist:
    """Pitches for a phrase: chord tones on strong beats, steps between, a contour."""

    def __init__(self, key: Key, low: int, high: int, rng: random.Random):
        self.key, self.low, self.high, self.rng = key, low, high, rng
        self.scale_pitches = [p for p in range(low, high + 1) if key.in_scale(p)]
        mid = (low + high) // 2
        self.prev = min(self.scale_pitches, key=lambda p: abs(p - mid + 2))

    def _near(self, candidates: list[int], target: int) -> int:
        return min(candidates, key=lambda p: (abs(p - target), p))

    def phrase(self, rhythm: list[tuple[int, int]], chord_at, kind: str, last_line: bool, first_line: bool) -> list[int]:
        span = self.high - self.low
        if kind == "chorus":
            base = self.low + int(span * 0.62)
        elif kind == "bridge":
            base = self.low + int(span * 0.5)
        else:
            base = self.low + int(span * 0.35)
        if first_line:
            self.prev = self._near(self.scale_pitches, base)
        n = len(rhythm)
        arc = [base + round(3 * (1 - abs(2 * i / max(1, n - 1) - 1))) for i in range(n)]  # rise and fall
        out = []
        for i, (slot, _) in enumerate(rhythm):
            chord = chord_at(slot)
            tones = [p for p in self.scale_pitches if any((p - c) % 12 == 0 for c in chord)]
            target = (arc[i] + self.prev) // 2 + self.rng.choice((-1, 0, 0, 1))
            strong = _slot_weight(slot) >= 2 or i == n - 1
            if strong and tones:
                pitch = self._near(tones, target)
            else:
                idx = self.scale_pitches.index(self._near(self.scale_pitches, self.prev))
                step = self.rng.choice((-1, 1, 1, -1, 0, 2, -2)) if abs(target - self.prev) < 2 else (1 if target > self.prev else -1)
                pitch = self.scale_pitches[max(0, min(len(self.scale_pitches) - 1, idx + step))]
            if abs(pitch - self.prev) > 7:  # no wild leaps
                pitch = self._near(self.scale_pitches, self.prev + (5 if pitch > self.prev else -5))
            out.append(pitch)
            self.prev = pitch
        if last_line and kind == "chorus":  # the song's home: end on the tonic
            tonics = [p for p in self.scale_pitches if (p - self.key.tonic) % 12 == 0]
            if tonics:
                out[-1] = self._near(tonics, out[-1])
        return out


def compose(lyrics: Lyrics, style: Style, key: Key, tempo: float, duration: float, seed: int, *,
            vocal_range: tuple[int, int] = (57, 76), instrumental: bool = False) -> Score:
    rng = random.Random(seed)
    bar = 240.0 / tempo
    eighth = bar / SLOTS_PER_BAR
    total_bars = max(4, int(round(duration / bar)))
    intro = 2 if total_bars >= 14 else 1
    outro = 2 if total_bars >= 16 else 1
    form, notes = plan_form(lyrics, total_bars - intro - outro)
    verse_prog = rng.choice(style.verse)
    chorus_prog = rng.choice(style.chorus)

    parts: list[Part] = [Part("intro", 0.0, intro * bar, intro)]
    chords: list[tuple[int, ...]] = []  # one a bar
    for _ in range(intro):
        chords.append(key.chord(chorus_prog[len(chords) % len(chorus_prog)], seventh=style.sevenths))
    vocal: list[VocalNote] = []
    lines: list[tuple[float, str]] = []
    melodist = _Melodist(key, *vocal_range, rng)
    tunes: dict[tuple[str, int, str], tuple[list[tuple[int, int]], list[int]]] = {}  # the same words, the same tune
    t_bar = intro
    for kind, si in form:
        section = lyrics.sections[si]
        prog = chorus_prog if kind == "chorus" else verse_prog
        start_bar = t_bar
        for li, line in enumerate(section.lines):
            line_bar = t_bar
            for b in range(BARS_PER_LINE):
                chords.append(key.chord(prog[(li * BARS_PER_LINE + b) % len(prog)], seventh=style.sevenths))
            tune_key = (kind, li, line.text.lower())
            if tune_key in tunes:  # the chorus again: the same tune
                rhythm, pitches = tunes[tune_key]
            else:
                rhythm = fit_rhythm(line, SLOTS_PER_BAR * BARS_PER_LINE, style.density, rng)

                def chord_at(slot: int, line_bar=line_bar) -> tuple[int, ...]:
                    return chords[line_bar + slot // SLOTS_PER_BAR]

                pitches = melodist.phrase(rhythm, chord_at, kind, li == len(section.lines) - 1, li == 0)
                tunes[tune_key] = (rhythm, pitches)
            t0 = line_bar * bar
            lines.append((t0 + rhythm[0][0] * eighth, line.text))
            for (slot, length), pitch, s in zip(rhythm, pitches, line.syllables):
                start = t0 + slot * eighth
                vocal.append(VocalNote(start, start + length * eighth * 0.95, pitch, s, len(lines) - 1))
            t_bar += BARS_PER_LINE
        parts.append(Part(kind, start_bar * bar, t_bar * bar, t_bar - start_bar))
    # bars left over before the outro: an instrumental break on the chorus chords
    filler = max(0, total_bars - outro - t_bar)
    if filler:
        parts.append(Part("break", t_bar * bar, (t_bar + filler) * bar, filler))
        for b in range(filler):
            chords.append(key.chord(chorus_prog[b % len(chorus_prog)], seventh=style.sevenths))
        t_bar += filler
    parts.append(Part("outro", t_bar * bar, (t_bar + outro) * bar, outro))
    for b in range(outro):
        chords.append(key.chord(1 if b == outro - 1 else chorus_prog[b % len(chorus_prog)], seventh=style.sevenths))
    t_bar += outro
    end = t_bar * bar

    backing = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    _arrange(backing, style, key, chords, bar, parts, rng)
    lead = pretty_midi.Instrument(program=style.lead, name="lead")
    hook = [n for n in vocal if lines and n.line == next((i for i, (_, _) in enumerate(lines)), 0)]
    chorus_notes = [n for n in vocal if any(p.name == "chorus" and p.start <= n.start < p.end for p in parts)]
    motif = chorus_notes[: max(4, len(chorus_notes) // 2)] or hook
    for p in parts:
        if p.name in ("intro", "outro", "break") and motif:
            shift = p.start - motif[0].start + (0.0 if p.name != "outro" else 0.0)
            for n in motif:
                s = n.start + shift
                if s >= p.end:
                    break
                lead.notes.append(pretty_midi.Note(velocity=78, pitch=n.pitch, start=s, end=min(n.end + shift, p.end)))
    if instrumental:  # the lead plays the tune where the voice would have sung
        lead.notes += [pretty_midi.Note(velocity=92, pitch=n.pitch, start=n.start, end=n.end) for n in vocal]
    backing.instruments.append(lead)
    return Score(key, tempo, style, parts, backing, vocal, lines, end, notes)


def _arrange(pm: pretty_midi.PrettyMIDI, style: Style, key: Key, chords: list[tuple[int, ...]], bar: float,
             parts: list[Part], rng: random.Random) -> None:
    six = bar / 16
    swing = style.swing * (bar / 8)

    def at(bar_i: int, step16: int) -> float:
        t = bar_i * bar + step16 * six
        if swing and step16 % 4 == 2:  # the off-beat eighth, late
            t += swing
        return t

    comp = pretty_midi.Instrument(program=style.chords, name="chords")
    bass = pretty_midi.Instrument(program=style.bass, name="bass")
    pad = pretty_midi.Instrument(program=style.pad, name="pad") if style.pad is not None else None
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    section_of = {}
    for p in parts:
        first = int(round(p.start / bar))
        for b in range(p.bars):
            section_of[first + b] = (p, b)
    for b, chord in enumerate(chords):
        part, within = section_of.get(b, (parts[-1], 0))
        quiet = part.name in ("intro", "outro")
        vel = 62 if quiet else (84 if part.name == "chorus" else 74)
        root = chord[0] - 12
        while root < 36:
            root += 12
        voiced = [p + 12 if p < 55 else p for p in chord]
        t_bar = b * bar
        last_bar = b == len(chords) - 1
        if style.comp == "block" or last_bar:
            for p in voiced:
                comp.notes.append(pretty_midi.Note(vel, p, t_bar, t_bar + bar * (0.98 if not last_bar else 1.0)))
        elif style.comp == "pulse":
            for e in range(8):
                for p in voiced:
                    comp.notes.append(pretty_midi.Note(vel - (8 if e % 2 else 0), p, at(b, e * 2), at(b, e * 2) + six * 1.6))
        elif style.comp == "arp":
            seq = [*voiced, voiced[1] + 12 if len(voiced) > 1 else voiced[0] + 12, *reversed(voiced[1:])]
            for e in range(8):
                p = seq[e % len(seq)]
                comp.notes.append(pretty_midi.Note(vel, p, at(b, e * 2), at(b, e * 2) + six * 1.8))
        elif style.comp == "strum":
            for step, down in ((0, True), (4, True), (6, False), (10, False), (12, True), (14, False)):
                order = voiced if down else list(reversed(voiced))
                for k, p in enumerate(order):
                    t = at(b, step) + k * 0.012
                    comp.notes.append(pretty_midi.Note(vel - (0 if down else 10), p, t, at(b, step) + six * 1.9))
        else:  # stabs: off-beat chords
            for step in (2, 6, 7, 10, 14):
                for p in voiced:
                    comp.notes.append(pretty_midi.Note(vel, p, at(b, step), at(b, step) + six * 0.9))
        if pad is not None and not quiet:
            for p in chord:
                pad.notes.append(pretty_midi.Note(48, p, t_bar, t_bar + bar))
        # bass
        fifth = root + 7
        if style.drums in ("rock", "synthwave", "chip"):
            pattern = [(s, root) for s in range(0, 16, 2)]
        elif style.drums == "disco":
            pattern = [(0, root), (3, root + 12), (6, root), (8, fifth), (10, root + 12), (14, fifth)]
        elif style.drums in ("ballad", "folk"):
            pattern = [(0, root), (8, fifth)]
        else:
            pattern = [(0, root), (6, root), (8, fifth), (12, root)]
        if not quiet or part.name == "outro":
            for k, (step, p) in enumerate(pattern):
                nxt = pattern[k + 1][0] if k + 1 < len(pattern) else 16
                bass.notes.append(pretty_midi.Note(90, p, at(b, step), at(b, step) + (nxt - step) * six * 0.9))
        # drums: the groove; a crash on each section's first bar, a fill on its last
        if part.name == "intro" and within == 0 and part.bars > 1:
            continue
        groove = GROOVES[style.drums]
        fill = within == part.bars - 1 and not last_bar and part.name not in ("intro",)
        for note, pattern_s in groove.items():
            for step, ch in enumerate(pattern_s):
                if ch != "x" or (fill and step >= 12 and note in (38, 37, 39)):
                    continue
                v = 100 if step % 4 == 0 else 80
                drums.notes.append(pretty_midi.Note(v - (20 if quiet else 0), note, at(b, step), at(b, step) + six))
        if fill:
            for step in (12, 13, 14, 15):
                drums.notes.append(pretty_midi.Note(70 + 8 * (step - 12), 38, at(b, step), at(b, step) + six))
        if within == 0 and part.name != "intro":
            drums.notes.append(pretty_midi.Note(96, 49, t_bar, t_bar + bar / 2))
        if last_bar:
            drums.notes.append(pretty_midi.Note(100, 49, t_bar, t_bar + bar))
    pm.instruments.extend([x for x in (comp, bass, pad, drums) if x is not None])
