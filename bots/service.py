"""Wiring: settings to database, personas, generators and the persona manager."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from bots.settings import Settings
from db.migrate import upgrade_async
from db.store import Store
from generators.embed import get_embedder
from generators.text import build_text_generator
from persona.limits import Rate
from persona.manager import ManagerConfig, PersonaManager
from generators.jobs import wait_any
from persona.outbox import Outbox
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage, Reply

log = logging.getLogger(__name__)


def admin_ids(settings: Settings) -> dict[str, frozenset[str]]:
    from bots.local import local_user

    admins = {
        "telegram": frozenset(str(i) for i in settings.telegram_admin_ids),
        "discord": frozenset(str(i) for i in settings.discord_admin_ids),
    }
    if settings.local_admin:
        admins["local"] = frozenset({local_user(settings.chat_user)})
    # whoever logged in to the studio operates the characters
    admins["studio"] = frozenset({"operator"})
    return admins


def registry_for(settings: Settings) -> PersonaRegistry:
    return PersonaRegistry([SAMPLES, settings.resolved_personas_dir], default=settings.default_persona)


def install_sample_voices(settings: Settings) -> list[str]:
    """Give the shipped sample characters their shipped synthetic voices, once: each
    sample goes through the checks `vchar voice set` applies, and its licence becomes the
    consent record on this installation. A voice the operator set is never replaced."""
    import json

    from generators.voice.profile import create_voice_profile, load_voice_profile

    done = []
    for spec_file in sorted((SAMPLES / "media").glob("*-voice.json")):
        try:
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
            pid = spec["persona"]
            if load_voice_profile(settings.voices_dir, pid) is not None:
                continue
            create_voice_profile(pid, spec_file.parent / spec["sample"], consent_statement=spec["consent_statement"],
                                 consent_who=spec["consent_who"], voices_root=settings.voices_dir,
                                 language=spec.get("language", "en"))
            done.append(pid)
            log.info("%s: the sample voice that ships with vchar is installed (%s)", pid, spec["consent_who"])
        except Exception as exc:  # noqa: BLE001 - the voice is optional; say why it is missing
            log.warning("the sample voice %s was not installed: %s", spec_file.name, exc)
    return done


@dataclass(frozen=True)
class Offsite:
    """A media backend that `vchar worker` processes run (with ``VCHAR_QUEUE_URL``): the
    service only knows its kind and name; it loads no model and makes no media itself."""

    kind: str
    name: str

    async def aclose(self) -> None:
        """Nothing is loaded here to close."""


def media_backends(s: Settings, image=None, *, offsite: bool = False):
    """The image, voice and music backends the settings describe; one that cannot be
    built is logged and left out (chat goes on without it). ``offsite`` (the service,
    with a queue URL: the workers build them): :class:`Offsite` stand-ins naming them."""
    if offsite and image is None:
        from bots.settings import ImageSettings
        from generators.voice import VoiceSettings

        return (Offsite("image", ImageSettings().backend), Offsite("voice", VoiceSettings().voice_backend),
                Offsite("music", s.music_backend), Offsite("video", s.video_backend))
    if image is None:
        from bots.image_cli import build_from_settings
        from bots.settings import ImageSettings

        try:
            image = build_from_settings(s, ImageSettings())
        except Exception as exc:  # selfies are optional: chat goes on without them
            log.error("image backend not available, selfies are off: %s", exc)
    voice = None
    try:
        from generators.voice import VoiceGenerator, VoiceSettings, backend_from_settings

        vs = VoiceSettings()
        voice = VoiceGenerator(backend_from_settings(vs, cache_dir=s.voice_cache_dir),
                               s.media_dir / "voice", max_note_chars=vs.voice_max_note_chars, fmt=vs.voice_format)
    except Exception as exc:  # voice notes are optional: replies go out as text
        log.error("voice backend not available, voice notes are off: %s", exc)
    music = None
    try:
        from generators.music import build_music_backend

        vb = getattr(voice, "backend", None)  # the lite voice's conversion (and its cache) sings too
        music = build_music_backend(s.music_backend, out_dir=s.media_dir / "music", soundfont=s.music_soundfont,
                                    voice=vb if getattr(vb, "name", "") == "lite" else None, model=s.music_model,
                                    accept_license=s.music_accept_license, device=s.music_device,
                                    compile=s.music_compile, batch=s.music_batch)
    except Exception as exc:  # songs are optional
        log.error("music backend not available, songs are off: %s", exc)
    video = None
    if voice is not None:  # a clip speaks: it needs a voice backend
        try:
            video = video_backend(s)
        except Exception as exc:  # videos are optional
            log.error("video backend not available, videos are off: %s", exc)
    return image, voice, music, video


def video_backend(s: Settings):
    from generators.video import build_video_backend

    return build_video_backend(s.video_backend, out_dir=s.media_dir / "video", cache_dir=s.data_dir / "cache" / "faces",
                               model=s.video_model, device=s.video_device, accept_license=s.video_accept_license)


async def run_worker(settings: Settings, kinds: list[str] | None, stop: asyncio.Event | None = None,
                     concurrency: int = 1) -> None:
    """`vchar worker`: make media for the service through the queue until stopped."""
    from db.jobs import JobTable
    from generators.jobs import Worker
    from generators.jobs.distributed import serve_worker
    from generators.jobs.runners import image_runner, music_runner, video_runner, voice_runner
    from persona.media import MediaJobs

    if not settings.queue_url:
        raise ValueError("vchar worker takes its jobs from the queue: set VCHAR_QUEUE_URL (the same redis:// URL "
                         "and VCHAR_DATABASE_URL as the service)")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    settings.ensure_dirs()
    url = settings.resolved_database_url
    await upgrade_async(url)
    store = Store.from_url(url)
    image, voice, music, video = media_backends(settings)
    runners = {}
    if image is not None:
        runners["image"] = image_runner(image)
    if voice is not None:
        runners["voice"] = voice_runner(voice)
    if music is not None:
        runners["music"] = music_runner(music)
    if video is not None:
        runners["video"] = video_runner(video, voice)
    wanted = kinds or sorted(runners)
    missing = [k for k in wanted if k not in runners]
    if missing:
        await store.close()
        raise ValueError(f"this worker cannot make {', '.join(missing)}: its backend is not available here "
                         f"(see the log above; it can make {', '.join(sorted(runners)) or 'nothing'})")
    table = JobTable(store)
    media = MediaJobs(store, table, uploads=settings.media_dir / "uploads")
    # music jobs batched by the model (VCHAR_MUSIC_BATCH) need as many running at once
    conc = {k: max(concurrency, settings.music_batch) if k == "music" else concurrency for k in wanted}
    worker = Worker(table, runners, on_done=media.on_done, on_failed=media.on_failed, kinds=wanted,
                    concurrency=conc, lease=settings.job_lease, poll=5.0)
    log.info("vchar worker %s: making %s", worker.name, ", ".join(wanted))
    try:
        await serve_worker(worker, settings.queue_url, stop, concurrency=conc)
    finally:
        if image is not None:
            await image.aclose()
        await store.close()


class Service:
    """The characters' service. ``async with Service(settings) as svc:`` sets everything up
    (creating the data folder and migrating the database) and tears it down cleanly."""

    def __init__(self, settings: Settings | None = None, *, text=None, embedder=None, image=None):
        self.settings = settings or Settings()
        self._text = text
        self._embedder = embedder
        self._image = image
        self.store: Store | None = None
        self.manager: PersonaManager | None = None
        self.outbox: Outbox | None = None
        self.jobs = None  # db.jobs.JobTable
        self.media = None  # persona.media.MediaJobs
        self.worker = None  # the in-process job worker (when no queue URL is set)
        self.sweeper: OutboxSweeper | None = None  # set by serve(): poked when a job stored a reply
        self.studio_sweeper: OutboxSweeper | None = None  # the studio's (bots.studio.Studio), poked too
        self._worker_stop = asyncio.Event()
        self._worker_task: asyncio.Task | None = None
        self.bells = None  # generators.jobs.distributed.Bells, with VCHAR_QUEUE_URL

    async def __aenter__(self) -> Service:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)  # what did start is closed again
            raise

    async def _start(self) -> Service:
        s = self.settings
        s.ensure_dirs()
        url = s.resolved_database_url
        await upgrade_async(url)
        self.store = Store.from_url(url)
        self.outbox = Outbox(self.store, max_age=s.outbox_max_age, lease=s.outbox_lease)
        registry = registry_for(s)
        for problem in registry.problems:
            log.error("skipped persona file %s", problem.error)
        embedder = self._embedder or get_embedder(s.embed_model)
        text = self._text or build_text_generator(
            s.text_backend,
            model=s.text_model,
            base_url=s.text_base_url,
            api_key=s.text_api_key.get_secret_value() if s.text_api_key else None,
            timeout=s.text_timeout,
            max_retries=s.text_max_retries,
            embedder=embedder,
        )
        preflight = getattr(text, "preflight", None)
        if preflight is not None:  # a model that cannot load says so now, not on the first message
            await asyncio.to_thread(preflight)
        config = ManagerConfig(
            context_tokens=s.context_tokens,
            max_tokens=s.text_max_tokens,
            temperature=s.text_temperature,
            max_message_chars=s.max_message_chars,
            memory_every=s.memory_every,
            memory_recall=s.memory_recall,
            generation_timeout=s.text_timeout * (s.text_max_retries + 1) + 5,
            chat_rate=Rate.parse(s.chat_rate),
            media_rate=Rate.parse(s.media_rate),
            admins=admin_ids(s),
        )
        await asyncio.to_thread(install_sample_voices, s)
        image, voice, music, video = media_backends(s, image=self._image, offsite=bool(s.queue_url))
        self.media = await self._media_jobs(image, voice, music, video)
        self.manager = PersonaManager(self.store, registry, text, embedder, config, image=image, voice=voice,
                                      music=music, video=video, voices_root=s.voices_dir, jobs=self.media)
        await self.manager.start()
        log.info(
            "vchar ready: %d personas (%s), text backend %s, database %s",
            len(registry), ", ".join(p.id for p in registry), text.name, _safe_url(url),
        )
        return self

    async def _media_jobs(self, image, voice, music=None, video=None):
        """Media requests become jobs: run by the in-process worker (the default), or,
        with ``VCHAR_QUEUE_URL``, rung through taskiq to `vchar worker` processes."""
        from db.jobs import JobTable
        from generators.jobs import Worker
        from generators.jobs.runners import image_runner, music_runner, video_runner, voice_runner
        from persona.media import MediaJobs

        s = self.settings
        assert self.store is not None
        self.jobs = JobTable(self.store)
        media = MediaJobs(self.store, self.jobs, uploads=s.media_dir / "uploads", on_reply=self._poke_outbox)
        if s.queue_url:
            from generators.jobs.distributed import Bells

            self.bells = Bells(s.queue_url)
            await self.bells.start()  # a Redis that is down is said now, not on the first selfie

            async def ring(kind: str, job_id: int) -> None:
                await self.bells.ring(kind, job_id)

            media.bell = ring
            log.info("media jobs go to `vchar worker` processes through the queue")
            return media
        runners = {}
        if image is not None:
            runners["image"] = image_runner(image)
        if voice is not None:
            runners["voice"] = voice_runner(voice)
        if music is not None:
            runners["music"] = music_runner(music)
        if video is not None and voice is not None:
            runners["video"] = video_runner(video, voice)
        if runners:
            self.worker = Worker(self.jobs, runners, on_done=media.on_done, on_failed=media.on_failed,
                                 concurrency={"image": 2, "voice": 2, "music": s.music_batch, "video": 1},
                                 lease=s.job_lease)

            async def bell(kind: str, job_id: int) -> None:
                self.worker.ring()

            media.bell = bell
            media.local = self.worker
            self._worker_task = asyncio.create_task(self.worker.run(self._worker_stop), name="job worker")
        return media

    def _poke_outbox(self) -> None:
        for sweeper in (self.sweeper, self.studio_sweeper):
            if sweeper is not None:
                sweeper.poke()

    async def __aexit__(self, *exc) -> None:
        if self._worker_task is not None:
            self._worker_stop.set()
            await self._worker_task
        if self.bells is not None:
            await self.bells.close()
        if self.manager is not None:
            await self.manager.close()
            if self.manager.image is not None:
                await self.manager.image.aclose()
        if self.store is not None:
            await self.store.close()

    async def handle(self, msg: IncomingMessage, *, on_text=None) -> Reply | None:
        assert self.manager is not None, "use the service as an async context manager"
        return await self.manager.handle(msg, on_text=on_text)

    async def admits(self, msg: IncomingMessage) -> bool:
        """Asked by adapters before downloading a message's photo (see PersonaManager.admits)."""
        assert self.manager is not None, "use the service as an async context manager"
        return await self.manager.admits(msg, media=True)


