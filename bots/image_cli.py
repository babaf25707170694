"""``vchar image ...`` and ``vchar persona portrait ...``: selfies and reference portraits
from the command line.

Mounted by bots/cli.py:

    app.add_typer(image_app, name="image")
    persona_app.command("portrait")(portrait_command)

Image settings come from ``VCHAR_IMAGE_*`` variables (see :class:`ImageSettings`); the
data and personas folders from the service settings.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from bots.settings import ConfigError, ImageSettings, Settings, load_settings

__all__ = ["ImageSettings", "build_from_settings", "image_app", "portrait_command", "record_images"]

log = logging.getLogger(__name__)

image_app = typer.Typer(help="Pictures: selfies of a character.", no_args_is_help=True)
portrait_app = typer.Typer(help="Reference portraits of a character.", no_args_is_help=True)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@image_app.callback()
def _image_group() -> None:
    """Pictures: selfies of a character."""


@portrait_app.callback()
def _portrait_group() -> None:
    """Reference portraits of a character."""


def build_from_settings(settings: Settings, image: ImageSettings):
    """The image backend the settings describe."""
    from generators.image import SafetyConfig, build_image_backend

    out_dir = image.out_dir or getattr(settings, "media_dir", settings.data_dir / "media") / "images"
    safety = SafetyConfig(image_check=image.safety)
    ip = None if (image.ip_adapter or "").lower() in ("", "none", "off") else image.ip_adapter
    if image.backend == "diffusers":
        return build_image_backend(
            "diffusers", out_dir=out_dir, model=image.model, safety=safety, device=image.device, dtype=image.dtype,
            sampler=image.sampler, ip_adapter=ip, ip_adapter_repo=image.ip_adapter_repo,
            identity_scale=image.identity_scale, batch_window_s=image.batch_window_ms / 1000, max_batch=image.max_batch,
        )
    if image.backend == "remote":
        return build_image_backend(
            "remote", out_dir=out_dir, model=image.model, base_url=image.base_url, safety=safety,
            username=image.username, password=image.password.get_secret_value() if image.password else None,
            sampler=image.sampler, ip_adapter_model=image.ip_adapter_model, identity_scale=image.identity_scale,
        )
    return build_image_backend("lite", out_dir=out_dir, safety=safety)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(code)


def _load(persona: str):
    """(settings, image settings, registry, persona) or a clean exit."""
    from persona.registry import SAMPLES, PersonaRegistry

    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2) from None
    image = ImageSettings()
    registry = PersonaRegistry([SAMPLES, settings.resolved_personas_dir], default=settings.default_persona)
    try:
        p = registry.get(persona)
    except LookupError as exc:
        _fail(str(exc))
    return settings, image, registry, p


def _run(coro):
    from generators.image import ImageError, ImageRefused

    try:
        return asyncio.run(coro)
    except ImageRefused as exc:
        _fail(f"refused: {exc.reason}", 3)
    except ImageError as exc:
        _fail(str(exc))


@image_app.command("selfie")
def selfie(
    persona: str = typer.Argument(..., help="Persona id or name."),
    scene: str = typer.Argument(..., help="Where and what, e.g. 'at the beach at sunset'."),
    output: Path = typer.Option(..., "-o", "--output", help="The PNG to write."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Default: the persona's seed family for this scene."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Default: the sampler's."),
    size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT, e.g. 512x512 (default VCHAR_IMAGE_SIZE)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="lite, diffusers or remote (default VCHAR_IMAGE_BACKEND)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model folder or hub id (default VCHAR_IMAGE_MODEL)."),
) -> None:
    """A selfie of the character in a scene, looking like its reference portrait."""
    from generators.image import ImageError, ImageRequest, parse_size, seed_for, selfie_prompt

    settings, image, registry, p = _load(persona)
    if output.suffix.lower() != ".png":
        _fail(f"{output}: use a .png file name (the PNG carries the prompt and seed)")
    if backend:
        image = image.model_copy(update={"backend": backend})
    if model:
        image = image.model_copy(update={"model": model})
    refs = tuple(p.identity.portraits)
    missing = [r for r in refs if not Path(r).is_file()]
    if missing:
        _fail(f"{p.id}'s reference portrait {missing[0]} is missing: set one with "
              f"`vchar persona portrait {p.id} --from FILE`")
    if not refs:
        if image.backend == "lite":
            _fail(f"{p.id} has no reference portrait, and the lite backend composes selfies from one: set it with "
                  f"`vchar persona portrait {p.id} --from FILE` (or draw candidates with --generate 4)")
        err.print(f"[yellow]{p.id} has no reference portrait; the selfie follows the appearance text only "
                  f"(`vchar persona portrait {p.id} --from FILE` sets one)[/yellow]")
    try:
        req = ImageRequest(
            prompt=selfie_prompt(scene, appearance=p.identity.appearance, style=p.identity.style_prompt),
            references=refs,
            size=parse_size(size or image.size),
            steps=steps if steps is not None else image.steps,
            seed=seed if seed is not None else seed_for(p.identity.seed, scene),
            output=str(output),
            tags={"persona": p.id, "scene": scene},
        ).checked()
        gen = build_from_settings(settings, image)
    except ImageError as exc:
        _fail(str(exc))

    async def go():
        try:
            return await gen.generate(req)
        finally:
            await gen.aclose()

    with err.status(f"drawing {p.name} {scene} ({image.backend})..."):
        result = _run(go())
    record_images(settings, registry, p, [result], generator=image.backend)
    out.print(f"wrote {result.path} (seed {result.metadata['seed']}, {result.metadata['size']}, "
              f"{result.metadata['backend']} {result.metadata['model']})", markup=False, highlight=False)


def portrait_command(
    name: str = typer.Argument(..., help="Persona id or name."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="Use this image as the reference portrait."),
    generate: Optional[int] = typer.Option(None, "--generate", min=1, max=16,
                                           help="Draw N candidates from the appearance text to pick from."),
    seed: Optional[int] = typer.Option(None, "--seed", help="First seed for --generate (default: the persona's)."),
    size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT for --generate."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where --generate writes (default DATA/media/images/portraits)."),
) -> None:
    """Set a character's reference portrait (--from FILE) or draw candidates (--generate N)."""
    if (from_file is None) == (generate is None):
        _fail("give exactly one of --from FILE or --generate N")
    settings, image, registry, p = _load(name)
    if from_file is not None:
        _set_portrait(settings, registry, p, from_file)
    else:
        _generate_candidates(settings, image, p, generate, seed, size, out_dir)


