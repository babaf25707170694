"""Finding personas: the bundled sample plus the operator's persona folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from persona.card import (
    Persona,
    PersonaError,
    dump_persona_yaml,
    load_persona_file,
    slugify,
    strip_local_identity,
)
from persona.cards import (
    CARD_SUFFIXES,
    CardFile,
    asset_file_name,
    embedded_assets,
    is_placeholder_png,
    read_card_file,
)

__all__ = [
    "DEFAULT_PERSONA",
    "PERSONA_SUFFIXES",
    "SAMPLES",
    "LoadProblem",
    "PersonaRegistry",
    "install_persona",
    "shareable",
    "strip_foreign_settings",
    "strip_local_identity",
]

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
PERSONA_SUFFIXES = (".yaml", ".yml", *CARD_SUFFIXES)
DEFAULT_PERSONA = "mira"
_IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "webp"})


@dataclass(frozen=True, slots=True)
class LoadProblem:
    path: Path
    error: str


class PersonaRegistry:
    """All personas by id. A file that fails to load is reported and skipped whole.

    Cards (``.json``, ``.png``, ``.charx``) dropped into a folder load like imported
    ones, without local file paths or consent records; YAML files are the operator's
    and load as written.
    """

    def __init__(self, folders: list[Path], default: str | None = None):
        self.folders = folders
        self.personas: dict[str, Persona] = {}
        self.sources: dict[str, Path] = {}
        self.problems: list[LoadProblem] = []
        self._default = default
        self.reload()

    def reload(self) -> None:
        personas: dict[str, Persona] = {}
        sources: dict[str, Path] = {}
        problems: list[LoadProblem] = []
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in PERSONA_SUFFIXES or path.name.startswith("."):
                    continue
                if path.suffix.lower() == ".png" and path.with_suffix(".yaml").exists():
                    continue  # the card's art beside an imported persona
                try:
                    p = load_persona_file(path)
                except PersonaError as exc:
                    log.error("persona not loaded: %s", exc)
                    problems.append(LoadProblem(path, str(exc)))
                    continue
                if p.id in personas:
                    log.info("persona %s from %s replaces the one from %s", p.id, path, sources[p.id])
                personas[p.id] = p
                sources[p.id] = path
        self.personas, self.sources, self.problems = personas, sources, problems

    @property
    def default_id(self) -> str:
        if self._default:
            return slugify(self._default) if self._default not in self.personas else self._default
        if DEFAULT_PERSONA in self.personas:
            return DEFAULT_PERSONA
        if not self.personas:
            raise LookupError("no personas found")
        return next(iter(self.personas))

    def get(self, name: str | None = None) -> Persona:
        """A persona by id or display name (case-insensitive); the default when name is None."""
        if name is None:
            name = self.default_id
        if name in self.personas:
            return self.personas[name]
        low = name.lower()
        for p in self.personas.values():
            if p.name.lower() == low or p.id == slugify(name):
                return p
        known = ", ".join(sorted(self.personas)) or "none"
        raise LookupError(f"no persona called {name!r} (known: {known})")

    def __iter__(self):
        return iter(self.personas.values())

    def __len__(self) -> int:
        return len(self.personas)


def install_persona(source: Path, folder: Path, *, overwrite: bool = False) -> tuple[Persona, Path]:
    """Validate a persona file or card and save it into ``folder`` as ``<id>.yaml``.

    The file comes from elsewhere, whatever its format: it keeps no local file paths,
    consent record, admins or bot-token variable (see :func:`strip_foreign_settings`).
    A PNG card's image is kept beside it as ``<id>.png`` and becomes the first
    reference portrait, unless it is a placeholder vchar drew; a card's embedded
    assets are saved in ``<id>.assets/`` (an embedded icon image also becomes a
    portrait). Every file goes inside ``folder``. Nothing is written unless the whole
    file loads, and nothing is replaced without ``overwrite``.
    """
    source = Path(source)
    if source.suffix.lower() in CARD_SUFFIXES:
        card = read_card_file(source)
    else:
        card = CardFile(load_persona_file(source))
    persona = strip_foreign_settings(card.persona)
    folder.mkdir(parents=True, exist_ok=True)
    target = _inside(folder, f"{persona.id}.yaml", source)
    keep_art = card.image is not None and not card.placeholder
    art = _inside(folder, f"{persona.id}.png", source) if keep_art else None
    asset_dir = _inside(folder, f"{persona.id}.assets", source) if card.assets else None
    if not overwrite:
        for path in (target, art, asset_dir):
            if path is not None and (path.exists() or path.is_symlink()):
                raise FileExistsError(f"{path} exists; pass --force to replace it")

    portraits: list[str] = []
    if art is not None:
        art.write_bytes(card.image)
        portraits.append(str(art))
    if asset_dir is not None:
        saved = _save_assets(card, persona, asset_dir, source)
        persona = persona.model_copy(update={"card_assets": saved})
        for _, asset in embedded_assets(persona):
            uri = asset["uri"]
            if asset.get("type") == "icon" and uri in saved and Path(saved[uri]).suffix[1:] in _IMAGE_EXTS:
                if saved[uri] not in portraits and not is_placeholder_png(card.assets[uri]):
                    portraits.append(saved[uri])
    if portraits:
        ident = persona.identity
        persona = persona.model_copy(update={"identity": ident.model_copy(update={"portraits": portraits})})
    tmp = _inside(folder, f"{persona.id}.yaml.tmp", source)
    tmp.write_text(dump_persona_yaml(persona), encoding="utf-8")
    tmp.replace(target)
    return persona, target


def _inside(folder: Path, name: str, source: Path) -> Path:
    """``folder / name``, refused unless it resolves to a direct child of ``folder``."""
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise PersonaError(source, f"would write {path}, outside {folder}", "id")
    return path


def _save_assets(card: CardFile, persona: Persona, asset_dir: Path, source: Path) -> dict[str, str]:
    """Write the card's embedded assets into ``asset_dir`` under safe names; URI -> path."""
    asset_dir.mkdir(exist_ok=True)
    saved: dict[str, str] = {}
    for i, asset in embedded_assets(persona):
        uri = asset["uri"]
        if uri in saved or uri not in card.assets:
            continue
        path = _inside(asset_dir, asset_file_name(i, asset), source)
        path.write_bytes(card.assets[uri])
        saved[uri] = str(path)
    return saved


