"""Character Card V1 / V2 / V3 import and export, as JSON, PNG and CHARX.

A card is ``{"spec": "chara_card_v2" | "chara_card_v3", "spec_version": ..., "data": {...}}``
(or an old V1 card with the fields at the top level). In a PNG the card JSON is
base64 text in a ``tEXt``/``iTXt``/``zTXt`` chunk keyed ``chara`` (V2) or ``ccv3``
(V3); ``ccv3`` wins when both are present. A CHARX file is a zip archive with the
V3 card as ``card.json`` at its root.

Nothing in a card is dropped on import: card fields this format has no place for
(the V3 extras such as ``nickname`` or ``assets``, and any unknown key in ``data``)
go to :attr:`Persona.card_extra`, unknown top-level keys to
``card_extra["__top__"]``, the names of ``data`` fields that were ``null`` to
``card_extra["__null__"]``, and lorebook entries keep every field. Exporting an
imported card with the same spec gives back the same ``data`` (plus what the spec
requires and the card left out).

V3 assets embedded in the file (``embeded://path`` members of a CHARX archive,
``__asset:path`` PNG chunks named ``chara-ext-asset_:path``) come back as bytes
from :func:`read_card_file`; an installed persona keeps local copies in
:attr:`Persona.card_assets`, and export embeds them again. A CHARX file is read
with bounds on its size, its members' uncompressed sizes and their names.

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
import logging
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    "CARD_SUFFIXES",
    "MAX_ASSET_BYTES",
    "MAX_CARD_BYTES",
    "MAX_CHARX_BYTES",
    "NULL_KEY",
    "PLACEHOLDER_KEY",
    "TOP_KEY",
    "VCHAR_EXTENSION",
    "CardFile",
    "asset_file_name",
    "card_charx_bytes",
    "card_from_bytes",
    "card_from_dict",
    "card_png_bytes",
    "card_to_dict",
    "embedded_assets",
    "export_card",
    "import_card",
    "is_placeholder_png",
    "read_card_file",
    "read_png_text",
]

log = logging.getLogger(__name__)

CARD_SUFFIXES = (".json", ".png", ".charx")
MAX_CARD_BYTES = 20 * 1024 * 1024  # a JSON or PNG card, and a CHARX file's card.json
MAX_CHARX_BYTES = 64 * 1024 * 1024  # a CHARX file as stored
MAX_ASSET_BYTES = 64 * 1024 * 1024  # all embedded assets of one card, uncompressed
MAX_ASSETS = 256  # embedded assets kept from one card
MAX_ZIP_MEMBERS = 4096
TOP_KEY = "__top__"  # card_extra key holding unknown top-level keys (beside spec/spec_version/data)
NULL_KEY = "__null__"  # card_extra key listing the data fields the card set to null
_RESERVED_KEYS = (TOP_KEY, NULL_KEY)
VCHAR_EXTENSION = "vchar"  # data.extensions key carrying persona-only settings
PLACEHOLDER_KEY = "vchar:placeholder"  # PNG text chunk marking a drawn placeholder picture

CHARX_SCHEME = "embeded://"  # (sic) the V3 spec's spelling
PNG_ASSET_SCHEME = "__asset:"
PNG_ASSET_CHUNK = "chara-ext-asset_:"

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
_NULLABLE = tuple(_STRING_FIELDS) + ("alternate_greetings", "tags", "extensions", "character_book")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"
_CARD_CHUNK_KEYS = ("ccv3", "chara")  # preference order
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")

Spec = Literal["v2", "v3", "chara_card_v2", "chara_card_v3"]


# -- import -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardFile:
    """A card as read from a file.

    ``assets`` holds the bytes of the assets embedded in the file, by the URI the
    card's ``assets`` list gives them; ``image`` is a PNG card's own file, and
    ``placeholder`` says that picture is one :func:`export_card` drew, not art.
    """

    persona: Persona
    assets: dict[str, bytes] = field(default_factory=dict)
    image: bytes | None = None
    placeholder: bool = False


def import_card(path: str | Path) -> Persona:
    """Load a character card from a ``.json``, ``.png`` or ``.charx`` file.

    Raises :class:`PersonaError` naming the file (and the field, where there is
    one) for anything that is not a readable card; nothing is half-loaded.
    """
    return read_card_file(path).persona


def read_card_file(path: str | Path) -> CardFile:
    """Load a card file with its embedded assets (see :class:`CardFile`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    limit = MAX_CHARX_BYTES if suffix == ".charx" else MAX_CARD_BYTES
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise PersonaError(path, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise PersonaError(path, f"file is larger than {limit // (1024 * 1024)} MB; refusing to load it")
    if suffix == ".png" and not data.startswith(PNG_SIGNATURE):
        raise PersonaError(path, "not a PNG file (bad signature)")
    if suffix == ".charx" and not data.startswith(_ZIP_SIGNATURE):
        raise PersonaError(path, "not a CHARX file (not a zip archive)")
    return _card_file_from_bytes(data, path)


def card_from_bytes(data: bytes, source: str | Path) -> Persona:
    """Parse card bytes: a PNG with a ``chara``/``ccv3`` chunk, a CHARX archive, or card JSON (UTF-8)."""
    return _card_file_from_bytes(data, source).persona


def _card_file_from_bytes(data: bytes, source: str | Path) -> CardFile:
    if data.startswith(_ZIP_SIGNATURE):
        if len(data) > MAX_CHARX_BYTES:
            raise PersonaError(source, f"card is larger than {MAX_CHARX_BYTES // (1024 * 1024)} MB; refusing to load it")
        return _read_charx(data, source)
    if len(data) > MAX_CARD_BYTES:
        raise PersonaError(source, f"card is larger than {MAX_CARD_BYTES // (1024 * 1024)} MB; refusing to load it")
    if data.startswith(PNG_SIGNATURE):
        persona = _card_from_obj(_card_json_from_png(data, source), source)
        return CardFile(persona, _png_assets(data, persona, source), image=data, placeholder=is_placeholder_png(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PersonaError(source, "not a character card: neither a PNG nor UTF-8 JSON text") from None
    return CardFile(_card_from_obj(_parse_json(text, source, None), source))


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

    extra = {k: v for k, v in data.items() if k not in _V2_FIELDS and k not in _RESERVED_KEYS}
    if version == V3_SPEC and extra.get("group_only_greetings") == []:
        del extra["group_only_greetings"]  # V3 export writes the empty list back
    if top:
        extra[TOP_KEY] = top
    nulls = [k for k in _NULLABLE if k in data and data[k] is None]
    if nulls:
        extra[NULL_KEY] = nulls  # written back as null while the persona leaves them empty

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
    if loc[0] == "greetings" and len(loc) > 1 and isinstance(loc[1], int):
        # greetings[0] is first_mes, the rest are the alternate greetings
        head = "first_mes" if loc[1] == 0 else f"alternate_greetings.{loc[1] - 1}"
        return ".".join([head, *(str(p) for p in loc[2:])])
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


def _decode_text_chunk(
    ctype: bytes, payload: bytes, source: str | Path, wanted: Callable[[str], bool]
) -> tuple[str, str] | None:
    """Return ``(keyword, text)`` of a text chunk whose keyword ``wanted`` accepts."""
    keyword, sep, rest = payload.partition(b"\0")
    if not sep:
        return None
    key = keyword.decode("latin-1")
    if not wanted(key):
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
            hit = _decode_text_chunk(ctype, payload, source, lambda k: k.lower() in keys)
            if hit and hit[0].lower() not in found:
                found[hit[0].lower()] = hit[1]
    return found


def is_placeholder_png(data: bytes) -> bool:
    """Whether a PNG is the placeholder picture :func:`export_card` draws (no portrait)."""
    try:
        return PLACEHOLDER_KEY in read_png_text(data, "<png>", (PLACEHOLDER_KEY,))
    except PersonaError:
        return False


def embedded_assets(persona: Persona) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, asset)`` for each V3 asset of the card whose URI points into the card
    file itself (``embeded://...`` or ``__asset:...``)."""
    assets = persona.card_extra.get("assets")
    if not isinstance(assets, list):
        return
    for i, asset in enumerate(assets):
        if isinstance(asset, dict) and isinstance(asset.get("uri"), str):
            if asset["uri"].startswith((CHARX_SCHEME, PNG_ASSET_SCHEME)):
                yield i, asset


def _png_assets(data: bytes, persona: Persona, source: str | Path) -> dict[str, bytes]:
    """The bytes of the card's ``__asset:`` assets, from their ``chara-ext-asset_:`` chunks."""
    wanted = {
        PNG_ASSET_CHUNK + asset["uri"][len(PNG_ASSET_SCHEME) :]: asset["uri"]
        for _, asset in embedded_assets(persona)
        if asset["uri"].startswith(PNG_ASSET_SCHEME)
    }
    if not wanted:
        return {}
    out: dict[str, bytes] = {}
    total = 0
    for ctype, payload in _iter_chunks(data, source):
        if ctype not in _TEXT_CHUNKS:
            continue
        hit = _decode_text_chunk(ctype, payload, source, lambda k: k in wanted)
        if hit is None or wanted[hit[0]] in out:
            continue
        blob = _decode_base64_bytes(hit[1], source, hit[0])
        total += len(blob)
        if total > MAX_ASSET_BYTES or len(out) >= MAX_ASSETS:
            bound = f"{MAX_ASSETS} files or {MAX_ASSET_BYTES // (1024 * 1024)} MB"
            raise PersonaError(source, f"embedded assets exceed {bound}", hit[0])
        out[wanted[hit[0]]] = blob
    return out


# -- CHARX (zip) ----------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(name: str, source: str | Path) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts or "\0" in name:
        raise PersonaError(source, f"unsafe file name in the archive: {name[:200]!r}")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, source: str | Path) -> bytes:
    if info.flag_bits & 0x1:
        raise PersonaError(source, "encrypted archives are not supported", info.filename)
    if info.file_size > limit:
        raise PersonaError(source, f"too large ({info.file_size} bytes uncompressed, at most {limit})", info.filename)
    try:
        with zf.open(info) as fh:
            blob = fh.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise PersonaError(source, f"cannot read archive member: {exc}", info.filename) from None
    if len(blob) > limit:
        raise PersonaError(source, f"too large (more than {limit} bytes uncompressed)", info.filename)
    return blob


def _read_charx(data: bytes, source: str | Path) -> CardFile:
    """A CHARX archive: ``card.json`` plus the ``embeded://`` assets it lists."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise PersonaError(source, f"not a CHARX file: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise PersonaError(source, f"archive has {len(infos)} files, more than {MAX_ZIP_MEMBERS}")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            _check_member_name(info.filename, source)
            members.setdefault(info.filename, info)
        card_info = members.get("card.json")
        if card_info is None:
            raise PersonaError(source, "not a CHARX file: no card.json at the root of the archive")
        raw = _read_member(zf, card_info, MAX_CARD_BYTES, source)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PersonaError(source, "is not UTF-8 text", "card.json") from None
        persona = _card_from_obj(_parse_json(text, source, "card.json"), source)
        assets: dict[str, bytes] = {}
        total = 0
        for _, asset in embedded_assets(persona):
            uri = asset["uri"]
            info = members.get(uri[len(CHARX_SCHEME) :]) if uri.startswith(CHARX_SCHEME) else None
            if info is None or uri in assets:
                continue
            if len(assets) >= MAX_ASSETS:
                raise PersonaError(source, f"more than {MAX_ASSETS} embedded assets", "data.assets")
            blob = _read_member(zf, info, MAX_ASSET_BYTES - total, source)
            total += len(blob)
            assets[uri] = blob
    return CardFile(persona, assets)


def _card_json_from_png(data: bytes, source: str | Path) -> Any:
    texts = read_png_text(data, source)
    for key in _CARD_CHUNK_KEYS:
        if key in texts:
            return _parse_json(_decode_base64(texts[key], source, key), source, key)
    raise PersonaError(source, "PNG has no character card in it (no 'chara' or 'ccv3' text chunk)")


def _decode_base64_bytes(text: str, source: str | Path, key: str) -> bytes:
    stripped = "".join(text.split())
    stripped += "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.b64decode(stripped, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise PersonaError(source, "chunk is not valid base64", key) from None


def _decode_base64(text: str, source: str | Path, key: str) -> str:
    if text.lstrip().startswith("{"):  # some writers store the JSON itself
        return text.strip()
    raw = _decode_base64_bytes(text, source, key)
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


def card_to_dict(persona: Persona, spec: Spec = "v2", *, asset_uris: dict[str, str] | None = None) -> dict[str, Any]:
    """The card JSON object for a persona (``spec`` ``"v2"`` or ``"v3"``).

    ``asset_uris`` renames asset URIs (old -> new) in ``data.assets``, for a file
    format that embeds the assets under other names.
    """
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
    nulls = persona.card_extra.get(NULL_KEY)
    for key in nulls if isinstance(nulls, list) else ():
        if key in _NULLABLE and data.get(key) in (None, "", [], {}):
            data[key] = None  # the card had null here and the persona left it empty
    for key, value in persona.card_extra.items():
        if key not in _RESERVED_KEYS and key not in _V2_FIELDS:
            data[key] = copy.deepcopy(value)
    if asset_uris and isinstance(data.get("assets"), list):
        data["assets"] = [
            {**a, "uri": asset_uris[a["uri"]]} if isinstance(a, dict) and a.get("uri") in asset_uris else a
            for a in data["assets"]
        ]
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
    """Write a persona as a card: ``.json`` (of ``spec``), ``.png`` (both chunks) or
    ``.charx`` (V3, with the embedded assets).

    A PNG carries a ``chara`` (V2) and a ``ccv3`` (V3) chunk, as the V3 spec
    recommends, whatever ``spec`` says. Its picture is ``image`` (PNG/JPEG/... bytes,
    a file path, or a PIL image; pass the source ``.png`` to keep a card's own
    picture), else the persona's first portrait, else a drawn placeholder (marked
    with a ``vchar:placeholder`` text chunk). A PNG image is reused byte for byte,
    minus any old card chunks. PNG and CHARX files embed the assets the persona
    keeps in :attr:`Persona.card_assets`.
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
    elif suffix == ".charx":
        _spec_name(spec)
        payload = card_charx_bytes(persona)
    else:
        raise PersonaError(path, "unsupported card file type; use .json, .png or .charx")
    _atomic_write(path, payload)
    return path


def _asset_bytes(persona: Persona) -> dict[str, bytes]:
    """The bytes of the assets the persona keeps locally, by URI (unreadable ones skipped)."""
    out: dict[str, bytes] = {}
    for uri, local in persona.card_assets.items():
        try:
            out[uri] = Path(local).read_bytes()
        except OSError as exc:
            log.warning("%s: asset %s not exported: cannot read %s: %s", persona.id, uri, local, exc.strerror or exc)
    return out


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _name_part(text: Any, fallback: str, limit: int) -> str:
    part = _UNSAFE_NAME.sub("-", text if isinstance(text, str) else "").strip("-")[:limit]
    return part or fallback


def asset_file_name(index: int, asset: dict[str, Any]) -> str:
    """A safe file name for the card's ``index``-th asset: ``"3-happy.png"`` (letters,
    digits, ``-`` and ``_`` only, whatever the card's ``name`` and ``ext`` say)."""
    return f"{index}-{_name_part(asset.get('name'), 'asset', 40)}.{_name_part(asset.get('ext'), 'bin', 10).lower()}"


def card_png_bytes(persona: Persona, image: bytes | str | Path | Any | None = None) -> bytes:
    """A PNG card for a persona (``chara`` V2 + ``ccv3`` V3 tEXt chunks, and a
    ``chara-ext-asset_:`` chunk for each embedded asset it keeps)."""
    base = _base_png(persona, image)
    blobs = _asset_bytes(persona)
    assets: dict[str, bytes] = {}  # chunk path -> bytes
    uris: dict[str, str] = {}
    taken = {a["uri"][len(PNG_ASSET_SCHEME) :] for _, a in embedded_assets(persona) if a["uri"].startswith(PNG_ASSET_SCHEME)}
    for i, asset in embedded_assets(persona):
        uri = asset["uri"]
        if uri not in blobs or uri in uris:
            continue
        key = uri[len(PNG_ASSET_SCHEME) :] if uri.startswith(PNG_ASSET_SCHEME) else ""
        if not key or not _fits_keyword(PNG_ASSET_CHUNK + key) or key in assets:
            key = str(i)
            while key in taken or key in assets:
                key += "_"
        assets[key] = blobs[uri]
        uris[uri] = PNG_ASSET_SCHEME + key
    texts = [
        _chunk(b"tEXt", b"chara\0" + _b64_card(card_to_dict(persona, "v2", asset_uris=uris))),
        _chunk(b"tEXt", b"ccv3\0" + _b64_card(card_to_dict(persona, "v3", asset_uris=uris))),
    ]
    asset_chunks = [
        _chunk(b"tEXt", (PNG_ASSET_CHUNK + key).encode("latin-1") + b"\0" + base64.b64encode(blob))
        for key, blob in assets.items()
    ]
    replaced = {PNG_ASSET_CHUNK + key for key in assets}
    out = [PNG_SIGNATURE]
    inserted = False
    for ctype, payload in _iter_chunks(base, "<image>"):
        if ctype in _TEXT_CHUNKS:
            keyword = payload.partition(b"\0")[0].decode("latin-1")
            if keyword.lower() in _CARD_CHUNK_KEYS or keyword in replaced:
                continue  # an old card (or an asset written anew) in the source image
        if not inserted and ctype in (b"IDAT", b"IEND"):
            out.extend(texts)
            inserted = True
        if ctype == b"IEND":
            out.extend(asset_chunks)
            asset_chunks = []
        out.append(_chunk(ctype, payload))
    if not inserted:
        out.extend(texts)
    out.extend(asset_chunks)
    return b"".join(out)


def _fits_keyword(keyword: str) -> bool:
    """Whether a PNG text chunk may carry this keyword (1-79 Latin-1 characters)."""
    try:
        return 0 < len(keyword.encode("latin-1")) <= 79 and "\0" not in keyword
    except UnicodeEncodeError:
        return False


def card_charx_bytes(persona: Persona) -> bytes:
    """A CHARX archive for a persona: the V3 ``card.json`` and each embedded asset it
    keeps, at its ``embeded://`` path (assets from a PNG card get one under ``assets/``)."""
    blobs = _asset_bytes(persona)
    members: dict[str, bytes] = {}
    uris: dict[str, str] = {}
    for i, asset in embedded_assets(persona):
        uri = asset["uri"]
        if uri not in blobs or uri in uris:
            continue
        member = uri[len(CHARX_SCHEME) :] if uri.startswith(CHARX_SCHEME) else ""
        try:
            _check_member_name(member, "<charx>")
        except PersonaError:
            member = ""
        if not member or member == "card.json" or member in members:
            member = f"assets/{_name_part(asset.get('type'), 'other', 40)}/{asset_file_name(i, asset)}"
            uris[uri] = CHARX_SCHEME + member
        else:
            uris[uri] = uri
        members[member] = blobs[uri]
    card = card_to_dict(persona, "v3", asset_uris={k: v for k, v in uris.items() if k != v})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card, ensure_ascii=False, indent=2) + "\n")
        for member, blob in members.items():
            zf.writestr(member, blob)
    return buf.getvalue()


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
    """A plain picture: a colour from the name, a silhouette, and the initials;
    marked with a ``vchar:placeholder`` text chunk so nobody takes it for a portrait."""
    from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

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
    info = PngImagePlugin.PngInfo()
    info.add_text(PLACEHOLDER_KEY, "drawn by vchar: not a portrait of the character")
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=info)
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
