"""The news anchor: a persona reads a bulletin in a studio frame.

A script is a YAML list of items, each a ``headline`` and the ``text`` to read. The
anchor (the lite talking head of the persona's portrait) sits in a 16:9 studio, the
current headline in a lower third, every headline running in a ticker along the bottom,
and a title card cut between items.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generators.video import VideoInputError

MAX_ITEMS = 20
MAX_TEXT = 1200
CARD_SECONDS = 0.8


@dataclass(frozen=True)
class NewsItem:
    headline: str
    text: str


def load_script(path: str | Path) -> list[NewsItem]:
    """The items of a YAML script; a clear error for anything else."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise VideoInputError(f"cannot read the script {path}: {exc}") from exc
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
    if not isinstance(data, list) or not data:
        raise VideoInputError(f"{path}: a script is a YAML list of items, each with a headline and a text")
    items = []
    for i, it in enumerate(data[:MAX_ITEMS], 1):
        if not isinstance(it, dict) or not str(it.get("text") or "").strip():
            raise VideoInputError(f"{path}: item {i} needs a 'text' to read (and a 'headline')")
        items.append(NewsItem(str(it.get("headline") or "").strip()[:90] or f"Story {i}", str(it["text"]).strip()[:MAX_TEXT]))
    return items


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _studio(w: int, h: int) -> np.ndarray:
    y = np.linspace(0, 1, h)[:, None, None]
    top, bottom = np.array([16, 28, 62]), np.array([6, 10, 24])
    img = (top * (1 - y) + bottom * y) * np.ones((1, w, 1))
    # a screen of light behind the anchor, and the desk
    cx, cy = w * 0.5, h * 0.42
    gy, gx = np.mgrid[0:h, 0:w]
    glow = np.exp(-(((gx - cx) / (w * 0.35)) ** 2 + ((gy - cy) / (h * 0.45)) ** 2))
    img = img + glow[..., None] * np.array([40, 70, 120])
    img[int(h * 0.78):] = img[int(h * 0.78):] * 0.5 + np.array([60, 44, 36]) * 0.5
    return np.clip(img, 0, 255).astype(np.uint8)


