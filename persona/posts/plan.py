"""A persona's posting plan (the ``posts:`` section of its file) and the slots it makes.

```yaml
posts:
  zone: Europe/London          # IANA time zone the slots are read in
  days_ahead: 7                # how far ahead drafts are written
  approval: true               # drafts wait for an operator's approve
  grace_minutes: 60            # a post missed while the service was down goes out this late at most
  channels:
    main: {platform: telegram, chat: "@midnightmenu"}
    server: {platform: discord, chat: "123456789012345678"}
  slots:
    - {channel: main, days: [mon, wed, fri], at: "19:30"}
    - {channel: server, cron: "0 12 * * sat"}
  pillars:                     # what the posts are about, and how often each
    - {topic: the night market's best stall this week, weight: 3}
    - {topic: what is in the sky tonight, weight: 1}
  formats: {text: 3, selfie: 1, voice: 1}   # text, selfie, voice, song, video, news
  feed: https://example.org/rss.xml          # what a news post reads, at post time
```

Slots are wall-clock times in the zone, stored as UTC instants. A day's slot is made once
for each local date, so a daylight-saving change neither skips nor doubles it: a time that
does not exist that night (the clocks jumped past it) is posted at the same distance after
the jump, a time that happens twice is posted at its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FORMATS = ("text", "selfie", "voice", "song", "video", "news")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS_AHEAD = 60


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Channel(_Model):
    """Where posts go: a Telegram channel or group (``-100...`` id or ``@username``), a
    Discord channel id, or a Discord webhook URL (posts under the character's name)."""

    platform: Literal["telegram", "discord", "discord-webhook"]
    chat: str = Field(min_length=1, max_length=300)

    @field_validator("chat", mode="before")
    @classmethod
    def _as_string(cls, v):
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _check_chat(self):
        c = self.chat.strip()
        if self.platform == "telegram" and not (re.fullmatch(r"-?\d+", c) or re.fullmatch(r"@[A-Za-z]\w{3,}", c)):
            raise ValueError(f"a Telegram channel is a chat id (-100...) or an @username, not {c!r}")
        if self.platform == "discord" and not re.fullmatch(r"\d{5,25}", c):
            raise ValueError(f"a Discord channel is its numeric id, not {c!r}")
        if self.platform == "discord-webhook" and not c.startswith(("https://", "http://")):
            raise ValueError("a Discord webhook is its URL (https://discord.com/api/webhooks/...)")
        return self


class Slot(_Model):
    """When a channel gets a post: weekly (``days`` and ``at``) or a cron expression."""

    channel: str
    days: list[str] = Field(default_factory=list)
    at: str | None = None  # "HH:MM"
    cron: str | None = None
    format: Literal[FORMATS] | None = None  # type: ignore[valid-type]  # fixed; else the plan's mix
    feed: str | None = Field(default=None, max_length=2000)  # a news slot's RSS/Atom feed (default: the plan's)

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v):
        if isinstance(v, str):
            v = [d for d in re.split(r"[,\s]+", v) if d]
        out = []
        for d in v or []:
            d = str(d).strip().lower()[:3]
            if d not in DAYS:
                raise ValueError(f"unknown day {d!r}: use mon, tue, wed, thu, fri, sat, sun")
            out.append(d)
        return out

    @model_validator(mode="after")
    def _one_kind(self):
        if self.cron:
            from croniter import croniter

            if self.at or self.days:
                raise ValueError("a slot is either a cron expression or days and a time, not both")
            if not croniter.is_valid(self.cron):
                raise ValueError(f"the cron expression {self.cron!r} is not valid (five fields: minute hour day month weekday)")
            return self
        if not self.at or not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", self.at):
            raise ValueError(f"a weekly slot needs at: HH:MM (24-hour), got {self.at!r}")
        if not self.days:
            self.days = list(DAYS)
        return self


class Pillar(_Model):
    topic: str = Field(min_length=1, max_length=300)
    weight: float = Field(default=1.0, gt=0, le=100)


class PostPlan(_Model):
    zone: str = "UTC"
    days_ahead: int = Field(default=7, ge=0, le=MAX_DAYS_AHEAD)
    approval: bool = True
    grace_minutes: float = Field(default=60.0, ge=0, le=7 * 24 * 60)
    channels: dict[str, Channel] = Field(default_factory=dict, max_length=50)
    slots: list[Slot] = Field(default_factory=list, max_length=200)
    pillars: list[Pillar] = Field(default_factory=list, max_length=100)
    formats: dict[Literal[FORMATS], float] = Field(default_factory=lambda: {"text": 1.0})  # type: ignore[valid-type]
    repeat_window_days: int = Field(default=14, ge=0, le=365)  # no two posts alike within this
    feed: str | None = Field(default=None, max_length=2000)  # the news format's RSS/Atom feed (URL or file)
    news_items: int = Field(default=3, ge=1, le=10)  # items per bulletin

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}: use an IANA name like Europe/London or America/New_York") from exc
        return v

    @field_validator("formats")
    @classmethod
    def _weights(cls, v):
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("formats needs at least one format with a positive weight")
        return v

    @model_validator(mode="after")
    def _slots_name_channels(self):
        for s in self.slots:
            if s.channel not in self.channels:
                raise ValueError(f"the slot's channel {s.channel!r} is not among the channels: "
                                 f"{', '.join(self.channels) or 'none defined'}")
            news = s.format == "news" or (s.format is None and self.formats.get("news", 0) > 0)
            if news and not (s.feed or self.feed):
                raise ValueError("news posts read a feed: give feed: URL_OR_FILE (for the plan or the slot)")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time in ``tz`` as a UTC instant: a time the clocks skipped moves on by
    the jump, a time that happens twice is its first occurrence."""
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(timezone.utc)


@dataclass(frozen=True)
class SlotTime:
    channel: str
    at: datetime  # UTC
    local: datetime  # the wall-clock time it was planned for (naive, in the plan's zone)
    format: str | None
    feed: str | None = None

    @property
    def key(self) -> str:
        """One post per channel and wall-clock time, however often the plan is run."""
        return f"{self.channel}|{self.local.isoformat(timespec='minutes')}"


def slot_times(plan: PostPlan, start: datetime, end: datetime) -> list[SlotTime]:
    """Every slot of the plan at or after ``start`` and before ``end`` (aware datetimes)."""
    from croniter import croniter

    tz = plan.tz
    out: dict[tuple[str, datetime], SlotTime] = {}
    first: date = (start.astimezone(tz) - timedelta(days=1)).date()
    last: date = (end.astimezone(tz) + timedelta(days=1)).date()
    for slot in plan.slots:
        naive_times: list[datetime] = []
        if slot.cron:
            it = croniter(slot.cron, datetime.combine(first, time()) - timedelta(minutes=1))
            while True:
                t = it.get_next(datetime)
                if t.date() > last:
                    break
                naive_times.append(t)
        else:
            hh, mm = (int(x) for x in slot.at.split(":"))  # type: ignore[union-attr]
            d = first
            while d <= last:
                if DAYS[d.weekday()] in slot.days:
                    naive_times.append(datetime.combine(d, time(hh, mm)))
                d += timedelta(days=1)
        for naive in naive_times:
            at = localize(naive, tz)
            if start <= at < end:
                out.setdefault((slot.channel, at), SlotTime(slot.channel, at, naive, slot.format, slot.feed or plan.feed))
    return sorted(out.values(), key=lambda s: (s.at, s.channel))
