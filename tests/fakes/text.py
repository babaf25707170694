"""A scripted text backend for tests: records prompts, answers from a script, or fails."""

from __future__ import annotations

from generators.text.base import TextRequest, estimate_tokens


class ScriptedText:
    """A text backend that records prompts and answers from a script (or fails)."""

    name = "scripted"

    def __init__(self, replies=None, fail: Exception | None = None):
        self.replies = list(replies or [])
        self.fail = fail
        self.requests: list[TextRequest] = []

    async def generate(self, request: TextRequest) -> str:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        return self.replies.pop(0) if self.replies else "Sure thing!"

    async def stream(self, request):
        yield await self.generate(request)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        pass

    @property
    def chat_requests(self) -> list[TextRequest]:
        """Requests for replies (not the background memory summaries)."""
        return [r for r in self.requests if r.char_name]
