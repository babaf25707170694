"""Cards of many shapes, through the real import path, chatted with on the lite backend,
then exported and compared with the source field by field.

The cards live in ``tests/persona/corpus/`` as card JSON; the PNG ones are written into
a PNG ``chara`` (V2) or ``ccv3`` (V3) text chunk here, as card editors do.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from db.models import Message
from generators.text.lite import STOCK_LINES, RECENT_REPLIES, LiteTextGenerator, detect_language
from persona.cards import export_card
from persona.limits import Rate
from persona.manager import FALLBACK_LINES, ManagerConfig, PersonaManager
from persona.registry import PersonaRegistry, install_persona, shareable
from persona.types import IncomingMessage

CORPUS = Path(__file__).parent / "corpus"
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
V2_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
             "system_prompt", "post_history_instructions", "alternate_greetings", "tags", "creator",
             "character_version", "extensions")


@dataclass(frozen=True)
class Case:
    file: str
    container: str  # "json", or "png" with the card in a chunk of this key
    chunk: str = ""
    said: tuple[str, ...] = ()
    intro: int | None = None  # index of the message that introduces the person
    name: str = "Zoe"


CASES = [
    Case("healer.json", "json", said=(
        "hello", "I'm Zoe, I walked all the way from the coast", "What is the Greywood?",
        "Tell me about the Silver Lantern", "who is Bram?", "I'm worried about my brother, he has a fever",
        "what's the capital of France?", "thank you", "bye"), intro=1),
    Case("cat.json", "png", "chara", said=(
        "hi Biscuit!", "I'm Zoe", "are you hungry?", "I had a terrible day", "what's 2+2?", "you're so fluffy",
        "ok", "good night"), intro=1),
    Case("tutor_v3.json", "json", said=(
        "hi", "my name is Sam", "how do I reverse a list in python?", "how do I undo a git commit?",
        "what's a dictionary?", "I'm stuck and frustrated", "who won the world cup in 1998?", "thanks!"),
        intro=1, name="Sam"),
    Case("innkeeper_greetings_only.json", "json", said=(
        "hello", "I'm Zoe", "what's good to eat here?", "how much is a room?", "who are you?",
        "I had a long cold journey and I'm exhausted", "what's the capital of France?", "ok", "ok", "bye"), intro=1),
    Case("knight_roleplay_v3.json", "png", "ccv3", said=(
        "hello", "call me Zoe", "I just want to cross the bridge", "why do you guard a broken bridge?",
        "what happened to the bridge at Harrow Ford?", "I'm so happy to finally be here", "do you know any songs?",
        "farewell"), intro=1),
    Case("baker_de.json", "json", said=(
        "Hallo!", "Ich heiße Zoe.", "Was backst du heute?", "Mir geht es heute nicht gut.",
        "Was ist die Hauptstadt von Australien?", "Erzähl mir von der Bäckerei Sonnenschein.", "Danke!", "Tschüss!"),
        intro=1),
    Case("captain_v1.json", "json", said=(
        "hi", "I'm Zoe", "how long have you been sailing?", "is it going to rain?", "I'm nervous about my first storm",
        "what's your boat called?", "what's the capital of Peru?", "bye"), intro=1),
]


def card_png(card: dict, key: str) -> bytes:
    """A PNG with the card as base64 JSON in a ``key`` tEXt chunk, placed before the image data."""
    buf = io.BytesIO()
    Image.new("RGB", (48, 64), (90, 120, 160)).save(buf, format="PNG")
    png = buf.getvalue()
    payload = key.encode("latin-1") + b"\0" + base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload + struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def source_file(case: Case, folder: Path) -> tuple[Path, dict]:
    card = json.loads((CORPUS / case.file).read_text(encoding="utf-8"))
    if case.container == "json":
        path = folder / case.file
        path.write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    else:
        path = folder / case.file.replace(".json", ".png")
        path.write_bytes(card_png(card, case.chunk))
    return path, card


def diff(a, b, path="") -> list[str]:
    """Where two JSON values differ, as readable paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: added {b[k]!r}")
            elif k not in b:
                out.append(f"{path}.{k}: missing (was {a[k]!r})")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} became {b!r}"]


