"""Lorebook activation: which entries a chat turn brings into the prompt.

An entry fires when it is enabled and one of its ``keys`` appears in the scanned
chat texts (the last ``book.scan_depth`` of them; all when unset):

* matching ignores case unless the entry is ``case_sensitive``;
* a key made of word characters matches whole words only (``cat`` does not fire
  on "concatenate"), unless the entry's ``extensions.match_whole_words`` is
  false, or the key is written in a script without spaces (Chinese, Japanese,
  Korean, Thai), where it matches anywhere;
* a key written ``/pattern/flags`` is a regular expression with its own flags
  (``i``, ``s``, ``m``; JavaScript-style, as SillyTavern writes them); with the
  V3 ``use_regex`` flag every key is a pattern;
* ``selective`` entries also need their ``secondary_keys``, combined as
  ``extensions.selectiveLogic`` says (0 any [default], 1 not all, 2 none, 3 all);
* ``constant`` entries always fire;
* with ``book.recursive_scanning`` the content of fired entries is scanned too.

Fired entries come back in insertion order (lower ``insertion_order`` first, then
higher ``priority``), trimmed to the budget: the book's ``token_budget`` (about 4
characters a token) and/or ``budget_chars``, dropping lower ``priority`` first.

Key patterns are compiled once and cached (by key text and options), so calling
this every chat turn costs only the searches.

Matching takes time linear in the scanned text, whatever a card's author wrote:

* regular-expression keys run on RE2 (``google-re2``), which has no backtracking;
  a pattern RE2 does not accept (backreferences, lookarounds), one longer than
  :data:`MAX_PATTERN_CHARS`, or one that compiles to more than
  :data:`MAX_PROGRAM_SIZE` instructions is matched as literal text instead, as an
  invalid pattern is;
* plain keys are escaped literals (Python ``re``, linear);
* only the last :data:`MAX_SCAN_CHARS` characters of the scanned texts are searched;
* recursive scanning stops after :data:`MAX_RECURSION_STEPS` rounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import re2

from persona.card import LoreEntry, Lorebook

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_PATTERN_CHARS",
    "MAX_PROGRAM_SIZE",
    "MAX_RECURSION_STEPS",
    "MAX_SCAN_CHARS",
    "KeyMatcher",
    "compile_key",
    "entry_matches",
    "triggered_entries",
]

CHARS_PER_TOKEN = 4
MAX_PATTERN_CHARS = 500  # a longer regular-expression key is matched as text
MAX_PROGRAM_SIZE = 3000  # RE2 instructions; bounds the work per scanned character
MAX_SCAN_CHARS = 32_000  # the most recent characters of the chat (and fired content) scanned
MAX_RECURSION_STEPS = 10  # rounds of recursive scanning

# Scripts written without spaces between words: no whole-word boundaries there.
_NO_SPACE_SCRIPT = re.compile(
    "[\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff"
    "\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002fa1f]"
)
_REGEX_KEY = re.compile(r"^/(.+)/([a-z]*)$", re.S)
# JavaScript flags as RE2 inline flags; the others (global, unicode, sticky, indices)
# change nothing for a yes/no search
_JS_FLAGS = {"i": "i", "s": "s", "m": "m", "g": "", "u": "", "y": "", "d": ""}
_SEPARATOR = "\n\x00\n"  # keys (even multi-word ones) never match across two texts

# selectiveLogic values (SillyTavern's world-info numbering)
AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3


class KeyMatcher:
    """One compiled key: a cheap substring pre-check, then the pattern.

    ``pattern`` is a Python ``re`` pattern for plain keys, or an RE2 pattern (which
    searches the text's UTF-8 bytes) when ``utf8`` is true.
    """

    __slots__ = ("pattern", "needles", "case_sensitive", "utf8")

    def __init__(self, pattern, needles: tuple[str, ...] = (), case_sensitive: bool = False, *, utf8: bool = False):
        self.pattern = pattern
        self.needles = needles  # words that must all be in the text (lower case unless case-sensitive)
        self.case_sensitive = case_sensitive
        self.utf8 = utf8

    def search(self, text: _Text) -> bool:
        if self.needles:
            hay = text.raw if self.case_sensitive else text.lower
            for needle in self.needles:
                if needle not in hay:
                    return False
        return self.pattern.search(text.utf8 if self.utf8 else text.raw) is not None


# Non-ASCII letters that re.IGNORECASE matches to an ASCII letter but str.lower() keeps apart.
_ASCII_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


class _Text:
    """Scanned text (its last :data:`MAX_SCAN_CHARS` characters), lower-cased and
    UTF-8 encoded once, on first use, for the pre-checks and the RE2 searches."""

    __slots__ = ("raw", "_lower", "_utf8")

    def __init__(self, raw: str):
        self.raw = raw[-MAX_SCAN_CHARS:] if len(raw) > MAX_SCAN_CHARS else raw
        self._lower: str | None = None
        self._utf8: bytes | None = None

    @property
    def utf8(self) -> bytes:
        if self._utf8 is None:
            self._utf8 = self.raw.encode("utf-8", "surrogatepass")
        return self._utf8

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.raw.translate(_ASCII_FOLD).lower()
        return self._lower


@lru_cache(maxsize=8192)
def compile_key(key: str, case_sensitive: bool = False, whole_words: bool = True, use_regex: bool = False) -> KeyMatcher | None:
    """The compiled matcher for one lorebook key; ``None`` for a blank key."""
    key = key.strip()
    if not key:
        return None
    m = _REGEX_KEY.match(key)
    if m and all(f in _JS_FLAGS for f in m.group(2)):
        matcher = _regex_matcher(m.group(1), "".join(sorted({_JS_FLAGS[f] for f in m.group(2)})))
        if matcher is not None:
            return matcher
    if use_regex:
        matcher = _regex_matcher(key, "" if case_sensitive else "i")
        if matcher is not None:
            return matcher
    # a plain key, or a pattern RE2 cannot run within bounds: match the text literally
    words = key.split()
    body = r"\s+".join(re.escape(part) for part in words)
    if whole_words and not _NO_SPACE_SCRIPT.search(key):
        if _is_word_char(key[0]):
            body = r"(?<!\w)" + body
        if _is_word_char(key[-1]):
            body += r"(?!\w)"
    pattern = re.compile(body, 0 if case_sensitive else re.IGNORECASE)
    # for ASCII keys the lower-cased text (see _ASCII_FOLD) must contain every word;
    # other keys skip the pre-check, where str.lower() and re's folding may differ
    if case_sensitive:
        needles = tuple(words)
    elif key.isascii():
        needles = tuple(w.lower() for w in words)
    else:
        needles = ()
    return KeyMatcher(pattern, needles, case_sensitive)


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a card's bad pattern is not an error of ours
    options.max_mem = 2 << 20  # program and DFA cache, per pattern
    return options


_RE2_OPTIONS = _re2_options()


def _regex_matcher(pattern: str, flags: str) -> KeyMatcher | None:
    """An RE2 matcher for a card's regular expression; ``None`` when it cannot be
    run in linear time within the size bounds (the caller then matches literally)."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        compiled = re2.compile(f"(?{flags}){pattern}" if flags else pattern, _RE2_OPTIONS)
    except (re2.error, UnicodeEncodeError):
        return None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        return None
    return KeyMatcher(compiled, utf8=True)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _options(entry: LoreEntry) -> tuple[bool, bool, bool]:
    ext = entry.extensions or {}
    case = entry.case_sensitive
    if case is None:
        case = ext.get("case_sensitive")
    whole = ext.get("match_whole_words")
    extra = entry.model_extra or {}
    return bool(case), True if whole is None else bool(whole), bool(extra.get("use_regex"))


def _any_key(keys: Iterable[str], text: _Text, opts: tuple[bool, bool, bool]) -> bool:
    for key in keys:
        if isinstance(key, str):
            matcher = compile_key(key, *opts)
            if matcher is not None and matcher.search(text):
                return True
    return False


def entry_matches(entry: LoreEntry, text: str | _Text) -> bool:
    """Whether the entry's keys (and secondary keys, if selective) fire on ``text``.

    Ignores ``enabled`` and ``constant``; :func:`triggered_entries` handles those.
    """
    if isinstance(text, str):
        text = _Text(text)
    opts = _options(entry)
    if not _any_key(entry.keys, text, opts):
        return False
    if not entry.selective:
        return True
    secondary = [k for k in entry.secondary_keys if isinstance(k, str) and k.strip()]
    if not secondary:
        return True
    logic = (entry.extensions or {}).get("selectiveLogic", AND_ANY)
    if logic == AND_ALL:
        return all(_any_key([k], text, opts) for k in secondary)
    if logic == NOT_ANY:
        return not _any_key(secondary, text, opts)
    if logic == NOT_ALL:
        return not all(_any_key([k], text, opts) for k in secondary)
    return _any_key(secondary, text, opts)


def triggered_entries(book: Lorebook | None, texts: Sequence[str], budget_chars: int | None = None) -> list[LoreEntry]:
    """The lorebook entries that the chat ``texts`` (oldest first) bring into play."""
    if book is None or not book.entries:
        return []
    texts = [t for t in texts if isinstance(t, str)]
    depth = book.scan_depth
    if depth is not None:
        texts = texts[-depth:] if depth > 0 else []
    haystack = _Text(_SEPARATOR.join(texts))

    fired: dict[int, LoreEntry] = {}
    for i, entry in enumerate(book.entries):
        if entry.enabled and (entry.constant or entry_matches(entry, haystack)):
            fired[i] = entry

    if book.recursive_scanning:
        _recurse(book.entries, fired, haystack)

    budget = _budget(book, budget_chars)
    if budget is not None:
        fired = _trim(fired, budget)
    return [fired[i] for i in sorted(fired, key=lambda i: (fired[i].insertion_order, -_priority(fired[i]), i))]


def _recurse(entries: Sequence[LoreEntry], fired: dict[int, LoreEntry], haystack: _Text) -> None:
    """Let fired entries' content trigger more entries until nothing new fires
    (at most :data:`MAX_RECURSION_STEPS` rounds)."""
    scanned = set()
    buffer = [haystack.raw]
    for _ in range(min(len(entries), MAX_RECURSION_STEPS)):
        new = [i for i in fired if i not in scanned]
        if not new:
            return
        scanned.update(new)
        buffer.extend(fired[i].content for i in new if not (fired[i].extensions or {}).get("prevent_recursion"))
        text = _Text(_SEPARATOR.join(buffer))
        for i, entry in enumerate(entries):
            if i in fired or not entry.enabled or (entry.extensions or {}).get("exclude_recursion"):
                continue
            if entry_matches(entry, text):
                fired[i] = entry


def _budget(book: Lorebook, budget_chars: int | None) -> int | None:
    limits = []
    if budget_chars is not None:
        limits.append(max(0, budget_chars))
    if book.token_budget is not None and book.token_budget > 0:
        limits.append(book.token_budget * CHARS_PER_TOKEN)
    return min(limits) if limits else None


def _priority(entry: LoreEntry) -> int:
    return entry.priority if entry.priority is not None else 0


def _trim(fired: dict[int, LoreEntry], budget: int) -> dict[int, LoreEntry]:
    """Keep the highest-priority entries that fit; lower priority goes first."""
    ranked = sorted(fired, key=lambda i: (-_priority(fired[i]), fired[i].insertion_order, i))
    kept: dict[int, LoreEntry] = {}
    used = 0
    for i in ranked:
        cost = len(fired[i].content)
        if used + cost <= budget:
            kept[i] = fired[i]
            used += cost
    return kept
