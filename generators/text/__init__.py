"""Text generation backends: lite (embedded default), transformers (local model), openai (any compatible server)."""

from __future__ import annotations

from generators.text.base import (
    ChatMessage,
    Example,
    TextGenerationError,
    TextGenerator,
    TextRequest,
    estimate_tokens,
)

__all__ = [
    "ChatMessage",
    "Example",
    "TextGenerationError",
    "TextGenerator",
    "TextRequest",
    "build_text_generator",
    "estimate_tokens",
]

DEFAULT_TRANSFORMERS_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def build_text_generator(
    backend: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    embedder=None,
) -> TextGenerator:
    """The configured backend. Heavy imports happen only for the backend chosen."""
    if backend == "lite":
        from generators.embed import get_embedder
        from generators.text.lite import LiteTextGenerator

        return LiteTextGenerator(embedder or get_embedder())
    if backend == "openai":
        if not base_url:
            raise TextGenerationError(
                "VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_BASE_URL (for example http://127.0.0.1:8000/v1 "
                "for vLLM, http://127.0.0.1:11434/v1 for Ollama)"
            )
        if not model:
            raise TextGenerationError("VCHAR_TEXT_BACKEND=openai needs VCHAR_TEXT_MODEL (the server's model name)")
        from generators.text.openai_backend import OpenAITextGenerator

        return OpenAITextGenerator(base_url=base_url, model=model, api_key=api_key, timeout=timeout, max_retries=max_retries)
    if backend == "transformers":
        try:
            from generators.text.transformers_backend import TransformersTextGenerator
        except ImportError as exc:
            raise TextGenerationError(
                f"the transformers backend needs its extra: pip install 'vchar[transformers]' ({exc})"
            ) from exc
        return TransformersTextGenerator(model=model or DEFAULT_TRANSFORMERS_MODEL)
    raise TextGenerationError(f"unknown text backend {backend!r}; use lite, transformers or openai")
