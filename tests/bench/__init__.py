"""Smoke runs of the benchmark scripts in bench/, loaded as modules by :func:`load_bench`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str):
    """``bench/<name>.py`` as a module (its ``main(argv)`` returns the figures)."""
    spec = importlib.util.spec_from_file_location(f"vchar_bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
