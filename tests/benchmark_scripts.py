"""Loading a script of ``benchmarks/`` as a module, for the tests of its measuring code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as the module ``bench_NAME``; the test skips where the tests were copied
    without the benchmarks (an installed wheel's test run)."""
    path = REPO / "benchmarks" / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"benchmarks/{name}.py is in a source checkout only (the tests were copied without it)")
    sys.path.insert(0, str(REPO / "benchmarks"))  # its own imports of the other scripts
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