async def record_media(settings: Settings, persona, assets: list[dict], *, registry=None) -> list[int]:
    """Record files made outside a chat (the command line) as media assets, as the chats
    do, so the database knows every file a character made. Each asset is a dict of
    ``kind``, ``path``, ``mime``, ``generator``, ``parameters`` and optionally ``seed``
    and ``duration``."""
    from pathlib import Path

    settings.ensure_dirs()
    url = settings.resolved_database_url
    await upgrade_async(url)
    store = Store.from_url(url)
    try:
        source = str(getattr(registry, "sources", {}).get(persona.id, "")) if registry is not None else ""
        pid = await store.ensure_persona(persona.id, persona.name, persona.model_dump(mode="json"), source)
        return [
            await store.add_media_asset(
                persona_id=pid, kind=a["kind"], path=str(Path(a["path"]).resolve()), mime=a["mime"],
                generator=a.get("generator"), parameters=dict(a.get("parameters") or {}), seed=a.get("seed"),
                duration=a.get("duration"),
            )
            for a in assets
        ]
    finally:
        await store.close()


def record_media_sync(settings: Settings, persona, assets: list[dict], *, registry=None, warn=None) -> list[int]:
    """:func:`record_media` from blocking code; a failure is reported through ``warn`` (the
    files are written either way) rather than raised."""
    try:
        return asyncio.run(record_media(settings, persona, assets, registry=registry))
    except Exception as exc:
        log.debug("recording media failed", exc_info=True)
        if warn is not None:
            text = str(exc).strip()
            warn(f"not recorded in the database ({type(exc).__name__}{': ' + text.splitlines()[0] if text else ''})")
        return []


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def platform_adapters(settings: Settings) -> list:
    """The platform adapters the settings configure (none: the terminal chat is used).

    ``VCHAR_TELEGRAM_TOKEN`` / ``VCHAR_DISCORD_TOKEN`` serve ``VCHAR_TELEGRAM_PERSONA`` /
    ``VCHAR_DISCORD_PERSONA`` (or the default persona). Any persona whose file names a
    ``platforms.<platform>.token_env`` gets its own bot too, so one process hosts several
    characters, each with its own token.
    """
    registry = registry_for(settings)
    bots: dict[str, list[tuple[str, str | None]]] = {"telegram": [], "discord": []}
    if settings.telegram_token is not None:
        bots["telegram"].append((settings.telegram_token.get_secret_value(), settings.telegram_persona or settings.default_persona))
    if settings.discord_token is not None:
        bots["discord"].append((settings.discord_token.get_secret_value(), settings.discord_persona or settings.default_persona))
    for persona in registry:
        for platform in ("telegram", "discord"):
            var = getattr(persona.platforms, platform).token_env
            if not var:
                continue
            token = os.environ.get(var)
            if not token:
                log.warning("persona %s names %s for its %s token, but it is not set", persona.id, var, platform)
            elif all(token != t for t, _ in bots[platform]):
                bots[platform].append((token, persona.id))
    adapters = []
    for token, persona_id in bots["telegram"]:
        from bots.telegram import TelegramAdapter

        adapters.append(
            TelegramAdapter(
                token,
                persona_id,
                api_url=settings.telegram_api_url,
                admin_ids=settings.telegram_admin_ids,
                webhook_url=settings.telegram_webhook_url,
                webhook_listen=settings.telegram_webhook_listen,
                webhook_port=settings.telegram_webhook_port,
                webhook_path=settings.telegram_webhook_path,
                webhook_secret=settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else None,
                poll_timeout=settings.telegram_poll_timeout,
                max_retries=settings.telegram_max_retries,
                overall_rate=settings.telegram_overall_rate,
                download_dir=settings.data_dir / "cache" / "downloads",
            )
        )
    for token, persona_id in bots["discord"]:
        from bots.discord_adapter import DiscordAdapter

        adapters.append(
            DiscordAdapter(token, persona_id, api_url=settings.discord_api_url, gateway_url=settings.discord_gateway_url,
                           download_dir=settings.data_dir / "cache" / "downloads")
        )
    return adapters


