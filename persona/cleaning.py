"""Reply cleaning: what a model writes is not always what the character should say."""

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
_SENTENCES = re.compile(r"[^.!?…]+(?:[.!?…]+[\"')\]]*|$)\s*")


def split_sentences(text: str) -> list[str]:
    return [s for s in (m.group(0) for m in _SENTENCES.finditer(text)) if s.strip()]


def clean_reply(text: str, persona: Persona, user_name: str) -> str:
    """Strip role tags and special tokens, cut where the model starts speaking for the
    person, drop "as an AI" sentences and forbidden phrases, and apply the card's
    length rules. Returns "" when nothing in character is left."""
    out = _SPECIAL.sub("", text).replace("\r\n", "\n").strip()
    out = render_macros(out, persona.name, user_name)
    char = re.escape(persona.name)
    first = re.escape(persona.name.split()[0])
    # A leading "Mira:" (or "Mira Vale:") speaker tag.
    out = re.sub(rf"^\s*(\*\*)?({char}|{first}|assistant|{{{{char}}}})(\*\*)?\s*:\s*", "", out, flags=re.I)
    # The model continuing the dialogue for the other side: cut there.
    user = re.escape(user_name) if user_name else "User"
    stop = re.compile(rf"(^|\n)\s*(\*\*)?({user}|user|human|you|{{{{user}}}}|###|<START>)(\*\*)?\s*:", re.I)
    m = stop.search(out)
    if m:
        out = out[: m.start()].rstrip()
    # A second "Mira:" tag mid-reply means it is talking to itself: keep the first turn.
    m = re.search(rf"\n\s*({char}|{first})\s*:", out, flags=re.I)
    if m:
        out = out[: m.start()].rstrip()
    banned = [p.lower() for p in persona.style.forbidden_phrases if p.strip()]
    kept = []
    for sentence in split_sentences(out):
        low = sentence.lower()
        if _AI_LEAK.search(sentence) or any(p in low for p in banned):
            continue
        kept.append(sentence)
    out = "".join(kept).strip()
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
