"""Video: talking-head clips of a character.

Tiers (``VCHAR_VIDEO_BACKEND``): ``lite`` (``generators.video.lite``: CPU, no weights, a
landmark mesh warp driven by the speech) and ``musetalk`` (``generators.video.neural``:
MuseTalk redraws the lite head's mouth; a GPU makes it fast). Shared parts: the MP4 writer and reader
(``generators.video.mp4``: H.264 with AAC through PyAV, ``+faststart`` so a phone plays it
while it downloads, a thumbnail) and the frame-rate doubler
(``generators.video.smooth``: motion-compensated interpolation on optical flow, also
`vchar video smooth`). The lite talking head and the neural lip-sync tier build on them.
"""

from __future__ import annotations


class VideoError(RuntimeError):
    """The clip could not be made; the message says why."""


class VideoInputError(VideoError, ValueError):
    """What was given cannot be used (an unreadable file, no video stream)."""


def build_video_backend(name: str = "lite", *, out_dir, cache_dir=None, model: str | None = None,
                        device: str | None = None, accept_license: bool = False):
    """The talking-head backend ``name``. Nothing is loaded or downloaded here: MuseTalk's
    weights load on the first clip. MuseTalk's published weights carry CreativeML
    OpenRAIL-M's use restrictions, so the operator accepts them first."""
    if name == "lite":
        from generators.video.lite import LiteVideo

        return LiteVideo(out_dir, cache_dir=cache_dir)
    if name == "musetalk":
        from generators.video.neural import DEFAULT_MODEL, LICENSES, MuseTalkVideo

        if not accept_license:
            raise VideoError(f"MuseTalk's weights come with licences to accept ({LICENSES}): set "
                             "VCHAR_VIDEO_ACCEPT_LICENSE=1 once you have read them")
        return MuseTalkVideo(out_dir, cache_dir=cache_dir, model=model or DEFAULT_MODEL, device=device or "auto")
    raise VideoError(f"unknown video backend {name!r}: use lite or musetalk")
