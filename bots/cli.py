"""The ``vchar`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from bots.settings import Settings

app = typer.Typer(help="vchar: virtual characters that chat, remember, and live on Discord and Telegram.", no_args_is_help=True)
persona_app = typer.Typer(help="List, show, import and export personas.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
memory_app = typer.Typer(help="What a character remembers about a person.", no_args_is_help=True)
app.add_typer(persona_app, name="persona")
app.add_typer(db_app, name="db")
app.add_typer(memory_app, name="memory")


def _mount_media_commands() -> None:
    from bots.image_cli import image_app, portrait_command

    from bots.voice_cli import voice_app

    app.add_typer(image_app, name="image", help="Selfies and images of a character.")
    app.add_typer(voice_app, name="voice", help="A character's cloned voice: set it up, make voice notes.")
    persona_app.command("portrait")(portrait_command)


_mount_media_commands()

out = Console()
err = Console(stderr=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("httpx", "sqlalchemy", "alembic", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _settings(verbose: bool = False, quiet: bool = False) -> Settings:
    try:
        s = Settings()
    except Exception as exc:  # pydantic's message names the variable
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    _setup_logging("DEBUG" if verbose else ("WARNING" if quiet else s.log_level))
    return s


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


async def _chat(settings: Settings, persona: str | None, user: str | None) -> int:
    from bots.local import TerminalAdapter
    from bots.service import Service

    async with Service(settings) as svc:
        assert svc.manager is not None
        try:
            p = svc.manager.registry.get(persona)
        except LookupError as exc:
            _fail(str(exc))
        adapter = TerminalAdapter(p.id, user=user, char_name=p.name)
        await adapter.start(svc.handle)
        try:
            return await adapter.run()
        finally:
            await adapter.stop()


@app.command()
def run(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    """Start the characters' service: every configured platform; with none, the terminal chat."""
    from bots.service import platform_adapters, serve

    settings = _settings(verbose)
    adapters = platform_adapters(settings)
    if not adapters:
        _setup_logging("DEBUG" if verbose else ("WARNING" if sys.stdin.isatty() else settings.log_level))
        err.print(f"[dim]data: {settings.data_dir} - text backend: {settings.text_backend} - no platform tokens set, chatting in the terminal[/dim]")
        try:
            asyncio.run(_chat(settings, None, None))
        except KeyboardInterrupt:
            pass
        return
    err.print(f"[dim]data: {settings.data_dir} - text backend: {settings.text_backend} - platforms: "
              f"{', '.join(a.platform for a in adapters)} (Ctrl-C stops)[/dim]")
    try:
        asyncio.run(serve(settings, adapters))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a bad token, an unreachable platform: say so, no traceback
        logging.getLogger("vchar").debug("service failed", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc}")