def _text_strip(text: str, w: int, h: int, bg, fg, size: int, pad: int = 16) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    d.text((pad, h // 2), text, fill=fg, font=_font(size), anchor="lm")
    return np.asarray(im)


def _ticker(headlines: list[str], h: int, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    text = "   |   ".join(headlines) + "   |   "
    font = _font(size)
    width = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)) + 1
    im = Image.new("RGB", (width, h), (180, 20, 30))
    ImageDraw.Draw(im).text((0, h // 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(im)


def news_video(portrait: str | Path, items: list[NewsItem], speak: Callable[[str], tuple[np.ndarray, int]],
               out: str | Path, *, height: int = 720, fps: float = 25, seed: int = 0, channel: str = "NEWS",
               cache_dir: Path | None = None) -> dict:
    """The bulletin as an MP4; ``speak(text)`` gives the anchor's speech (samples, rate)."""
    from PIL import Image

    from generators.video.lite import LiteHead
    from generators.video.mp4 import thumb_path, thumbnail, write_mp4
    from generators.voice.finishing import resample

    if not items:
        raise VideoInputError("the script has no items")
    height -= height % 2
    width = int(round(height * 16 / 9)) // 2 * 2
    try:
        with Image.open(portrait) as im:
            img = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise VideoInputError(f"cannot read the picture {portrait}: {exc}") from exc
    head_px = int(height * 0.66) // 2 * 2
    head = LiteHead(img, head_px, cache_dir=cache_dir)
    studio = _studio(width, height)
    yy, xx = np.mgrid[0:head_px, 0:head_px]
    r = np.hypot((xx - head_px / 2) / (head_px / 2), (yy - head_px / 2) / (head_px / 2))
    mask = np.clip((1.0 - r) / 0.12, 0, 1)[..., None]  # the anchor's frame, soft at the edge
    hx, hy = (width - head_px) // 2, int(height * 0.06)
    third_h, tick_h = int(height * 0.11) // 2 * 2, int(height * 0.06) // 2 * 2
    third_y, tick_y = height - tick_h - third_h - int(height * 0.03), height - tick_h
    ticker = _ticker([it.headline for it in items], tick_h, int(tick_h * 0.6))
    speed = height * 0.18  # px a second
    sr_out = 48000
    card_frames = int(CARD_SECONDS * fps)
    speeches = [speak(it.text) for it in items]  # first: the sound fixes how long each item runs
    sound: list[np.ndarray] = []
    for audio, sr in speeches:
        talk_frames = max(1, int(math.ceil(len(audio) / sr * fps)))
        sound.append(np.zeros(int(round(card_frames / fps * sr_out)), np.float32))
        said = resample(audio, sr, sr_out)
        want = int(round(talk_frames / fps * sr_out))
        sound.append(np.pad(said, (0, max(0, want - len(said))))[:want])
    state = {"t": 0}

    def tick(frame: np.ndarray) -> None:
        off = int(state["t"] / fps * speed) % ticker.shape[1]
        reps = math.ceil((off + width) / ticker.shape[1])
        frame[tick_y: tick_y + tick_h] = np.tile(ticker, (1, reps, 1))[:, off: off + width]
        state["t"] += 1

    def frames():
        for n, (item, (audio, sr)) in enumerate(zip(items, speeches)):
            card = studio.copy()
            title = _text_strip(item.headline, width, int(height * 0.16), (16, 28, 62), (255, 255, 255),
                                int(height * 0.07), pad=int(width * 0.06))
            card[int(height * 0.4): int(height * 0.4) + title.shape[0]] = title
            for _ in range(card_frames):
                f = card.copy()
                tick(f)
                yield f
            lower = _text_strip(f"{channel}  |  {item.headline}", int(width * 0.86), third_h, (245, 245, 245),
                                (16, 28, 62), int(third_h * 0.45))
            talking, _, _ = head.render(audio, sr, fps, seed=seed + n)
            for face in talking:
                f = studio.copy()
                region = f[hy: hy + head_px, hx: hx + head_px].astype(np.float32)
                f[hy: hy + head_px, hx: hx + head_px] = (face * mask + region * (1 - mask)).astype(np.uint8)
                f[third_y: third_y + third_h, int(width * 0.07): int(width * 0.07) + lower.shape[1]] = lower
                tick(f)
                yield f

    first: list[np.ndarray] = []

    def keep(it):
        for f in it:
            if not first:
                first.append(f)
            yield f

    path = write_mp4(out, keep(frames()), fps, audio=np.concatenate(sound), sample_rate=sr_out)
    t_frame = state["t"]
    thumb = thumbnail(first[0], thumb_path(out))
    return {"path": str(path), "thumbnail": str(thumb), "frames": t_frame, "fps": fps, "width": width, "height": height,
            "duration": t_frame / fps, "items": len(items), "generator": "vchar-lite-news", "seed": seed}


def read_feed(source: str, limit: int = 5) -> list[NewsItem]:
    """The newest items of an RSS or Atom feed (a URL or a file, parsed by feedparser), the
    HTML taken out: headline = title, text = the summary's first sentences (the words a
    model may rewrite)."""
    import html
    import re

    import feedparser

    if re.match(r"^https?://", source):
        import httpx

        try:
            r = httpx.get(source, timeout=20.0, follow_redirects=True, headers={"User-Agent": "vchar news"})
            r.raise_for_status()
            data = r.content
        except httpx.HTTPError as exc:
            raise VideoInputError(f"cannot fetch the feed {source}: {exc}") from exc
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise VideoInputError(f"cannot read the feed {source}: {exc}") from exc
    parsed = feedparser.parse(data)  # bytes: never fetched again by feedparser itself
    if not parsed.entries and (parsed.bozo or not parsed.get("version")):
        why = parsed.get("bozo_exception") or "no RSS or Atom items"
        raise VideoInputError(f"{source} is not an RSS or Atom feed: {why}")

    def plain(t: str | None) -> str:
        t = re.sub(r"<[^>]+>", " ", html.unescape(t or ""))
        t = re.sub(r"\s+", " ", html.unescape(t)).strip()
        return re.sub(r"\s+([.,!?;:])", r"\1", t)  # "<b>six</b>." reads "six."

    items = []
    for e in parsed.entries[:limit]:
        title = plain(e.get("title"))
        body = plain(e.get("summary") or (e.get("content") or [{}])[0].get("value"))
        sentences = re.split(r"(?<=[.!?])\s+", body)
        text = " ".join(sentences[:2]).strip() or title
        if title or text:
            items.append(NewsItem(title[:90] or "News", text[:MAX_TEXT]))
    if not items:
        raise VideoInputError(f"{source} has no items to read")
    return items
