"""Character Card V2/V3 import and export (JSON and PNG)."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from persona.card import (
    Consent,
    Identity,
    LoreEntry,
    Lorebook,
    Persona,
    PersonaError,
    StyleRules,
    VoiceIdentity,
    load_persona_file,
)
from persona.cards import (
    MAX_CARD_BYTES,
    TOP_KEY,
    card_from_bytes,
    card_from_dict,
    card_to_dict,
    export_card,
    import_card,
)
from persona.lorebook import triggered_entries

# -- fixtures -------------------------------------------------------------------

LORE_ENTRIES = [
    {
        "keys": ["Kestrel", "airship"],
        "content": "The Kestrel is a patched-up cargo airship with a brass gondola.",
        "extensions": {
            "position": 0,
            "exclude_recursion": False,
            "display_index": 0,
            "probability": 100,
            "useProbability": True,
            "depth": 4,
            "selectiveLogic": 0,
            "group": "",
            "automation_id": "",
        },
        "enabled": True,
        "insertion_order": 100,
        "case_sensitive": False,
        "name": "The Kestrel",
        "priority": 10,
        "id": 0,
        "comment": "the ship",
        "selective": False,
        "secondary_keys": [],
        "constant": False,
        "position": "before_char",
        "probability": 100,  # unknown entry fields, kept as they are
        "st_uid": "a1b2",
    },
    {
        "keys": ["Shatter Reefs"],
        "content": "The Shatter Reefs are floating rocks that wreck ships in storms.",
        "extensions": {"selectiveLogic": 0, "weight": 3},
        "enabled": True,
        "insertion_order": 50,
        "selective": True,
        "secondary_keys": ["storm", "night"],
        "id": 1,
        "comment": "",
    },
    {
        "keys": [],
        "content": "Mirela never lies to her crew.",
        "extensions": {},
        "enabled": True,
        "insertion_order": 10,
        "constant": True,
        "id": 2,
    },
    {
        "keys": ["/mirela'?s (past|history)/i"],
        "content": "Mirela flew for the Imperial navy before she deserted.",
        "extensions": {"vectorized": False},
        "enabled": True,
        "insertion_order": 200,
        "priority": 1,
        "id": 3,
    },
    {
        "keys": ["treasure"],
        "content": "(disabled draft)",
        "extensions": {},
        "enabled": False,
        "insertion_order": 300,
        "id": 4,
    },
]

V2_DATA = {
    "name": "Captain Mirela Voss",
    "description": "{{char}} is the weathered captain of the airship Kestrel. Scar over the left eye.",
    "personality": "gruff, loyal, secretly sentimental",
    "scenario": "{{user}} has just signed on as the Kestrel's new navigator.",
    "first_mes": "*Mirela looks up from the charts.* You're late, navigator.",
    "mes_example": "<START>\n{{user}}: Where are we headed?\n{{char}}: North, past the Shatter Reefs. Hold on to something.",
    "creator_notes": "Works best with a slow-burn adventure. Ünïcödé & “quotes” ok.",
    "system_prompt": "You are {{char}}. Never break character. {{original}}",
    "post_history_instructions": "Keep replies under four paragraphs.",
    "alternate_greetings": [
        "*A storm rattles the gondola.* Navigator! Charts, now!",
        "*She tosses you a wrench.* Engine room. Go.",
    ],
    "character_book": {
        "name": "Kestrel lore",
        "description": "Ship and world facts",
        "scan_depth": 4,
        "token_budget": 512,
        "recursive_scanning": False,
        "extensions": {"world_source": "kestrel.json"},
        "entries": LORE_ENTRIES,
    },
    "tags": ["airship", "adventure", "steampunk"],
    "creator": "quill_and_compass",
    "character_version": "1.3",
    "extensions": {
        "talkativeness": "0.5",
        "fav": False,
        "world": "Kestrel lore",
        "depth_prompt": {"prompt": "Mirela smells of engine oil.", "depth": 4, "role": "system"},
        "chub": {"full_path": "quill/mirela-voss", "id": 123456, "expressions": None},
    },
    "x_custom_field": {"nested": [1, 2.5, None, True]},  # unknown data key
}

V2_CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": V2_DATA,
    "create_date": "2024-5-1 @12h 03m 07s 123ms",  # unknown top-level keys
    "avatar": "none",
}

V3_DATA = {
    **{k: v for k, v in V2_DATA.items() if k != "character_book"},
    "name": "Sora",
    "nickname": "Sora-chan",
    "creator_notes_multilingual": {"en": "A shrine maiden.", "ja": "巫女です。"},
    "source": ["https://example.org/cards/sora"],
    "group_only_greetings": ["*Sora bows to everyone.* Welcome, all of you."],
    "creation_date": 1700000000,
    "modification_date": 1710000000,
    "assets": [
        {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
        {"type": "emotion", "uri": "embeded://assets/emotion/happy.png", "name": "happy", "ext": "png"},
    ],
    "character_book": {
        "name": "Shrine",
        "extensions": {},
        "entries": [
            {
                "keys": ["torii"],
                "content": "The red torii gate marks the shrine's boundary.",
                "extensions": {},
                "enabled": True,
                "insertion_order": 0,
                "use_regex": False,
                "constant": False,
            },
            {
                "keys": ["fox(es)? spirits?"],
                "content": "Kitsune guard the inner sanctum.",
                "extensions": {"custom": {"x": 1}},
                "enabled": True,
                "insertion_order": 1,
                "use_regex": True,
                "id": "kitsune",
            },
        ],
    },
    "x_v3_extra": "kept",
}

V3_CARD = {"spec": "chara_card_v3", "spec_version": "3.0", "data": V3_DATA}


def png_bytes(texts: dict[str, str] | None = None, *, itxt: bool = False, zip_itxt: bool = False,
              size=(64, 96), color=(200, 80, 40)) -> bytes:
    im = Image.new("RGB", size, color)
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        if itxt:
            info.add_itxt(key, value, zip=zip_itxt)
        else:
            info.add_text(key, value)
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def b64(card: dict) -> str:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii")


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def append_before_iend(png: bytes, chunk: bytes) -> bytes:
    """Insert a chunk right before IEND, where SillyTavern writes card chunks."""
    assert png.endswith(png_chunk(b"IEND", b""))
    return png[:-12] + chunk + png[-12:]


def chunk_types(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        length, ctype = struct.unpack(">I4s", png[pos : pos + 8])
        out.append((ctype, png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def png_cards(path: Path) -> dict[str, dict]:
    """Card JSON per chunk keyword, as Pillow sees the file."""
    with Image.open(path) as im:
        im.load()
        return {k: json.loads(base64.b64decode(v)) for k, v in im.text.items() if k in ("chara", "ccv3")}


def write_json(path: Path, card: dict) -> Path:
    path.write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


# -- import mapping -------------------------------------------------------------


def test_v2_json_import_maps_every_field(tmp_path):
    p = import_card(write_json(tmp_path / "mirela.json", V2_CARD))

    assert p.name == "Captain Mirela Voss"
    assert p.id == "captain-mirela-voss"
    assert p.description.startswith("{{char}} is the weathered captain")
    assert p.personality == V2_DATA["personality"]
    assert p.scenario == V2_DATA["scenario"]
    assert p.greetings == [V2_DATA["first_mes"], *V2_DATA["alternate_greetings"]]
    assert p.example_dialogue == V2_DATA["mes_example"]
    assert p.system_prompt == V2_DATA["system_prompt"]
    assert p.post_history_instructions == V2_DATA["post_history_instructions"]
    assert p.creator_notes == V2_DATA["creator_notes"]
    assert p.tags == ["airship", "adventure", "steampunk"]
    assert p.creator == "quill_and_compass"
    assert p.character_version == "1.3"
    assert p.extensions == V2_DATA["extensions"]
    assert p.card_extra == {
        "x_custom_field": {"nested": [1, 2.5, None, True]},
        TOP_KEY: {"create_date": V2_CARD["create_date"], "avatar": "none"},
    }
    # the example dialogue is usable, the lorebook complete with unknown fields
    assert p.examples("Ann")[0].response.startswith("North, past the Shatter Reefs")
    book = p.lorebook
    assert book is not None and book.scan_depth == 4 and book.token_budget == 512
    assert book.extensions == {"world_source": "kestrel.json"}
    assert len(book.entries) == 5
    first = book.entries[0]
    assert first.name == "The Kestrel" and first.priority == 10 and first.position == "before_char"
    assert first.model_extra == {"probability": 100, "st_uid": "a1b2"}
    assert first.extensions["useProbability"] is True
    assert book.entries[4].enabled is False
    # persona-only settings stay at their defaults for a foreign card
    assert p.style == StyleRules() and p.identity == Identity() and p.language == "en"


def test_v3_json_import_keeps_v3_fields_in_card_extra(tmp_path):
    p = import_card(write_json(tmp_path / "sora.json", V3_CARD))
    assert p.name == "Sora"
    for key in ("nickname", "creator_notes_multilingual", "source", "group_only_greetings",
                "creation_date", "modification_date", "assets", "x_v3_extra"):
        assert p.card_extra[key] == V3_DATA[key]
    assert p.lorebook.entries[1].model_extra["use_regex"] is True


def test_v1_flat_card_is_imported(tmp_path):
    v1 = {
        "name": "Old Tom",
        "description": "A tavern keeper.",
        "personality": "cheerful",
        "scenario": "The Rusty Anchor tavern.",
        "first_mes": "Welcome, traveller!",
        "mes_example": "<START>\n{{user}}: Ale?\n{{char}}: Coming right up!",
        "chat": "Old Tom - 2023-01-01",  # tool metadata
    }
    p = import_card(write_json(tmp_path / "tom.json", v1))
    assert p.name == "Old Tom" and p.greetings == ["Welcome, traveller!"]
    assert p.examples()[0].response == "Coming right up!"
    assert p.card_extra[TOP_KEY] == {"chat": "Old Tom - 2023-01-01"}
    data = card_to_dict(p)["data"]
    assert data["first_mes"] == "Welcome, traveller!" and data["scenario"] == "The Rusty Anchor tavern."


def test_imported_lorebook_fires_on_chat(tmp_path):
    p = import_card(write_json(tmp_path / "mirela.json", V2_CARD))
    chat = ["Hello captain.", "Is the airship safe in a storm near the Shatter Reefs?"]
    fired = [e.id for e in triggered_entries(p.lorebook, chat)]
    # constant (order 10), reefs (50, selective: "storm" present), kestrel (100); not the disabled one
    assert fired == [2, 1, 0]


# -- exact round trips ------------------------------------------------------------


@pytest.mark.parametrize("card,spec", [(V2_CARD, "v2"), (V3_CARD, "v3")])
def test_json_round_trip_is_exact(tmp_path, card, spec):
    src = write_json(tmp_path / "in.json", card)
    p = import_card(src)
    out = export_card(p, tmp_path / "out.json", spec=spec)
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["data"] == card["data"]
    assert exported == card  # unknown top-level keys too
    assert import_card(out) == p


def test_v2_png_round_trip_is_exact_and_keeps_the_picture(tmp_path):
    src = tmp_path / "mirela.png"
    src.write_bytes(png_bytes({"chara": b64(V2_CARD)}, size=(120, 180)))
    p = import_card(src)
    assert p.name == "Captain Mirela Voss"

    out = export_card(p, tmp_path / "out.png", image=src)
    cards = png_cards(out)
    assert cards["chara"]["data"] == V2_DATA
    assert cards["chara"]["spec"] == "chara_card_v2"
    assert cards["ccv3"]["spec"] == "chara_card_v3" and cards["ccv3"]["spec_version"] == "3.0"
    # the V3 chunk carries the same character
    assert import_card(out) == p
    with Image.open(src) as a, Image.open(out) as b:
        assert a.size == b.size == (120, 180)
        assert a.tobytes() == b.tobytes()
    # exactly one chunk of each: the old 'chara' was replaced, not duplicated
    texts = [payload.split(b"\0")[0] for ctype, payload in chunk_types(out.read_bytes()) if ctype == b"tEXt"]
    assert sorted(texts) == [b"ccv3", b"chara"]


def test_v3_png_round_trip_is_exact(tmp_path):
    src = tmp_path / "sora.png"
    src.write_bytes(png_bytes({"chara": b64({"spec": "chara_card_v2", "spec_version": "2.0",
                                             "data": {**V2_DATA, "name": "Sora (old V2 copy)"}}),
                               "ccv3": b64(V3_CARD)}))
    p = import_card(src)
    assert p.name == "Sora"  # ccv3 wins over chara
    out = export_card(p, tmp_path / "out.png", spec="v3", image=src)
    cards = png_cards(out)
    assert cards["ccv3"]["data"] == V3_DATA
    assert cards["chara"]["data"]["name"] == "Sora"


def test_v2_exported_as_v3_is_a_valid_v3_card_and_comes_back_equal(tmp_path):
    p = import_card(write_json(tmp_path / "in.json", V2_CARD))
    v3 = card_to_dict(p, "v3")
    assert v3["spec"] == "chara_card_v3" and v3["spec_version"] == "3.0"
    assert v3["data"]["group_only_greetings"] == []
    assert all(e["use_regex"] is False for e in v3["data"]["character_book"]["entries"])
    back = card_from_dict(v3, "v3.json")
    assert back == p
    assert card_to_dict(back, "v2")["data"] == V2_DATA


def test_card_missing_optional_fields_exports_every_v2_field(tmp_path):
    p = import_card(write_json(tmp_path / "min.json", {"spec": "chara_card_v2", "data": {"name": "Mini"}}))
    data = card_to_dict(p)["data"]
    for key in ("name", "description", "personality", "scenario", "first_mes", "mes_example",
                "creator_notes", "system_prompt", "post_history_instructions", "alternate_greetings",
                "tags", "creator", "character_version", "extensions"):
        assert key in data
    assert "character_book" not in data


# -- vchar personas ----------------------------------------------------------------


def rich_persona() -> Persona:
    return Persona(
        id="lumi",
        name="Lumi Starfall",
        description="A cheerful astronomer.",
        greetings=["Look up!", "Did you see that meteor?"],
        example_dialogue="<START>\n{{user}}: Hi\n{{char}}: Hello, stargazer!",
        style=StyleRules(max_sentences=3, forbidden_phrases=["As an AI"], notes=["Uses star metaphors"]),
        identity=Identity(
            appearance="silver hair, freckles",
            portraits=["/srv/vchar/lumi/portrait.png"],
            seed=42,
            voice=VoiceIdentity(
                sample="/srv/vchar/lumi/voice.wav",
                consent=Consent(who="Jane Roe", statement="I agree", date=datetime(2024, 3, 1, tzinfo=timezone.utc)),
                language="ru",
            ),
        ),
        language="ru",
        tags=["space"],
        lorebook=Lorebook(entries=[LoreEntry(keys=["Andromeda"], content="Lumi's favourite galaxy.")]),
    )


@pytest.mark.parametrize("name,spec", [("lumi.json", "v2"), ("lumi.json", "v3"), ("lumi.png", "v2")])
def test_vchar_persona_survives_export_and_import(tmp_path, name, spec):
    p = rich_persona()
    out = export_card(p, tmp_path / name, spec=spec)
    back = import_card(out)
    assert back == p
    assert back.id == "lumi" and back.style.max_sentences == 3 and back.identity.voice.consent.who == "Jane Roe"


def test_vchar_settings_travel_in_extensions_only_when_set(tmp_path):
    ext = card_to_dict(rich_persona())["data"]["extensions"]
    assert ext["vchar"]["id"] == "lumi"
    assert ext["vchar"]["language"] == "ru"
    assert ext["vchar"]["style"]["max_sentences"] == 3
    plain = Persona(name="Plain Jane", description="x")
    assert "vchar" not in card_to_dict(plain)["data"]["extensions"]
    # a persona's own extensions (someone else's tool data) are exported untouched
    other = Persona(name="Plain Jane", extensions={"vchar": {"future": 1}, "chub": {"id": 5}}, language="de")
    ext = card_to_dict(other)["data"]["extensions"]
    assert ext == {"vchar": {"future": 1, "language": "de"}, "chub": {"id": 5}}
    assert card_from_dict(card_to_dict(other), "x.json") == other


# -- PNG reading variants -----------------------------------------------------------


@pytest.mark.parametrize("zip_itxt", [False, True])
def test_itxt_chunk_png_is_imported(tmp_path, zip_itxt):
    path = tmp_path / "itxt.png"
    path.write_bytes(png_bytes({"chara": b64(V2_CARD)}, itxt=True, zip_itxt=zip_itxt))
    with Image.open(path) as im:  # sanity: the file really has an iTXt chunk
        assert any(ctype == b"iTXt" for ctype, _ in chunk_types(path.read_bytes()))
        assert "chara" in im.text
    p = import_card(path)
    assert card_to_dict(p)["data"] == V2_DATA


def test_card_chunk_after_image_data_and_ztxt_are_found(tmp_path):
    raw = json.dumps(V3_CARD).encode()
    ztxt = png_chunk(b"zTXt", b"ccv3\0\0" + zlib.compress(base64.b64encode(raw)))
    path = tmp_path / "late.png"
    path.write_bytes(append_before_iend(png_bytes(), ztxt))
    assert import_card(path).card_extra["nickname"] == "Sora-chan"


def test_card_from_bytes_detects_png_and_json():
    assert card_from_bytes(png_bytes({"chara": b64(V2_CARD)}), "upload").name == "Captain Mirela Voss"
    assert card_from_bytes(json.dumps(V3_CARD).encode("utf-8"), "upload").name == "Sora"
    assert card_from_bytes(b"\xef\xbb\xbf" + json.dumps(V2_CARD).encode(), "bom.json").name == "Captain Mirela Voss"


# -- PNG export -----------------------------------------------------------------------


def test_png_export_without_image_draws_a_portrait_with_both_chunks(tmp_path):
    out = export_card(Persona(name="Lumi Starfall", greetings=["Hi"]), tmp_path / "lumi.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (400, 600)
        im.load()
        assert {"chara", "ccv3"} <= set(im.text)
        assert len(set(im.getdata())) > 1  # actually drawn, not a flat fill
    cards = png_cards(out)
    assert cards["chara"]["data"]["first_mes"] == "Hi"
    assert cards["ccv3"]["data"]["name"] == "Lumi Starfall"


def test_png_export_converts_a_jpeg_portrait_upright(tmp_path):
    jpg = tmp_path / "face.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held sideways: viewers rotate 90 degrees
    Image.new("RGB", (450, 300), (10, 120, 200)).save(jpg, format="JPEG", exif=exif)
    out = export_card(Persona(name="Jo"), tmp_path / "jo.png", image=jpg.read_bytes())
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (300, 450)
    assert import_card(out).name == "Jo"


def test_png_export_keeps_other_chunks_of_the_source_image(tmp_path):
    src = tmp_path / "src.png"
    src.write_bytes(png_bytes({"chara": b64(V2_CARD), "chara-ext-asset_:0": "aGVsbG8=", "Software": "Paint"}))
    out = export_card(import_card(src), tmp_path / "out.png", image=src)
    with Image.open(out) as im:
        assert im.text["chara-ext-asset_:0"] == "aGVsbG8="
        assert im.text["Software"] == "Paint"


def test_export_overwrites_atomically_and_rejects_unknown_suffix(tmp_path):
    target = tmp_path / "card.json"
    target.write_text("old")
    export_card(Persona(name="A"), target)
    assert json.loads(target.read_text())["data"]["name"] == "A"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # no temp files left
    with pytest.raises(PersonaError, match="card.txt"):
        export_card(Persona(name="A"), tmp_path / "card.txt")


# -- load_persona_file -----------------------------------------------------------------


def test_load_persona_file_reads_cards(tmp_path):
    j = write_json(tmp_path / "mirela.json", V2_CARD)
    png = tmp_path / "sora.png"
    png.write_bytes(png_bytes({"ccv3": b64(V3_CARD)}))
    assert load_persona_file(j) == import_card(j)
    assert load_persona_file(png).name == "Sora"


# -- errors -------------------------------------------------------------------------------


def _bad_v2(**changes) -> dict:
    card = copy.deepcopy(V2_CARD)
    card["data"].update(changes)
    return card


@pytest.mark.parametrize(
    "card,field,message",
    [
        (_bad_v2(alternate_greetings="Hello again"), "data.alternate_greetings", "must be a list"),
        (_bad_v2(alternate_greetings=["ok", 3]), "data.alternate_greetings.1", "must be a string"),
        (_bad_v2(description=["not", "text"]), "data.description", "must be a string"),
        (_bad_v2(tags="a,b"), "data.tags", "must be a list"),
        (_bad_v2(extensions=[]), "data.extensions", "must be an object"),
        (_bad_v2(name="   "), "data.name", "must not be empty"),
        (_bad_v2(character_book="none"), "data.character_book", "must be an object"),
        (
            _bad_v2(character_book={"entries": [{"keys": "Kestrel", "content": "x"}]}),
            "data.character_book.entries.0.keys",
            "list",
        ),
        (_bad_v2(extensions={"vchar": {"style": {"max_sentences": 0}}}), "data.extensions.vchar.style.max_sentences", ""),
        ({"spec": "chara_card_v2", "spec_version": "2.0", "data": {"description": "no name"}}, "data.name", "missing"),
        ({"spec": "chara_card_v2", "spec_version": "2.0"}, "data", "missing"),
        ({"spec": "chara_card_v2", "data": "oops"}, "data", "must be an object"),
        ({"spec": "chara_card_v9", "data": {"name": "X"}}, "spec", "unsupported card spec"),
    ],
)
def test_bad_card_json_names_file_and_field(tmp_path, card, field, message):
    path = write_json(tmp_path / "broken.json", card)
    with pytest.raises(PersonaError) as info:
        import_card(path)
    err = info.value
    assert err.source == str(path) and err.field == field
    assert str(path) in str(err) and field in str(err) and message in str(err)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"{ not json", "not valid JSON"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (b'{"hello": "world"}', "not a character card"),
        (b"\xff\xfe\x00garbage", "neither a PNG nor UTF-8"),
    ],
)
def test_not_a_card_json(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(PersonaError, match=message) as info:
        import_card(path)
    assert info.value.source == str(path)


def test_png_errors_name_file_and_chunk(tmp_path):
    plain = tmp_path / "plain.png"
    plain.write_bytes(png_bytes({"Software": "Paint"}))
    with pytest.raises(PersonaError, match="no character card") as info:
        import_card(plain)
    assert str(plain) in str(info.value)

    bad = tmp_path / "bad64.png"
    bad.write_bytes(png_bytes({"chara": "%%% not base64 %%%"}))
    with pytest.raises(PersonaError, match="base64") as info:
        import_card(bad)
    assert info.value.field == "chara" and info.value.source == str(bad)

    badjson = tmp_path / "badjson.png"
    badjson.write_bytes(png_bytes({"ccv3": base64.b64encode(b"{nope").decode()}))
    with pytest.raises(PersonaError, match="not valid JSON") as info:
        import_card(badjson)
    assert info.value.field == "ccv3"

    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a....")
    with pytest.raises(PersonaError, match="not a PNG"):
        import_card(fake)

    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes({"chara": b64(V2_CARD)})[:200])
    with pytest.raises(PersonaError, match="corrupt PNG"):
        import_card(truncated)


def test_oversized_and_missing_files_are_refused(tmp_path):
    big = tmp_path / "huge.json"
    with big.open("wb") as fh:
        fh.truncate(MAX_CARD_BYTES + 1)
    with pytest.raises(PersonaError, match="larger than 20 MB") as info:
        import_card(big)
    assert info.value.source == str(big)
    with pytest.raises(PersonaError, match="cannot read file"):
        import_card(tmp_path / "nope.png")


# -- every field survives import, install and export -------------------------------------

NULL_CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Nully",
        "description": "",
        "personality": None,
        "scenario": "",
        "first_mes": "Hi.",
        "mes_example": None,
        "creator_notes": "",
        "system_prompt": None,
        "post_history_instructions": "",
        "alternate_greetings": None,
        "tags": None,
        "creator": None,
        "character_version": "",
        "extensions": None,
        "character_book": None,
    },
}

EMPTY_LIST_BOOK_CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        **{k: "" for k in ("description", "personality", "scenario", "mes_example", "creator_notes",
                           "system_prompt", "post_history_instructions", "creator", "character_version")},
        "name": "Booky",
        "first_mes": "",
        "alternate_greetings": [],
        "tags": [],
        "extensions": {},
        "character_book": {
            "name": None,
            "description": None,
            "scan_depth": None,
            "token_budget": None,
            "recursive_scanning": None,
            "extensions": {},
            "entries": [
                {"keys": ["harbour"], "content": "The harbour never sleeps.", "extensions": {}, "enabled": True,
                 "insertion_order": 0, "case_sensitive": None, "name": None, "priority": None, "id": None,
                 "comment": None, "selective": None, "secondary_keys": [], "constant": None, "position": None},
                {"keys": [], "content": "", "extensions": {}, "enabled": False, "insertion_order": 5,
                 "secondary_keys": [], "comment": "", "name": ""},
            ],
        },
    },
}

V1_NULL_CARD = {"name": "Old Tom", "description": "A tavern keeper.", "personality": None, "scenario": None,
                "first_mes": "Welcome!", "mes_example": ""}


def _install_and_reload(src: Path, folder: Path) -> Persona:
    """Import as ``vchar persona import`` does, load as the service does, and take
    what ``vchar persona export`` would write."""
    from persona.registry import PersonaRegistry, install_persona, shareable

    p, _ = install_persona(src, folder)
    loaded = PersonaRegistry([folder]).get(p.id)
    assert loaded == p
    return shareable(loaded)


@pytest.mark.parametrize("card,spec", [(V2_CARD, "v2"), (V3_CARD, "v3"), (NULL_CARD, "v2"), (EMPTY_LIST_BOOK_CARD, "v2"),
                                       (EMPTY_LIST_BOOK_CARD, "v3")])
@pytest.mark.parametrize("fmt", ["json", "png"])
def test_installed_card_exports_every_field_unchanged(tmp_path, card, spec, fmt):
    src = tmp_path / f"in.{fmt}"
    if fmt == "json":
        write_json(src, card)
    else:
        src.write_bytes(png_bytes({"ccv3" if spec == "v3" else "chara": b64(card)}))
    p = _install_and_reload(src, tmp_path / "personas")
    exported = card_to_dict(p, spec)["data"]
    expected = copy.deepcopy(card["data"])
    if spec == "v3" and card is not V3_CARD:  # what V3 requires and a V2 card lacks
        expected["group_only_greetings"] = []
        for entry in expected["character_book"]["entries"]:
            entry["use_regex"] = False
    assert exported == expected
    out = export_card(p, tmp_path / "out.json", spec=spec)
    assert json.loads(out.read_text())["data"] == expected


def test_null_fields_come_back_null_until_the_persona_fills_them(tmp_path):
    p = import_card(write_json(tmp_path / "n.json", NULL_CARD))
    assert p.personality == "" and p.tags == [] and p.lorebook is None
    assert card_to_dict(p)["data"] == NULL_CARD["data"]
    edited = p.model_copy(update={"personality": "shy", "tags": ["new"]})
    data = card_to_dict(edited)["data"]
    assert data["personality"] == "shy" and data["tags"] == ["new"] and data["system_prompt"] is None


def test_v1_card_nulls_survive(tmp_path):
    p = _install_and_reload(write_json(tmp_path / "tom.json", V1_NULL_CARD), tmp_path / "personas")
    data = card_to_dict(p)["data"]
    assert {k: data[k] for k in V1_NULL_CARD} == V1_NULL_CARD
