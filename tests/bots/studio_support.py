"""Fixtures for the studio's tests: a started service with the studio built on it, and a
logged-in in-process client (httpx through the app's own ASGI stack, body limit included)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest_asyncio

TOKEN = "test-token-for-the-studio"


class StudioClient:
    """An httpx client logged in to the studio, with the session's CSRF token at hand."""

    def __init__(self, client: httpx.AsyncClient, studio):
        self.http, self.studio = client, studio
        self.csrf = ""

    async def login(self) -> None:
        r = await self.http.get(f"/chat?token={TOKEN}", follow_redirects=True)
        assert r.status_code == 200, r.text[:500]
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)

    async def get(self, url: str, **kw) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def post(self, url: str, data: dict | None = None, files=None, headers: dict | None = None, **kw):
        """A form post carrying the CSRF token, as the pages send it."""
        return await self.http.post(url, data={"csrf": self.csrf, **(data or {})}, files=files,
                                    headers=headers or {}, **kw)


def studio_settings(tmp_path: Path, db_url: str, **extra):
    from bots.settings import Settings

    return Settings(data_dir=tmp_path / "data", database_url=db_url, personas_dir=tmp_path / "personas",
                    studio_port=0, **extra)


@pytest_asyncio.fixture
async def studio(tmp_path, db_url, embedder):
    """A started Service and its Studio (built, not served), on SQLite and on PostgreSQL:
    ``(studio, client)``."""
    async for pair in _studio(tmp_path, db_url, embedder):
        yield pair


@pytest_asyncio.fixture
async def studio_sqlite(tmp_path, embedder):
    """The same on SQLite only (pages whose queries the PostgreSQL runs already cover)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'vchar.db'}"  # the service migrates it as it starts
    async for pair in _studio(tmp_path, url, embedder):
        yield pair


async def _studio(tmp_path, db_url, embedder, **extra):
    from bots.service import Service
    from bots.studio import Studio

    if db_url.startswith("postgresql"):  # the session's schema: emptied, as the store fixture does
        from sqlalchemy import delete

        from db.models import Base
        from db.store import Store

        store = Store.from_url(db_url)
        async with store.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))
        await store.close()
    settings = studio_settings(tmp_path, db_url, **extra)
    async with Service(settings, embedder=embedder) as svc:
        web = await Studio(settings, svc, token=TOKEN).start(serve=False)
        transport = httpx.ASGITransport(app=web.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            client = StudioClient(http, web)
            await client.login()
            yield web, client
        await web.stop()