def spec_additions(exported: dict, source: dict, spec: str) -> dict:
    """The exported card minus what the spec requires an exporter to add (and the source lacked)."""
    out = json.loads(json.dumps(exported))
    data = out["data"]
    if spec == "v1":
        for key in V2_FIELDS:
            if key not in source and data.get(key) in ("", [], {}):
                del data[key]
        return out
    src = source["data"]
    if spec == "v3" and "group_only_greetings" not in src and data.get("group_only_greetings") == []:
        del data["group_only_greetings"]
    book, src_book = data.get("character_book"), src.get("character_book")
    if book and src_book:
        if "extensions" not in src_book and book.get("extensions") == {}:
            del book["extensions"]
        for entry, src_entry in zip(book.get("entries", []), src_book.get("entries", [])):
            for key, empty in (("extensions", {}), ("use_regex", False), ("enabled", True), ("insertion_order", 0),
                               ("keys", []), ("content", "")):
                if key not in src_entry and entry.get(key) == empty:
                    del entry[key]
    return out


def incoming(case: Case, persona_id: str, text: str) -> IncomingMessage:
    return IncomingMessage(platform="telegram", chat_id="corpus", user_id="u1", user_name="tg_user_481", text=text,
                           message_id=uuid.uuid4().hex, persona=persona_id)


def words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


def shares_words(reply: str, card_text: str, n: int = 4) -> bool:
    w = words(reply).split()
    return any(f" {' '.join(w[i:i + n])} " in card_text for i in range(len(w) - n + 1))


ENGLISH_STOCK = [t for lines in STOCK_LINES["en"].values() for t in lines]


def is_english_stock(reply: str) -> bool:
    for template in ENGLISH_STOCK:
        fixed = max(re.split(r"\{[^}]*\}", template), key=len).strip()
        if len(fixed) >= 8 and fixed in reply:
            return True
    return False


@pytest.mark.parametrize("case", CASES, ids=[c.file.split(".")[0] for c in CASES])
async def test_card_imports_chats_and_exports_unchanged(case, store, embedder, tmp_path):
    src, card = source_file(case, tmp_path)
    personas = tmp_path / "personas"
    installed, _ = install_persona(src, personas)
    registry = PersonaRegistry([personas])
    persona = registry.get(installed.id)

    # -- chat on the lite backend through the real manager ------------------------------------
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig(chat_rate=Rate(0, 0)))
    await m.start()
    replies = []
    for text in case.said:
        reply = await m.handle(incoming(case, persona.id, text))
        await m.drain()
        assert reply is not None and not reply.fallback, f"{text!r} got a fallback"
        assert reply.text.strip() and reply.text not in FALLBACK_LINES
        replies.append(reply.text)
    transcript = "\n".join(f"> {s}\n{r}" for s, r in zip(case.said, replies))

    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(Message.role, Message.status))).all()
    assert {r.status for r in rows if r.role == "user"} == {"answered"}, transcript
    assert {r.status for r in rows if r.role == "assistant"} == {"due"}, transcript  # in the outbox: no adapter here

    for i, r in enumerate(replies):
        assert r not in replies[max(0, i - RECENT_REPLIES) : i], f"reply {i} repeated:\n{transcript}"
        assert "{{" not in r and "<START>" not in r and "**" not in r and "Note:" not in r, transcript
        assert not re.match(r"^\s*(\{\{user\}\}|tg_user_481|Zoe|User)\s*:", r), transcript
    if case.intro is not None:
        assert case.name in replies[case.intro], transcript
    if detect_language([persona.example_dialogue, *persona.greetings]) != "en":
        assert not any(is_english_stock(r) for r in replies), transcript
        assert detect_language(replies) == detect_language(persona.greetings), transcript
    # the card's own material is said (four words in a row from it), not only stock lines
    card_text = words(" ".join([persona.example_dialogue, persona.description, *persona.greetings,
                                *(e.content for e in (persona.lorebook.entries if persona.lorebook else []))]))
    assert any(shares_words(r, card_text) for r in replies[1:]), transcript

    # -- export and compare with the source, field by field ------------------------------------
    spec = "v3" if card.get("spec") == "chara_card_v3" else "v2"
    out = export_card(shareable(persona), tmp_path / "out.json", spec=spec)
    exported = json.loads(out.read_text(encoding="utf-8"))
    if "data" not in card:  # a V1 card comes back as V2 with the same fields
        source_data = {k: card[k] for k in V1_FIELDS if k in card}
        top = {k: v for k, v in card.items() if k not in source_data}
        trimmed = spec_additions(exported, card, "v1")
        problems = diff(source_data, trimmed["data"], "data")
        problems += diff(top, {k: v for k, v in exported.items() if k not in ("spec", "spec_version", "data")}, "")
    else:
        problems = diff(card, spec_additions(exported, card, spec))
    assert not problems, "export differs from the source card:\n" + "\n".join(problems)