async def serve(settings: Settings, adapters: list, stop: asyncio.Event | None = None, *, studio: bool = False,
                on_studio=None) -> None:
    """Run the service with the given platform adapters until ``stop`` is set (or
    SIGINT/SIGTERM); with ``studio``, the studio too (``on_studio`` gets its address)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not supported
            pass
    async with Service(settings) as svc:
        started = []
        stoppers = []
        try:
            for adapter in adapters:
                await adapter.start(svc.handle, admit=svc.admits, outbox=svc.outbox)
                started.append(adapter)
                log.info("%s adapter live for persona %s", adapter.platform, adapter.persona or "(default)")
            assert svc.manager is not None and svc.outbox is not None
            if studio:
                from bots.studio import Studio

                web = Studio(settings, svc, platform_adapters=started)
                try:
                    await web.start()
                except OSError as exc:
                    await web.stop()
                    if not started:  # the studio is all there is to serve
                        raise
                    log.error("the studio did not start (%s); the platforms go on without it", exc)
                else:
                    stoppers.append(web.stop)
                    if on_studio is not None:
                        on_studio(web.url)
            sweeper = OutboxSweeper(svc.outbox, [(a, svc.manager.registry.get(a.persona).id) for a in started],
                                    interval=settings.outbox_poll, jobs=svc.jobs)
            svc.sweeper = sweeper
            sweeping = asyncio.create_task(sweeper.run(stop), name="outbox sweeper")
            posting = asyncio.create_task(run_posts(settings, svc, started, stop), name="scheduled posts")
            try:
                await stop.wait()
            finally:
                await sweeping
                await posting
        finally:
            for stop_it in stoppers:
                await stop_it()
            # Adapters finish the replies in flight while the manager and database are still up.
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception:
                    log.exception("stopping the %s adapter failed", adapter.platform)


def post_services(settings: Settings, svc, adapters: list):
    """The planner and publisher of scheduled posts for a running service."""
    from db.posts import PostTable
    from persona.posts.planner import Planner
    from persona.posts.publisher import Publisher

    m = svc.manager
    posts = PostTable(svc.store)
    media = {"image": m.image is not None, "voice": m.voice is not None, "music": m.music is not None,
             "video": m.video is not None}
    planner = Planner(svc.store, posts, m.text, jobs=svc.jobs, voices_root=settings.voices_dir, media=media,
                      bell=svc.media.bell if svc.media is not None else None)
    by_key = {(a.platform, m.registry.get(a.persona).id): a for a in adapters}
    if any(ch.platform == "discord-webhook" for p in m.registry if p.posts for ch in p.posts.channels.values()):
        from bots.discord_webhook import DiscordWebhookPoster

        def name_of(pid: str) -> str:
            try:
                return m.registry.get(pid).name
            except LookupError:
                return pid

        by_key[("discord-webhook", "*")] = DiscordWebhookPoster(name_of, api_url=settings.discord_api_url)
    admins = admin_ids(settings)

    async def notify(post, line: str) -> None:
        """A DM to the persona's operators on the post's platform."""
        persona = m.registry.get(str(post.content.get("persona") or ""))
        adapter = by_key.get((post.platform, persona.id))
        if adapter is None:
            return
        conf = getattr(persona.platforms, post.platform, None)
        for admin in sorted(set(admins.get(post.platform, ())) | set(conf.admin_ids if conf else ())):
            await adapter.send_text(admin, f"Post {post.id} ({post.channel}, {post.due_at:%a %d %b %H:%M} UTC): {line}\n"
                                           f"{post.text[:300]}")

    publisher = Publisher(posts, by_key, planner=planner, lease=settings.posts_lease, notify=notify,
                          registry=m.registry)
    return planner, publisher, PostApprovals(posts, planner, m.registry, by_key, admins)


class PostApprovals:
    """Drafts waiting for approval go to the persona's operators as a DM with Approve /
    Reject / Regenerate buttons (Telegram inline keyboards; elsewhere the text and the
    command to use), and the presses change the calendar."""

    def __init__(self, posts, planner, registry, adapters: dict, admins: dict[str, frozenset[str]]):
        self.posts, self.planner, self.registry = posts, planner, registry
        self.adapters, self.admins = adapters, admins

    def operators(self, persona, platform: str) -> list[str]:
        conf = getattr(persona.platforms, platform, None)
        return sorted(set(self.admins.get(platform, ())) | set(conf.admin_ids if conf else ()))

    @staticmethod
    def describe(post) -> str:
        when = post.due_at.astimezone(_zone(post.zone)).strftime("%a %d %b %H:%M")
        media = ", ".join(f.get("kind", "") for f in post.content.get("media") or [])
        return (f"Post {post.id} for {post.channel} on {when} {post.zone or 'UTC'} ({post.format}"
                f"{': ' + media if media else ''}):\n\n{post.text}")

    @staticmethod
    def choices(post) -> list[tuple[str, str]]:
        return [("Approve", f"post:approve:{post.id}"), ("Reject", f"post:reject:{post.id}"),
                ("Regenerate", f"post:regen:{post.id}")]

    async def ask(self) -> int:
        """DM each pending post not yet shown to its operators; returns how many were sent."""
        sent = 0
        for post in await self.posts.list(status="pending", limit=200):
            if post.content.get("asked"):
                continue
            try:
                persona = self.registry.get(str(post.content.get("persona")))
            except LookupError:
                continue
            for (platform, pid), adapter in self.adapters.items():
                if pid != persona.id:
                    continue
                for admin in self.operators(persona, platform):
                    try:
                        await adapter.send_choice(admin, self.describe(post), self.choices(post))
                        sent += 1
                    except Exception as exc:  # noqa: BLE001 - the command line still works
                        log.warning("posts: could not ask %s %s about post %d: %s", platform, admin, post.id, exc)
            await self.posts.set_content(post.id, {**post.content, "asked": True}, from_states=("pending",))
        return sent

    async def on_choice(self, platform: str, user_id: str, data: str) -> tuple[str, str | None]:
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "post" or not parts[2].isdigit():
            return "That button does nothing any more.", None
        action, post_id = parts[1], int(parts[2])
        post = await self.posts.get(post_id)
        if post is None:
            return "That post is gone.", None
        try:
            persona = self.registry.get(str(post.content.get("persona")))
        except LookupError:
            return "That persona is gone.", None
        if user_id not in self.operators(persona, platform):
            return "Only this character's operators can do that.", None
        who = f"{platform}:{user_id}"
        if action == "approve":
            row = await self.posts.change(post_id, from_states=("pending",), status="approved", approved_by=who)
            verdict = "Approved: it goes out on time."
        elif action == "reject":
            row = await self.posts.change(post_id, from_states=("pending", "approved"), status="rejected")
            verdict = "Rejected: it will not be posted."
        elif action == "regen":
            if post.status not in ("pending", "approved", "draft"):
                row = None
            else:
                row = await self.planner.regenerate(persona, post)
            if row is not None:
                return "Written again: the new draft is on its way.", self.describe(row) + "\n\n(rewritten)"
            verdict = ""
        else:
            return "That button does nothing any more.", None
        if row is None:
            return f"Post {post_id} is {post.status} now; nothing changed.", None
        return verdict, f"{self.describe(row)}\n\n{verdict}"


def _zone(name: str | None):
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name or "UTC")
    except Exception:  # noqa: BLE001 - an old row's zone
        return ZoneInfo("UTC")


async def run_posts(settings: Settings, svc, adapters: list, stop: asyncio.Event) -> None:
    """Plan the personas' coming slots now and every ``posts_plan_every`` seconds, and
    publish what is due every ``posts_poll`` seconds, until ``stop``."""
    planner, publisher, approvals = post_services(settings, svc, adapters)

    async def on_reactions(platform: str, chat_id: str, message_id: str, counts: dict, username: str | None) -> None:
        chats = [chat_id] + ([f"@{username}"] if username else [])
        post_id = await planner.posts.set_reactions(platform, chats, message_id, counts)
        if post_id is not None:
            log.debug("post %d reactions: %s", post_id, counts)

    for adapter in adapters:
        adapter.on_choice = approvals.on_choice
        adapter.on_reactions = on_reactions
    try:
        await _run_posts(settings, planner, publisher, approvals, svc.manager.registry, stop)
    finally:
        hook = publisher.adapters.get(("discord-webhook", "*"))
        if hook is not None:
            await hook.disconnect()


async def _run_posts(settings: Settings, planner, publisher, approvals, registry, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    next_plan = 0.0
    while not stop.is_set():
        if loop.time() >= next_plan:
            next_plan = loop.time() + settings.posts_plan_every
            for persona in registry:
                if persona.posts is None or not persona.posts.slots:
                    continue
                try:
                    made = await planner.plan(persona)
                    if made:
                        log.info("posts: %d drafts planned for %s", len(made), persona.id)
                except Exception:  # noqa: BLE001 - one persona's plan must not stop the others
                    log.exception("posts: planning %s failed", persona.id)
        try:
            await publisher.tick()
            await approvals.ask()
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.exception("posts: a publishing round failed")
        await wait_any(stop, None, settings.posts_poll)


class OutboxSweeper:
    """Sends what the outbox still holds: on start (what a crash left behind) and every
    ``interval`` seconds (replies whose first delivery failed, media a worker finished).
    Replies too old to send are dropped with a log line first."""

    def __init__(self, outbox: Outbox, adapters: list[tuple], interval: float = 2.0, jobs=None):
        self.outbox = outbox
        self.adapters = adapters  # (adapter, persona id) pairs
        self.interval = interval
        self.jobs = jobs  # db.jobs.JobTable: running jobs show progress on their acknowledgement
        self._shown: dict[int, str] = {}
        self._poke = asyncio.Event()

    def poke(self) -> None:
        """Look now rather than at the next tick (a job just stored a reply)."""
        self._poke.set()

    async def show_progress(self) -> int:
        """Edit each running job's acknowledgement with its stage and share, and show the
        chat what the character is busy with; returns how many messages were edited."""
        if self.jobs is None:
            return 0
        by_key = {(a.platform, persona): a for a, persona in self.adapters}
        edited, live = 0, set()
        for row in await self.jobs.running_acks():
            live.add(row["job"])
            adapter = by_key.get((row["platform"], row["persona"]))
            if adapter is None:
                continue
            await adapter.show_activity(row["chat_id"], row["kind"])
            if not row["stage"]:
                continue
            text = f"{row['text']}\n({row['stage']}, {int(round(row['progress'] * 100))}%)"
            if self._shown.get(row["job"]) != text:
                await adapter.edit_text(row["chat_id"], row["message_id"], text)
                self._shown[row["job"]] = text
                edited += 1
        for gone in set(self._shown) - live:
            self._shown.pop(gone, None)
        return edited

    async def sweep(self) -> int:
        """One pass; returns how many replies were delivered."""
        delivered = 0
        try:
            await self.show_progress()
        except Exception:  # noqa: BLE001 - progress is cosmetic: never stop deliveries for it
            log.exception("outbox: showing job progress failed")
        await self.outbox.drop_stale()
        for adapter, persona in self.adapters:
            for reply in await self.outbox.due(adapter.platform, persona):
                try:
                    if await adapter.deliver(reply):
                        delivered += 1
                        log.info("outbox: sent reply %s on %s", reply.message_db_id, adapter.platform)
                except Exception as exc:  # noqa: BLE001 - one bad reply must not stop the others
                    log.error("outbox: reply %s on %s failed: %s", reply.message_db_id, adapter.platform, exc)
        return delivered

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a database hiccup: try again next tick
                log.exception("outbox: sweep failed")
            self._poke.clear()
            await wait_any(stop, self._poke, self.interval)
