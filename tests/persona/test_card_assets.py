"""Character Card V3 assets embedded in CHARX archives and PNG cards: kept on import,
written back on export, and read with bounds (a zip bomb or a hostile member name
is refused)."""

from __future__ import annotations

import base64
import copy
import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from persona.card import PersonaError, load_persona_file
from persona.cards import MAX_ASSET_BYTES, card_to_dict, export_card, import_card, read_card_file
from persona.registry import PERSONA_SUFFIXES, PersonaRegistry, install_persona, shareable


def image_bytes(color, size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


ICON = image_bytes((200, 30, 30))
HAPPY = image_bytes((30, 200, 30), (16, 24))
HELLO = b"ID3\x03\x00fake mp3 bytes\x00\xff" * 10

ASSETS = [
    {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"},
    {"type": "emotion", "uri": "embeded://assets/emotion/images/happy.png", "name": "happy", "ext": "png"},
    {"type": "other", "uri": "embeded://assets/other/audio/hello there.mp3", "name": "../../hello", "ext": "mp3"},
    {"type": "background", "uri": "https://example.org/bg.png", "name": "bg", "ext": "png"},
    {"type": "icon", "uri": "ccdefault:", "name": "alt", "ext": "png"},
]
MEMBERS = {
    "assets/icon/images/main.png": ICON,
    "assets/emotion/images/happy.png": HAPPY,
    "assets/other/audio/hello there.mp3": HELLO,
}
SORA = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        "name": "Sora", "description": "A shrine maiden.", "personality": "", "scenario": "",
        "first_mes": "Welcome to the shrine.", "mes_example": "", "creator_notes": "", "system_prompt": "",
        "post_history_instructions": "", "alternate_greetings": [], "group_only_greetings": [], "tags": [],
        "creator": "", "character_version": "", "extensions": {}, "nickname": "Sora-chan", "assets": ASSETS,
    },
}


def charx(path: Path, card: dict = SORA, members: dict[str, bytes] = MEMBERS, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card))
        for name, blob in {**members, **(extra or {})}.items():
            zf.writestr(name, blob)
    return path


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_charx_is_a_persona_file_type(tmp_path):
    assert ".charx" in PERSONA_SUFFIXES
    path = charx(tmp_path / "sora.charx")
    assert load_persona_file(path).name == "Sora"
    reg = PersonaRegistry([tmp_path])  # dropped into the personas folder
    assert reg.get("sora").card_extra["nickname"] == "Sora-chan" and not reg.problems


def test_charx_import_keeps_the_assets_and_export_writes_them_back(tmp_path):
    src = charx(tmp_path / "sora.charx", extra={"module.risum": b"unreferenced", "x_meta/1.json": b"{}"})
    personas = tmp_path / "personas"
    p, target = install_persona(src, personas)

    embedded = [a["uri"] for a in ASSETS if a["uri"].startswith("embeded://")]
    assert sorted(p.card_assets) == sorted(embedded)
    for uri, local in p.card_assets.items():
        local = Path(local)
        assert local.parent == personas / "sora.assets"
        assert ".." not in local.name and " " not in local.name
        assert local.read_bytes() == MEMBERS[uri.removeprefix("embeded://")]
    # the main icon is the character's face
    assert p.identity.portraits == [p.card_assets["embeded://assets/icon/images/main.png"]]
    loaded = PersonaRegistry([personas]).get("sora")
    assert loaded == p

    out = export_card(shareable(loaded), tmp_path / "out.charx")
    members = zip_members(out)
    assert json.loads(members.pop("card.json"))["data"] == SORA["data"]
    assert members == MEMBERS


