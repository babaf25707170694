"""Fixtures for the voice tests: reference voices recorded by Debian's festival, profiles, a tiny XTTS."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"
SLT = "festival:cmu_us_slt_arctic_hts"
KED = "festival:ked_diphone"


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"vchar_bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bench_similarity():
    return load_bench("voice_similarity")


def _need_reference(bench, key: str) -> None:
    ref = next(r for r in bench.REFERENCE_VOICES if r.key == key)
    if not bench.reference_available(ref):
        _missing(f"reference voice {key} not installed (Debian: festival and its voice package; run scripts/system-deps.sh)")


@pytest.fixture(scope="session")
def need_espeak():
    if shutil.which("espeak-ng") is None:
        _missing("espeak-ng not installed (Debian package espeak-ng; run scripts/system-deps.sh)")


@pytest.fixture(scope="session")
def slt_wav(bench_similarity, tmp_path_factory) -> Path:
    """About 24 s of the SLT voice (a real speaker's HTS voice) reading a passage."""
    _need_reference(bench_similarity, SLT)
    return bench_similarity.make_reference(SLT, tmp_path_factory.mktemp("ref") / "slt.wav")


@pytest.fixture(scope="session")
def ked_wav(bench_similarity, tmp_path_factory) -> Path:
    _need_reference(bench_similarity, KED)
    return bench_similarity.make_reference(KED, tmp_path_factory.mktemp("ref") / "ked.wav")


@pytest.fixture(scope="session")
def voices_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="session")
def slt_profile(slt_wav, voices_root):
    from generators.voice.profile import create_voice_profile

    profile, _ = create_voice_profile(
        "slt", slt_wav, consent_statement="I agree that my voice is used for this test character.",
        consent_who="SLT (CMU Arctic speaker, via festvox)", voices_root=voices_root,
    )
    return profile


@pytest.fixture(scope="session")
def encoder():
    """resemblyzer's GE2E speaker encoder: embeddings of float audio."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    enc = VoiceEncoder("cpu", verbose=False)

    def embed(x: np.ndarray, sr: int) -> np.ndarray:
        from generators.voice.finishing import normalize_loudness

        # every side at -16 LUFS: resemblyzer's preprocessing is level-sensitive (as in bench/voice_similarity.py)
        return enc.embed_utterance(preprocess_wav(normalize_loudness(np.asarray(x, dtype=np.float32), sr), sr))

    return embed


def _missing(why: str) -> None:
    """Skip where the system voices are missing, but fail in CI (VCHAR_TEST_REQUIRE_POSTGRES=1
    or VCHAR_TEST_STRICT=1), where scripts/system-deps.sh must have installed them."""
    if os.environ.get("VCHAR_TEST_STRICT") == "1" or os.environ.get("VCHAR_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(why + "; CI requires it")
    pytest.skip(why)
