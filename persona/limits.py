"""Per-person rate limits: one budget for chatting, a separate one for generation commands."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass

from cachetools import TTLCache

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/minute"``, ``"5/hour"``, ``"3/10s"``; ``"0"`` or ``"off"`` means unlimited."""
        t = text.strip().lower()
        if t in ("", "0", "off", "none", "unlimited"):
            return cls(0, 0)
        m = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?", t)
        if not m or m.group(3) not in _UNITS:
            raise ValueError(f"rate {text!r}: write it like 20/minute, 5/hour or 3/10s")
        return cls(int(m.group(1)), (int(m.group(2)) if m.group(2) else 1) * _UNITS[m.group(3)])

    @property
    def unlimited(self) -> bool:
        return self.count <= 0


class RateLimiter:
    """A sliding-window limit per key, in this process.

    ``hit`` answers "allowed", "limited" (the first refusal in a window: tell the person)
    or "silent" (refused again: say nothing more, so a flood is not answered with a flood).
    """

    def __init__(self, rate: Rate, clock=time.monotonic, max_keys: int = 100_000):
        self.rate = rate
        self.clock = clock
        # Bounded: a key is dropped once its window has passed since its last hit (or
        # when max_keys people are tracked, the least recently seen first), so a flood
        # of new ids cannot grow these without end.
        ttl = max(rate.seconds, 1e-9)
        self._hits: TTLCache = TTLCache(maxsize=max_keys, ttl=ttl, timer=clock)
        self._warned: TTLCache = TTLCache(maxsize=max_keys, ttl=ttl, timer=clock)

    def __len__(self) -> int:
        """How many keys are tracked now (expired windows are not counted)."""
        self._hits.expire()
        return len(self._hits)

    def hit(self, key: tuple) -> str:
        if self.rate.unlimited:
            return "allowed"
        now = self.clock()
        q = self._hits.get(key)
        if q is None:
            q = deque()
        while q and now - q[0] >= self.rate.seconds:
            q.popleft()
        if len(q) < self.rate.count:
            q.append(now)
            self._hits[key] = q  # (re)set: the entry lives one window past its last hit
            self._warned.pop(key, None)
            return "allowed"
        warned = self._warned.get(key)
        if warned is not None and now - warned < self.rate.seconds:
            return "silent"
        self._warned[key] = now
        return "limited"

    def exhausted(self, key: tuple) -> bool:
        """Whether the next ``hit`` would be refused (nothing is counted)."""
        if self.rate.unlimited:
            return False
        q = self._hits.get(key)
        now = self.clock()
        return q is not None and sum(1 for t in q if now - t < self.rate.seconds) >= self.rate.count

    def retry_after(self, key: tuple) -> float:
        q = self._hits.get(key)
        if not q or self.rate.unlimited:
            return 0.0
        return max(0.0, self.rate.seconds - (self.clock() - q[0]))
