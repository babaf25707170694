"""Finding personas: the bundled sample plus the operator's persona folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from persona.card import Persona, PersonaError, dump_persona_yaml, load_persona_file, slugify

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
PERSONA_SUFFIXES = (".yaml", ".yml", ".json", ".png")
DEFAULT_PERSONA = "mira"


@dataclass(frozen=True, slots=True)
class LoadProblem:
    path: Path
    error: str


class PersonaRegistry:
    """All personas by id. A file that fails to load is reported and skipped whole."""

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
    """Validate a persona file or card and save it into ``folder`` as YAML.

    A PNG card's image is kept beside it and becomes the first reference portrait.
    Nothing is written unless the whole file loads.
    """
    persona = load_persona_file(source)
    if source.suffix.lower() in (".json", ".png"):
        persona = strip_local_identity(persona)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{persona.id}.yaml"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    if source.suffix.lower() == ".png":
        art = folder / f"{persona.id}.png"
        art.write_bytes(source.read_bytes())
        ident = persona.identity
        if str(art) not in ident.portraits:
            persona = persona.model_copy(
                update={"identity": ident.model_copy(update={"portraits": [str(art), *ident.portraits]})}
            )
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(dump_persona_yaml(persona), encoding="utf-8")
    tmp.replace(target)
    return persona, target


def strip_local_identity(persona: Persona) -> Persona:
    """A card from elsewhere may not point at this machine's files or claim a voice
    consent: its portraits and voice sample are dropped on import."""
    ident = persona.identity
    if ident.portraits or ident.voice.sample or ident.voice.consent:
        log.warning("%s: the card's portrait and voice-sample paths and consent record were not imported", persona.id)
        ident = ident.model_copy(update={"portraits": [], "voice": ident.voice.model_copy(update={"sample": None, "consent": None})})
        persona = persona.model_copy(update={"identity": ident})
    return persona


def shareable(persona: Persona) -> Persona:
    """The persona as it may leave this machine: no local paths, no consent record."""
    ident = persona.identity
    ident = ident.model_copy(update={"portraits": [], "voice": ident.voice.model_copy(update={"sample": None, "consent": None})})
    return persona.model_copy(update={"identity": ident})
