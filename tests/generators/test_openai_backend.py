"""OpenAITextGenerator, with the real openai client, against a local fake server."""

from __future__ import annotations

import socket
import time

import pytest

from generators.text.base import ChatMessage, TextGenerationError, TextGenerator, TextRequest
from generators.text.openai_backend import OpenAITextGenerator
from tests.fakes.openai_server import FakeOpenAIServer, echo_last_user

SECRET = "sk-test-secret-do-not-leak"


def _request(text: str = "hello bot", **kw) -> TextRequest:
    return TextRequest(
        messages=(
            ChatMessage("system", "You are Ada, a terse engineer."),
            ChatMessage("user", text),
        ),
        **kw,
    )


async def test_generate_non_streaming():
    async with FakeOpenAIServer(reply=echo_last_user) as srv:
        gen = OpenAITextGenerator(base_url=srv.base_url, model="fake-model")
        try:
            assert isinstance(gen, TextGenerator)
            assert gen.name == "openai"
            out = await gen.generate(_request("how are you?"))
        finally:
            await gen.aclose()
    assert out == "echo: how are you?"
    assert len(srv.completion_requests) == 1
    assert not srv.completion_requests[0].body.get("stream")


async def test_stream_yields_deltas():
    reply = "The quick brown fox jumps over the lazy dog."
    async with FakeOpenAIServer(reply=reply, chunk_size=5) as srv:
        gen = OpenAITextGenerator(base_url=srv.base_url, model="fake-model")
        try:
            pieces = [p async for p in gen.stream(_request())]
        finally:
            await gen.aclose()
    assert len(pieces) > 1
    assert "".join(pieces) == reply
    assert srv.completion_requests[0].body["stream"] is True


async def test_parameters_arrive_at_server():
    async with FakeOpenAIServer(reply="ok") as srv:
        gen = OpenAITextGenerator(base_url=srv.base_url, model="my-model", api_key=SECRET)
        try:
            await gen.generate(
                _request("ping", max_tokens=17, temperature=0.3, top_p=0.9, stop=("\nUser:",), seed=7)
            )
        finally:
            await gen.aclose()
    (req,) = srv.completion_requests
    body = req.body
    assert body["model"] == "my-model"
    assert body["messages"] == [
        {"role": "system", "content": "You are Ada, a terse engineer."},
        {"role": "user", "content": "ping"},
    ]
    assert body["max_tokens"] == 17
    assert body["temperature"] == pytest.approx(0.3)
    assert body["top_p"] == pytest.approx(0.9)
    assert body["stop"] == ["\nUser:"]
    assert body["seed"] == 7
    assert req.headers.get("Authorization") == f"Bearer {SECRET}"


async def test_default_api_key_for_local_servers():
    async with FakeOpenAIServer(reply="ok") as srv:
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m")
        try:
            await gen.generate(_request())
        finally:
            await gen.aclose()
    assert srv.completion_requests[0].headers["Authorization"] == "Bearer not-needed"


async def test_server_error_is_retried():
    async with FakeOpenAIServer(reply="recovered") as srv:
        srv.fail_next(1, status=500)
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", max_retries=2)
        try:
            out = await gen.generate(_request())
        finally:
            await gen.aclose()
    assert out == "recovered"
    assert len(srv.completion_requests) == 2


async def test_rate_limit_is_retried_after_retry_after():
    async with FakeOpenAIServer(reply="later") as srv:
        srv.fail_next(1, status=429, retry_after=0.05)
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", max_retries=1)
        try:
            pieces = [p async for p in gen.stream(_request())]
        finally:
            await gen.aclose()
    assert "".join(pieces) == "later"
    assert len(srv.completion_requests) == 2


async def test_persistent_failure_raises_after_retries():
    async with FakeOpenAIServer(reply="never") as srv:
        srv.fail_next(5, status=503, message="overloaded")
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", api_key=SECRET, max_retries=1)
        try:
            with pytest.raises(TextGenerationError) as info:
                await gen.generate(_request())
        finally:
            await gen.aclose()
    msg = str(info.value)
    assert "503" in msg and "overloaded" in msg
    assert srv.base_url in msg and "'m'" in msg
    assert SECRET not in msg
    assert len(srv.completion_requests) == 2


async def test_client_error_is_not_retried():
    async with FakeOpenAIServer(reply="never") as srv:
        srv.fail_next(1, status=400, message="bad stop")
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", max_retries=2)
        try:
            with pytest.raises(TextGenerationError, match="400"):
                await gen.generate(_request())
        finally:
            await gen.aclose()
    assert len(srv.completion_requests) == 1


async def test_hanging_server_times_out_quickly():
    async with FakeOpenAIServer(reply="too late") as srv:
        srv.hang_next(1, seconds=10)
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", timeout=0.5, max_retries=0)
        try:
            start = time.monotonic()
            with pytest.raises(TextGenerationError) as info:
                await gen.generate(_request())
            elapsed = time.monotonic() - start
        finally:
            await gen.aclose()
    assert elapsed < 3
    assert "timed out" in str(info.value)
    assert srv.base_url in str(info.value)


async def test_hanging_server_times_out_when_streaming():
    async with FakeOpenAIServer(reply="too late") as srv:
        srv.hang_next(1, seconds=10)
        gen = OpenAITextGenerator(base_url=srv.base_url, model="m", timeout=0.5, max_retries=0)
        try:
            start = time.monotonic()
            with pytest.raises(TextGenerationError, match="timed out"):
                async for _ in gen.stream(_request()):
                    pass
            assert time.monotonic() - start < 3
        finally:
            await gen.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    gen = OpenAITextGenerator(base_url=url, model="m", api_key=SECRET, timeout=2, max_retries=0)
    try:
        with pytest.raises(TextGenerationError) as info:
            await gen.generate(_request())
        with pytest.raises(TextGenerationError) as info2:
            async for _ in gen.stream(_request()):
                pass
    finally:
        await gen.aclose()
    for e in (info.value, info2.value):
        assert url in str(e)
        assert "connect" in str(e)
        assert SECRET not in str(e)


async def test_models_endpoint():
    import aiohttp

    async with FakeOpenAIServer(models=("a", "b")) as srv:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{srv.base_url}/models") as r:
                data = await r.json()
    assert [m["id"] for m in data["data"]] == ["a", "b"]


def test_count_tokens_is_an_estimate():
    gen = OpenAITextGenerator(base_url="http://127.0.0.1:1/v1", model="m")
    assert gen.count_tokens("") == 0
    assert gen.count_tokens("abcdefgh") == 2


def test_missing_settings_are_explained():
    with pytest.raises(TextGenerationError, match="VCHAR_TEXT_BASE_URL"):
        OpenAITextGenerator(base_url="", model="m")


async def test_errors_never_carry_the_url_credentials_or_the_key():
    """A server URL with credentials in it and an API key: the error names the server
    by its public address only."""
    from generators.text.base import ChatMessage, TextGenerationError, TextRequest
    from generators.text.openai_backend import OpenAITextGenerator

    backend = OpenAITextGenerator("http://ops:hunter2pass@127.0.0.1:9/v1?token=qwertyuiop", "m",
                                  api_key="sk-verysecretkey", timeout=1, max_retries=0)
    try:
        with pytest.raises(TextGenerationError) as failed:
            await backend.generate(TextRequest(messages=(ChatMessage("user", "hi"),)))
    finally:
        await backend.aclose()
    text = str(failed.value) + repr(backend)
    assert "127.0.0.1:9/v1" in text
    for secret in ("hunter2pass", "ops:", "qwertyuiop", "sk-verysecretkey"):
        assert secret not in text
