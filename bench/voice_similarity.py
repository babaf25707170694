#!/usr/bin/env python
"""How much the lite voice sounds like its sample: speaker similarity by resemblyzer's GE2E
encoder (weights ship in the wheel), next to plain espeak-ng.

    .venv/bin/python bench/voice_similarity.py [--voices tune|held-out|all] [--quick] [--backend lite]

Reference voices are real speakers' voices from Debian (apt-get install festival flite
festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k festvox-ca-ona-hts festvox-italp16k
festvox-czech-dita festival-czech festvox-suopuhe-lj festival-ca; scripts/system-deps.sh --bench).
Each one reads a ~20 s passage; that recording goes through ``create_voice_profile`` exactly
as ``vchar voice set`` would. The voice then speaks English sentences that are not in the
sample, and each finished voice note (OGG/Opus, decoded) is compared with the stored sample (cosine of GE2E
embeddings, every side at -16 LUFS).

Two sets: ``tune`` was used while choosing the lite voice's parameters; ``held-out`` never
was. Target: lite at least 0.10 above plain espeak-ng and at least 0.75 on every voice.
``main(argv)`` returns the rows, so a test can run ``--quick``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSAGES = {
    "en": (
        "The old lighthouse keeper climbed the stairs every evening at dusk. He would wipe the salt from "
        "the great lens, trim the wick, and watch the ships slide past the rocks. Nobody in the village "
        "remembered a night when the light had failed. Some said he never slept at all, others claimed he "
        "talked to the gulls. When the storm of the century finally came, it was his lamp that guided the "
        "fishing fleet home, every single boat."
    ),
    "ca": (
        "Cada mati, la Marta obria la finestra i mirava el mar. Les barques sortien del port abans que sortis "
        "el sol, i els pescadors cantaven cancons antigues mentre preparaven les xarxes. A la tarda, el poble "
        "s'omplia de nens que jugaven a la placa, i les avies seien a la porta de casa parlant del temps i de "
        "les festes de l'estiu. Era un lloc tranquil, on tothom es coneixia i ningu tenia pressa."
    ),
    "it": (
        "Ogni mattina la nonna preparava il caffe e apriva le finestre della cucina. Dal giardino arrivava il "
        "profumo dei limoni e il canto degli uccelli. Poi usciva a comprare il pane fresco, salutando tutti "
        "i vicini lungo la strada. Il pomeriggio leggeva il giornale sotto il grande albero, e la sera "
        "raccontava ai nipoti le storie della sua giovinezza, quando il paese era ancora piccolo e tranquillo."
    ),
    "cs": (
        "Kazde rano chodil stary pan do parku a krmil holuby. Sedaval na lavicce u rybnika a dival se, jak "
        "deti pousteji lodicky po vode. Kdyz prselo, zustal doma a cetl knihy o cestovani do dalekych zemi. "
        "Jeho vnucka mu casto nosila cerstve pecivo z pekarny na rohu, a spolu pak pili caj a povidali si "
        "o tom, co se ten den stalo ve meste a ve skole."
    ),
    "fi": (
        "Joka aamu vanha kalastaja lahti jarvelle ennen auringonnousua. Han souti hiljaa rantaa pitkin ja "
        "kuunteli lintujen laulua. Illalla han palasi kotiin, siivosi kalat ja keitti perheelle hyvaa "
        "keittoa. Talvella jarvi jaatyi, ja silloin han kavi pilkilla lastenlastensa kanssa. He istuivat "
        "jaalla tuntikausia, joivat kuumaa mehua ja nauroivat yhdessa."
    ),
}

SENTENCES = [
    "Hello there, I was thinking about you today. Would you like to go for a walk by the river this weekend?",
    "The weather should be lovely, and I know a little cafe that makes the best hot chocolate in town.",
    "Honestly, I can't believe you finished the whole puzzle by yourself. That's amazing!",
    "Good night, sleep well, and don't forget to water the plants before you leave tomorrow morning.",
]


@dataclass(frozen=True)
class RefVoice:
    key: str  # engine:voice
    label: str
    language: str
    held_out: bool

    @property
    def engine(self) -> str:
        return self.key.split(":")[0]

    @property
    def voice(self) -> str:
        return self.key.split(":")[1]


REFERENCE_VOICES = [
    # tuned on
    RefVoice("festival:cmu_us_slt_arctic_hts", "SLT, US female (HTS)", "en", False),
    RefVoice("festival:kal_diphone", "KAL, US male (diphone)", "en", False),
    RefVoice("flite:awb", "AWB, Scottish male (clunits)", "en", False),
    # never tuned on
    RefVoice("festival:ked_diphone", "KED, US male (diphone)", "en", True),
    RefVoice("flite:rms", "RMS, US male (clunits)", "en", True),
    RefVoice("festival:upc_ca_ona_hts", "ONA, Catalan female (HTS)", "ca", True),
    RefVoice("festival:lp_diphone", "LP, Italian female (diphone)", "it", True),
    RefVoice("festival:czech_dita", "DITA, Czech female (diphone)", "cs", True),
    RefVoice("festival:suo_fi_lj_diphone", "LJ, Finnish female (diphone)", "fi", True),
]


def festival_available(voice: str | None = None) -> bool:
    if shutil.which("text2wave") is None:
        return False
    if voice is None:
        return True
    return any(p.name == voice for p in Path("/usr/share/festival/voices").glob("*/*"))


def reference_available(ref: RefVoice) -> bool:
    if ref.engine == "festival":
        return festival_available(ref.voice)
    if ref.engine == "flite":
        exe = shutil.which("flite")
        if exe is None:
            return False
        out = subprocess.run([exe, "-lv"], capture_output=True, text=True).stdout
        return ref.voice in out.split()
    return False


def make_reference(ref: RefVoice | str, out: Path, text: str | None = None) -> Path:
    """Record ``text`` (default: the voice's passage) in a reference voice to a WAV file."""
    if isinstance(ref, str):
        ref = next(r for r in REFERENCE_VOICES if r.key == ref)
    text = text or PASSAGES[ref.language]
    out.parent.mkdir(parents=True, exist_ok=True)
    if ref.engine == "festival":
        subprocess.run(
            ["text2wave", "-eval", f"(voice_{ref.voice})", "-o", str(out)],
            input=text.encode("latin-1", errors="replace"), check=True, capture_output=True, timeout=120,
        )
    elif ref.engine == "flite":
        subprocess.run(["flite", "-voice", ref.voice, "-t", text, "-o", str(out)], check=True, capture_output=True, timeout=120)
    else:
        raise ValueError(ref.key)
    return out


class Similarity:
    """GE2E speaker embeddings (resemblyzer) and their cosine."""

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Every input is first brought to -16 LUFS (the level voice notes are delivered at):
        resemblyzer's preprocessing is level-sensitive, so all sides are compared at one level."""
        from resemblyzer import preprocess_wav

        from generators.voice.finishing import normalize_loudness

        x = normalize_loudness(np.asarray(x, dtype=np.float32), sr)
        return self.encoder.embed_utterance(preprocess_wav(x, sr))

    def embed_file(self, path: Path) -> np.ndarray:
        from generators.voice.profile import load_audio

        x, sr = load_audio(path)
        return self.embed(x, sr)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", choices=["tune", "held-out", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="two voices, two sentences")
    ap.add_argument("--backend", default="lite")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from generators.voice import VoiceGenerator, build_voice_backend
    from generators.voice.lite import espeak
    from generators.voice.profile import create_voice_profile

    refs = [r for r in REFERENCE_VOICES if args.voices == "all" or r.held_out == (args.voices == "held-out")]
    sentences = SENTENCES
    if args.quick:
        refs = [r for r in refs if r.key in ("festival:cmu_us_slt_arctic_hts", "festival:ked_diphone")] or refs[:2]
        sentences = SENTENCES[:2]
    missing = [r.key for r in refs if not reference_available(r)]
    refs = [r for r in refs if r.key not in missing]
    if missing:
        print(f"skipped (not installed): {', '.join(missing)}")
    if not refs:
        print("no reference voices installed: run scripts/system-deps.sh --bench")
        return []

    sim = Similarity()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vchar-voice-bench-") as tmp:
        tmp = Path(tmp)
        backend = build_voice_backend(args.backend, cache_dir=tmp / "cache")
        plain = {}
        for v in ("en-us", "en-us+f3"):
            plain[v] = [sim.embed(espeak(s, v), 22050) for s in sentences]
        print(f"{'voice':34s} {'set':8s} {'plain':>6s} {'plain*':>6s} {'lite':>6s} {'gain':>6s} {'min':>6s} {'ok':>3s}")
        for ref in refs:
            wav = make_reference(ref, tmp / f"{ref.voice}.wav")
            profile, report = create_voice_profile(
                ref.voice, wav, consent_statement="synthetic reference voice for benchmarking",
                consent_who="Debian festival/flite voice", voices_root=tmp / "voices", language="en",
            )
            e_ref = sim.embed_file(profile.sample_path)
            t0 = time.perf_counter()
            backend.prepare(profile)
            prep = time.perf_counter() - t0
            outs = []
            gen = VoiceGenerator(backend, tmp / "notes")
            for s in sentences:  # the finished voice note (OGG/Opus), decoded, is what is measured
                [note] = gen.generate(s, profile, language="en")
                outs.append(float(e_ref @ sim.embed_file(note.path)))
            lite = float(np.mean(outs))
            p_default = float(np.mean([e_ref @ e for e in plain["en-us"]]))
            p_best = max(float(np.mean([e_ref @ e for e in plain[v]])) for v in plain)
            gain = lite - max(p_default, p_best)
            ok = lite >= 0.75 and gain >= 0.10
            row = dict(voice=ref.key, label=ref.label, held_out=ref.held_out, sample_speech_s=report.speech,
                       plain=p_default, plain_best=p_best, lite=lite, lite_min=min(outs), gain=gain, ok=ok,
                       prepare_s=prep)
            rows.append(row)
            print(f"{ref.label:34s} {'held-out' if ref.held_out else 'tune':8s} {p_default:6.3f} {p_best:6.3f} "
                  f"{lite:6.3f} {gain:+6.3f} {min(outs):6.3f} {'yes' if ok else 'NO':>3s}", flush=True)
    for name, group in (("tune", [r for r in rows if not r["held_out"]]), ("held-out", [r for r in rows if r["held_out"]])):
        if group:
            print(f"{name}: mean lite {np.mean([r['lite'] for r in group]):.3f}, min lite {min(r['lite'] for r in group):.3f}, "
                  f"mean gain {np.mean([r['gain'] for r in group]):+.3f}, min gain {min(r['gain'] for r in group):+.3f}, "
                  f"all targets met: {all(r['ok'] for r in group)}")
    print("plain = espeak-ng en-us (the stock voice); plain* = the better of en-us and en-us+f3; "
          "gain = lite - max(plain, plain*); lite = mean over sentences, min = worst sentence")
    return rows


if __name__ == "__main__":
    main()