@app.command()
def chat(
    persona: Optional[str] = typer.Option(None, "--persona", "-p", help="Persona id or name (default: the default persona)."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Who you are (default: your login name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Chat with a character. Reads lines from stdin when it is not a terminal, one reply per line."""
    settings = _settings(verbose, quiet=not verbose)
    try:
        asyncio.run(_chat(settings, persona, user))
    except KeyboardInterrupt:
        pass


# -- personas ------------------------------------------------------------------------


@persona_app.command("list")
def persona_list() -> None:
    """The personas this installation knows."""
    from bots.service import registry_for

    settings = _settings(quiet=True)
    reg = registry_for(settings)
    table = Table("id", "name", "source", title="Personas")
    for p in reg:
        mark = " (default)" if p.id == reg.default_id else ""
        table.add_row(p.id + mark, p.name, str(reg.sources[p.id]))
    out.print(table)
    for problem in reg.problems:
        err.print(f"[yellow]not loaded:[/yellow] {problem.error}")


@persona_app.command("show")
def persona_show(name: str = typer.Argument(..., help="Persona id or name.")) -> None:
    """A persona in full, as YAML."""
    from bots.service import registry_for
    from persona.card import dump_persona_yaml

    reg = registry_for(_settings(quiet=True))
    try:
        p = reg.get(name)
    except LookupError as exc:
        _fail(str(exc))
    out.print(dump_persona_yaml(p), markup=False, highlight=False)


@persona_app.command("import")
def persona_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A persona .yaml or a character card .json/.png."),
    force: bool = typer.Option(False, "--force", help="Replace a persona with the same id."),
) -> None:
    """Validate a persona file or Character Card (V1/V2/V3) and add it to the personas folder."""
    from persona.card import PersonaError
    from persona.registry import install_persona

    settings = _settings(quiet=True)
    try:
        p, target = install_persona(file, settings.resolved_personas_dir, overwrite=force)
    except (PersonaError, FileExistsError) as exc:
        _fail(str(exc))
    out.print(f"imported [bold]{p.name}[/bold] as [cyan]{p.id}[/cyan] -> {target}")


@persona_app.command("export")
def persona_export(
    name: str = typer.Argument(..., help="Persona id or name."),
    output: Path = typer.Option(..., "-o", "--output", help="Target .json, .png (Character Card) or .yaml."),
    spec: str = typer.Option("v2", "--spec", help="Card spec for .json/.png: v2 or v3."),
) -> None:
    """Write a persona as a Character Card (JSON or PNG) or as a persona YAML file."""
    from bots.service import registry_for
    from persona.card import dump_persona_yaml
    from persona.cards import export_card

    reg = registry_for(_settings(quiet=True))
    try:
        p = reg.get(name)
    except LookupError as exc:
        _fail(str(exc))
    suffix = output.suffix.lower()
    if spec not in ("v2", "v3"):
        _fail("--spec must be v2 or v3")
    if suffix in (".yaml", ".yml"):
        output.write_text(dump_persona_yaml(p), encoding="utf-8")
    elif suffix in (".json", ".png"):
        image = None
        if suffix == ".png" and p.identity.portraits and Path(p.identity.portraits[0]).is_file():
            image = Path(p.identity.portraits[0])
        from persona.registry import shareable

        export_card(shareable(p), output, spec=spec, image=image)
    else:
        _fail(f"{output}: use a .json, .png or .yaml file name")
    out.print(f"wrote {output}")


# -- database ------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or migrate the database schema."""
    from db.migrate import upgrade

    settings = _settings(quiet=True)
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url, revision)
    out.print(f"database at revision {revision}")


# -- memory --------------------------------------------------------------------------


async def _with_manager(settings: Settings, fn):
    from bots.service import Service

    async with Service(settings) as svc:
        return await fn(svc.manager)


@memory_app.command("show")
def memory_show(
    user: str = typer.Option(None, "--user", "-u", help="Platform user id (default: you, in the terminal chat)."),
    platform: str = typer.Option("local", "--platform", help="local, telegram or discord."),
    persona: Optional[str] = typer.Option(None, "--persona", "-p"),
) -> None:
    """What a character remembers about a person."""
    from bots.local import local_user

    settings = _settings(quiet=True)
    uid = user or local_user()

    async def go(manager):
        p = manager.registry.get(persona)
        st = await manager._state(p)
        db_uid = await manager.store.find_user(platform, uid)
        rows = [] if db_uid is None else await manager.store.list_memories(st.db_id, db_uid, limit=1000)
        return p, rows

    try:
        p, rows = asyncio.run(_with_manager(settings, go))
    except LookupError as exc:
        _fail(str(exc))
    if not rows:
        out.print(f"{p.name} remembers nothing about {platform}:{uid}.")
        return
    table = Table("when", "source", "importance", "memory", title=f"{p.name} remembers about {platform}:{uid}")
    for r in rows:
        table.add_row(f"{r.created_at:%Y-%m-%d %H:%M}", r.source, f"{r.importance:.1f}", r.text)
    out.print(table)


@memory_app.command("forget")
def memory_forget(
    user: str = typer.Option(None, "--user", "-u", help="Platform user id (default: you, in the terminal chat)."),
    platform: str = typer.Option("local", "--platform"),
    persona: Optional[str] = typer.Option(None, "--persona", "-p"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a person's history and memories with a character, for good."""
    from bots.local import local_user

    settings = _settings(quiet=True)
    uid = user or local_user()
    if not yes and not typer.confirm(f"Delete every message and memory of {platform}:{uid}?"):
        raise typer.Exit(1)

    async def go(manager):
        p = manager.registry.get(persona)
        return p, await manager.forget(p.id, platform, uid)

    try:
        p, counts = asyncio.run(_with_manager(settings, go))
    except LookupError as exc:
        _fail(str(exc))
    if counts is None:
        out.print(f"{p.name} never met {platform}:{uid}; nothing to delete.")
    else:
        out.print(
            f"deleted {counts['messages']} messages, {counts['replies']} replies and {counts['memories']} memories "
            f"of {platform}:{uid} with {p.name}"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
