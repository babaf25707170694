"""The ``vchar`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from bots.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="vchar: virtual characters that chat, remember, and live on Discord and Telegram.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
persona_app = typer.Typer(help="List, show, import and export personas.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
memory_app = typer.Typer(help="What a character remembers about a person.", no_args_is_help=True)
jobs_app = typer.Typer(help="Media jobs: list, show, retry, cancel.", no_args_is_help=True)
app.add_typer(persona_app, name="persona")
app.add_typer(db_app, name="db")
app.add_typer(memory_app, name="memory")
app.add_typer(jobs_app, name="jobs")


def _mount_media_commands() -> None:
    from bots.image_cli import image_app, portrait_command

    from bots.music_cli import music_app
    from bots.posts_cli import posts_app
    from bots.video_cli import video_app
    from bots.voice_cli import voice_app

    app.add_typer(image_app, name="image", help="Selfies and images of a character.")
    app.add_typer(music_app, name="music", help="Songs a character sings, and instrumental clips.")
    app.add_typer(video_app, name="video", help="Talking-head clips, news bulletins, smoothing a clip's frame rate.")
    app.add_typer(posts_app, name="posts", help="Scheduled posts: plan, review, approve, publish.")
    app.add_typer(voice_app, name="voice", help="A character's cloned voice: set it up, make voice notes.")
    persona_app.command("portrait")(portrait_command)


_mount_media_commands()

# soft_wrap: a long line stays one line in a pipe instead of being cut at 80 columns.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        from bots.doctor import vchar_version

        out.print(f"vchar {vchar_version()}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """vchar: virtual characters that chat, remember, and live on Discord and Telegram."""


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        data = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class OneLine(logging.Formatter):
    """Plain text, one line per record (a traceback folded onto it), for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def _setup_logging(level: str, fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("VCHAR_LOG_FORMAT", "auto").lower()
    if fmt == "auto":
        fmt = "rich" if err.is_terminal else "plain"
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
    elif fmt == "plain":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    else:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level.upper(), format="%(name)s: %(message)s", handlers=[handler], force=True)
    for noisy in ("httpx", "sqlalchemy", "alembic", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def config_failure(exc: ConfigError) -> None:
    """Every configuration problem, one line each, and exit 2."""
    for problem in exc.problems:
        err.print(f"[red]error:[/red] {escape(problem)}")
    raise typer.Exit(2)


def _settings(verbose: bool = False, quiet: bool = False) -> Settings:
    try:
        s = load_settings()
    except ConfigError as exc:
        config_failure(exc)
    _setup_logging("DEBUG" if verbose else ("WARNING" if quiet else s.log_level), s.log_format)
    return s


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _studio_address(url: str) -> None:
    err.print(f"studio: {url}", markup=False, highlight=False, soft_wrap=True)


async def _chat(settings: Settings, persona: str | None, user: str | None, studio: bool = False) -> int:
    from bots.local import TerminalAdapter
    from bots.service import Service, registry_for

    try:  # before the service starts: a typo in the name is reported at once
        p = registry_for(settings).get(persona)
    except LookupError as exc:
        _fail(str(exc))
    async with Service(settings) as svc:
        assert svc.manager is not None
        web = None
        if studio:
            from bots.studio import Studio

            web = await Studio(settings, svc).start()
            _studio_address(web.url)
        adapter = TerminalAdapter(p.id, user=user or settings.chat_user, char_name=p.name)
        await adapter.start(svc.handle, outbox=svc.outbox)
        try:
            return await adapter.run()
        finally:
            await adapter.stop()
            if web is not None:
                await web.stop()


def _terminal_chat(settings: Settings, persona: str | None, user: str | None, studio: bool = False) -> None:
    """The terminal chat until end of input, /quit or Ctrl-C. Ctrl-C in a terminal says
    goodbye and exits 0; in a pipe it exits 130 and stdout keeps only the replies."""
    from generators.text import TextGenerationError

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        asyncio.run(_chat(settings, persona, user, studio))
    except KeyboardInterrupt:
        if interactive:
            out.print("\n[dim]bye![/dim]")
            raise typer.Exit(0) from None
        err.print("interrupted")
        raise typer.Exit(130) from None
    except TextGenerationError as exc:  # a text backend that cannot start: say what to set
        _fail(str(exc))


@app.command()
def run(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    no_studio: bool = typer.Option(False, "--no-studio", help="Do not serve the studio (as VCHAR_STUDIO=false)."),
) -> None:
    """Start the characters' service: every configured platform (with none, the terminal
    chat) and the studio, whose address it prints."""
    from bots.service import platform_adapters

    settings = _settings(verbose)
    studio = settings.studio and not no_studio
    adapters = platform_adapters(settings)
    if not adapters:
        _setup_logging("DEBUG" if verbose else ("WARNING" if sys.stdin.isatty() else settings.log_level))
        err.print(f"[dim]data: {escape(str(settings.data_dir))} - text backend: {settings.text_backend} - "
                  "no platform tokens set, chatting in the terminal[/dim]")
        _terminal_chat(settings, None, None, studio)
        return
    err.print(f"[dim]data: {escape(str(settings.data_dir))} - text backend: {settings.text_backend} - platforms: "
              f"{', '.join(a.platform for a in adapters)} (Ctrl-C stops)[/dim]")
    _serve(settings, adapters, studio)


def _serve(settings: Settings, adapters: list, studio: bool) -> None:
    from bots.service import serve

    try:
        asyncio.run(serve(settings, adapters, studio=studio, on_studio=_studio_address))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a bad token, an unreachable platform: say so, no traceback
        logging.getLogger("vchar").debug("service failed", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc}")


@app.command()
def studio(
    port: Optional[int] = typer.Option(None, "--port", "-p", min=0, max=65535,
                                       help="Port (default VCHAR_STUDIO_PORT, 8765; a taken one: the next free)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on (default VCHAR_STUDIO_HOST, 127.0.0.1)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Serve the studio (the operators' web app) with the service, no platforms: chat with
    the characters, edit them, run their calendar, watch the jobs. Prints its address."""
    settings = _settings(verbose)
    updates = {k: v for k, v in (("studio_port", port), ("studio_host", host)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    err.print(f"[dim]data: {escape(str(settings.data_dir))} - text backend: {settings.text_backend} "
              "(Ctrl-C stops)[/dim]")
    _serve(settings, [], True)


@app.command()
def worker(
    kinds: Optional[str] = typer.Option(None, "--kinds", "-k", help="Job kinds to take, e.g. image,voice (default: all it can make)."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Jobs of each kind at once."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Make media for the service: take jobs from VCHAR_QUEUE_URL, write files under
    VCHAR_MEDIA_DIR (shared with the service), record results in the database."""
    from bots.service import run_worker
    from generators.jobs.distributed import QueueUnavailable

    settings = _settings(verbose)
    wanted = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    try:
        asyncio.run(run_worker(settings, wanted, concurrency=concurrency))
    except KeyboardInterrupt:
        pass
    except (ValueError, QueueUnavailable) as exc:
        _fail(str(exc))


@app.command()
def chat(
    persona: Optional[str] = typer.Option(None, "--persona", "-p", help="Persona id or name (default: the default persona)."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Who you are (default: your login name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Chat with a character in the terminal, or line by line from a pipe.

    From a pipe: exactly one line out for every line in (an empty line for a blank one),
    until end of input or /quit."""
    settings = _settings(verbose, quiet=not verbose)
    _terminal_chat(settings, persona, user)


@app.command()
def doctor(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show log messages too.")) -> None:
    """Check the installation: system packages, settings, backends, personas, database.

    Prints a fix for every problem; exits 1 when something required is broken."""
    from bots.doctor import Doctor, render

    _setup_logging("DEBUG" if verbose else "CRITICAL")
    d = Doctor()
    with err.status("checking...") if sys.stderr.isatty() else contextlib.nullcontext():
        checks = d.run()
    render(out, checks)
    if d.failed:
        raise typer.Exit(1)


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
    # Plain text, never wrapped or marked up: `vchar persona show mira > mira.yaml` is a valid file.
    sys.stdout.write(dump_persona_yaml(p))
    sys.stdout.flush()


@persona_app.command("import")
def persona_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A persona .yaml or a character card .json/.png/.charx."),
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
    out.print(f"imported [bold]{escape(p.name)}[/bold] as [cyan]{escape(p.id)}[/cyan] -> {escape(str(target))}")


@persona_app.command("export")
def persona_export(
    name: str = typer.Argument(..., help="Persona id or name."),
    output: Path = typer.Option(..., "-o", "--output", help="Target .json, .png, .charx (Character Card) or .yaml."),
    spec: str = typer.Option("v2", "--spec", help="Card spec for .json: v2 or v3 (.png carries both; .charx is v3)."),
) -> None:
    """Write a persona as a Character Card (JSON or PNG) or as a persona YAML file."""
    from bots.service import registry_for
    from persona.card import PersonaError, dump_persona_yaml
    from persona.cards import export_card

    reg = registry_for(_settings(quiet=True))
    try:
        p = reg.get(name)
    except LookupError as exc:
        _fail(str(exc))
    suffix = output.suffix.lower()
    if spec not in ("v2", "v3"):
        _fail(f"--spec {spec}: use v2 or v3")
    if suffix not in (".yaml", ".yml", ".json", ".png", ".charx"):
        _fail(f"{output}: use a .json, .png, .charx (Character Card) or .yaml (persona file) name")
    folder = output.parent
    if not folder.is_dir():
        _fail(f"{output}: the folder {folder} does not exist (create it first, or write somewhere else)")
    if output.is_dir():
        _fail(f"{output} is a folder: give a file name, e.g. {output / (p.id + suffix)}")
    try:
        if suffix in (".yaml", ".yml"):
            output.write_text(dump_persona_yaml(p), encoding="utf-8")
        else:
            image = None
            if suffix == ".png" and p.identity.portraits and Path(p.identity.portraits[0]).is_file():
                image = Path(p.identity.portraits[0])
            from persona.registry import shareable

            export_card(shareable(p), output, spec=spec, image=image)
    except PersonaError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {output}", markup=False, highlight=False)


# -- database ------------------------------------------------------------------------


def _revisions(url: str) -> list[str]:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    return [r.revision for r in reversed(list(ScriptDirectory.from_config(alembic_config(url)).walk_revisions()))]


def _migrate(settings: Settings, direction: str, revision: str) -> str:
    """Run the migrations; return the revision the database is at afterwards."""
    from alembic import command
    from alembic.util import CommandError

    from bots.doctor import current_revisions
    from db.migrate import alembic_config

    url = settings.resolved_database_url
    known = _revisions(url)
    if revision not in ("head", "base") and not any(r.startswith(revision) for r in known) and not revision.startswith(("+", "-")):
        _fail(f"no database revision {revision!r}: use head, base or one of {', '.join(known)}")
    settings.ensure_dirs()
    try:
        getattr(command, direction)(alembic_config(url), revision)
        current = asyncio.run(current_revisions(url))
    except CommandError as exc:
        _fail(f"{direction} to {revision}: {exc}")
    except Exception as exc:  # the database is unreachable, or refused
        logging.getLogger("vchar").debug("migration failed", exc_info=True)
        _fail(f"{direction} to {revision} failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return ", ".join(current) or "base (empty)"


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="head (the latest), or a revision id.")) -> None:
    """Create or migrate the database schema."""
    settings = _settings(quiet=True)
    if revision == "base":
        _fail("upgrade to base would change nothing: base is the empty schema, below every revision. "
              "To remove every vchar table: vchar db downgrade base --yes")
    out.print(f"database at revision {_migrate(settings, 'upgrade', revision)}", markup=False, highlight=False)


@db_app.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="A revision id, or base: the empty schema (every vchar table removed)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Migrate the schema back to an older revision; base removes every vchar table and its data."""
    settings = _settings(quiet=True)
    if revision == "head":
        _fail("downgrade to head would change nothing: use vchar db upgrade")
    from sqlalchemy.engine import make_url

    shown = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    if not yes and not typer.confirm(f"Downgrade {shown} to {revision}? Data in the removed tables and columns is lost"):
        raise typer.Exit(1)
    out.print(f"database at revision {_migrate(settings, 'downgrade', revision)}", markup=False, highlight=False)


# -- memory --------------------------------------------------------------------------


async def _with_manager(settings: Settings, fn):
    from bots.service import Service

    async with Service(settings) as svc:
        return await fn(svc.manager)


async def _with_jobs(settings: Settings, fn):
    from db.jobs import JobTable
    from db.migrate import upgrade_async
    from db.store import Store

    settings.ensure_dirs()
    url = settings.resolved_database_url
    await upgrade_async(url)
    store = Store.from_url(url)
    try:
        return await fn(JobTable(store))
    finally:
        await store.close()


@jobs_app.command("list")
def jobs_list(
    status: Optional[str] = typer.Option(None, "--status", "-s", help="queued, running, done, failed or cancelled."),
    limit: int = typer.Option(30, "--limit", "-n"),
) -> None:
    """The newest jobs, and how many wait and run by kind."""
    settings = _settings(quiet=True)

    async def go(table):
        return await table.list(status, limit), await table.depth()

    rows, depth = asyncio.run(_with_jobs(settings, go))
    if not rows:
        out.print("No jobs" + (f" {status}." if status else "."), markup=False, highlight=False)
        return
    table = Table("id", "kind", "status", "progress", "attempts", "who", "created", title="jobs")
    for j in rows:
        table.add_row(str(j.id), j.kind, j.status, f"{j.progress:.0%} {j.stage}".strip(), f"{j.attempts}/{j.max_attempts}",
                      j.requester or "", f"{j.created_at:%Y-%m-%d %H:%M:%S}")
    out.print(table)
    out.print("queue: " + (", ".join(f"{k}: {n}" for k, n in sorted(depth.items())) or "empty"), markup=False,
              highlight=False)


def _job_or_fail(settings: Settings, job_id: int, action=None):
    async def go(table):
        ok = await action(table) if action is not None else True
        return ok, await table.get(job_id)

    ok, job = asyncio.run(_with_jobs(settings, go))
    if job is None:
        _fail(f"there is no job {job_id} (see vchar jobs list)")
    return ok, job


@jobs_app.command("show")
def jobs_show(job_id: int = typer.Argument(..., help="The job's id.")) -> None:
    """One job in full: parameters, state, progress, error and result."""
    import json

    settings = _settings(quiet=True)
    _, job = _job_or_fail(settings, job_id)
    data = {k: getattr(job, k) for k in job.__slots__}
    out.print_json(json.dumps(data, default=str))


@jobs_app.command("retry")
def jobs_retry(job_id: int = typer.Argument(..., help="A failed or cancelled job's id.")) -> None:
    """Queue a failed or cancelled job again (its attempts start over)."""
    settings = _settings(quiet=True)
    ok, job = _job_or_fail(settings, job_id, lambda t: t.retry(job_id))
    if not ok:
        _fail(f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried")
    out.print(f"job {job_id} queued again; a running worker takes it", markup=False, highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(..., help="A queued or running job's id.")) -> None:
    """Cancel a queued or running job (a running one stops at its next progress step)."""
    settings = _settings(quiet=True)
    ok, job = _job_or_fail(settings, job_id, lambda t: t.cancel(job_id))
    if not ok:
        _fail(f"job {job_id} is already {job.status}")
    out.print(f"job {job_id} cancelled", markup=False, highlight=False)


@memory_app.command("show")
def memory_show(
    user: str = typer.Option(None, "--user", "-u", help="Platform user id (default: you, in the terminal chat)."),
    platform: str = typer.Option("local", "--platform", help="local, telegram or discord."),
    persona: Optional[str] = typer.Option(None, "--persona", "-p"),
) -> None:
    """What a character remembers about a person."""
    from bots.local import local_user

    settings = _settings(quiet=True)
    uid = user or local_user(settings.chat_user)

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
        out.print(f"{p.name} remembers nothing about {platform}:{uid}.", markup=False, highlight=False)
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
    uid = user or local_user(settings.chat_user)
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
        out.print(f"{p.name} never met {platform}:{uid}; nothing to delete.", markup=False, highlight=False)
    else:
        out.print(
            f"deleted {counts['messages']} messages, {counts['replies']} replies, {counts['memories']} memories "
            f"and {counts['media']} media files "
            f"of {platform}:{uid} with {p.name}", markup=False, highlight=False,
        )


def main(argv: list[str] | None = None) -> None:
    """The ``vchar`` command: every error is one line on stderr and a non-zero exit."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:  # the command line's own errors: a bad option, a missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already shown
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        err.print(f"[red]error:[/red] {escape(exc.format_message())}{escape(hint)}")
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except typer.Abort:
        err.print("[red]error:[/red] aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug or an environment problem: one line, the traceback on request
        if os.environ.get("VCHAR_LOG_LEVEL", "").upper() == "DEBUG":
            import traceback

            traceback.print_exc()
        text = str(exc).strip()
        err.print(f"[red]error:[/red] {escape(type(exc).__name__)}"
                  f"{': ' + escape(text.splitlines()[0]) if text else ''}"
                  " [dim](VCHAR_LOG_LEVEL=DEBUG shows the traceback)[/dim]")
        sys.exit(1)
    if isinstance(rv, int) and not isinstance(rv, bool) and rv:
        sys.exit(rv)


if __name__ == "__main__":
    main()
