"""Text generation through any OpenAI-compatible chat completions server.

Works against vLLM, Ollama (``/v1``), llama.cpp's server, LM Studio, or OpenAI
itself, using the official ``openai`` client. Timeouts and retries (connection
errors, 408/409/429 and 5xx, with exponential backoff honouring
``Retry-After``) are the client's own; every failure comes out as a
:class:`~generators.text.base.TextGenerationError` naming the server and model
(never the API key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI

from generators.redact import public_url, scrub

from .base import TextGenerationError, TextRequest, estimate_tokens

# Local servers usually ignore the key, but the client insists on one.
_NO_KEY = "not-needed"


class OpenAITextGenerator:
    """Chat completions against an OpenAI-compatible ``base_url`` (e.g. ``http://localhost:8000/v1``)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        if not base_url:
            raise TextGenerationError(
                "the openai text backend needs a server URL: set VCHAR_TEXT_BASE_URL "
                "(e.g. http://localhost:8000/v1 for vLLM, http://localhost:11434/v1 for Ollama)"
            )
        if not model:
            raise TextGenerationError(
                f"the openai text backend needs a model name for {public_url(base_url)}: set VCHAR_TEXT_MODEL"
            )
        self.base_url = base_url.rstrip("/")
        self.public_url = public_url(self.base_url)  # what logs and errors show
        self._api_key = api_key or ""
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or _NO_KEY,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def __repr__(self) -> str:  # no api key here, ever
        return f"OpenAITextGenerator(base_url={self.public_url!r}, model={self.model!r})"

    # -- helpers ---------------------------------------------------------------

    def _params(self, request: TextRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        return params

    def _error(self, exc: BaseException) -> TextGenerationError:
        where = f"text server {self.public_url} (model {self.model!r})"
        if isinstance(exc, openai.APITimeoutError):
            detail = f"timed out after {self.timeout:g}s"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = "could not connect" + (f": {cause}" if cause else "")
        elif isinstance(exc, openai.AuthenticationError):
            detail = "rejected the API key (HTTP 401); check VCHAR_TEXT_API_KEY"
        elif isinstance(exc, openai.NotFoundError):
            detail = (
                f"answered 404 ({_message(exc)}); check the model name and that the URL "
                "ends in /v1"
            )
        elif isinstance(exc, openai.APIStatusError):
            detail = f"answered HTTP {exc.status_code}: {_message(exc)}"
        elif isinstance(exc, openai.OpenAIError):
            detail = str(exc) or type(exc).__name__
        elif "timeout" in type(exc).__name__.lower():  # a read timeout mid-stream
            detail = f"timed out after {self.timeout:g}s"
        else:
            detail = f"failed: {type(exc).__name__}: {exc}"
        if self.max_retries and isinstance(
            exc, (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
        ):
            detail += f" (after {self.max_retries} retries)"
        # a connection error may quote the URL with its credentials, a server may echo the key
        secret_url = self.base_url if self.base_url != self.public_url else None
        return TextGenerationError(scrub(f"{where} {detail}", secret_url, self._api_key))

    # -- TextGenerator -----------------------------------------------------------

    async def generate(self, request: TextRequest) -> str:
        try:
            completion = await self._client.chat.completions.create(**self._params(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes TextGenerationError
            raise self._error(exc) from exc
        choices = getattr(completion, "choices", None)
        if not choices:
            raise TextGenerationError(
                f"text server {self.public_url} (model {self.model!r}) returned no choices"
            )
        return choices[0].message.content or ""

    async def stream(self, request: TextRequest) -> AsyncIterator[str]:
        try:
            chunks = await self._client.chat.completions.create(
                **self._params(request), stream=True
            )
            try:
                async for chunk in chunks:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    text = getattr(delta, "content", None) if delta is not None else None
                    if text:
                        yield text
            finally:
                await chunks.close()
        except Exception as exc:  # noqa: BLE001 - every failure becomes TextGenerationError
            raise self._error(exc) from exc

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        await self._client.close()


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return exc.message or "no details"
