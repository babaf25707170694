"""Character Card V2 / V3 import and export, as JSON and as PNG.

A card is ``{"spec": "chara_card_v2" | "chara_card_v3", "spec_version": ..., "data": {...}}``
(or an old V1 card with the fields at the top level). In a PNG the card JSON is
base64 text in a ``tEXt``/``iTXt``/``zTXt`` chunk keyed ``chara`` (V2) or ``ccv3``
(V3); ``ccv3`` wins when both are present.

Nothing in a card is dropped on import: card fields this format has no place for
(the V3 extras such as ``nickname`` or ``assets``, and any unknown key in ``data``)
go to :attr:`Persona.card_extra`, unknown top-level keys to
``card_extra["__top__"]``, and lorebook entries keep every field. Exporting an
imported, spec-conforming card with the same spec gives back the same ``data``.

Persona settings that cards have no field for (``id``, ``style``, ``identity``,
``language``) travel in ``data.extensions["vchar"]``, written only when they differ
from the defaults, so a foreign card gains nothing on a round trip.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import copy
import hashlib
import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from persona.card import (
    Identity,
    Lorebook,
    Persona,
    PersonaError,
    StyleRules,
    slugify,
)

__all__ = [
    "MAX_CARD_BYTES",
    "TOP_KEY",
    "VCHAR_EXTENSION",
    "card_from_bytes",
    "card_from_dict",
    "card_png_bytes",
    "card_to_dict",
    "export_card",
    "import_card",
    "read_png_text",
]

MAX_CARD_BYTES = 20 * 1024 * 1024
TOP_KEY = "__top__"  # card_extra key holding unknown top-level keys (beside spec/spec_version/data)
VCHAR_EXTENSION = "vchar"  # data.extensions key carrying persona-only settings

V2_SPEC = "chara_card_v2"
V3_SPEC = "chara_card_v3"
_SPEC_VERSION = {V2_SPEC: "2.0", V3_SPEC: "3.0"}

_STRING_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)
_V2_FIELDS = frozenset(_STRING_FIELDS) | {"alternate_greetings", "tags", "extensions", "character_book"}
_V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_TOP_FIELDS = ("spec", "spec_version", "data")
_PERSONA_ONLY = ("id", "style", "identity", "language")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CARD_CHUNK_KEYS = ("ccv3", "chara")  # preference order
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")

Spec = Literal["v2", "v3", "chara_card_v2", "chara_card_v3"]


# -- import -------------------------------------------------------------------


def import_card(path: str | Path) -> Persona:
    """Load a character card from a ``.json`` or ``.png`` file.

    Raises :class:`PersonaError` naming the file (and the field, where there is
    one) for anything that is not a readable card; nothing is half-loaded.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise PersonaError(path, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_CARD_BYTES:
        raise PersonaError(path, f"file is larger than {MAX_CARD_BYTES // (1024 * 1024)} MB; refusing to load it")
    if path.suffix.lower() == ".png" and not data.startswith(PNG_SIGNATURE):
        raise PersonaError(path, "not a PNG file (bad signature)")
    return card_from_bytes(data, path)


def card_from_bytes(data: bytes, source: str | Path) -> Persona:
    """Parse card bytes: a PNG with a ``chara``/``ccv3`` chunk, or card JSON (UTF-8)."""
    if len(data) > MAX_CARD_BYTES:
        raise PersonaError(source, f"card is larger than {MAX_CARD_BYTES // (1024 * 1024)} MB; refusing to load it")
    if data.startswith(PNG_SIGNATURE):
        return _card_from_obj(_card_json_from_png(data, source), source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PersonaError(source, "not a character card: neither a PNG nor UTF-8 JSON text") from None
    return _card_from_obj(_parse_json(text, source, None), source)


def card_from_dict(obj: Any, source: str | Path) -> Persona:
    """Turn a parsed card (V1, V2 or V3 JSON object) into a :class:`Persona`.

    ``obj`` is not modified, and the persona shares no mutable parts with it.
    """
    return _card_from_obj(copy.deepcopy(obj), source)


def _card_from_obj(obj: Any, source: str | Path) -> Persona:
    """Like :func:`card_from_dict`, for an object the caller hands over (no copy)."""
    if not isinstance(obj, dict):
        raise PersonaError(source, f"not a character card: expected a JSON object, got {_type_name(obj)}")
    spec = obj.get("spec")
    if "data" in obj or spec is not None:
        if spec is None or spec == V2_SPEC:
            version = V2_SPEC
        elif spec == V3_SPEC:
            version = V3_SPEC
        else:
            raise PersonaError(source, f"unsupported card spec {spec!r} (expected {V2_SPEC!r} or {V3_SPEC!r})", "spec")
        data = obj.get("data")
        if data is None:
            raise PersonaError(source, "not a character card: the 'data' object is missing", "data")
        if not isinstance(data, dict):
            raise PersonaError(source, f"must be an object, got {_type_name(data)}", "data")
        top = {k: v for k, v in obj.items() if k not in _TOP_FIELDS}
        prefix = "data."
    else:
        if "name" not in obj:
            raise PersonaError(source, "not a character card: no 'data' object and no top-level 'name'")
        version = "v1"
        data = {k: obj[k] for k in _V1_FIELDS if k in obj}
        data.update({k: obj[k] for k in _V2_FIELDS if k in obj and k not in data})
        top = {k: v for k, v in obj.items() if k not in data}
        prefix = ""
    return _persona_from_card_data(data, version, top, source, prefix)


def _persona_from_card_data(
    data: dict[str, Any], version: str, top: dict[str, Any], source: str | Path, prefix: str
) -> Persona:
    def fail(field: str, message: str) -> PersonaError:
        return PersonaError(source, message, prefix + field)

    name = data.get("name")
    if name is None:
        raise fail("name", "missing: a card needs a name")
    fields: dict[str, str] = {}
    for key in _STRING_FIELDS:
        value = data.get(key)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise fail(key, f"must be a string, got {_type_name(value)}")
        fields[key] = value
    if not fields["name"].strip():
        raise fail("name", "must not be empty")

    alternate = _string_list(data.get("alternate_greetings"), "alternate_greetings", fail)
    tags = _string_list(data.get("tags"), "tags", fail)
    if version == V3_SPEC and "group_only_greetings" in data:
        _string_list(data["group_only_greetings"], "group_only_greetings", fail)

    extensions = data.get("extensions")
    if extensions is None:
        extensions = {}
    elif not isinstance(extensions, dict):
        raise fail("extensions", f"must be an object, got {_type_name(extensions)}")
    persona_only = _take_vchar_extension(extensions, fail)

    lorebook = None
    book = data.get("character_book")
    if book is not None:
        if not isinstance(book, dict):
            raise fail("character_book", f"must be an object, got {_type_name(book)}")
        if version == V3_SPEC:
            _drop_default_use_regex(book)
        lorebook = _validate(Lorebook, book, "character_book", fail)

    extra = {k: v for k, v in data.items() if k not in _V2_FIELDS}
    if version == V3_SPEC and extra.get("group_only_greetings") == []:
        del extra["group_only_greetings"]  # V3 export writes the empty list back
    if top:
        extra[TOP_KEY] = top

    first = fields["first_mes"]
    greetings = ([first] if first or alternate else []) + alternate
    values: dict[str, Any] = {
        "name": fields["name"],
        "description": fields["description"],
        "personality": fields["personality"],
        "scenario": fields["scenario"],
        "greetings": greetings,
        "example_dialogue": fields["mes_example"],
        "system_prompt": fields["system_prompt"],
        "post_history_instructions": fields["post_history_instructions"],
        "lorebook": lorebook,
        "tags": tags,
        "creator": fields["creator"],
        "creator_notes": fields["creator_notes"],
        "character_version": fields["character_version"],
        "extensions": extensions,
        "card_extra": extra,
        **persona_only,
    }
    try:
        return Persona.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        raise fail(_card_field(loc), err.get("msg", "invalid")) from None


def _string_list(value: Any, field: str, fail) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(field, f"must be a list of strings, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise fail(f"{field}.{i}", f"must be a string, got {_type_name(item)}")
    return list(value)


def _take_vchar_extension(extensions: dict[str, Any], fail) -> dict[str, Any]:
    """Pull the persona-only settings out of ``extensions.vchar`` (validated)."""
    ext = extensions.get(VCHAR_EXTENSION)
    if not isinstance(ext, dict):
        return {}  # absent, or someone else's non-object value: leave it alone
    base = f"extensions.{VCHAR_EXTENSION}"
    out: dict[str, Any] = {}
    if "id" in ext:
        value = ext["id"]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{base}.id", "must be a non-empty string")
        out["id"] = value
    if "language" in ext:
        value = ext["language"]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{base}.language", "must be a non-empty string")
        out["language"] = value
    if "style" in ext:
        out["style"] = _validate(StyleRules, ext["style"], f"{base}.style", fail)
    if "identity" in ext:
        out["identity"] = _validate(Identity, ext["identity"], f"{base}.identity", fail)
    rest = {k: v for k, v in ext.items() if k not in _PERSONA_ONLY}
    if rest:
        extensions[VCHAR_EXTENSION] = rest
    else:
        del extensions[VCHAR_EXTENSION]
    return out


def _validate(model: type[BaseModel], value: Any, field: str, fail) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        raise fail(f"{field}.{loc}" if loc else field, err.get("msg", "invalid") + more) from None


_PERSONA_TO_CARD = {
    "example_dialogue": "mes_example",
    "lorebook": "character_book",
    "greetings": "alternate_greetings",
    "style": f"extensions.{VCHAR_EXTENSION}.style",
    "identity": f"extensions.{VCHAR_EXTENSION}.identity",
    "language": f"extensions.{VCHAR_EXTENSION}.language",
    "id": f"extensions.{VCHAR_EXTENSION}.id",
}


def _card_field(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "(root)"
    head = _PERSONA_TO_CARD.get(str(loc[0]), str(loc[0]))
    return ".".join([head, *(str(p) for p in loc[1:])])


def _drop_default_use_regex(book: dict[str, Any]) -> None:
    """V3 requires ``use_regex`` on every entry; ``false`` is restored on V3 export."""
    entries = book.get("entries")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("use_regex") is False:
                del entry["use_regex"]


def _parse_json(text: str, source: str | Path, field: str | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PersonaError(
            source, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", field
        ) from None
    except RecursionError:
        raise PersonaError(source, "not valid JSON: nested too deeply", field) from None


# -- PNG chunks -----------------------------------------------------------------


def _iter_chunks(data: bytes, source: str | Path) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(type, payload)`` for each chunk of a PNG, through ``IEND``."""
    if not data.startswith(PNG_SIGNATURE):
        raise PersonaError(source, "not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    end = len(data)
    while pos < end:
        if pos + 8 > end:
            raise PersonaError(source, f"corrupt PNG: truncated chunk header at byte {pos}")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body_end = pos + 8 + length
        if body_end + 4 > end:
            raise PersonaError(source, f"corrupt PNG: {ctype.decode('latin-1')!r} chunk at byte {pos} runs past the end of the file")
        yield ctype, data[pos + 8 : body_end]
        pos = body_end + 4
        if ctype == b"IEND":
            return


def _inflate(payload: bytes, source: str | Path, key: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, MAX_CARD_BYTES + 1)
    except zlib.error as exc:
        raise PersonaError(source, f"compressed text chunk is corrupt: {exc}", key) from None
    if len(out) > MAX_CARD_BYTES or inflater.unconsumed_tail:
        raise PersonaError(source, f"compressed text chunk is larger than {MAX_CARD_BYTES // (1024 * 1024)} MB", key)
    return out


def _decode_text_chunk(ctype: bytes, payload: bytes, source: str | Path, wanted: tuple[str, ...]) -> tuple[str, str] | None:
    """Return ``(keyword, text)`` of a text chunk whose keyword is in ``wanted``."""
    keyword, sep, rest = payload.partition(b"\0")
    if not sep:
        return None
    key = keyword.decode("latin-1").lower()
    if key not in wanted:
        return None
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        if not rest:
            return None
        return key, _inflate(rest[1:], source, key).decode("latin-1")
    # iTXt: compression flag, method, language \0 translated keyword \0 text (UTF-8)
    if len(rest) < 2:
        return None
    flag, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\0")
    _translated, _, body = body.partition(b"\0")
    if flag:
        body = _inflate(body, source, key)
    try:
        return key, body.decode("utf-8")
    except UnicodeDecodeError:
        raise PersonaError(source, "iTXt chunk text is not UTF-8", key) from None


def read_png_text(data: bytes, source: str | Path = "<png>", keys: tuple[str, ...] = _CARD_CHUNK_KEYS) -> dict[str, str]:
    """The text of the PNG text chunks (tEXt, zTXt, iTXt) keyed by ``keys`` (lower case).

    Reads the chunks directly, wherever they are (before or after the image data),
    without decoding the image. The first chunk of each keyword wins.
    """
    found: dict[str, str] = {}
    for ctype, payload in _iter_chunks(data, source):
        if ctype in _TEXT_CHUNKS:
            hit = _decode_text_chunk(ctype, payload, source, keys)
            if hit and hit[0] not in found:
                found[hit[0]] = hit[1]
    return found


def _card_json_from_png(data: bytes, source: str | Path) -> Any:
    texts = read_png_text(data, source)
    for key in _CARD_CHUNK_KEYS:
        if key in texts:
            return _parse_json(_decode_base64(texts[key], source, key), source, key)
    raise PersonaError(source, "PNG has no character card in it (no 'chara' or 'ccv3' text chunk)")


def _decode_base64(text: str, source: str | Path, key: str) -> str:
    if text.lstrip().startswith("{"):  # some writers store the JSON itself
        return text.strip()
    stripped = "".join(text.split())
    stripped += "=" * (-len(stripped) % 4)
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.b64decode(stripped, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise PersonaError(source, "chunk is not valid base64", key) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PersonaError(source, "chunk does not decode to UTF-8 text", key) from None


# -- export -------------------------------------------------------------------


def _spec_name(spec: str) -> str:
    norm = str(spec).lower().strip()
    if norm in ("v2", "2", V2_SPEC):
        return V2_SPEC
    if norm in ("v3", "3", V3_SPEC):
        return V3_SPEC
    raise ValueError(f"unknown card spec {spec!r}; use 'v2' or 'v3'")


def card_to_dict(persona: Persona, spec: Spec = "v2") -> dict[str, Any]:
    """The card JSON object for a persona (``spec`` ``"v2"`` or ``"v3"``)."""
    spec_name = _spec_name(spec)
    greetings = list(persona.greetings)
    data: dict[str, Any] = {
        "name": persona.name,
        "description": persona.description,
        "personality": persona.personality,
        "scenario": persona.scenario,
        "first_mes": greetings[0] if greetings else "",
        "mes_example": persona.example_dialogue,
        "creator_notes": persona.creator_notes,
        "system_prompt": persona.system_prompt,
        "post_history_instructions": persona.post_history_instructions,
        "alternate_greetings": greetings[1:],
        "tags": list(persona.tags),
        "creator": persona.creator,
        "character_version": persona.character_version,
        "extensions": _export_extensions(persona),
    }
    if persona.lorebook is not None:
        data["character_book"] = _book_to_dict(persona.lorebook, spec_name)
    for key, value in persona.card_extra.items():
        if key != TOP_KEY and key not in _V2_FIELDS:
            data[key] = copy.deepcopy(value)
    if spec_name == V3_SPEC:
        data.setdefault("group_only_greetings", [])
    card: dict[str, Any] = {"spec": spec_name, "spec_version": _SPEC_VERSION[spec_name], "data": data}
    top = persona.card_extra.get(TOP_KEY)
    if isinstance(top, dict):
        for key, value in top.items():
            if key not in _TOP_FIELDS:
                card[key] = copy.deepcopy(value)
    return card


def _export_extensions(persona: Persona) -> dict[str, Any]:
    ext = copy.deepcopy(persona.extensions)
    ours: dict[str, Any] = {}
    if persona.id != slugify(persona.name):
        ours["id"] = persona.id
    style = persona.style.model_dump(mode="json", exclude_defaults=True)
    if style:
        ours["style"] = style
    identity = persona.identity.model_dump(mode="json", exclude_defaults=True)
    if identity:
        ours["identity"] = identity
    if persona.language != Persona.model_fields["language"].default:
        ours["language"] = persona.language
    if ours:
        existing = ext.get(VCHAR_EXTENSION)
        merged = dict(existing) if isinstance(existing, dict) else {}
        merged.update(ours)
        ext[VCHAR_EXTENSION] = merged
    return ext


def _book_to_dict(book: Lorebook, spec_name: str) -> dict[str, Any]:
    # exclude_unset keeps exactly the fields the source had (unknown ones included)
    out = book.model_dump(mode="json", exclude_unset=True)
    out.setdefault("extensions", {})
    out.setdefault("entries", [])
    for entry in out["entries"]:
        entry.setdefault("keys", [])
        entry.setdefault("content", "")
        entry.setdefault("extensions", {})
        entry.setdefault("enabled", True)
        entry.setdefault("insertion_order", 0)
        if spec_name == V3_SPEC:
            entry.setdefault("use_regex", False)
    return out


def export_card(
    persona: Persona,
    path: str | Path,
    spec: Spec = "v2",
    *,
    image: bytes | str | Path | Any | None = None,
) -> Path:
    """Write a persona as a card: ``.json`` (of ``spec``) or ``.png`` (both chunks).

    A PNG carries a ``chara`` (V2) and a ``ccv3`` (V3) chunk, as the V3 spec
    recommends, whatever ``spec`` says. Its picture is ``image`` (PNG/JPEG/... bytes,
    a file path, or a PIL image; pass the source ``.png`` to keep a card's own
    picture), else the persona's first portrait, else a drawn placeholder. A PNG
    image is reused byte for byte, minus any old card chunks.
    The file is written atomically; returns its path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        card = card_to_dict(persona, spec)
        payload = (json.dumps(card, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    elif suffix == ".png":
        _spec_name(spec)
        payload = card_png_bytes(persona, image)
    else:
        raise PersonaError(path, "unsupported card file type; use .json or .png")
    _atomic_write(path, payload)
    return path


def card_png_bytes(persona: Persona, image: bytes | str | Path | Any | None = None) -> bytes:
    """A PNG card for a persona (``chara`` V2 + ``ccv3`` V3 tEXt chunks)."""
    base = _base_png(persona, image)
    texts = [
        _chunk(b"tEXt", b"chara\0" + _b64_card(card_to_dict(persona, "v2"))),
        _chunk(b"tEXt", b"ccv3\0" + _b64_card(card_to_dict(persona, "v3"))),
    ]
    out = [PNG_SIGNATURE]
    inserted = False
    for ctype, payload in _iter_chunks(base, "<image>"):
        if ctype in _TEXT_CHUNKS and _decode_keyword(payload) in _CARD_CHUNK_KEYS:
            continue  # an old card in the source image
        if not inserted and ctype in (b"IDAT", b"IEND"):
            out.extend(texts)
            inserted = True
        out.append(_chunk(ctype, payload))
    if not inserted:
        out.extend(texts)
    return b"".join(out)


def _decode_keyword(payload: bytes) -> str:
    return payload.partition(b"\0")[0].decode("latin-1").lower()


def _b64_card(card: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)


def _base_png(persona: Persona, image: Any) -> bytes:
    from PIL import Image

    if image is None:
        for portrait in persona.identity.portraits:
            if Path(portrait).is_file():
                image = Path(portrait)
                break
    if image is None:
        return _placeholder_png(persona.name)
    if isinstance(image, Image.Image):
        return _to_png(image)
    if isinstance(image, (str, Path)):
        source: str | Path = image
        try:
            raw = Path(image).read_bytes()
        except OSError as exc:
            raise PersonaError(image, f"cannot read image: {exc.strerror or exc}") from None
    elif isinstance(image, (bytes, bytearray, memoryview)):
        source, raw = "<image bytes>", bytes(image)
    else:
        raise TypeError(f"image must be bytes, a path or a PIL image, not {type(image).__name__}")
    if raw.startswith(PNG_SIGNATURE):
        list(_iter_chunks(raw, source))  # fail early on a broken PNG
        return raw
    try:
        from PIL import ImageOps

        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return _to_png(ImageOps.exif_transpose(im))  # phone photos stand upright
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
        raise PersonaError(source, f"not an image Pillow can read: {exc}") from None


def _to_png(im: Any) -> bytes:
    if im.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _placeholder_png(name: str, size: tuple[int, int] = (400, 600)) -> bytes:
    """A plain portrait: a colour from the name, a silhouette, and the initials."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    hue = digest[0] / 255
    bg = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.35, 0.45))
    fg = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.25, 0.75))
    im = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(im)
    cx = width // 2
    head_r = width // 6
    head_cy = height // 3
    draw.ellipse((cx - head_r, head_cy - head_r, cx + head_r, head_cy + head_r), fill=fg)
    draw.ellipse((cx - width // 3, head_cy + head_r + 10, cx + width // 3, head_cy + head_r + 10 + height // 2), fill=fg)
    initials = "".join(word[0] for word in name.split()[:2]).upper()
    if initials and initials.isascii() and initials.isalnum():
        try:
            font = ImageFont.load_default(size=width // 5)
        except TypeError:  # Pillow < 10.1 has no sized default font
            font = ImageFont.load_default()
        box = draw.textbbox((0, 0), initials, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
        draw.text((cx - tw / 2 - box[0], height * 0.8 - th / 2 - box[1]), initials, fill=bg, font=font)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _atomic_write(path: Path, payload: bytes) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise PersonaError(path, f"cannot write file: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        try:
            mode = path.stat().st_mode & 0o777  # keep an existing file's permissions
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PersonaError(path, f"cannot write file: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
