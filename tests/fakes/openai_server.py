"""A real, local OpenAI-compatible HTTP server for tests.

    async with FakeOpenAIServer(reply="hello there") as srv:
        gen = OpenAITextGenerator(base_url=srv.base_url, model="fake")
        ...
        assert srv.requests[0].body["messages"][-1]["content"] == "hi"

Serves ``POST /v1/chat/completions`` (plain JSON or SSE streaming) and
``GET /v1/models`` on 127.0.0.1 at a free port. ``reply`` may be a string or a
function of the parsed request body (sync or async) returning a string.
Failures are programmable: ``fail_next(n, status=500)`` (429 answers carry a
``Retry-After``), ``hang_next(n, seconds)``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Reply = str | Callable[[dict[str, Any]], "str | Awaitable[str]"]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages", []))

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content", ""))
        return ""


@dataclass
class _Fault:
    kind: str  # "status" | "hang"
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = "fake failure"


def echo_last_user(body: dict[str, Any]) -> str:
    """A reply function: echoes the last user message as ``echo: ...``."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            return f"echo: {m.get('content', '')}"
    return "echo:"


class FakeOpenAIServer:
    def __init__(
        self,
        reply: Reply = "Hello from the fake server.",
        *,
        models: tuple[str, ...] = ("fake-model",),
        chunk_size: int = 4,
        chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.reply = reply
        self.models = models
        self.chunk_size = max(1, chunk_size)
        self.chunk_delay = chunk_delay
        self.host = host
        self.port: int | None = None
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._hanging: set[asyncio.Future] = set()

    # -- programming failures ---------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        retry_after: float | None = None,
        message: str = "fake failure",
    ) -> None:
        """The next ``n`` completion requests answer ``status`` (429 gets Retry-After, default 0.05s)."""
        if status == 429 and retry_after is None:
            retry_after = 0.05
        for _ in range(n):
            self._faults.append(
                _Fault("status", status=status, retry_after=retry_after, message=message)
            )

    def hang_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """The next ``n`` completion requests wait ``seconds`` before answering normally."""
        for _ in range(n):
            self._faults.append(_Fault("hang", seconds=seconds))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    async def start(self) -> FakeOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server  # the asyncio server, to learn the port picked
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for fut in list(self._hanging):
            if not fut.done():
                fut.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers ------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), None)
        )
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        if not isinstance(body, dict) or "messages" not in body:
            return _error(400, "request body must be JSON with messages", "invalid_request_error")

        if self._faults:
            fault = self._faults.pop(0)
            if fault.kind == "status":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(max(1, math.ceil(fault.retry_after)))
                    headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
                err_type = "rate_limit_error" if fault.status == 429 else "server_error"
                return _error(fault.status, fault.message, err_type, headers)
            if fault.kind == "hang":
                fut = asyncio.get_running_loop().create_future()
                self._hanging.add(fut)
                try:
                    await asyncio.wait_for(fut, fault.seconds)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
                finally:
                    self._hanging.discard(fut)

        text = self.reply(body) if callable(self.reply) else self.reply
        if inspect.isawaitable(text):
            text = await text
        text = str(text)
        model = body.get("model", self.models[0] if self.models else "fake-model")
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())

        if body.get("stream"):
            return await self._stream(request, text, model, cid, created)

        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": max(1, len(text) // 4),
                    "total_tokens": 1 + max(1, len(text) // 4),
                },
            }
        )

    async def _stream(
        self, request: web.Request, text: str, model: str, cid: str, created: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        await resp.write(chunk({"role": "assistant", "content": ""}))
        for i in range(0, len(text), self.chunk_size):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await resp.write(chunk({"content": text[i : i + self.chunk_size]}))
        await resp.write(chunk({}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _error(
    status: int, message: str, err_type: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": err_type, "param": None, "code": None}},
        status=status,
        headers=headers,
    )
