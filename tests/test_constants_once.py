"""Each shared constant has one definition: the tree (tests aside) spells its value once."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tinysep", "convert", "calibration", "firmware_host")
SKIP_PARTS = {"__pycache__"}

# value pattern -> the one file allowed to spell it
ONCE = {
    r"\b16_?000\b": "firmware_host/bundle/layout.py",
    r"[\"']manifest\.json[\"']": "firmware_host/bundle/layout.py",
    r"[\"']model\.tflite[\"']": "firmware_host/bundle/layout.py",
    r"\b8_?192\b": "firmware_host/protocol/framing.py",
    r"\b921_?600\b": "firmware_host/transport.py",
}


def _sources() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*.py") if not SKIP_PARTS & set(p.parts)]
    return files


@pytest.mark.parametrize("pattern", sorted(ONCE))
def test_value_spelled_only_in_its_home(pattern: str) -> None:
    home = ONCE[pattern]
    found = sorted(
        str(path.relative_to(ROOT)) for path in _sources()
        if re.search(pattern, path.read_text(encoding="utf-8"))
    )
    assert found == [home], f"{pattern} is spelled in {found}, only {home} may define it"


def test_the_audio_modules_share_the_bundle_rate() -> None:
    from firmware_host.bundle import layout
    from tinysep.data import audio_io, clip, synth

    assert audio_io.SAMPLE_RATE is layout.SAMPLE_RATE
    assert synth.SAMPLE_RATE is layout.SAMPLE_RATE
    assert clip.Clip("c", *[np.zeros(4, np.float32)] * 3).sample_rate == layout.SAMPLE_RATE
