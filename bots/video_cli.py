"""``vchar video``: clips of a character (so far: smoothing any clip to a higher frame rate).

Mounted by bots/cli.py as ``app.add_typer(video_app, name="video")``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bots.voice_cli import _fail, out

video_app = typer.Typer(help="Video clips: smooth a clip to a higher frame rate.", no_args_is_help=True)


@video_app.command("smooth")
def smooth_command(
    source: Path = typer.Argument(..., help="An MP4 (or any video PyAV reads)."),
    output: Path = typer.Argument(..., help="The MP4 to write."),
    fps: float = typer.Option(60.0, "--fps", help="The frame rate wanted (a whole multiple of the clip's is used)."),
) -> None:
    """Raise a clip's frame rate by motion-compensated interpolation (its sound kept)."""
    from generators.video import VideoInputError
    from generators.video.mp4 import probe, read_audio, read_frames, write_mp4
    from generators.video.smooth import smooth

    if output.suffix.lower() != ".mp4":
        _fail(f"{output}: the output is an MP4 (.mp4)")
    try:
        frames, src_fps = read_frames(source)
        if fps <= src_fps:
            _fail(f"{source} already plays at {src_fps:g} fps; ask for more with --fps")
        audio = read_audio(source)
        smoothed, new_fps = smooth(frames, src_fps, fps)
        with out.status(f"interpolating {src_fps:g} -> {new_fps:g} fps..."):
            write_mp4(output, smoothed, new_fps, audio=audio)
        p = probe(output)
    except VideoInputError as exc:
        _fail(str(exc))
    out.print(f"{output}  {p.width}x{p.height}  {p.fps:g} fps  {p.frames} frames  {p.duration:.1f} s"
              f"{'  with sound' if p.has_audio else ''}", markup=False, highlight=False)
