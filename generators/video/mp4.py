"""MP4 files: H.264 (yuv420p) with AAC audio through PyAV, ``+faststart`` (the index at
the front: playback starts before the download ends, as Telegram and Discord stream it),
read back frame by frame, probed, and a JPEG thumbnail taken from them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from generators.video import VideoInputError


@dataclass(frozen=True, slots=True)
class Probe:
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    has_audio: bool
    video_codec: str


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, *, audio: np.ndarray | None = None,
              sample_rate: int = 48000, crf: int = 20, preset: str = "veryfast") -> Path:
    """``frames`` (RGB uint8, all one even size) and optional mono ``audio`` (float, -1..1)
    as an MP4. Written to a temporary name and renamed, so a reader never sees half a file."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            v = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
            v.pix_fmt = "yuv420p"
            a = None
            if audio is not None:
                a = out.add_stream("aac", rate=sample_rate, layout="mono")
                a.bit_rate = 96000
            first = True
            for img in frames:
                if first:
                    h, w = img.shape[:2]
                    if w % 2 or h % 2:
                        raise VideoInputError(f"frames must have an even size for H.264, got {w}x{h}")
                    v.width, v.height = w, h
                    first = False
                for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    out.mux(p)
            if first:
                raise VideoInputError("no frames to write")
            for p in v.encode(None):
                out.mux(p)
            if a is not None:
                pcm = np.clip(np.asarray(audio, np.float32), -1, 1)
                step = 1024
                for i in range(0, len(pcm), step):
                    fr = av.AudioFrame.from_ndarray(pcm[None, i: i + step], format="flt", layout="mono")
                    fr.sample_rate = sample_rate
                    fr.pts = i
                    fr.time_base = Fraction(1, sample_rate)
                    for p in a.encode(fr):
                        out.mux(p)
                for p in a.encode(None):
                    out.mux(p)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    tmp.replace(path)
    return path


def read_frames(path: str | Path) -> tuple[Iterator[np.ndarray], float]:
    """The video's frames as RGB uint8 arrays (a generator) and its frame rate."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoInputError(f"cannot read {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoInputError(f"{path} has no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 25)

    def frames() -> Iterator[np.ndarray]:
        with container:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    return frames(), fps


def read_audio(path: str | Path, sample_rate: int = 48000) -> np.ndarray | None:
    """The first audio stream as mono float32 at ``sample_rate``, or None."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in c.decode(c.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def probe(path: str | Path) -> Probe:
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            raise VideoInputError(f"{path} has no video stream")
        s = c.streams.video[0]
        fps = float(s.average_rate or 0)
        frames = s.frames or sum(1 for _ in c.decode(s))
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else frames / max(fps, 1e-9)
        return Probe(s.codec_context.width, s.codec_context.height, fps, frames, duration, bool(c.streams.audio),
                     s.codec_context.name)


def thumb_path(media: str | Path) -> Path:
    """Where a clip's or song's thumbnail lies: beside it, never over a file of the same stem."""
    media = Path(media)
    return media.with_name(media.stem + ".thumb.jpg")


def thumbnail(frame: np.ndarray, path: str | Path, size: int = 320) -> Path:
    """A JPEG of at most ``size`` px a side (what Telegram takes as a video's thumbnail)."""
    from PIL import Image

    im = Image.fromarray(frame)
    im.thumbnail((size, size))
    path = Path(path)
    im.save(path, "JPEG", quality=85)
    return path
