"""The independent check of issue 13, through the CLI on real photos (``benchmarks/upgrade_check.py``).

lite0-minilm -> lite2-minilm on 24 of the shared development photos: the backfill is killed with
SIGKILL twice inside a batch and resumed; at every stage the photos and the edited copies of them
that the script makes must find their original first (each copy the lite0 collection finds first),
and the finished vectors must equal a fresh lite2-minilm collection's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "captioned-dev" / "images"


@pytest.mark.slow
def test_upgrade_killed_twice_keeps_copies_first_and_ends_equal_to_a_fresh_collection(tmp_path):
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared development photos at {SHARED} (see the README)")
    if not (REPO / "benchmarks" / "upgrade_check.py").is_file():
        pytest.skip("runs benchmarks/upgrade_check.py from a source checkout (the tests were copied without it)")
    # Small, to keep CI quick: a sample under the map's cross-validation threshold (image queries keep
    # their old-space scores during the backfill, so the map's quality does not decide them), batches
    # of 2 so that 20 images to backfill leave room for two kills inside a batch and a resume, and
    # 6 photos queried (each as itself and as a copy) at each of the 5 stages.
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "upgrade_check.py"), str(SHARED), "--limit", "24",
                          "--sample", "4", "--queries", "6", "--batch-size", "2", "--fresh-batch-size", "5",
                          "--work", str(tmp_path)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    stages = ["indexed with lite0-minilm", "switched", "backfill killed (1)", "backfill killed (2)", "resumed and finished"]
    for stage in stages:
        assert f"PASS {stage}" in out, out
    assert "killed with" in out and "FAIL" not in out
    assert "PASS final vectors equal a fresh lite2-minilm collection's" in out
