"""Lyrics as the composer reads them: sections of lines, lines of syllables with stress.

The syllable splitter is a spelling heuristic (vowel groups, a silent final e, common
unstressed prefixes and function words), honestly simple: it is right for most everyday
English words and close enough for the rest, because a melody only needs the count and
where the weight falls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTION_WORDS = frozenset(
    "a an the and or but of to in on at by for from with as is am are was were be been it its i me my you your "
    "we our us he him his she her they them their this that these those so if then than do does did not no "
    "can could will would shall should may might must have has had there here when where what who how oh".split()
)
_UNSTRESSED_PREFIXES = ("a", "be", "de", "re", "un", "to", "for", "in", "im", "ex", "con", "com", "dis", "mis", "per", "pro")
_PREFIX_EXCEPTIONS = frozenset("after any every ever even open over under into only other inner always also apple "
                               "angel anger action active comfort common concert conscious constant contact "
                               "perfect person problem process program promise protest react record rescue "
                               "reason ready really restless desert demon devil decent".split())
_VOWELS = "aeiouy"

MAX_LINES = 8  # per section
MAX_SECTIONS = 8
MAX_LINE_SYLLABLES = 28  # longer is cut
PHRASE_SYLLABLES = 14  # what a two-bar phrase sings on its eighths; a longer line becomes two phrases


@dataclass(frozen=True, slots=True)
class Syllable:
    text: str
    stressed: bool
    word_end: bool  # the last syllable of its word
    word: str  # the word it belongs to (as written)


@dataclass
class Line:
    text: str
    syllables: list[Syllable]


@dataclass
class Section:
    kind: str  # "verse" | "chorus" | "bridge"
    lines: list[Line]


@dataclass
class Lyrics:
    title: str
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was trimmed or changed

    @property
    def text(self) -> str:
        out = []
        for s in self.sections:
            out.append(f"[{s.kind}]")
            out.extend(line.text for line in s.lines)
            out.append("")
        return "\n".join(out).strip()


def split_syllables(word: str) -> list[str]:
    """``"beautiful"`` -> ``["beau", "ti", "ful"]``; keeps the word's own letters."""
    letters = re.sub(r"[^A-Za-z']", "", word)
    if not letters:
        return []
    low = letters.lower()
    groups = [(m.start(), m.end()) for m in re.finditer(r"[aeiouy]+", low)]
    if low.startswith("y") and groups and groups[0][0] == 0 and len(low) > 1 and low[1] in _VOWELS:
        groups[0] = (1, groups[0][1])
    if len(groups) > 1:
        s, _ = groups[-1]
        tail = low[s:]
        before = low[s - 1] if s else ""
        if tail in ("e", "es", "ed") and not (tail == "e" and before == "l" and s >= 2 and low[s - 2] not in _VOWELS) \
                and not (tail in ("es", "ed") and before in "tdscxzgh"):
            groups.pop()  # silent: "love", "loved", "hopes"
    if len(groups) <= 1:
        return [letters]
    cuts = []
    for (_, e1), (s2, _) in zip(groups, groups[1:]):
        consonants = s2 - e1
        cuts.append(e1 + (consonants // 2 if consonants >= 2 else 0))
    pieces, prev = [], 0
    for c in cuts:
        pieces.append(letters[prev:c])
        prev = c
    pieces.append(letters[prev:])
    return [p for p in pieces if p]


def stresses(word: str, n: int) -> list[bool]:
    low = re.sub(r"[^a-z]", "", word.lower())
    if n == 1:
        return [low not in FUNCTION_WORDS]
    out = [False] * n
    second = (low not in _PREFIX_EXCEPTIONS and any(low.startswith(p) and len(low) > len(p) + 2 for p in _UNSTRESSED_PREFIXES)
              and not low.endswith(("ing", "y", "le")) and n in (2, 3))
    out[1 if second else 0] = True
    if n >= 4:
        out[2 if not second else 3] = True  # a secondary stress in long words
    return out


def parse_line(text: str) -> Line:
    text = re.sub(r"\s+", " ", text.strip())
    syl: list[Syllable] = []
    for word in re.findall(r"[A-Za-z][A-Za-z']*|\d+", text):
        pieces = split_syllables(word) if not word.isdigit() else [word]
        st = stresses(word, len(pieces))
        for i, p in enumerate(pieces):
            syl.append(Syllable(p, st[i], i == len(pieces) - 1, word))
    return Line(text, syl[:MAX_LINE_SYLLABLES])


_TAG = re.compile(r"^\s*[\[(]\s*(verse|chorus|bridge|hook|pre-?chorus|refrain|outro|intro)[^\])]*[\])]\s*$", re.I)


def parse_lyrics(text: str, title: str = "") -> Lyrics:
    """``[verse]`` / ``[chorus]`` tagged text (untagged: four-line verses, the second block
    the chorus). Lines too long for a phrase are cut, extra sections dropped, each noted."""
    sections: list[Section] = []
    notes: list[str] = []
    current: Section | None = None
    blocks: list[list[str]] = [[]]
    tagged = any(_TAG.match(line) for line in text.splitlines())
    for raw in text.splitlines():
        m = _TAG.match(raw)
        if m:
            kind = m.group(1).lower()
            kind = {"hook": "chorus", "refrain": "chorus", "prechorus": "bridge", "pre-chorus": "bridge"}.get(kind, kind)
            if kind in ("intro", "outro"):
                kind = "bridge"
            current = Section(kind, [])
            sections.append(current)
            continue
        line = raw.strip()
        if not line:
            if not tagged and blocks[-1]:
                blocks.append([])
            continue
        if tagged:
            if current is None:
                current = Section("verse", [])
                sections.append(current)
            current.lines.append(parse_line(line))
        else:
            blocks[-1].append(line)
    if not tagged:
        blocks = [b for b in blocks if b]
        if len(blocks) == 1 and len(blocks[0]) > 4:  # one block: verse, then chorus
            blocks = [blocks[0][:4], blocks[0][4:8], *([blocks[0][8:]] if blocks[0][8:] else [])]
        for i, b in enumerate(blocks):
            sections.append(Section("chorus" if i % 2 == 1 else "verse", [parse_line(x) for x in b]))
    sections = [s for s in sections if any(line.syllables for line in s.lines)]
    for s in sections:
        s.lines = [part for line in s.lines if line.syllables for part in _phrases(line)]
        if len(s.lines) > MAX_LINES:
            notes.append(f"a {s.kind} had {len(s.lines)} lines; I sang the first {MAX_LINES}")
            s.lines = s.lines[:MAX_LINES]
    if len(sections) > MAX_SECTIONS:
        notes.append(f"the lyrics had {len(sections)} sections; I sang {MAX_SECTIONS}")
        sections = sections[:MAX_SECTIONS]
    return Lyrics(title or _title_from(sections), sections, notes)


def _phrases(line: Line) -> list[Line]:
    """A line longer than a phrase, split in two at the word boundary nearest its middle."""
    syl = line.syllables
    if len(syl) <= PHRASE_SYLLABLES:
        return [line]
    ends = [i + 1 for i, s in enumerate(syl[:-1]) if s.word_end]
    cut = min(ends, key=lambda i: abs(i - len(syl) / 2)) if ends else len(syl) // 2
    words = line.text.split()
    n_words = sum(1 for s in syl[:cut] if s.word_end)
    first = Line(" ".join(words[:n_words]), syl[:cut])
    second = Line(" ".join(words[n_words:]), syl[cut:])
    return _phrases(first) + _phrases(second)


def _title_from(sections: list[Section]) -> str:
    chorus = next((s for s in sections if s.kind == "chorus"), sections[0] if sections else None)
    if chorus is None or not chorus.lines:
        return "Untitled"
    words = re.sub(r"[^\w' ]", "", chorus.lines[0].text).split()
    return " ".join(words[:5]).title() or "Untitled"


# -- the lite template: honest, simple lyrics from a topic --------------------------------------

_VERSES = (
    ("I keep on thinking about {topic} tonight", "every little window shining silver light",
     "{hint} is humming somewhere down the street", "and I can feel it moving in my feet"),
    ("Woke up this morning with {topic} on my mind", "left all the grey and heavy days behind",
     "{hint} is waiting at the end of the road", "and every step is lighter than the load"),
    ("Tell me a story about {topic} and me", "paint it in colours only we can see",
     "{hint} is glowing like a lantern in the rain", "and I would walk it all again"),
)
_CHORUSES = (
    ("Oh, {topic}, stay a little while", "you're the reason for my smile",
     "Oh, {topic}, sing it back to me", "that's the way it's meant to be"),
    ("{topic}, {topic}, carry me home", "I don't want to be alone",
     "{topic}, {topic}, light up the sky", "hold me till the morning's nigh"),
    ("We'll be dancing with {topic} tonight", "everything is gonna be all right",
     "we'll be singing with {topic} so loud", "floating up above the crowd"),
)


def template_lyrics(topic: str, seed: int, *, hint: str = "", verses: int = 2) -> Lyrics:
    """Lyrics from a topic by filling a rhyming template (the lite text backend's way:
    no model, honestly simple). ``hint`` is a word or two of the character's world."""
    topic = re.sub(r"\s+", " ", re.sub(r"[^\w' -]", " ", topic or "")).strip()[:40] or "you"
    topic = re.sub(r"^(?:a |an |the )?(?:song |one )?(?:about |of |for )", "", topic, flags=re.I).strip() or "you"
    hint = re.sub(r"[^\w' -]", " ", hint or "").strip()[:30] or "the city"
    v = _VERSES[seed % len(_VERSES)]
    c = _CHORUSES[(seed // 3) % len(_CHORUSES)]
    fill = {"topic": topic, "hint": hint.capitalize() if hint else "the city"}
    text = ["[verse]", *(line.format(**fill) for line in v[:2]), "[chorus]", *(line.format(**fill) for line in c)]
    if verses > 1:
        text += ["[verse]", *(line.format(**fill) for line in v[2:])]
    lyr = parse_lyrics("\n".join(text))
    lyr.title = topic.title() if len(topic.split()) <= 4 else lyr.title
    return lyr