portrait_app.command("portrait")(portrait_command)


def _set_portrait(settings: Settings, registry, p, source: Path) -> None:
    from PIL import Image

    from generators.image import ImageError, load_image
    from persona.card import dump_persona_yaml

    try:
        img = load_image(source, what="portrait")
    except ImageError as exc:
        _fail(str(exc))
    if min(img.size) < 64:
        _fail(f"{source} is {img.size[0]}x{img.size[1]} pixels: a portrait needs at least 64 on each side (512 or more is best)")
    img.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    folder = settings.resolved_personas_dir
    target = folder / "portraits" / f"{p.id}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".png.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(target)
    try:
        from generators.image.lite import detect_faces

        if not detect_faces(img):
            err.print("[yellow]no face was found in it; selfies work best from a clear, frontal head-and-shoulders "
                      "portrait[/yellow]")
    except ImportError:
        pass
    ident = p.identity
    portraits = [str(target)] + [x for x in ident.portraits if Path(x) != target]
    updated = p.model_copy(update={"identity": ident.model_copy(update={"portraits": portraits})})
    source_file = registry.sources.get(p.id)
    if source_file is not None and source_file.suffix.lower() in (".yaml", ".yml") and source_file.parent == folder:
        persona_file = source_file
    else:  # a sample or a card: the operator's folder gets a YAML that overrides it
        persona_file = folder / f"{p.id}.yaml"
    tmp_yaml = persona_file.with_suffix(".yaml.tmp")
    tmp_yaml.write_text(dump_persona_yaml(updated), encoding="utf-8")
    tmp_yaml.replace(persona_file)
    out.print(f"{p.id}: reference portrait set to {target} ({persona_file})", markup=False, highlight=False)


def _generate_candidates(settings: Settings, image: ImageSettings, p, n: int, seed, size, out_dir) -> None:
    from generators.image import ImageError, ImageRequest, parse_size, seed_for

    folder = out_dir or getattr(settings, "media_dir", settings.data_dir / "media") / "images" / "portraits"
    appearance = p.identity.appearance or p.description[:200]
    prompt = ", ".join(x for x in (
        f"portrait photo of {appearance}", p.identity.style_prompt, "head and shoulders, looking at the camera, "
        "soft light, plain background") if x)
    try:
        sz = parse_size(size or image.size)
        reqs = [
            ImageRequest(prompt=prompt, size=sz, steps=image.steps,
                         seed=(seed + i) if seed is not None else seed_for(p.identity.seed, f"portrait {i}"),
                         output=str(folder / f"{p.id}-candidate-{i + 1}.png"), tags={"persona": p.id}).checked()
            for i in range(n)
        ]
        gen = build_from_settings(settings, image)
    except ImageError as exc:
        _fail(str(exc))

    async def go():
        try:
            results = await asyncio.gather(*(gen.generate(r) for r in reqs), return_exceptions=True)
        finally:
            await gen.aclose()
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    with err.status(f"drawing {n} portrait candidates of {p.name} ({image.backend})..."):
        results = _run(go())
    record_images(settings, None, p, results, generator=image.backend)
    for r in results:
        out.print(f"{r.path}  (seed {r.metadata['seed']})", markup=False, highlight=False)
    out.print(f"pick one: vchar persona portrait {p.id} --from FILE", markup=False, highlight=False)


def record_images(settings: Settings, registry, persona, results, *, generator: str) -> None:
    """Record pictures made on the command line as media assets, as the chats do."""
    from bots.service import record_media_sync

    record_media_sync(settings, persona, [
        {"kind": "image", "path": r.path, "mime": "image/png", "generator": r.metadata.get("model") or generator,
         "parameters": dict(r.metadata), "seed": r.seed}
        for r in results
    ], registry=registry, warn=lambda text: err.print(f"[yellow]warning:[/yellow] {escape(text)}"))