def strip_foreign_settings(persona: Persona) -> Persona:
    """What an imported file may not bring: local file paths and consent records
    (:func:`strip_local_identity`), admins (``platforms.*.admin_ids``) and the name of
    an environment variable to read a bot token from (``platforms.*.token_env``), and a
    posting plan (``posts``: which channels it posts in)."""
    persona = strip_local_identity(persona)
    platforms = persona.platforms
    changed = {}
    for name in ("telegram", "discord"):
        conf = getattr(platforms, name)
        if conf.admin_ids or conf.token_env:
            changed[name] = conf.model_copy(update={"admin_ids": [], "token_env": None})
    if changed:
        log.warning("%s: the file's admin ids and bot-token variables were not imported", persona.id)
        persona = persona.model_copy(update={"platforms": platforms.model_copy(update=changed)})
    if persona.posts is not None:  # where a character posts is the operator's to say
        log.warning("%s: the file's posting plan was not imported; write one under posts: in its YAML", persona.id)
        persona = persona.model_copy(update={"posts": None})
    return persona


def shareable(persona: Persona) -> Persona:
    """The persona as it may leave this machine: no local paths, no consent record.
    (Its card's own assets stay, to be embedded in an exported card.)"""
    ident = persona.identity
    ident = ident.model_copy(update={"portraits": [], "voice": ident.voice.model_copy(update={"sample": None, "consent": None})})
    return persona.model_copy(update={"identity": ident})
