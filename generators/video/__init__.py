"""Video: talking-head clips of a character.

This package so far holds the parts every tier shares: the MP4 writer and reader
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
