"""What an imported or dropped-in card may not do: write outside the personas folder,
replace other files, point at local files, claim consent, make its author an admin,
or pass off a drawn placeholder as the character's portrait."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image, PngImagePlugin

from persona.card import Persona, PersonaError, load_persona_file, slugify
from persona.cards import PLACEHOLDER_KEY, export_card, read_png_text
from persona.registry import PersonaRegistry, install_persona

IDENTITY = {
    "appearance": "red scarf",
    "portraits": ["/home/operator/private/photo.jpg"],
    "voice": {
        "sample": "/etc/passwd",
        "consent": {"who": "Jane Roe", "statement": "I agree", "date": "2024-03-01T00:00:00Z"},
    },
}


def card(name: str = "Captain Rook", **vchar) -> dict:
    ext = {"vchar": vchar} if vchar else {}
    return {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": {"name": name, "first_mes": "Ahoy.", "extensions": ext}}


def png_card(path: Path, obj: dict, color=(30, 60, 90)) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(obj).encode()).decode())
    Image.new("RGB", (64, 96), color).save(path, pnginfo=info)
    return path


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- ids are slugs; every write stays inside the folder --------------------------------


@pytest.mark.parametrize("bad_id", ["../../outside/owned", "<absolute>", "portraits/mira", "Mira Vale", "a" * 65, "-x-"])
@pytest.mark.parametrize("fmt", ["json", "png"])
def test_card_id_must_be_a_slug_and_nothing_is_written(tmp_path, bad_id, fmt):
    if bad_id == "<absolute>":
        bad_id = str(tmp_path / "outside" / "owned")
    personas = tmp_path / "data" / "personas"
    portrait = personas / "portraits" / "mira.png"
    portrait.parent.mkdir(parents=True)
    portrait.write_bytes(b"mira's real portrait")
    src = tmp_path / "in" / f"evil.{fmt}"
    src.parent.mkdir()
    if fmt == "json":
        src.write_text(json.dumps(card(id=bad_id)))
    else:
        png_card(src, card(id=bad_id))
    before = all_files(tmp_path)

    with pytest.raises(PersonaError) as info:
        install_persona(src, personas)
    assert info.value.field == "data.extensions.vchar.id" and "slug" in str(info.value)
    assert all_files(tmp_path) == before
    assert portrait.read_bytes() == b"mira's real portrait"


def test_yaml_id_must_be_a_slug(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("id: ../x\nname: X\n")
    with pytest.raises(PersonaError) as info:
        load_persona_file(f)
    assert info.value.field == "id"


def test_slugs_from_names_are_bounded():
    assert len(slugify("Captain " * 30)) <= 64
    assert Persona(name="Very " * 19 + "Long").id == slugify("Very " * 19 + "Long")
    assert not slugify("x" * 63 + " y").endswith("-")


def test_png_art_is_not_replaced_without_force(tmp_path):
    personas = tmp_path / "personas"
    personas.mkdir()
    dropped = png_card(personas / "captain-rook.png", card(), color=(200, 0, 0))  # a card someone dropped in
    original = dropped.read_bytes()
    src = png_card(tmp_path / "rook.png", card(), color=(0, 200, 0))

    with pytest.raises(FileExistsError, match="--force"):
        install_persona(src, personas)
    assert dropped.read_bytes() == original and not (personas / "captain-rook.yaml").exists()

    p, target = install_persona(src, personas, overwrite=True)
    assert target == personas / "captain-rook.yaml"
    assert dropped.read_bytes() == src.read_bytes()
    assert p.identity.portraits == [str(dropped)]


def test_install_refuses_to_write_through_a_symlink(tmp_path):
    personas = tmp_path / "personas"
    personas.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours")
    (personas / "captain-rook.png").symlink_to(outside)
    with pytest.raises(PersonaError, match="outside"):
        install_persona(png_card(tmp_path / "rook.png", card()), personas, overwrite=True)
    assert outside.read_bytes() == b"not yours"
    assert not (personas / "captain-rook.yaml").exists()


# -- cards are foreign wherever they come from ----------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "png"])
def test_card_dropped_into_the_folder_keeps_no_local_paths_or_consent(tmp_path, fmt):
    personas = tmp_path / "personas"
    personas.mkdir()
    path = personas / f"rook.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(card(identity=IDENTITY)))
    else:
        png_card(path, card(identity=IDENTITY))
    p = PersonaRegistry([personas]).get("captain-rook")
    assert p.identity.portraits == []
    assert p.identity.voice.sample is None and p.identity.voice.consent is None
    assert p.identity.appearance == "red scarf"  # the rest of the identity stays


def test_imported_yaml_brings_no_admins_paths_or_consent(tmp_path):
    src = tmp_path / "elsewhere" / "rook.yaml"
    src.parent.mkdir()
    (src.parent / "face.png").write_bytes(b"png")
    src.write_text(yaml.safe_dump({
        "id": "rook",
        "name": "Captain Rook",
        "identity": {**IDENTITY, "portraits": ["face.png", "/srv/other/face.png"]},
        "platforms": {
            "telegram": {"admin_ids": [111], "token_env": "VCHAR_OPENAI_API_KEY", "allowed_chats": ["-100"]},
            "discord": {"admin_ids": ["222"]},
        },
        "card_assets": {"embeded://x.png": "/etc/shadow"},
    }))
    personas = tmp_path / "personas"
    p, target = install_persona(src, personas)

    for loaded in (p, PersonaRegistry([personas]).get("rook")):
        assert loaded.platforms.telegram.admin_ids == [] and loaded.platforms.discord.admin_ids == []
        assert loaded.platforms.telegram.token_env is None
        assert loaded.platforms.telegram.allowed_chats == ["-100"]
        assert loaded.identity.portraits == []
        assert loaded.identity.voice.sample is None and loaded.identity.voice.consent is None
        assert loaded.card_assets == {}
    text = target.read_text()
    assert "111" not in text and "passwd" not in text and "Jane Roe" not in text and "shadow" not in text


def test_operator_yaml_in_the_folder_keeps_admins_and_portraits(tmp_path):
    (tmp_path / "face.png").write_bytes(b"png")
    (tmp_path / "rook.yaml").write_text(
        "name: Captain Rook\nidentity: {portraits: [face.png]}\nplatforms: {telegram: {admin_ids: [111]}}\n"
    )
    p = PersonaRegistry([tmp_path]).get("captain-rook")
    assert p.platforms.telegram.admin_ids == ["111"]
    assert p.identity.portraits == [str(tmp_path / "face.png")]


# -- a drawn placeholder is not a portrait ---------------------------------------------------


def test_exported_placeholder_is_not_imported_as_a_portrait(tmp_path):
    out = export_card(Persona(name="Captain Rook", greetings=["Ahoy."]), tmp_path / "rook.png")
    assert PLACEHOLDER_KEY in read_png_text(out.read_bytes(), keys=(PLACEHOLDER_KEY,))

    personas = tmp_path / "personas"
    p, target = install_persona(out, personas)
    assert p.identity.portraits == []
    assert PersonaRegistry([personas]).get("captain-rook").identity.portraits == []
    assert p.greetings == ["Ahoy."]


def test_exported_real_picture_is_imported_as_a_portrait(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (40, 60), (120, 10, 10)).save(buf, format="PNG")
    out = export_card(Persona(name="Captain Rook"), tmp_path / "rook.png", image=buf.getvalue())
    assert PLACEHOLDER_KEY not in read_png_text(out.read_bytes(), keys=(PLACEHOLDER_KEY,))

    p, _ = install_persona(out, tmp_path / "personas")
    assert p.identity.portraits == [str(tmp_path / "personas" / "captain-rook.png")]
    with Image.open(p.identity.portraits[0]) as im:
        assert im.size == (40, 60)
