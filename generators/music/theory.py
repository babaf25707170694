"""Keys, scales, chords and the styles the lite composer writes in.

A style is a handful of choices a songwriter makes before the first note: tempo, mode,
chord progressions for verse and chorus, which General MIDI instruments play the
chords, bass and lead, how the chords are played, the drum groove and the swing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor; the V chord borrows the raised 7th


@dataclass(frozen=True, slots=True)
class Key:
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" | "minor"

    @property
    def scale(self) -> tuple[int, ...]:
        return MAJOR if self.mode == "major" else MINOR

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def degree_pitch(self, degree: int, octave: int = 4) -> int:
        """MIDI pitch of scale degree ``degree`` (0-based, may exceed 6 or go negative)."""
        o, d = divmod(degree, 7)
        return 12 * (octave + 1 + o) + self.tonic + self.scale[d]

    def chord(self, numeral: int, octave: int = 3, seventh: bool = False) -> tuple[int, ...]:
        """Triad (or seventh chord) on scale degree ``numeral`` (1-7), stacked in thirds."""
        steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
        notes = [self.degree_pitch(numeral - 1 + s, octave) for s in steps]
        if self.mode == "minor" and numeral == 5:  # harmonic minor's dominant: raise the third
            notes[1] += 1
        return tuple(notes)

    def in_scale(self, pitch: int) -> bool:
        return (pitch - self.tonic) % 12 in self.scale


def parse_key(text: str | None) -> tuple[Key | None, str | None]:
    """"A minor", "f#m", "Bb", "e flat major" -> Key. Returns (key, note): the note names
    what was understood when the text was not exact (None when it was, or empty)."""
    if not text or not text.strip():
        return None, None
    t = text.strip().replace("♯", "#").replace("♭", "b")
    t = re.sub(r"\s*(flat)\b", "b", t, flags=re.I)
    t = re.sub(r"\s*(sharp)\b", "#", t, flags=re.I)
    m = re.fullmatch(r"([A-Ga-g])([#b]?)\s*(maj(?:or)?|min(?:or)?|m)?", t, flags=re.I)
    if not m:
        letter = re.search(r"[A-Ga-g]", t)
        guess = Key(NOTE_NAMES.index(letter.group(0).upper()), "minor" if re.search(r"min|\bm\b", t, re.I) else "major") \
            if letter else Key(0, "major")
        return guess, f"I didn't know the key {text!r}, so I used {guess.name}"
    name = m.group(1).upper() + m.group(2).lower()  # "EB" and "Eb" alike
    name = _FLATS.get(name, name)
    mode = "minor" if m.group(3) and m.group(3).lower().startswith("m") and m.group(3).lower() not in ("maj", "major") \
        else "major"
    if m.group(3) and m.group(3).lower() in ("m", "min", "minor"):
        mode = "minor"
    return Key(NOTE_NAMES.index(name), mode), None


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    tempo: int  # default BPM
    tempo_range: tuple[int, int]
    mode: str  # the mode a key is picked in when none is asked for
    verse: tuple[tuple[int, ...], ...]  # progressions (scale degrees, one chord a bar)
    chorus: tuple[tuple[int, ...], ...]
    chords: int  # GM program of the chord instrument
    bass: int
    lead: int  # the instrument that plays the melody in intro, outro and instrumentals
    pad: int | None  # a sustained layer under the chords (None: none)
    comp: str  # how chords are played: "block", "arp", "strum", "stabs", "pulse"
    drums: str  # groove name in GROOVES
    swing: float = 0.0  # share of an eighth the off-beat eighths are delayed by
    sevenths: bool = False
    density: float = 0.75  # how many of a phrase's slots the vocal tends to use
    description: str = ""


STYLES: dict[str, Style] = {s.name: s for s in (
    Style("pop", 104, (90, 128), "major", ((1, 5, 6, 4), (1, 6, 4, 5)), ((4, 1, 5, 6), (1, 5, 6, 4)),
          chords=0, bass=33, lead=80, pad=89, comp="pulse", drums="pop", description="bright piano pop"),
    Style("lo-fi", 78, (68, 90), "major", ((2, 5, 1, 6), (4, 3, 6, 2)), ((4, 5, 3, 6), (2, 5, 1, 1)),
          chords=4, bass=32, lead=11, pad=None, comp="block", drums="lofi", swing=0.28, sevenths=True, density=0.6,
          description="dusty electric piano, lazy swing"),
    Style("city pop", 112, (100, 124), "major", ((4, 3, 6, 5), (2, 5, 1, 6)), ((4, 5, 3, 6), (4, 5, 1, 1)),
          chords=4, bass=36, lead=62, pad=49, comp="stabs", drums="disco", sevenths=True,
          description="80s Tokyo: electric piano stabs, slap bass, strings"),
    Style("synthwave", 96, (84, 118), "minor", ((1, 6, 3, 7), (1, 7, 6, 7)), ((6, 7, 1, 1), (6, 3, 7, 1)),
          chords=90, bass=38, lead=81, pad=91, comp="pulse", drums="synthwave",
          description="analog synths, gated drums, night drive"),
    Style("ballad", 70, (58, 84), "major", ((1, 5, 6, 3), (4, 1, 2, 5)), ((4, 5, 3, 6), (4, 5, 1, 1)),
          chords=0, bass=32, lead=73, pad=48, comp="arp", drums="ballad", density=0.6,
          description="piano and strings, slow and open"),
    Style("rock", 124, (104, 150), "major", ((1, 4, 5, 4), (1, 7, 4, 1)), ((4, 5, 1, 1), (6, 4, 1, 5)),
          chords=29, bass=34, lead=30, pad=None, comp="pulse", drums="rock", density=0.8,
          description="overdriven guitars, driving drums"),
    Style("folk", 96, (80, 116), "major", ((1, 4, 1, 5), (1, 6, 4, 5)), ((4, 1, 5, 1), (4, 1, 5, 5)),
          chords=25, bass=32, lead=22, pad=None, comp="strum", drums="folk",
          description="acoustic guitar strums, harmonica, brushes"),
    Style("chiptune", 140, (120, 170), "major", ((1, 6, 4, 5), (6, 4, 1, 5)), ((1, 5, 6, 4), (4, 5, 1, 1)),
          chords=80, bass=81, lead=80, pad=None, comp="arp", drums="chip", density=0.85,
          description="square waves and fast arpeggios, 8-bit"),
)}
ALIASES = {
    "lofi": "lo-fi", "lo fi": "lo-fi", "chill": "lo-fi", "chillhop": "lo-fi", "citypop": "city pop", "80s": "synthwave",
    "retrowave": "synthwave", "outrun": "synthwave", "synth": "synthwave", "slow": "ballad", "love song": "ballad",
    "piano": "ballad", "acoustic": "folk", "country": "folk", "8-bit": "chiptune", "8 bit": "chiptune",
    "8bit": "chiptune", "video game": "chiptune", "game": "chiptune", "punk": "rock", "metal": "rock",
    "j-pop": "pop", "jpop": "pop", "k-pop": "pop", "kpop": "pop", "dance": "pop", "funk": "city pop",
}


def nearest_style(text: str | None, default: str = "pop") -> tuple[Style, str | None]:
    """The style named by ``text`` (or the nearest), and a note when it was not exact."""
    if not text or not text.strip():
        return STYLES[default if default in STYLES else "pop"], None
    t = re.sub(r"\s+", " ", text.strip().lower().replace("_", " "))
    if t in STYLES:
        return STYLES[t], None
    if t in ALIASES:
        return STYLES[ALIASES[t]], None
    for word in sorted(set(STYLES) | set(ALIASES), key=len, reverse=True):  # "a dreamy lo-fi one"
        if re.search(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])", t):
            return STYLES[ALIASES.get(word, word)], None
    close = difflib.get_close_matches(t, list(STYLES) + list(ALIASES), n=1, cutoff=0.5)
    style = STYLES[ALIASES.get(close[0], close[0])] if close else STYLES[default if default in STYLES else "pop"]
    return style, f"I don't know {text.strip()!r} as a style, so I went with {style.name}"


# Drum grooves: 16 steps a bar (sixteenths); GM drum notes: 36 kick, 38 snare, 42 closed hat,
# 46 open hat, 49 crash, 39 clap, 37 side stick, 51 ride, 44 pedal hat.
GROOVES: dict[str, dict[int, str]] = {
    "pop": {36: "x.......x.x.....", 38: "....x.......x...", 42: "x.x.x.x.x.x.x.x.", 39: "....x.......x..."},
    "lofi": {36: "x......x..x.....", 38: "....x.......x...", 42: "x.x.x.x.x.x.x.x."},
    "disco": {36: "x...x...x...x...", 38: "....x.......x...", 42: "..x...x...x...x.", 46: "..x...........x."},
    "synthwave": {36: "x...x...x...x...", 38: "....x.......x...", 42: "xxxxxxxxxxxxxxxx"},
    "ballad": {36: "x.........x.....", 37: "....x.......x...", 51: "x...x...x...x..."},
    "rock": {36: "x.x.....x.x.....", 38: "....x.......x...", 42: "x.x.x.x.x.x.x.x."},
    "folk": {36: "x.......x.......", 37: "....x.......x...", 44: "..x...x...x...x."},
    "chip": {36: "x.....x.x.......", 38: "....x.......x...", 42: "x.xxx.xxx.xxx.xx"},
}


def midi_to_hz(p: float) -> float:
    return 440.0 * 2.0 ** ((p - 69.0) / 12.0)
