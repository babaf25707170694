"""`vchar music` as a user runs it on a fresh data folder: Mira sings in her shipped voice."""

from __future__ import annotations

import hashlib
import json

from tests.bots.test_cli import vchar


def test_music_song_writes_a_sung_song_and_its_stems_and_the_same_seed_the_same_file(tmp_path):
    lyrics = tmp_path / "words.txt"
    lyrics.write_text("[verse]\nwalking home beneath the city glow\n[chorus]\nsing it to me slow\nsing it soft and low\n")
    first = vchar(tmp_path, "music", "song", "mira", "the city", "--style", "synthwave", "--duration", "14",
                  "--lyrics", str(lyrics), "--seed", "7", "--stems", str(tmp_path / "stems"), "-o", str(tmp_path / "a.mp3"))
    assert "sung by: voice" in first.stdout and "synthwave" in first.stdout
    stems = {p.name for p in (tmp_path / "stems").iterdir()}
    assert {"vocals.wav", "backing.wav", "melody.mid", "lyrics.lrc"} <= stems
    assert "[ar:Mira Vale]" in (tmp_path / "stems" / "lyrics.lrc").read_text()
    meta = json.loads((tmp_path / "stems" / "song.json").read_text())
    assert meta["seed"] == 7 and meta["singer"] == "voice" and "walking home" in meta["lyrics"]
    vchar(tmp_path, "music", "song", "mira", "the city", "--style", "synthwave", "--duration", "14",
          "--lyrics", str(lyrics), "--seed", "7", "-o", str(tmp_path / "b.mp3"))
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "a.mp3") == digest(tmp_path / "b.mp3")


def test_music_clip_and_a_bad_format(tmp_path):
    clip = vchar(tmp_path, "music", "clip", "dreamy lo-fi for a rainy night", "--duration", "9", "-o", str(tmp_path / "c.wav"))
    assert "lo-fi" in clip.stdout and "instrumental" in clip.stdout and (tmp_path / "c.wav").stat().st_size > 100_000
    bad = vchar(tmp_path, "music", "clip", "pop", "-o", str(tmp_path / "c.flac"), check=False)
    assert bad.returncode != 0 and "mp3, ogg or wav" in bad.stderr