def test_png_card_assets_survive_import_and_export(tmp_path):
    card = copy.deepcopy(SORA)
    card["data"]["assets"] = [
        {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
        {"type": "emotion", "uri": "__asset:0", "name": "happy", "ext": "png"},
        {"type": "other", "uri": "__asset:1", "name": "hello", "ext": "mp3"},
    ]
    info = PngImagePlugin.PngInfo()
    info.add_text("ccv3", base64.b64encode(json.dumps(card).encode()).decode())
    info.add_text("chara-ext-asset_:0", base64.b64encode(HAPPY).decode())
    info.add_text("chara-ext-asset_:1", base64.b64encode(HELLO).decode())
    src = tmp_path / "sora.png"
    Image.new("RGB", (48, 64), (10, 10, 120)).save(src, pnginfo=info)

    assert read_card_file(src).assets == {"__asset:0": HAPPY, "__asset:1": HELLO}
    personas = tmp_path / "personas"
    p, _ = install_persona(src, personas)
    assert Path(p.card_assets["__asset:0"]).read_bytes() == HAPPY
    assert p.identity.portraits == [str(personas / "sora.png")]  # the card's own picture

    loaded = shareable(PersonaRegistry([personas]).get("sora"))
    out = export_card(loaded, tmp_path / "out.png", spec="v3", image=personas / "sora.png")
    with Image.open(out) as im:
        texts = dict(im.text)
        assert im.size == (48, 64)
    assert json.loads(base64.b64decode(texts["ccv3"]))["data"] == card["data"]
    assert base64.b64decode(texts["chara-ext-asset_:0"]) == HAPPY
    again = read_card_file(out)
    assert again.assets == {"__asset:0": HAPPY, "__asset:1": HELLO}
    assert again.persona.card_extra["assets"] == card["data"]["assets"]


def test_charx_assets_travel_in_a_png_card_and_back(tmp_path):
    p, _ = install_persona(charx(tmp_path / "sora.charx"), tmp_path / "personas")
    out = export_card(shareable(p), tmp_path / "sora.png")
    card = read_card_file(out)
    uris = [a["uri"] for a in card.persona.card_extra["assets"]]
    assert uris[:3] == ["__asset:0", "__asset:1", "__asset:2"] and uris[3:] == [a["uri"] for a in ASSETS[3:]]
    assert card.assets == {"__asset:0": ICON, "__asset:1": HAPPY, "__asset:2": HELLO}

    back, _ = install_persona(out, tmp_path / "again")
    members = zip_members(export_card(shareable(back), tmp_path / "back.charx"))
    data = json.loads(members.pop("card.json"))["data"]
    assert sorted(members.values()) == sorted([ICON, HAPPY, HELLO])
    for asset in data["assets"][:3]:
        assert asset["uri"].removeprefix("embeded://") in members


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/cron.d/evil", "assets/../../evil", "C:/evil.txt"])
def test_charx_with_a_hostile_member_name_is_refused(tmp_path, name):
    src = charx(tmp_path / "bad.charx", extra={name: b"x"})
    with pytest.raises(PersonaError, match="unsafe file name") as info:
        install_persona(src, tmp_path / "personas")
    assert info.value.source == str(src)
    assert not (tmp_path / "personas").exists() or not any((tmp_path / "personas").iterdir())
    assert not (tmp_path / "evil.txt").exists()


def test_charx_zip_bomb_is_refused_without_inflating_it(tmp_path):
    bomb = b"\0" * (MAX_ASSET_BYTES + 1)  # deflates to well under a megabyte
    src = charx(tmp_path / "bomb.charx", members={**MEMBERS, "assets/emotion/images/happy.png": bomb})
    assert src.stat().st_size < 1024 * 1024
    with pytest.raises(PersonaError, match="too large") as info:
        import_card(src)
    assert info.value.field == "assets/emotion/images/happy.png"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a zip at all", "not a CHARX file"),
        (None, "no card.json"),
    ],
)
def test_broken_charx_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "broken.charx"
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("character.json", "{}")
    else:
        path.write_bytes(content)
    with pytest.raises(PersonaError, match=message):
        import_card(path)


def test_json_export_keeps_asset_uris_as_they_are(tmp_path):
    p = import_card(charx(tmp_path / "sora.charx"))
    assert card_to_dict(p, "v3")["data"] == SORA["data"]
