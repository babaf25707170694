"""Render MIDI with a General MIDI SoundFont through FluidSynth.

FluidSynth (the C library, Debian's ``libfluidsynth3``; driven through pyfluidsynth and
pretty_midi) plays every SoundFont 2 feature, renders offline faster than real time and
gives the same samples for the same events, so the same song renders to the same file.
The SoundFont is the first found of the one configured (``VCHAR_MUSIC_SOUNDFONT``), Debian's
``fluid-soundfont-gm`` (FluidR3_GM, MIT licence) and the small TimGM6mb that pretty_midi
ships in its wheel (GPL-2.0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 44100
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2")


class SynthUnavailable(RuntimeError):
    """FluidSynth or a SoundFont is missing; the message says what to install."""


def soundfont_path(configured: str | Path | None = None) -> Path:
    if configured:
        if not Path(configured).is_file():
            raise SynthUnavailable(f"VCHAR_MUSIC_SOUNDFONT={configured} is not a file")
        return Path(configured)
    for p in SOUNDFONTS:
        if Path(p).is_file():
            return Path(p)
    pretty_midi = load_pretty_midi()
    bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if bundled.is_file():
        return bundled
    raise SynthUnavailable("no General MIDI SoundFont found: apt-get install fluid-soundfont-gm "
                           "(or scripts/system-deps.sh), or set VCHAR_MUSIC_SOUNDFONT")


def load_fluidsynth():
    """The ``fluidsynth`` module. pyfluidsynth prints where it found the library when the
    environment has ``CI`` set; that line would land in a piped chat's stdout (or break a
    log's one line per record), so the import's print goes to the debug log instead.
    Raises ImportError or OSError where it cannot load."""
    import contextlib
    import io
    import logging

    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        import fluidsynth
    if said.getvalue().strip():
        logging.getLogger(__name__).debug("pyfluidsynth: %s", said.getvalue().strip())
    return fluidsynth


def load_pretty_midi():
    """``pretty_midi``, which imports pyfluidsynth itself when it can: that import goes
    through :func:`load_fluidsynth` first so it prints nothing on stdout."""
    try:
        load_fluidsynth()
    except (ImportError, OSError):
        pass  # pretty_midi works without it; rendering then says what is missing
    import pretty_midi

    return pretty_midi


def _new_synth(soundfont: str | Path | None = None):
    """A FluidSynth instance with the SoundFont loaded (about 0.15 s: its samples load
    lazily). One per song: FluidSynth dithers its 16-bit output from a running index, so
    a synth that rendered something before renders the same events differently."""
    try:
        fluidsynth = load_fluidsynth()
    except (ImportError, OSError) as exc:
        raise SynthUnavailable(f"the lite music needs FluidSynth: apt-get install libfluidsynth3 "
                               f"(or scripts/system-deps.sh) and pip install pyfluidsynth ({exc})") from exc
    synth = fluidsynth.Synth(samplerate=float(SR))
    synth.setting("synth.reverb.active", 0)  # the mix adds its own reverb, the same on every machine
    synth.setting("synth.chorus.active", 0)
    path = soundfont_path(soundfont)
    sfid = synth.sfload(str(path))
    if sfid < 0:
        synth.delete()
        raise SynthUnavailable(f"FluidSynth could not load the SoundFont {path}")
    return synth, sfid


def render_instrument(synth, sfid: int, inst, length: float) -> np.ndarray:
    """One pretty_midi instrument as mono float32 samples, ``length`` seconds long."""
    n = int(round(length * SR))
    if not inst.notes:
        return np.zeros(n, np.float32)
    y = inst.fluidsynth(fs=SR, synthesizer=synth, sfid=sfid)
    for ch in range(16):  # nothing rings on into the next instrument
        synth.all_sounds_off(ch)
    y = np.asarray(y, np.float32)
    out = np.zeros(n, np.float32)
    out[: min(n, len(y))] = y[:n]
    return out


def render_backing(pm, length: float, soundfont: str | Path | None = None) -> dict[str, np.ndarray]:
    """Each instrument of ``pm`` rendered on its own (the mix sets their levels)."""
    synth, sfid = _new_synth(soundfont)
    try:
        return {inst.name or f"track{i}": render_instrument(synth, sfid, inst, length)
                for i, inst in enumerate(pm.instruments)}
    finally:
        synth.delete()
