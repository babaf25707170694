"""The studio's personas pages, as an operator uses them: import a card, edit it with the
prompt preview, export it, give it a portrait and a voice."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from tests.bots.studio_support import studio, studio_sqlite  # noqa: F401 - fixtures

NOVA = {"spec": "chara_card_v2", "spec_version": "2.0",
        "data": {"name": "Nova", "description": "A pilot who grew up far from Earth.", "first_mes": "Hi",
                 "personality": "", "scenario": "", "mes_example": "",
                 "character_book": {"entries": [{"keys": ["moon"], "content": "Nova grew up on the moon.",
                                                 "enabled": True, "insertion_order": 1}]}}}


class _Form(HTMLParser):
    """The fields a browser would send for the form with ``form_id``, as the page shows them."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields, self._area = form_id, False, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif self.inside and tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind == "checkbox":
                if "checked" in a:
                    self.fields.append((a["name"], a.get("value", "on")))
            elif kind != "file":
                self.fields.append((a["name"], a.get("value", "")))
        elif self.inside and tag == "textarea" and a.get("name"):
            self._area = [a["name"], ""]

    def handle_data(self, data):
        if self._area is not None:
            self._area[1] += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._area is not None:
            name, text = self._area
            self.fields.append((name, text[1:] if text.startswith("\n") else text))  # as browsers read it
            self._area = None
        elif tag == "form":
            self.inside = False


async def _editor(client, pid: str) -> list[tuple[str, str]]:
    page = await client.get(f"/personas/{pid}/edit")
    assert page.status_code == 200, page.text[:500]
    parser = _Form("persona-form")
    parser.feed(page.text)
    return [(k, v) for k, v in parser.fields if k != "csrf"]


def _changed(fields: list[tuple[str, str]], **changes) -> dict[str, list[str]]:
    """The form's fields as httpx data, some set (a name with '.' written '__')."""
    data: dict[str, list[str]] = {}
    for k, v in fields:
        data.setdefault(k, []).append(v)
    for k, v in changes.items():
        data[k.replace("__", ".")] = v if isinstance(v, list) else [v]
    return data


async def _import_nova(client, card: dict | None = None, **data):
    body = json.dumps(card or NOVA).encode()
    return await client.post("/personas/import", data=data,
                             files={"card": ("Nova card (1).json", body, "application/json")})


