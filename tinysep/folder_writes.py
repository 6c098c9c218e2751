"""Folders written whole: a write goes to a hidden ``.NAME.partial-PID`` folder beside the
destination and is renamed into place; a replaced folder waits as ``.NAME.old-PID`` until the
new one is in place. A write killed mid-way (SIGKILL, a power cut) leaves those folders
behind; the next write to the same destination finishes what it can."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (assumed so where POSIX signals cannot tell)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(out: Path, kind: str) -> list[Path]:
    """The ``kind`` ("partial" or "old") folders beside ``out`` whose writing process is gone."""
    found = []
    for folder in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
        pid = folder.name.rsplit("-", 1)[1]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            found.append(folder)
    return found


def clean_abandoned_writes(out: str | Path) -> None:
    """Finish what an earlier write into ``out`` killed mid-way left: its half-written folder
    is deleted; the folder it had moved aside goes back to ``out`` when ``out`` is missing
    (the kill fell between the two renames), else it is deleted. Folders of writes still
    running are left alone."""
    out = Path(out)
    for folder in _abandoned(out, "partial"):
        shutil.rmtree(folder, ignore_errors=True)
    for folder in _abandoned(out, "old"):
        if not out.exists():
            folder.rename(out)
        else:
            shutil.rmtree(folder, ignore_errors=True)
