"""The studio's gate: a token login (or a password), sessions, CSRF, capped request bodies,
and file paths that never come from a request unchecked."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from urllib.parse import urlencode

from cachetools import LRUCache
from fastapi import HTTPException, Request

COOKIE = "vchar_studio"  # + the port: two studios on one host keep their own sessions
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Auth:
    """Who may use the studio: whoever opens the link with the token printed at start, or
    types the token or ``VCHAR_STUDIO_PASSWORD`` on the login page. A session is a random
    cookie known only to this process; each has its own CSRF token."""

    def __init__(self, token: str | None = None, password: str | None = None, max_sessions: int = 1000):
        self.token = token or secrets.token_urlsafe(24)
        self.password = password or None
        self._sessions: LRUCache = LRUCache(maxsize=max_sessions)  # session id -> CSRF token

    def accepts(self, secret: str | None) -> bool:
        if not secret:
            return False
        ok = secrets.compare_digest(secret.encode(), self.token.encode())
        if self.password:
            ok |= secrets.compare_digest(secret.encode(), self.password.encode())
        return ok

    def open_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = secrets.token_urlsafe(32)
        return sid

    def csrf(self, sid: str | None) -> str | None:
        return self._sessions.get(sid) if sid else None

    def close_session(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


def cookie_name(request: Request, name: str = COOKIE) -> str:
    """A cookie's name for this studio: browsers share cookies across a host's ports."""
    return f"{name}_{request.url.port or (443 if request.url.scheme == 'https' else 80)}"


def path_of(request: Request) -> str:
    """The path the router sees (the scope's own, never rebuilt from the Host header)."""
    return request.scope.get("path") or "/"


def without_token(request: Request) -> str:
    """The address asked for, the token taken out (it must not stay in the history); always
    a path on this site (``//elsewhere`` becomes ``/elsewhere``)."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return "/" + path_of(request).lstrip("/") + (f"?{urlencode(rest)}" if rest else "")


async def check_csrf(request: Request) -> None:
    """Every form and every change carries the session's CSRF token (a form field
    ``csrf`` or the ``X-CSRF-Token`` header, which the studio's pages add)."""
    if request.method in SAFE_METHODS or path_of(request) == "/login":
        return
    expected = getattr(request.state, "csrf", None)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            given = (await request.form()).get("csrf")
    if not expected or not isinstance(given, str) or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "This form is out of date or did not come from the studio: reload the page and try again.")


class BodyLimit:
    """Refuses a request body over ``limit`` bytes: by its Content-Length before a byte
    is read, or, sent in chunks, as soon as the count passes the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            declared = int(length) if length is not None else 0
        except ValueError:
            declared = self.limit + 1
        if declared > self.limit:
            return await self._refuse(send)
        seen = 0
        over = False  # past the cap: reading stops, and whatever the app answers becomes a 413
        refused = False

        async def counted():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watched(message):
            nonlocal refused
            if not over:
                return await send(message)
            if not refused:
                refused = True
                await self._refuse(send)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not over:
                raise
            # the app gave up on the cut-off body (a ClientDisconnect while reading a form)
        if over and not refused:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        mb = self.limit / (1024 * 1024)
        body = (f"<!doctype html><title>Too large</title><p>That is more than the studio takes in one request "
                f"({mb:.0f} MB, VCHAR_STUDIO_MAX_UPLOAD).</p>").encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def inside(path: str | Path, roots: list[Path]) -> Path | None:
    """``path`` resolved, if it is a file under one of ``roots``; else None. Files the
    studio serves are named by database rows and persona files, never by a request, and
    even those are served only from the data, media and personas folders."""
    try:
        p = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    for root in roots:
        try:
            if p.is_file() and p.is_relative_to(root.resolve()):
                return p
        except OSError:
            continue
    return None


_wrong = asyncio.Lock()


async def slow_down() -> None:
    """A wrong login costs a second, one wrong login at a time: guessing a password (the
    token is too long to guess anyway) cannot go faster by trying in parallel."""
    async with _wrong:
        await asyncio.sleep(1.0)