def _png(size=(96, 96), color=(200, 40, 90)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` and holds no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _field(html: str, name: str) -> tuple[str, list[str]]:
    """The classes of the editor's wrapper of one field, and the messages shown for it."""
    m = re.search(r'<div class="([^"]*)" data-field="' + re.escape(name) + '">', html)
    assert m, f"no field {name}"
    return m.group(1), re.findall(r'data-error-for="' + re.escape(name) + r'">([^<]*)<', html)


async def test_a_card_is_imported_by_upload_listed_and_chats(studio):
    web, client = studio
    folder = web.settings.resolved_personas_dir
    r = await _import_nova(client)
    assert r.status_code == 303 and r.headers["location"] == "/personas/nova?saved=1"
    assert (folder / "nova.yaml").is_file()
    page = await client.get(r.headers["location"])
    assert page.status_code == 200 and "Imported Nova (nova)" in page.text
    assert 'data-persona="nova"' in page.text and 'data-persona="mira"' in page.text
    assert 'src="/portrait/mira/0"' in page.text and "shipped sample" in page.text
    assert str(folder / "nova.yaml") in page.text
    assert not list((web.settings.data_dir / "cache" / "uploads").iterdir())  # the upload is gone

    r = await client.post("/chat/nova/send", data={"text": "hello"})
    assert r.status_code == 303
    chat = await client.get("/chat/nova")
    assert chat.status_code == 200 and "hello" in chat.text

    again = await _import_nova(client)  # the same id: refused, as `vchar persona import` without --force
    assert again.status_code == 422 and "exists; pass --force to replace it" in again.text
    card = json.loads(json.dumps(NOVA))
    card["data"]["description"] = "Second take."
    forced = await _import_nova(client, card, force="1")
    assert forced.status_code == 303
    assert web.svc.manager.registry.get("nova").description == "Second take."


async def test_a_malformed_card_is_refused_by_field_and_nothing_is_written(studio_sqlite):
    web, client = studio_sqlite
    folder = web.settings.resolved_personas_dir
    before = sorted(folder.rglob("*")) if folder.exists() else []
    card = json.loads(json.dumps(NOVA))
    del card["data"]["name"]
    r = await client.post("/personas/import", files={"card": ("../../../etc/Nova card.json", json.dumps(card).encode(),
                                                               "application/json")})
    assert r.status_code == 422
    # the message `vchar persona import` prints, naming the file as it was saved
    assert "Nova-card.json: data.name: missing: a card needs a name" in r.text
    assert 'class="field-error"' in r.text and "../" not in r.text

    r = await client.post("/personas/import", files={"card": ("plain.png", _png(), "image/png")})
    assert r.status_code == 422 and "no character card in it" in r.text
    r = await client.post("/personas/import", files={"card": ("empty.json", b"", "application/json")})
    assert r.status_code == 422 and "Choose or drop a card" in r.text

    after = sorted(folder.rglob("*")) if folder.exists() else []
    assert after == before
    assert not list((web.settings.data_dir / "cache" / "uploads").iterdir())
    assert "nova" not in web.svc.manager.registry.personas


async def test_an_invalid_edit_marks_its_field_and_saves_nothing(studio_sqlite):
    web, client = studio_sqlite
    assert (await _import_nova(client)).status_code == 303
    yaml_file = web.settings.resolved_personas_dir / "nova.yaml"
    saved = yaml_file.read_bytes()
    fields = await _editor(client, "nova")
    assert ("name", "Nova") in fields and ("lore-0-keys", "moon") in fields

    bad = _changed(fields, style__max_chars="5", description="Not saved.")
    r = await client.post("/personas/nova/edit", data=bad)
    assert r.status_code == 422
    classes, messages = _field(r.text, "style.max_chars")
    assert "invalid" in classes and messages == ["Input should be greater than or equal to 20"]
    assert _field(r.text, "description") == ("field", [])
    assert "Not saved." in r.text  # what was typed stays in the form
    assert yaml_file.read_bytes() == saved
    assert web.svc.manager.registry.get("nova").description == NOVA["data"]["description"]

    preview = await client.post("/personas/nova/preview", data=bad)
    assert preview.status_code == 200 and "Most characters: Input should be greater than or equal to 20" in preview.text
    assert 'id="prompt-preview"' not in preview.text

    r = await client.post("/personas/nova/edit", data=_changed(fields, **{"lore-0-order": "soon", "name": " "}))
    assert r.status_code == 422
    assert re.search(r'<td class="invalid"><input type="number" step="1" name="lore-0-order"', r.text)
    assert _field(r.text, "name") == ("field invalid", ["must not be empty"])
    assert yaml_file.read_bytes() == saved


async def test_a_valid_edit_reaches_the_preview_the_file_and_the_chat(studio_sqlite):
    web, client = studio_sqlite
    manager = web.svc.manager
    mira = manager.registry.get("mira")
    fields = await _editor(client, "mira")
    new = "Mira keeps bees on the roof of the ramen shop."
    data = _changed(fields, description=new, style__max_sentences="3", tags="cozy, bees",
                    greeting=[v for k, v in fields if k == "greeting" and v] + ["Bzz, {{user}}!"])

    preview = await client.post("/personas/mira/preview", data=data)
    assert preview.status_code == 200 and new in preview.text
    assert "Answer in at most 3 sentences." in preview.text and "Operator" in preview.text
    assert not (web.settings.resolved_personas_dir / "mira.yaml").exists()  # a preview saves nothing

    r = await client.post("/personas/mira/edit", data=data)
    assert r.status_code == 303 and r.headers["location"] == "/personas/mira/edit?saved=1"
    target = web.settings.resolved_personas_dir / "mira.yaml"  # the sample is shipped: the operator's copy wins
    assert manager.registry.sources["mira"] == target
    edited = manager.registry.get("mira")
    assert edited.description == new and edited.style.max_sentences == 3 and edited.tags == ["cozy", "bees"]
    assert edited.greetings[-1] == "Bzz, {{user}}!" and edited.greetings[:-1] == mira.greetings
    # what the form does not show is kept
    assert edited.identity.portraits == mira.identity.portraits and edited.identity.seed == mira.identity.seed
    assert edited.style.max_chars == mira.style.max_chars and edited.example_dialogue == mira.example_dialogue
    assert edited.lorebook.model_dump() == mira.lorebook.model_dump()
    page = await client.get(r.headers["location"])
    assert "Saved." in page.text and new in page.text

    seen = []
    generate = manager.text.generate

    async def spy(request):
        seen.append(request)
        return await generate(request)

    manager.text.generate = spy
    r = await client.post("/chat/mira/send", data={"text": "What are you up to?"})
    assert r.status_code == 303
    assert any(new in str(req.messages) for req in seen)


async def test_lorebook_entries_are_added_and_removed(studio_sqlite):
    web, client = studio_sqlite
    assert (await _import_nova(client)).status_code == 303
    fields = await _editor(client, "nova")
    assert ("lore_rows", "2") in fields  # the entry and an empty row to add one
    data = _changed(fields, **{"lore-1-keys": "sun, star", "lore-1-content": "Nova fears the sun.",
                               "lore-1-order": "5", "lore-1-enabled": "1"})
    r = await client.post("/personas/nova/edit", data=data)
    assert r.status_code == 303
    book = web.svc.manager.registry.get("nova").lorebook
    assert [(e.keys, e.content, e.insertion_order) for e in book.entries] == [
        (["moon"], "Nova grew up on the moon.", 1), (["sun", "star"], "Nova fears the sun.", 5)]

    fields = await _editor(client, "nova")
    assert ("lore_rows", "3") in fields and ("lore-1-keys", "sun, star") in fields
    r = await client.post("/personas/nova/edit", data=_changed(fields, **{"lore-0-remove": "1"}))
    assert r.status_code == 303
    book = web.svc.manager.registry.get("nova").lorebook
    assert [e.keys for e in book.entries] == [["sun", "star"]]
    text = (web.settings.resolved_personas_dir / "nova.yaml").read_text()
    assert "moon." not in text and "fears the sun" in text

    fields = await _editor(client, "nova")
    data = _changed(fields, **{"lore-0-content": "Always: Nova hums.", "lore-0-keys": ""})
    preview = await client.post("/personas/nova/preview", data=data)
    assert "Lorebook: 1 entry" in preview.text and "None is constant" in preview.text


async def test_export_round_trips_as_a_card(studio_sqlite):
    from PIL import Image

    from persona.cards import card_from_bytes

    web, client = studio_sqlite
    r = await client.get("/personas/mira/export?format=png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'attachment; filename="mira.png"'
    mira = web.svc.manager.registry.get("mira")
    card = card_from_bytes(r.content, "mira.png")
    assert card.name == mira.name and card.description == mira.description and card.greetings == mira.greetings
    portrait = Image.open(web.svc.manager.registry.get("mira").identity.portraits[0])
    assert Image.open(io.BytesIO(r.content)).size == portrait.size  # the card's picture is her portrait

    r = await client.get("/personas/mira/export?format=json&spec=v3")
    assert r.status_code == 200 and 'filename="mira.v3.json"' in r.headers["content-disposition"]
    data = json.loads(r.content)
    assert data["spec"] == "chara_card_v3" and data["data"]["name"] == mira.name
    assert str(Path(__file__).parents[2]) not in r.text  # no local paths leave the machine
    assert (await client.get("/personas/mira/export?format=exe")).status_code == 422
    assert (await client.get("/personas/nobody/export")).status_code == 404


async def test_a_portrait_upload_becomes_the_reference_and_a_fake_is_refused(studio_sqlite):
    web, client = studio_sqlite
    manager = web.svc.manager
    before = manager.registry.get("mira").identity.portraits
    r = await client.post("/personas/mira/portrait", files={"image": ("x.png", b"just some text, honest", "image/png")})
    assert r.status_code == 422 and "not a picture the studio can read" in r.text and 'id="portrait-error"' in r.text
    r = await client.post("/personas/mira/portrait", files={"image": ("tiny.png", _png((20, 20)), "image/png")})
    assert r.status_code == 422 and "at least 64" in r.text
    huge = _png_header(8000, 6000)  # 48 megapixels by its header: refused before a pixel is decoded
    r = await client.post("/personas/mira/portrait", files={"image": ("huge.png", huge, "image/png")})
    assert r.status_code == 422 and "more than 40 megapixels" in r.text
    assert manager.registry.get("mira").identity.portraits == before
    assert not (web.settings.resolved_personas_dir / "mira.yaml").exists()

    r = await client.post("/personas/mira/portrait", files={"image": ("../me.png", _png((96, 80)), "image/png")})
    assert r.status_code == 303 and r.headers["location"].startswith("/personas/mira/edit?saved=portrait")
    portraits = manager.registry.get("mira").identity.portraits
    first = Path(portraits[0])
    assert first.parent == web.settings.resolved_personas_dir / "mira.portraits" and portraits[1:] == before
    served = await client.get("/portrait/mira/0")
    assert served.status_code == 200 and served.content == first.read_bytes() and served.content[:4] == b"\x89PNG"
    page = await client.get(r.headers["location"])
    assert 'src="/portrait/mira/1"' in page.text and "The new portrait is the reference now." in page.text
    assert manager.registry.sources["mira"] == web.settings.resolved_personas_dir / "mira.yaml"


async def test_portrait_candidates_are_drawn_and_one_is_picked(studio_sqlite):
    web, client = studio_sqlite
    r = await client.post("/personas/mira/portrait/candidates")
    assert r.status_code == 303
    page = await client.get("/personas/mira/edit")
    names = re.findall(r'src="/personas/mira/portrait/candidates/([^"]+)"', page.text)
    assert len(names) == 3
    got = await client.get(f"/personas/mira/portrait/candidates/{names[0]}")
    assert got.status_code == 200 and got.content[:4] == b"\x89PNG"
    for bad in ("../../mira.yaml", "..%2F..%2Fvchar.db", "nothing.png"):
        assert (await client.post("/personas/mira/portrait/pick", data={"name": bad})).status_code == 404
    r = await client.post("/personas/mira/portrait/pick", data={"name": names[0]})
    assert r.status_code == 303
    first = Path(web.svc.manager.registry.get("mira").identity.portraits[0])
    assert first.parent.name == "mira.portraits"


async def test_a_voice_is_set_with_consent_and_previewed(studio_sqlite):
    web, client = studio_sqlite
    assert (await _import_nova(client)).status_code == 303
    page = await client.get("/personas/nova/edit")
    assert "No voice yet" in page.text
    media = Path(__file__).parents[2] / "persona" / "samples" / "media"
    spec = json.loads(next(media.glob("*-voice.json")).read_text())
    wav = (media / spec["sample"]).read_bytes()

    r = await client.post("/personas/nova/voice", data={"consent": "", "who": "Sam"},
                          files={"sample": ("nova.wav", wav, "audio/wav")})
    assert r.status_code == 422 and "consent" in r.text and 'id="voice-error"' in r.text
    r = await client.post("/personas/nova/voice", data={"consent": "I agree.", "who": "Sam"},
                          files={"sample": ("nova.wav", b"not audio at all", "audio/wav")})
    assert r.status_code == 422 and "voice sample unreadable" in r.text and "I agree." in r.text
    assert not (web.settings.voices_dir / "nova").joinpath("voice.json").exists()

    r = await client.post("/personas/nova/voice", data={"consent": "Sam agrees to lend Nova this voice.", "who": "Sam"},
                          files={"sample": ("nova.wav", wav, "audio/wav")})
    assert r.status_code == 303
    page = await client.get("/personas/nova/edit")
    assert "Voice set: consent by Sam" in page.text and "Sam agrees to lend Nova this voice." in page.text
    assert not list((web.settings.data_dir / "cache" / "uploads").iterdir())

    r = await client.post("/personas/nova/voice/preview")
    assert r.status_code == 200
    asset = re.search(r'<audio controls src="/media/(\d+)">', r.text)
    assert asset, r.text
    audio = await client.get(f"/media/{asset.group(1)}")
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/") and len(audio.content) > 1000

    web.svc.manager.voice = None
    r = await client.post("/personas/nova/voice/preview")
    assert r.status_code == 200 and "Voice notes are off." in r.text
