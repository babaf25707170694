"""The lite music backend: compose, play, sing, mix (see ``generators.music``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from generators.music import (
    FORMATS, MusicError, MusicInputError, MusicRequest, Song, encode, lrc, nearest_duration, request_key,
)
from generators.music.composer import compose
from generators.music.lyrics import Lyrics, parse_lyrics, template_lyrics
from generators.music.theory import Key, nearest_style, parse_key

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def _vocal_range(voice, profile, language: str) -> tuple[int, int]:
    """The singable range around the voice's speaking pitch (a higher voice, a higher range)."""
    f0 = 210.0
    if voice is not None and profile is not None:
        try:
            f0 = math.exp(voice._model(profile, language).lf0_mean)
        except Exception:  # noqa: BLE001 - the range is a preference, not a requirement
            pass
    speak = 69 + 12 * math.log2(f0 / 440.0)
    low = int(round(speak)) - 2
    return low, low + 19


class LiteMusic:
    name = "lite"
    sample_rate = 44100
    max_duration = 120.0

    def __init__(self, out_dir: str | Path = "media/music", *, voice=None, soundfont: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.soundfont = soundfont
        self.voice = voice  # a generators.voice.lite.LiteVoice (espeak-ng + conversion); built when needed
        self.description = "lite: composed, FluidSynth General MIDI, espeak-ng singer through WORLD"

    def _lite_voice(self):
        if self.voice is None:
            from generators.voice.lite import LiteVoice

            self.voice = LiteVoice(self.out_dir / "voice-cache")
        return self.voice

    def lyrics_for(self, req: MusicRequest) -> Lyrics:
        if req.lyrics and req.lyrics.strip():
            lyr = parse_lyrics(req.lyrics, req.title or "")
            if not lyr.sections:
                raise MusicInputError("the lyrics have no words to sing")
            return lyr
        return template_lyrics(req.topic, req.seed, hint=req.hint)

    async def agenerate(self, req: MusicRequest, *, stems_dir: Path | None = None, progress=None,
                        out_path: Path | None = None) -> Song:
        loop = asyncio.get_running_loop()
        sent: list = []

        def report(fraction: float, stage: str) -> None:
            """From the song's thread: progress to the job; a cancelled job stops the song here."""
            if progress is None:
                return
            for fut in [f for f in sent if f.done()]:
                sent.remove(fut)
                if fut.exception() is not None:
                    raise fut.exception()
            sent.append(asyncio.run_coroutine_threadsafe(progress(fraction, stage), loop))

        return await asyncio.to_thread(self.generate, req, stems_dir=stems_dir, progress=report, out_path=out_path)

    def generate(self, req: MusicRequest, *, stems_dir: Path | None = None, progress: Progress | None = None,
                 out_path: Path | None = None) -> Song:
        """Make the song; ``out_path`` (its suffix the format) instead of a file named by the
        request under ``out_dir``."""
        from generators.music.mix import SR, mix
        from generators.music.singer import sing
        from generators.voice.finishing import resample

        say = progress or (lambda f, s: None)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if out_path is not None:
            req = dataclasses.replace(req, fmt=Path(out_path).suffix.lstrip(".").lower())
        if req.fmt not in FORMATS:
            raise MusicInputError(f"unknown audio format {req.fmt!r}: use mp3, ogg or wav")
        notes: list[str] = []
        style, note = nearest_style(req.style)
        notes += [note] if note else []
        duration, note = nearest_duration(req.duration, self.max_duration)
        notes += [note] if note else []
        key, note = parse_key(req.key)
        notes += [note] if note else []
        if key is None:
            key = Key((req.seed * 7) % 12, style.mode)
        tempo = float(req.tempo) if req.tempo else float(style.tempo)
        if not 40 <= tempo <= 220:
            clipped = min(220.0, max(40.0, tempo))
            notes.append(f"{tempo:g} BPM is out of reach, so I sang at {clipped:g}")
            tempo = clipped
        lyr = self.lyrics_for(req)
        notes += lyr.notes
        title = req.title or lyr.title
        singer = "instrumental"
        voice = profile = None
        if not req.instrumental:
            if req.voice is not None:
                voice, profile, singer = self._lite_voice(), req.voice, "voice"
            elif req.stock_voice:
                voice, singer = self._lite_voice(), "stock"
        if singer == "instrumental" and not req.instrumental:
            notes.append("no voice of mine is set up here, so this one is instrumental")
        say(0.05, "composing")
        vr = _vocal_range(voice, profile, req.language) if singer != "instrumental" else (60, 79)
        score = compose(lyr, style, key, tempo, duration, req.seed, vocal_range=vr,
                        instrumental=singer == "instrumental")
        if req.lyrics:  # the template writes more than a short song sings: no need to say so
            notes += score.notes
        timings["compose"] = time.perf_counter() - t0
        say(0.15, "playing")
        length = score.duration + 1.5  # the last chord rings out
        tracks, generator = self.backing(score, length, req, notes, say)
        timings["render"] = time.perf_counter() - t0 - sum(timings.values())
        vocal = None
        if singer != "instrumental":
            say(0.35, "singing")
            try:
                v22 = sing(score.vocal, length, voice=voice, profile=profile, language=req.language, seed=req.seed)
            except Exception as exc:
                raise MusicError(f"the lite singer failed: {type(exc).__name__}: {exc}") from exc
            vocal = resample(v22, 22050, SR).astype(np.float32)
            timings["sing"] = time.perf_counter() - t0 - sum(timings.values())
        say(0.8, "mixing")
        master, backing, vocal_stem, lufs = mix(tracks, vocal, instrumental=singer == "instrumental")
        # fade the tail
        fade = int(1.0 * SR)
        master[-fade:] *= np.linspace(1, 0, fade)[:, None]
        timings["mix"] = time.perf_counter() - t0 - sum(timings.values())
        say(0.9, "encoding")
        digest = request_key(req, self.name)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = encode(master, SR, Path(out_path) if out_path else self.out_dir / f"song-{digest}.{req.fmt}",
                      title=title, artist=req.artist)
        timings["encode"] = time.perf_counter() - t0 - sum(timings.values())
        lrc_text = lrc(score.lines, title, req.artist)
        meta = {
            "generator": generator, "backend": self.name, "seed": req.seed, "title": title,
            "artist": req.artist, "style": style.name, "key": key.name, "tempo": tempo,
            "duration": round(length, 3), "singer": singer, "lufs": round(lufs, 2),
            "sections": [{"name": p.name, "start": round(p.start, 3), "end": round(p.end, 3)} for p in score.parts],
            "lines": [{"start": round(t, 3), "text": text} for t, text in score.lines],
            "lyrics": lyr.text, "notes": notes, "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        song = Song(path=path, mime=FORMATS[req.fmt], title=title, artist=req.artist, duration=length,
                    lyrics=lyr.text, lrc=lrc_text, metadata=meta, notes=notes, cover=req.cover)
        if stems_dir is not None:
            song.stems = self.write_stems(Path(stems_dir), score, backing, vocal_stem, lrc_text, meta)
        return song

    def backing(self, score, length: float, req: MusicRequest, notes: list[str], say) -> tuple[dict, str]:
        """The backing tracks (name -> mono float32 at 44.1 kHz) and the generator's name:
        here, the score played by FluidSynth."""
        from generators.music.render import SynthUnavailable, render_backing

        try:
            return render_backing(score.backing, length, self.soundfont), "vchar-lite-music"
        except SynthUnavailable as exc:
            raise MusicError(str(exc)) from exc

    @staticmethod
    def write_stems(d: Path, score, backing, vocal, lrc_text: str, meta: dict) -> dict[str, Path]:
        import soundfile

        from generators.music.mix import SR

        d.mkdir(parents=True, exist_ok=True)
        out = {"backing": d / "backing.wav", "melody": d / "melody.mid", "lyrics": d / "lyrics.lrc",
               "metadata": d / "song.json"}
        soundfile.write(str(out["backing"]), backing, SR, subtype="PCM_16")
        if vocal is not None:
            out["vocals"] = d / "vocals.wav"
            soundfile.write(str(out["vocals"]), vocal, SR, subtype="PCM_16")
        score.melody_midi().write(str(out["melody"]))
        out["lyrics"].write_text(lrc_text, encoding="utf-8")
        out["metadata"].write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return out
