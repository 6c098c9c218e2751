"""The hil run's progress over clips: the kit's Progress, advancing with returned chunks,
plain lines in a log and an exact clip count at the end."""

from __future__ import annotations

import io

from hil.harness import _Progress


def test_clip_progress_counts_chunks_and_clips_as_plain_lines() -> None:
    log = io.StringIO()
    progress = _Progress(3, enabled=True, stream=log)
    for _ in range(3):
        update = progress.clip(1000)
        for returned in (100, 300, 700, 1000, 1000):
            update(returned)
        progress.finish_clip("vocals 9.1 dB")
    assert progress.bar.done == 3.0
    progress.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 3 <= len(lines) <= 11
    assert lines[-1].startswith("hil: 3/3 clips (100 %") and lines[-1].endswith("vocals 9.1 dB")
    fractions = [float(line.split(": ")[1].split("/")[0]) for line in lines]
    assert fractions == sorted(fractions) and fractions[0] < 1.0  # chunks advance within a clip


def test_clip_progress_is_silent_when_off() -> None:
    log = io.StringIO()
    progress = _Progress(2, enabled=False, stream=log)
    progress.clip(10)(10)
    progress.finish_clip("x")
    progress.close()
    assert log.getvalue() == ""
