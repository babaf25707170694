"""The studio: a local web app where operators see and shape their characters.

``Studio(settings, svc)`` runs inside a started :class:`bots.service.Service`: a studio
chat adapter per persona (``platform="studio"``), its outbox sweeper, and the FastAPI app
served by uvicorn on ``VCHAR_STUDIO_HOST:VCHAR_STUDIO_PORT``. :attr:`Studio.url` carries
the login token, as Jupyter's address does.
"""

from __future__ import annotations

import asyncio
import logging

from bots.studio.adapter import OPERATOR_ID, Hub, StudioAdapter

log = logging.getLogger(__name__)

__all__ = ["OPERATOR_ID", "Hub", "Studio", "StudioAdapter"]


def operator_name(settings) -> str:
    """How the characters address the studio's operator: ``VCHAR_CHAT_USER``, else "Operator"."""
    return settings.chat_user or "Operator"


class Studio:
    def __init__(self, settings, svc, *, token: str | None = None, platform_adapters: list | None = None):
        self.settings, self.svc = settings, svc
        self.token = token
        self.platform_adapters = platform_adapters or []
        self.hub = Hub()
        self.adapters: dict[str, StudioAdapter] = {}
        self.app = None
        self.asgi = None
        self.auth = None
        self.server = None
        self.sweeper = None
        self._stop = asyncio.Event()
        self._sweeping: asyncio.Task | None = None

    @property
    def url(self) -> str:
        assert self.server is not None and self.auth is not None
        return self.server.url(self.auth.token)

    def build(self):
        """The app, its adapters started (without serving it: tests call it in process)."""
        from bots.service import OutboxSweeper, post_services
        from bots.studio.app import StudioContext, create_app
        from bots.studio.security import Auth, BodyLimit

        s, svc = self.settings, self.svc
        for persona in svc.manager.registry:
            self.adapters[persona.id] = StudioAdapter(persona.id, self.hub, user_name=operator_name(s))
        planner, publisher, _ = post_services(s, svc, self.platform_adapters)
        ctx = StudioContext(s, svc, self.hub, self.adapters, posts=planner.posts, planner=planner, publisher=publisher)
        self.auth = Auth(self.token, s.studio_password.get_secret_value() if s.studio_password else None)
        self.app = create_app(ctx, self.auth)
        self.asgi = BodyLimit(self.app, s.studio_max_upload)  # what is served: bodies capped first
        self.sweeper = OutboxSweeper(svc.outbox, [(a, pid) for pid, a in self.adapters.items()],
                                     interval=s.outbox_poll, jobs=svc.jobs)
        return self.app

    async def start(self, *, serve: bool = True) -> Studio:
        from bots.studio.server import StudioServer

        self.build()
        for adapter in self.adapters.values():
            await adapter.start(self.svc.handle, outbox=self.svc.outbox)
        self.svc.studio_sweeper = self.sweeper
        self._sweeping = asyncio.create_task(self.sweeper.run(self._stop), name="studio outbox")
        if serve:
            self.server = StudioServer(self.asgi, self.settings.studio_host, self.settings.studio_port)
            await self.server.start()
            log.info("studio at %s", self.url.split("?")[0])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        self._stop.set()
        if self._sweeping is not None:
            await self._sweeping
        for adapter in self.adapters.values():
            await adapter.stop()

    async def __aenter__(self) -> Studio:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
