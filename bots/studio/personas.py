"""The studio's personas pages: the list with card import, the editor with its live
prompt preview, card export, the reference portrait and the voice.

The work itself is the persona package's and the generators': ``install_persona`` (as
``vchar persona import``), ``Persona.model_validate`` and ``dump_persona_yaml`` (as the
YAML files), ``system_prompt`` (as a chat turn), ``create_voice_profile`` (as
``vchar voice set``). Paths never come from a request: uploads get fresh names in fresh
folders, and the one file a form may name (a portrait candidate) is looked up inside its
folder and checked with :func:`bots.studio.security.inside`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from bots.studio.app import StudioContext, context, persona_or_404, render
from bots.studio.security import inside
from persona.card import MAX_LORE_ENTRIES, Persona, PersonaError, dump_persona_yaml

log = logging.getLogger(__name__)
router = APIRouter()

PREVIEW_USER = "Operator"  # whom the preview's prompt addresses, as the studio chat does
CARD_ACCEPT = ".png,.json,.charx,.yaml,.yml"
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # what the page asks for; nothing else is decoded
MAX_PIXELS = 40_000_000  # a portrait larger than this is refused before it is decoded
MIN_PORTRAIT_SIDE = 64  # as `vchar persona portrait --from`
PORTRAIT_MAX_SIDE = 1024
CANDIDATES = 3
SHOWN_CANDIDATES = 12
PREVIEW_LINE_CHARS = 200

TEXT_FIELDS = ("name", "description", "personality", "scenario", "system_prompt", "post_history_instructions",
               "example_dialogue", "language", "creator", "creator_notes")
STYLE_INTS = ("max_sentences", "max_chars")
STYLE_LINES = ("forbidden_phrases", "notes")
IDENTITY_TEXTS = ("appearance", "style_prompt", "music_style")
LORE_PARTS = {"keys": "keys", "content": "content", "insertion_order": "order", "enabled": "enabled"}
SAVED = {"1": "Saved.", "portrait": "The new portrait is the reference now.", "voice": "The voice is set."}

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_CANDIDATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,100}\.png")


# -- helpers ---------------------------------------------------------------------------


def safe_stem(filename: str | None, default: str = "upload") -> str:
    """A file name's stem fit to write: the base name only, letters, digits, '_' and '-'."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = _UNSAFE.sub("-", stem).strip("-_")[:80]
    return stem or default


