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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from persona.card import LoreEntry, Lorebook

__all__ = ["CHARS_PER_TOKEN", "KeyMatcher", "compile_key", "entry_matches", "triggered_entries"]

CHARS_PER_TOKEN = 4

# Scripts written without spaces between words: no whole-word boundaries there.
_NO_SPACE_SCRIPT = re.compile(
    "[\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff"
    "\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002fa1f]"
)
_REGEX_KEY = re.compile(r"^/(.+)/([a-z]*)$", re.S)
_JS_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "g": 0, "u": 0, "y": 0, "d": 0}
_SEPARATOR = "\n\x00\n"  # keys (even multi-word ones) never match across two texts

# selectiveLogic values (SillyTavern's world-info numbering)
AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3


class KeyMatcher:
    """One compiled key: a cheap substring pre-check, then the pattern."""

    __slots__ = ("pattern", "needles", "case_sensitive")

    def __init__(self, pattern: re.Pattern[str], needles: tuple[str, ...] = (), case_sensitive: bool = False):
        self.pattern = pattern
        self.needles = needles  # words that must all be in the text (lower case unless case-sensitive)
        self.case_sensitive = case_sensitive

    def search(self, text: _Text) -> bool:
        if self.needles:
            hay = text.raw if self.case_sensitive else text.lower
            for needle in self.needles:
                if needle not in hay:
                    return False
        return self.pattern.search(text.raw) is not None


# Non-ASCII letters that re.IGNORECASE matches to an ASCII letter but str.lower() keeps apart.
_ASCII_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


class _Text:
    """Scanned text, lower-cased once for the substring pre-checks."""

    __slots__ = ("raw", "_lower")

    def __init__(self, raw: str):
        self.raw = raw
        self._lower: str | None = None

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
        flags = 0
        for f in m.group(2):
            flags |= _JS_FLAGS[f]
        try:
            return KeyMatcher(re.compile(m.group(1), flags))
        except re.error:
            pass  # not a pattern Python understands: match the text literally
    if use_regex:
        try:
            return KeyMatcher(re.compile(key, 0 if case_sensitive else re.IGNORECASE))
        except re.error:
            pass
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
    """Let fired entries' content trigger more entries until nothing new fires."""
    scanned = set()
    buffer = [haystack.raw]
    for _ in range(len(entries)):
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
