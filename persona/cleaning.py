"""Reply cleaning: what a model writes is not always what the character should say.

Cleaning takes things out of a reply, never the whole reply: a forbidden phrase is cut
out of its sentence, a sentence where the model says it is an AI is dropped (or, when
that is all there is, only the phrase), a transcript that starts with the person's line
keeps the character's turn. Only text with nothing speakable in it (empty, special
tokens only, only the person's turn, only forbidden phrases) comes back empty.
"""

from __future__ import annotations

import re

from persona.card import Persona, render_macros

_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]|<<SYS>>|<</SYS>>|<start_of_turn>|<end_of_turn>|<eos>|<bos>")
_AI_LEAK = re.compile(
    r"\b(as an? (ai|artificial intelligence|language model|llm|assistant)\b|"
    r"i('m| am) (just |only )?an? (ai|artificial intelligence|language model|large language model|chatbot|virtual assistant)\b|"
    r"i (do not|don't) have (personal )?(feelings|emotions|a body|personal experiences)|"
    r"(openai|anthropic)\b)",
    re.I,
)
# The leaking words themselves, cut out when a reply has nothing else to say.
_AI_PHRASE = re.compile(
    r"\b(?:as an? |i(?:'m| am) (?:just |only )?an? )(?:ai|artificial intelligence|large language model|language model|llm|"
    r"assistant|chatbot|virtual assistant)(?: language model| model| assistant| chatbot)?\b[,:]?|"
    r"\bi (?:do not|don't) have (?:personal )?(?:feelings|emotions|a body|personal experiences)\b",
    re.I,
)
_CLOSERS = "\"'”’»)\\]*"
_SENTENCES = re.compile(rf"[^.!?…]+(?:[.!?…]+[{_CLOSERS}]*|$)\s*")
_START = re.compile(r"<\s*START\s*>", re.I)


def split_sentences(text: str) -> list[str]:
    return [s for s in (m.group(0) for m in _SENTENCES.finditer(text)) if s.strip()]


def _tidy(sentence: str) -> str:
    """What is left of a sentence after a phrase was cut out of it."""
    trailing = sentence[len(sentence.rstrip()) :]
    s = re.sub(r"[ \t]{2,}", " ", sentence.strip())
    s = re.sub(r"\s+([,.;:!?…])", r"\1", s)
    s = re.sub(r"^((?:why|oh|well|yes|no|hey|so|ah|now|look|okay|ok)\s*),\s*,", r"\1,", s, flags=re.I)  # "Why, <cut>, the stars"
    s = re.sub(r"\s*,\s*,\s*", " ", s)  # "pierogi, <cut>, are great": the phrase was an aside
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    s = re.sub(r"[,;:]\s*([.!?…])", r"\1", s)
    s = re.sub(r"^[\s,;:.!?…-]+(?=\w)", "", s)
    s = re.sub(r"\(\s*\)|\"\s*\"|\*\s*\*", "", s).strip()
    if not re.search(r"\w", s):
        return ""
    return s[:1].upper() + s[1:] + (trailing or " ")


def _cut_phrases(text: str, phrases: list[str]) -> str:
    for phrase in phrases:
        text = re.sub(re.escape(phrase), " ", text, flags=re.I)
    return text


def _drop_leaks(text: str) -> str:
    """Sentences where the character says it is an AI go; when every sentence does,
    only the leaking phrase is cut ("As an AI, I can't" -> "I can't")."""
    sentences = split_sentences(text)
    kept = [s for s in sentences if not _AI_LEAK.search(s)]
    if kept or not sentences:
        return "".join(kept)
    return "".join(_tidy(_AI_PHRASE.sub(" ", s)) for s in sentences)


def _characters_turn(text: str, user_tag: re.Pattern[str], char_tag: re.Pattern[str]) -> str:
    """A reply written as a transcript that opens with the person's line: the character's
    first turn in it (cards' example dialogue and lorebook exchanges look like this)."""
    m = char_tag.search(text)
    if not m:
        return ""
    turn = text[m.end() :]
    nxt = user_tag.search(turn)
    if nxt:
        turn = turn[: nxt.start()]
    again = char_tag.search(turn)
    if again:
        turn = turn[: again.start()]
    return turn.strip()


def clean_reply(text: str, persona: Persona, user_name: str) -> str:
    """Strip role tags and special tokens, cut where the model starts speaking for the
    person, drop "as an AI" sentences, cut forbidden phrases out, and apply the card's
    length rules. Returns "" only when nothing sayable is left: no text, only the
    person's turn, or nothing but forbidden phrases."""
    out = _SPECIAL.sub("", text).replace("\r\n", "\n").strip()
    out = render_macros(out, persona.name, user_name)
    char = re.escape(persona.name)
    first = re.escape(persona.name.split()[0])
    user = re.escape(user_name) if user_name else "User"
    user_tag = re.compile(rf"(^|\n)\s*(\*\*)?({user}|user|human|you|{{{{user}}}}|###)(\*\*)?\s*:", re.I)
    char_tag = re.compile(rf"(^|\n)\s*(\*\*)?({char}|{first}|assistant|{{{{char}}}})(\*\*)?\s*:\s*", re.I)
    out = _START.sub("\n", out).strip()
    if user_tag.match(out):
        out = _characters_turn(out, user_tag, char_tag)
    # A leading "Mira:" (or "Mira Vale:") speaker tag.
    out = re.sub(rf"^\s*(\*\*)?({char}|{first}|assistant|{{{{char}}}})(\*\*)?\s*:\s*", "", out, flags=re.I)
    # The model continuing the dialogue for the other side: cut there.
    m = user_tag.search(out)
    if m:
        out = out[: m.start()].rstrip()
    # A second "Mira:" tag mid-reply means it is talking to itself: keep the first turn.
    m = re.search(rf"\n\s*(\*\*)?({char}|{first})(\*\*)?\s*:", out, flags=re.I)
    if m:
        out = out[: m.start()].rstrip()
    if not out.strip():
        return ""

    banned = sorted({p.strip() for p in persona.style.forbidden_phrases if p.strip()}, key=len, reverse=True)
    kept: list[str] = []
    for sentence in split_sentences(_drop_leaks(out)):
        cleaned = _tidy(_cut_phrases(sentence, banned)) if banned and any(p.lower() in sentence.lower() for p in banned) else sentence
        if cleaned.strip():
            kept.append(cleaned)
    cleaned_out = "".join(kept).strip()
    if not cleaned_out:
        # Only leaks and forbidden phrases: the phrases still go, the rest is said.
        cleaned_out = _tidy(_cut_phrases(out, banned)).strip()
    out = cleaned_out
    if persona.style.max_sentences:
        out = "".join(split_sentences(out)[: persona.style.max_sentences]).strip()
    limit = persona.style.max_chars
    if limit and len(out) > limit:
        cut = ""
        for sentence in split_sentences(out):
            if len(cut) + len(sentence) > limit:
                break
            cut += sentence
        out = cut.strip() or out[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()
