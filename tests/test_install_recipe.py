"""`make install` says what it does before each silent step."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_install_step_is_announced():
    # -n: print the recipe without running it; -B: as on a fresh clone (nothing built yet)
    # a clean environment: under `make test` the parent make's MAKELEVEL/MAKEFLAGS would add
    # "Entering/Leaving directory" lines to the printed recipe
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}
    recipe = subprocess.run(["make", "--no-print-directory", "-n", "-B", "install"], cwd=ROOT,
                            env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    steps = [n for n, line in enumerate(recipe) if " -m venv " in line or "pip install" in line]
    assert len(steps) == 3
    for number, n in enumerate(steps, start=1):
        assert recipe[n - 1].startswith(f'echo "install {number}/3:'), recipe[n - 1]
    assert "quiet for" in recipe[steps[-1] - 1]  # the long silent step says it will be silent
    assert recipe[-1].startswith('echo "installed:')
