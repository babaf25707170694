"""The studio's FastAPI application: the gate, the shared page helpers, media files.

The views (chat, personas, people, posts, jobs, stats) live in their own modules and
hold no business logic: they call the persona manager, the store, the post planner and
the job table, as the platform adapters do.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import Annotated

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from bots.studio.adapter import Hub, StudioAdapter
from bots.studio.security import Auth, check_csrf, cookie_name, inside, path_of, slow_down, without_token

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

# on every answer: only the studio's own scripts run (no inline script, no other origin), it
# is never framed by another page, and the address (the login token) never leaves in a Referer
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# a database id from the address: anything the tables cannot hold is refused as invalid (422)
MAX_ID = 2**63 - 1
Id = Annotated[int, PathParam(ge=0, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=0, le=MAX_ID)]
Index = Annotated[int, PathParam(ge=0, le=10_000)]

NAV = (("chat", "Chat"), ("personas", "Personas"), ("people", "People"), ("posts", "Posts"), ("jobs", "Jobs"),
       ("stats", "Stats"))


@dataclass
class StudioContext:
    """What the views work with: the running service's parts."""

    settings: Any  # bots.settings.Settings
    svc: Any  # bots.service.Service: manager, store, jobs, media
    hub: Hub
    adapters: dict[str, StudioAdapter] = field(default_factory=dict)  # persona id -> its studio chat
    posts: Any = None  # db.posts.PostTable
    planner: Any = None  # persona.posts.planner.Planner
    publisher: Any = None  # persona.posts.publisher.Publisher

    @property
    def manager(self):
        return self.svc.manager

    @property
    def store(self):
        return self.svc.store

    @property
    def registry(self):
        return self.svc.manager.registry

    async def adapter(self, persona_id: str) -> StudioAdapter:
        """The persona's studio chat, started now if the persona is new since the studio
        started (imported here or on the command line, then reloaded)."""
        adapter = self.adapters.get(persona_id)
        if adapter is not None:
            return adapter
        from bots.studio import operator_name

        adapter = StudioAdapter(persona_id, self.hub, user_name=operator_name(self.settings))
        await adapter.start(self.svc.handle, outbox=self.svc.outbox)
        self.adapters[persona_id] = adapter
        sweeper = getattr(self.svc, "studio_sweeper", None)  # what the outbox holds for it reaches it too
        if sweeper is not None:
            sweeper.adapters.append((adapter, persona_id))
        return adapter

    def roots(self) -> list[Path]:
        """The folders files may be served from."""
        from persona.registry import SAMPLES

        s = self.settings
        return [s.media_dir, s.data_dir, s.resolved_personas_dir, SAMPLES]


def context(request: Request) -> StudioContext:
    return request.app.state.ctx


def render(request: Request, name: str, status_code: int = 200, **values) -> HTMLResponse:
    ctx = context(request)
    current = values.get("persona")
    personas = sorted(ctx.registry, key=lambda p: p.name.lower())
    base = dict(request=request, csrf=getattr(request.state, "csrf", ""), personas=personas, nav=NAV,
                current=current, section=values.get("section", ""))
    return templates.TemplateResponse(request, name, {**base, **values}, status_code=status_code)


# a message shown once on the next page: a short-lived cookie, never the address (a crafted
# link cannot put words on the page)
FLASH = "vchar_flash"


def back(request: Request, url: str, message: str, bad: bool = False) -> RedirectResponse:
    """Go to ``url`` (303) and show ``message`` there once."""
    response = RedirectResponse(url, status_code=303)
    value = base64.urlsafe_b64encode(json.dumps([message, bad]).encode()).decode()
    response.set_cookie(cookie_name(request, FLASH), value, max_age=60, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


def page(request: Request, name: str, status_code: int = 200, **values):
    """``render`` with the waiting flash message (taken once), unless ``flash`` is given."""
    raw = request.cookies.get(cookie_name(request, FLASH))
    if "flash" not in values:
        try:
            values["flash"], values["bad"] = json.loads(base64.urlsafe_b64decode(raw or ""))
        except (ValueError, TypeError):
            values["flash"], values["bad"] = "", False
    response = render(request, name, status_code=status_code, **values)
    if raw:
        response.delete_cookie(cookie_name(request, FLASH), path="/")
    return response


def persona_or_404(request: Request, persona_id: str):
    try:
        return context(request).registry.get(persona_id)
    except LookupError:
        raise HTTPException(404, f"There is no persona {persona_id!r}.") from None


def login_page(request: Request, error: str = "", status_code: int = 401) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"request": request, "error": error,
                                                               "password": bool(request.app.state.auth.password)},
                                      status_code=status_code)


def create_app(ctx: StudioContext, auth: Auth) -> FastAPI:
    from bots.studio import chat, jobs, people, personas, posts, stats

    app = FastAPI(title="vchar studio", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(check_csrf)])
    app.state.ctx = ctx
    app.state.auth = auth
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def gate(request: Request, call_next):
        response = await _gate(request, call_next)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _gate(request: Request, call_next):
        path = path_of(request)
        if path.startswith("/static/") or path == "/login":
            return await call_next(request)
        token = request.query_params.get("token")
        if token is not None:
            if not auth.accepts(token):
                await slow_down()
                return login_page(request, "That link's token is not this studio's: it changes every time the "
                                           "service starts. Use the address it printed last.")
            sid = auth.open_session()
            response = RedirectResponse(without_token(request), status_code=303)
            _set_cookie(request, response, sid)
            return response
        sid = request.cookies.get(cookie_name(request))
        csrf = auth.csrf(sid)
        if csrf is None:
            return login_page(request)
        request.state.sid, request.state.csrf = sid, csrf
        return await call_next(request)

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request):
        return login_page(request, status_code=200)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        secret = form.get("secret")
        if not auth.accepts(secret if isinstance(secret, str) else None):
            await slow_down()
            return login_page(request, "That is not the studio's token or password.")
        response = RedirectResponse("/", status_code=303)
        _set_cookie(request, response, auth.open_session())
        return response

    @app.post("/logout")
    async def logout(request: Request):
        auth.close_session(request.cookies.get(cookie_name(request)))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(cookie_name(request), path="/")
        return response

    @app.get("/")
    async def home(request: Request):
        return RedirectResponse(f"/chat/{ctx.registry.default_id}", status_code=303)

    @app.get("/media/{asset_id}")
    async def media(request: Request, asset_id: Id):
        row = await ctx.store.media_asset(asset_id)
        path = inside(row["path"], ctx.roots()) if row else None
        if path is None:
            raise HTTPException(404, "That file is gone.")
        return FileResponse(path, media_type=row["mime"])

    @app.get("/portrait/{persona_id}/{index}")
    async def portrait(request: Request, persona_id: str, index: Index):
        p = persona_or_404(request, persona_id)
        portraits = p.identity.portraits
        path = inside(portraits[index], ctx.roots()) if 0 <= index < len(portraits) else None
        if path is None:
            raise HTTPException(404, "That portrait is gone.")
        return FileResponse(path)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own is a subclass: both come here
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 401:
            return login_page(request)
        return _error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        what = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
        return _error_page(request, 422, f"That request is not one the studio understands ({what}).")

    for module in (chat, personas, people, posts, jobs, stats):
        app.include_router(module.router)
    return app


def _set_cookie(request: Request, response: Response, sid: str) -> None:
    response.set_cookie(cookie_name(request), sid, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    if getattr(request.state, "csrf", None) is None:  # not logged in (a 404 on the login page's neighbours)
        return login_page(request)
    return render(request, "error.html", status_code=status, message=message, status=status)