def card_suffix(data: bytes) -> str:
    """The suffix an uploaded persona file gets, by its content."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"PK\x03\x04"):
        return ".charx"
    try:
        if isinstance(json.loads(data.decode("utf-8-sig")), dict):
            return ".json"
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    return ".yaml"


def _upload_dir(ctx: StudioContext) -> Path:
    root = Path(ctx.settings.data_dir) / "cache" / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="studio-", dir=root))


def _upload(form, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) else None


def _text(form, key: str) -> str:
    value = form.get(key)
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else ""


def _commas(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip()]


def persona_file(ctx: StudioContext, persona_id: str) -> Path:
    """Where the operator's copy of a persona is written: its YAML in the personas folder
    if it loads from one, else ``<id>.yaml`` there (later in the folder list: it wins
    over a shipped sample)."""
    folder = ctx.settings.resolved_personas_dir
    src = ctx.registry.sources.get(persona_id)
    if (src is not None and src.suffix.lower() in (".yaml", ".yml") and not src.is_symlink()
            and src.parent.resolve() == folder.resolve()):
        return src
    return folder / f"{persona_id}.yaml"


def save_persona(ctx: StudioContext, persona: Persona) -> Path:
    """Write the persona's YAML (atomically) and reload the registry."""
    folder = ctx.settings.resolved_personas_dir
    folder.mkdir(parents=True, exist_ok=True)
    target = persona_file(ctx, persona.id)
    if target.resolve().parent != folder.resolve():
        raise PersonaError(target, f"would write outside {folder}", "id")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")  # a dot name: the registry skips it
    try:
        tmp.write_text(dump_persona_yaml(persona), encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    ctx.registry.reload()
    return target


def _shadowed(ctx: StudioContext, persona_id: str) -> str:
    """A warning when the file the editor writes is not the one that loads."""
    target = persona_file(ctx, persona_id)
    src = ctx.registry.sources.get(persona_id)
    if src is not None and target.exists() and src.resolve() != target.resolve():
        return f"{src} loads after {target} and wins over it: rename or remove one of them."
    return ""


# -- the list and import ---------------------------------------------------------------


def _source_label(ctx: StudioContext, persona_id: str) -> str:
    from persona.registry import SAMPLES

    src = ctx.registry.sources.get(persona_id)
    if src is None:
        return ""
    try:
        if src.resolve().is_relative_to(SAMPLES.resolve()):
            return f"shipped sample ({src.name})"
    except OSError:
        pass
    return str(src)


def _list_page(request: Request, persona=None, *, import_error: str = "", force: bool = False,
               flash: str = "", status_code: int = 200):
    ctx = context(request)
    personas = sorted(ctx.registry, key=lambda p: p.name.lower())
    sources = {p.id: _source_label(ctx, p.id) for p in personas}
    if persona is None:
        try:
            persona = ctx.registry.get()
        except LookupError:
            persona = None
    return render(request, "personas.html", status_code=status_code, section="personas", persona=persona,
                  cards=personas, sources=sources, problems=ctx.registry.problems, import_error=import_error,
                  force=force, flash=flash, accept=CARD_ACCEPT)


@router.get("/personas")
async def personas_page(request: Request):
    return _list_page(request)


@router.get("/personas/{persona_id}")
async def persona_page(request: Request, persona_id: str, saved: str | None = None):
    p = persona_or_404(request, persona_id)
    flash = f"Imported {p.name} ({p.id})." if saved else ""
    return _list_page(request, p, flash=flash)


@router.post("/personas/import")
async def persona_import(request: Request):
    """A persona file or card, installed as `vchar persona import` does."""
    from persona.registry import install_persona

    ctx = context(request)
    form = await request.form()
    force = form.get("force") is not None
    upload = _upload(form, "card")
    data = await upload.read() if upload is not None else b""
    if not data:
        return _list_page(request, import_error="Choose or drop a card file (.png, .json, .charx) or a persona .yaml.",
                          force=force, status_code=422)
    name = safe_stem(upload.filename, "card") + await asyncio.to_thread(card_suffix, data)
    folder = await asyncio.to_thread(_upload_dir, ctx)
    path = folder / name
    try:
        await asyncio.to_thread(path.write_bytes, data)
        del data
        persona, _ = await asyncio.to_thread(install_persona, path, ctx.settings.resolved_personas_dir,
                                             overwrite=force)
    except (PersonaError, FileExistsError, OSError) as exc:
        message = str(exc).replace(str(path), name)  # as the command line says it of the file it was given
        return _list_page(request, import_error=message, force=force, status_code=422)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    await asyncio.to_thread(ctx.registry.reload)  # off the loop: it reads every persona file
    await ctx.adapter(persona.id)
    log.info("studio: imported %s from %s", persona.id, name)
    return RedirectResponse(f"/personas/{persona.id}?saved=1", status_code=303)


# -- the editor ------------------------------------------------------------------------


def _blank_row(i: int) -> dict[str, Any]:
    return {"row": i, "keys": "", "content": "", "order": "", "enabled": True, "remove": False, "new": True,
            "constant": False}


def values_of(p: Persona) -> dict[str, Any]:
    """The editor's field values for a persona."""
    entries = p.lorebook.entries if p.lorebook else []
    values: dict[str, Any] = {k: getattr(p, k) for k in TEXT_FIELDS}
    values.update({f"style.{k}": "" if getattr(p.style, k) is None else str(getattr(p.style, k)) for k in STYLE_INTS})
    values.update({f"style.{k}": "\n".join(getattr(p.style, k)) for k in STYLE_LINES})
    values.update({f"identity.{k}": getattr(p.identity, k) for k in IDENTITY_TEXTS})
    values["greetings"] = list(p.greetings)
    values["nsfw"] = p.nsfw
    values["tags"] = ", ".join(p.tags)
    values["lore"] = [{"row": i, "keys": ", ".join(e.keys), "content": e.content, "order": str(e.insertion_order),
                       "enabled": e.enabled, "remove": False, "new": False, "constant": bool(e.constant)}
                      for i, e in enumerate(entries)] + [_blank_row(len(entries))]
    return values


def read_form(form, p: Persona) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    """The editor's form: its values (to show again), the persona data it makes (the
    existing persona with the form's fields changed, everything else kept), and which
    form row each lorebook entry of that data came from."""
    values: dict[str, Any] = {k: _text(form, k) for k in TEXT_FIELDS}
    for key in (*(f"style.{k}" for k in STYLE_INTS + STYLE_LINES), *(f"identity.{k}" for k in IDENTITY_TEXTS)):
        values[key] = _text(form, key)
    values["greetings"] = [g.replace("\r\n", "\n") for g in form.getlist("greeting") if isinstance(g, str)]
    values["nsfw"] = form.get("nsfw") is not None
    values["tags"] = _text(form, "tags")

    old = p.lorebook.entries if p.lorebook else []
    try:
        count = int(_text(form, "lore_rows") or 0)
    except ValueError:
        count = 0
    count = max(0, min(count, MAX_LORE_ENTRIES + 1))
    rows, entries, came_from = [], [], []
    for i in range(count):
        row = {"row": i, "keys": _text(form, f"lore-{i}-keys"), "content": _text(form, f"lore-{i}-content"),
               "order": _text(form, f"lore-{i}-order").strip(), "enabled": form.get(f"lore-{i}-enabled") is not None,
               "remove": form.get(f"lore-{i}-remove") is not None, "new": i >= len(old),
               "constant": i < len(old) and bool(old[i].constant)}
        rows.append(row)
        if row["remove"] or (row["new"] and not row["keys"].strip() and not row["content"].strip()):
            continue
        entry = old[i].model_dump(exclude_unset=True) if i < len(old) else {}
        was = old[i].model_dump() if i < len(old) else {}
        changed = {"keys": _commas(row["keys"]), "content": row["content"], "enabled": row["enabled"]}
        if row["order"]:
            changed["insertion_order"] = row["order"]
        for key, value in changed.items():  # a field the file left at its default stays unwritten
            if key in entry or key not in was or str(was[key]) != str(value):
                entry[key] = value
        if not row["order"]:
            entry.pop("insertion_order", None)
        entries.append(entry)
        came_from.append(i)
    if not rows or not rows[-1]["new"] or rows[-1]["keys"].strip() or rows[-1]["content"].strip():
        rows.append(_blank_row(len(rows)))
    values["lore"] = rows

    data = p.model_dump(exclude_unset=True)
    data["id"] = p.id  # not the form's to change
    data.update({k: values[k] for k in TEXT_FIELDS})
    data["language"] = values["language"].strip() or "en"
    data["greetings"] = [g for g in values["greetings"] if g.strip()]
    style = dict(data.get("style") or {})
    for k in STYLE_INTS:
        style[k] = values[f"style.{k}"].strip() or None
    for k in STYLE_LINES:
        style[k] = _lines(values[f"style.{k}"])
    data["style"] = style
    identity = dict(data.get("identity") or {})
    identity.update({k: values[f"identity.{k}"] for k in IDENTITY_TEXTS})
    data["identity"] = identity
    data["nsfw"] = values["nsfw"]
    data["tags"] = _commas(values["tags"])
    if entries or p.lorebook is not None:
        book = dict(data.get("lorebook") or {})
        book["entries"] = entries
        data["lorebook"] = book
    return values, data, came_from


def error_field(loc: tuple, came_from: list[int]) -> str:
    """The editor's field a validation error's location is about ("" for none shown)."""
    loc = tuple(loc)
    if not loc:
        return ""
    head = loc[0]
    if head in TEXT_FIELDS or head in ("nsfw", "tags", "greetings"):
        return str(head)
    if head == "style" and len(loc) > 1 and loc[1] in STYLE_INTS + STYLE_LINES:
        return f"style.{loc[1]}"
    if head == "identity" and len(loc) > 1 and loc[1] in IDENTITY_TEXTS:
        return f"identity.{loc[1]}"
    if head == "lorebook" and len(loc) > 2 and loc[1] == "entries" and isinstance(loc[2], int) \
            and 0 <= loc[2] < len(came_from):
        row = came_from[loc[2]]
        part = LORE_PARTS.get(loc[3]) if len(loc) > 3 else None
        return f"lore-{row}-{part}" if part else f"lore-{row}"
    return ""


FIELD_LABELS = {"name": "Name", "description": "Description", "personality": "Personality", "scenario": "Scenario",
                "system_prompt": "System prompt", "post_history_instructions": "Post-history instructions",
                "greetings": "Greetings", "example_dialogue": "Example dialogue",
                "style.max_sentences": "Most sentences", "style.max_chars": "Most characters",
                "style.forbidden_phrases": "Forbidden phrases", "style.notes": "Style notes",
                "identity.appearance": "Appearance", "identity.style_prompt": "Picture style",
                "identity.music_style": "Music style", "language": "Language", "nsfw": "NSFW", "tags": "Tags",
                "creator": "Creator", "creator_notes": "Creator's notes"}


def label_of(key: str) -> str:
    """A field name as the page calls it."""
    m = re.fullmatch(r"lore-(\d+)(?:-(\w+))?", key)
    if m:
        return f"Lorebook entry {int(m.group(1)) + 1}" + (f", {m.group(2)}" if m.group(2) else "")
    return FIELD_LABELS.get(key, key)


def validation_errors(exc: ValidationError, came_from: list[int]) -> dict[str, list[str]]:
    """Messages by field name; those of no field shown under "" with their location."""
    errors: dict[str, list[str]] = {}
    for e in exc.errors():
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        loc = tuple(e.get("loc", ()))
        key = error_field(loc, came_from)
        if not key:
            msg = f"{'.'.join(str(x) for x in loc) or 'persona'}: {msg}"
        errors.setdefault(key, []).append(msg)
    return errors


def checked(form, p: Persona) -> tuple[dict[str, Any], Persona | None, dict[str, list[str]]]:
    values, data, came_from = read_form(form, p)
    try:
        return values, Persona.model_validate(data), {}
    except ValidationError as exc:
        return values, None, validation_errors(exc, came_from)


def _voice_status(ctx: StudioContext, p: Persona) -> tuple[Any, str]:
    from generators.voice.profile import load_voice_profile

    try:
        return load_voice_profile(ctx.settings.voices_dir, p.id), ""
    except Exception as exc:  # noqa: BLE001 - a broken record: say so, `vchar voice set` mends it
        return None, f"The stored voice record cannot be read ({type(exc).__name__}: {exc}); set the voice again."


def _candidate_dir(ctx: StudioContext, persona_id: str) -> Path:
    return Path(ctx.settings.media_dir) / "portraits" / persona_id


def _candidates(ctx: StudioContext, persona_id: str) -> list[str]:
    folder = _candidate_dir(ctx, persona_id)
    if not folder.is_dir():
        return []
    files = [f for f in folder.iterdir() if _CANDIDATE.fullmatch(f.name) and f.is_file()]
    files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    return [f.name for f in files[:SHOWN_CANDIDATES]]


def _edit_page(request: Request, p: Persona, *, values: dict | None = None, errors: dict | None = None,
               flash: str = "", status_code: int = 200, portrait_error: str = "", voice_error: str = "",
               voice_form: dict | None = None, candidate_error: str = ""):
    ctx = context(request)
    profile, voice_problem = _voice_status(ctx, p)
    voice_on = ctx.manager.voice is not None and hasattr(ctx.manager.voice, "agenerate")
    image = ctx.manager.image
    return render(request, "persona_edit.html", status_code=status_code, section="personas", persona=p,
                  values=values or values_of(p), errors=errors or {}, flash=flash, shadowed=_shadowed(ctx, p.id),
                  target=persona_file(ctx, p.id), source=_source_label(ctx, p.id),
                  portraits=list(range(len(p.identity.portraits))), portrait_error=portrait_error,
                  candidates=_candidates(ctx, p.id), candidate_error=candidate_error,
                  images_on=image is not None and hasattr(image, "generate"),
                  profile=profile, voice_problem=voice_problem, voice_on=voice_on, voice_error=voice_error,
                  voice_form=voice_form or {"consent": "", "who": ""})


@router.get("/personas/{persona_id}/edit")
async def persona_edit(request: Request, persona_id: str, saved: str | None = None):
    p = persona_or_404(request, persona_id)
    return _edit_page(request, p, flash=SAVED.get(saved or "", ""))


@router.post("/personas/{persona_id}/edit")
async def persona_save(request: Request, persona_id: str):
    p = persona_or_404(request, persona_id)
    values, updated, errors = checked(await request.form(), p)
    if updated is None:
        return _edit_page(request, p, values=values, errors=errors, status_code=422)
    try:
        path = await asyncio.to_thread(save_persona, context(request), updated)
    except (PersonaError, OSError) as exc:
        return _edit_page(request, p, values=values, errors={}, status_code=500,
                          flash=f"Not saved: {exc}")
    log.info("studio: %s saved to %s", p.id, path)
    return RedirectResponse(f"/personas/{p.id}/edit?saved=1", status_code=303)


@router.post("/personas/{persona_id}/preview")
async def persona_preview(request: Request, persona_id: str):
    """The system prompt the edited persona would get, as the chat builds it (with the
    lorebook entries that are always in it); or what is wrong with the form."""
    from persona.lorebook import triggered_entries
    from persona.prompt import system_prompt

    p = persona_or_404(request, persona_id)
    _, updated, errors = checked(await request.form(), p)
    prompt, constant, entries = "", [], 0
    if updated is not None:
        book = updated.lorebook
        always = await asyncio.to_thread(triggered_entries, book, []) if book and book.entries else []
        prompt = system_prompt(updated, PREVIEW_USER, lore=[e.content for e in always],
                               examples=updated.examples(PREVIEW_USER))
        entries = len(book.entries) if book else 0
        constant = [(i, e) for i, e in enumerate(book.entries) if e.constant] if book else []
    return render(request, "_persona_preview.html", section="personas", persona=p, prompt=prompt, errors=errors,
                  labels={k: label_of(k) for k in errors if k}, constant=constant, entries=entries,
                  user=PREVIEW_USER)


# -- export ----------------------------------------------------------------------------


@router.get("/personas/{persona_id}/export")
async def persona_export(request: Request, persona_id: str, format: Literal["png", "json"] = "png",
                         spec: Literal["v2", "v3"] = "v2"):
    from persona.cards import card_png_bytes, card_to_dict
    from persona.registry import shareable

    ctx = context(request)
    p = persona_or_404(request, persona_id)
    out = shareable(p)
    if format == "json":
        body = json.dumps(card_to_dict(out, spec), ensure_ascii=False, indent=2).encode("utf-8")
        name, mime = f"{p.id}.{spec}.json", "application/json"
    else:
        first = p.identity.portraits[0] if p.identity.portraits else None
        image = inside(first, ctx.roots()) if first else None
        try:
            body = await asyncio.to_thread(card_png_bytes, out, image)
        except PersonaError:
            if image is None:
                raise
            body = await asyncio.to_thread(card_png_bytes, out, None)  # a portrait it cannot read: drawn instead
        name, mime = f"{p.id}.png", "image/png"
    return Response(body, media_type=mime, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- the portrait ----------------------------------------------------------------------


class Refused(Exception):
    """An upload the studio will not take; the message says why, for the page."""


def checked_image(data: bytes):
    """The upload as a PIL image, if it is a real picture of a sane size (by its content)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise Refused("Choose a picture first.")
    unreadable = "That is not a picture the studio can read: give a PNG, JPEG or WebP image."
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            w, h = probe.size
            if w * h > MAX_PIXELS:
                raise Refused(f"That picture is {w}x{h}, more than {MAX_PIXELS // 1_000_000} megapixels: "
                              "make it smaller first (1024x1024 is plenty).")
            probe.verify()
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        img.load()
        img = ImageOps.exif_transpose(img)
    except Refused:
        raise
    except Image.DecompressionBombError:
        raise Refused(f"That picture is more than {MAX_PIXELS // 1_000_000} megapixels: "
                      "make it smaller first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, TypeError):
        raise Refused(unreadable) from None
    if min(img.size) < MIN_PORTRAIT_SIDE:
        raise Refused(f"That picture is {img.size[0]}x{img.size[1]} pixels: a portrait needs at least "
                      f"{MIN_PORTRAIT_SIDE} on each side (512 or more is best).")
    img = img.convert("RGBA" if "A" in img.getbands() or img.mode == "P" else "RGB")
    img.thumbnail((PORTRAIT_MAX_SIDE, PORTRAIT_MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def store_portrait(ctx: StudioContext, persona_id: str, img) -> Path:
    """The picture as a PNG in ``<personas>/<id>.portraits/``, named by its content."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    folder = ctx.settings.resolved_personas_dir / f"{persona_id}.portraits"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    if target.resolve().parent != folder.resolve():
        raise Refused("That persona's portrait folder is not where it should be.")
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


async def _set_portrait(request: Request, p: Persona, data: bytes):
    ctx = context(request)
    try:
        img = await asyncio.to_thread(checked_image, data)
        path = await asyncio.to_thread(store_portrait, ctx, p.id, img)
    except Refused as exc:
        return _edit_page(request, p, portrait_error=str(exc), status_code=422)
    ident = p.identity
    portraits = [str(path)] + [x for x in ident.portraits if x != str(path)]
    updated = p.model_copy(update={"identity": ident.model_copy(update={"portraits": portraits})})
    try:
        await asyncio.to_thread(save_persona, ctx, updated)
    except (PersonaError, OSError) as exc:
        return _edit_page(request, p, portrait_error=f"Not saved: {exc}", status_code=500)
    return RedirectResponse(f"/personas/{p.id}/edit?saved=portrait#portrait", status_code=303)


@router.post("/personas/{persona_id}/portrait")
async def portrait_upload(request: Request, persona_id: str):
    p = persona_or_404(request, persona_id)
    upload = _upload(await request.form(), "image")
    return await _set_portrait(request, p, await upload.read() if upload is not None else b"")


def portrait_prompt(p: Persona) -> str:
    """What a portrait candidate shows (as `vchar persona portrait --generate`)."""
    appearance = p.identity.appearance or p.description[:200] or p.name
    return ", ".join(x for x in (f"portrait photo of {appearance}", p.identity.style_prompt,
                                 "head and shoulders, looking at the camera, soft light, plain background") if x)


@router.post("/personas/{persona_id}/portrait/candidates")
async def portrait_candidates(request: Request, persona_id: str):
    """Draw a few portraits from the appearance text to pick from (new seeds each time)."""
    from generators.image import ImageError, ImageRequest, seed_for

    ctx = context(request)
    p = persona_or_404(request, persona_id)
    image = ctx.manager.image
    if image is None or not hasattr(image, "generate"):
        return _edit_page(request, p, status_code=409,
                          candidate_error="Pictures are made by the workers or are off here: no candidates.")
    folder = _candidate_dir(ctx, p.id)
    folder.mkdir(parents=True, exist_ok=True)
    round_ = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    try:
        reqs = [ImageRequest(prompt=portrait_prompt(p), seed=seed_for(p.identity.seed, f"portrait {round_} {i}"),
                             safety=not p.nsfw, output=str(folder / f"{round_}-{i + 1}.png"),
                             tags={"vchar:persona": p.id}).checked()
                for i in range(CANDIDATES)]
        results = await asyncio.gather(*(image.generate(r) for r in reqs), return_exceptions=True)
    except ImageError as exc:
        return _edit_page(request, p, candidate_error=str(exc), status_code=422)
    failed = [r for r in results if isinstance(r, BaseException)]
    if len(failed) == len(results):
        log.error("studio: portrait candidates for %s failed: %s", p.id, failed[0])
        return _edit_page(request, p, candidate_error=f"No candidate was drawn: {failed[0]}", status_code=502)
    return RedirectResponse(f"/personas/{p.id}/edit#portrait", status_code=303)


def _candidate(ctx: StudioContext, persona_id: str, name: str) -> Path | None:
    """A drawn candidate by its file name, only from the persona's candidate folder."""
    folder = _candidate_dir(ctx, persona_id)
    return inside(folder / name, [folder]) if _CANDIDATE.fullmatch(name) else None


@router.get("/personas/{persona_id}/portrait/candidates/{name}")
async def portrait_candidate(request: Request, persona_id: str, name: str):
    p = persona_or_404(request, persona_id)
    path = _candidate(context(request), p.id, name)
    if path is None:
        raise HTTPException(404, "That candidate is gone.")
    return FileResponse(path, media_type="image/png")


@router.post("/personas/{persona_id}/portrait/pick")
async def portrait_pick(request: Request, persona_id: str, name: str = Form(..., max_length=200)):
    ctx = context(request)
    p = persona_or_404(request, persona_id)
    path = _candidate(ctx, p.id, name)
    if path is None:
        return _edit_page(request, p, candidate_error="That candidate is gone: draw new ones.", status_code=404)
    return await _set_portrait(request, p, await asyncio.to_thread(path.read_bytes))


# -- the voice -------------------------------------------------------------------------


@router.post("/personas/{persona_id}/voice")
async def voice_set(request: Request, persona_id: str):
    """A voice sample with its owner's consent, checked and stored as `vchar voice set` does."""
    from generators.voice.base import VoiceError
    from generators.voice.profile import create_voice_profile

    ctx = context(request)
    p = persona_or_404(request, persona_id)
    form = await request.form()
    consent, who = _text(form, "consent").strip(), _text(form, "who").strip()
    kept = {"consent": consent, "who": who}
    upload = _upload(form, "sample")
    data = await upload.read() if upload is not None else b""
    if not data:
        return _edit_page(request, p, voice_error="Choose a recording of the voice (5 to 30 seconds of speech).",
                          voice_form=kept, status_code=422)
    if not consent or not who:
        return _edit_page(request, p, voice_error="A voice is cloned only with its owner's consent: write their "
                          "consent statement and who gave it.", voice_form=kept, status_code=422)
    base = re.split(r"[\\/]", upload.filename or "")[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    name = safe_stem(base, "sample") + (f".{ext}" if re.fullmatch(r"[a-z0-9]{1,5}", ext) else "")
    folder = _upload_dir(ctx)
    path = folder / name
    try:
        path.write_bytes(data)
        del data
        await asyncio.to_thread(create_voice_profile, p.id, path, consent_statement=consent, consent_who=who,
                                voices_root=ctx.settings.voices_dir, language=p.language or "en")
    except VoiceError as exc:
        return _edit_page(request, p, voice_error=str(exc).replace(str(path), name), voice_form=kept,
                          status_code=422)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log.info("studio: the voice of %s is set (consent by %s)", p.id, who)
    return RedirectResponse(f"/personas/{p.id}/edit?saved=voice#voice", status_code=303)


def preview_line(p: Persona) -> str:
    """A short line in character: the first greeting's first sentences, or a hello."""
    text = p.render(p.greetings[0], PREVIEW_USER).strip() if p.greetings else ""
    if not text:
        return f"Hi, I'm {p.name}. This is how I sound."
    if len(text) > PREVIEW_LINE_CHARS:
        cut = max(text.rfind(c, 0, PREVIEW_LINE_CHARS) for c in ".!?")
        text = text[: cut + 1] if cut > 20 else text[:PREVIEW_LINE_CHARS].rsplit(" ", 1)[0] + "..."
    return text


@router.post("/personas/{persona_id}/voice/preview")
async def voice_preview(request: Request, persona_id: str):
    from generators.voice.base import VoiceError

    ctx = context(request)
    p = persona_or_404(request, persona_id)
    voice = ctx.manager.voice
    values: dict[str, Any] = {"section": "personas", "persona": p, "asset": None, "message": "", "error": False}
    if voice is None or not hasattr(voice, "agenerate"):
        return render(request, "_persona_voice.html", **{**values, "message": "Voice notes are off."})
    profile, problem = _voice_status(ctx, p)
    if profile is None:
        message = problem or f"{p.name} has no voice yet: give a sample above."
        return render(request, "_persona_voice.html", **{**values, "message": message, "error": bool(problem)})
    text = preview_line(p)
    try:
        notes = await voice.agenerate(text, profile, language=profile.language or p.language,
                                      style=p.identity.voice.style)
    except VoiceError as exc:
        return render(request, "_persona_voice.html", status_code=502,
                      **{**values, "message": f"No preview: {exc}", "error": True})
    note = notes[0]
    asset = await ctx.store.add_media_asset(persona_id=await ctx.manager.persona_db_id(p.id), kind="voice",
                                            path=str(note.path), mime=note.mime_type, generator=note.backend,
                                            parameters={"text": note.text, "studio": "preview"},
                                            duration=note.duration)
    return render(request, "_persona_voice.html", **{**values, "asset": asset, "text": note.text})
