"""Folders written whole: a write goes to a hidden ``.NAME.partial-PID`` folder beside the
destination and is renamed into place; a replaced folder waits as ``.NAME.old-PID`` until the
new one is in place. A write killed mid-way (SIGKILL, a power cut) leaves those folders
behind; the next write to the same destination finishes what it can."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tinysep.jsonfile import write_json_atomic


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


def nesting(folder: str | Path, other: str | Path) -> str | None:
    """How ``folder`` stands to ``other`` once both are resolved: "is", "lies inside" or
    "holds"; None when they are apart."""
    folder, other = Path(folder).resolve(), Path(other).resolve()
    if folder == other:
        return "is"
    if folder.is_relative_to(other):
        return "lies inside"
    if other.is_relative_to(folder):
        return "holds"
    return None


def check_apart(out: str | Path, model: str | Path, label: str = "output folder") -> None:
    """Refuse an output folder that is the model folder, lies inside it or holds it: what a
    command writes there would mix with, or replace, the model it reads. ``label`` names the
    folder in the error (an option name on the command line)."""
    relation = nesting(out, model)
    if relation == "is":
        raise ValueError(f"{label} {out} is the model folder itself; name another folder")
    if relation:
        raise ValueError(f"{label} {out} {relation} the model folder {model}; name a folder "
                         "apart from it")


def check_apart_from(out: str | Path, inputs: dict, label: str = "--out") -> None:
    """Refuse an output folder that is, lies inside or holds one of the paths a command
    reads (``inputs``: how the message names it -> the path, None when not given): what it
    writes would mix with, or replace, what it reads."""
    for name, path in inputs.items():
        relation = None if path is None else nesting(out, path)
        if relation:
            raise ValueError(f"{label} {out} {relation} the {name} {path}; name a folder "
                             "apart from it")


def check_own_output(out: str | Path, model: str | Path, owned: Collection[str], command: str,
                     marker: str | None = None, label: str = "--out",
                     what: str = "folder", marker_command: str | None = None) -> bool:
    """Refuse an output folder that a ``command`` run must not write into: one apart from
    ``model`` is needed, and an existing, non-empty one must be an earlier output of the
    command (holding ``marker`` when given, a JSON report whose ``"command"`` is
    ``marker_command`` when that is given, and nothing but ``owned`` entries); ``what``
    names such an output in the error. Returns whether it holds one."""
    check_apart(out, model, label)
    if not holds_anything(out, label):
        return False
    if marker is not None and not (Path(out) / marker).is_file():
        raise ValueError(f"{label} {out} is not empty and holds no {marker} of an earlier "
                         f"{command}; name a new or empty folder")
    if marker_command is not None and not written_by(Path(out) / marker, marker_command):
        raise ValueError(f"{label} {out}: its {marker} is not a report of `tinysep "
                         f"{marker_command}` (or one from before reports named their command); "
                         "name a new or empty folder")
    others = foreign_entries(out, owned)
    if others:
        raise ValueError(f"{label} {out} is not a {what} {command} wrote: it also holds "
                         f"{', '.join(others)}; name a new or empty folder")
    return True


def written_by(path: Path, command: str) -> bool:
    """Whether ``path`` holds a JSON object that ``tinysep COMMAND`` wrote."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("command") == command


def _atomic_leftover(name: str, owned: Collection[str]) -> bool:
    """Whether ``name`` is the temporary file of an atomic JSON write of an ``owned`` name
    (``.NAME.tmp-PID``, see :func:`tinysep.jsonfile.write_json_atomic`) a kill left."""
    stem, sep, pid = name.rpartition(".tmp-")
    return bool(sep) and pid.isdigit() and stem.startswith(".") and stem[1:] in owned


def first_names(names: Sequence[str], shown: int = 3) -> str:
    """``"a, b, c and 4 more"``: the first ``shown`` of ``names`` for an error message."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def foreign_entries(folder: str | Path, owned: Collection[str]) -> list[str]:
    """The names in ``folder`` that a command writing only ``owned`` did not write."""
    return sorted(entry.name for entry in Path(folder).iterdir()
                  if entry.name not in owned and not _atomic_leftover(entry.name, owned))


def holds_anything(folder: str | Path, label: str = "output folder") -> bool:
    """Whether the output ``folder`` exists and holds any entry; ValueError when it, or the
    nearest of its parents that exists, is not a folder, or is one nothing can be written in
    (:func:`check_writable`)."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "" if path == folder else f": {path} is a file"
                raise ValueError(f"{label} {folder} is not a folder{where}")
            break
    check_writable(folder, label)
    return folder.is_dir() and any(folder.iterdir())


def check_writable(path: str | Path, label: str = "output") -> None:
    """ValueError naming ``label`` when nothing can be created at ``path``: a file is made
    and removed in the nearest of ``path`` and its parents that is a folder, so a read-only
    or virtual folder is refused before any work rather than after it."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.is_dir())  # the root, at worst
    try:
        handle, probe = tempfile.mkstemp(prefix=".tinysep-write-check-", dir=existing)
    except OSError as exc:
        raise ValueError(f"{label} {path}: cannot write in {existing} "
                         f"({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)


def make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones made, innermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_made(made: Sequence[Path]) -> None:
    """Remove the folders :func:`make_parents` made, innermost first, while they are empty."""
    for folder in made:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _replace_owned(tmp: Path, out: Path, owned: Collection[str]) -> None:
    """Move the finished ``tmp`` folder to ``out``; an existing ``out`` (only ``owned``
    entries) waits aside as ``.NAME.old-PID`` until the new one is in place."""
    old = None
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ValueError(f"{out} is a file, not a folder; refusing to replace it")
        others = foreign_entries(out, owned)
        if others:
            raise ValueError(f"{out} holds {', '.join(others)}, which this command does not "
                             "write; refusing to replace it")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(out: str | Path, owned: Collection[str]) -> Iterator[Path]:
    """A hidden ``.NAME.partial-PID`` folder beside ``out`` to write into. When the block
    ends without error it replaces ``out`` (refused if ``out`` holds anything but ``owned``
    entries); on an error it is deleted with the parent folders it needed, so ``out`` is
    never half written and a failed command leaves nothing behind."""
    out = Path(out)
    clean_abandoned_writes(out)
    made = make_parents(out.parent)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _replace_owned(tmp, out, owned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_made(made)
        raise


SAVED_AUDIO_MARKER = "saved-audio.json"  # marks a folder ``--save-audio`` writes clips into


def check_audio_folder(folder: str | Path, inputs: dict[str, str | Path | None],
                       label: str = "--save-audio") -> None:
    """Refuse a folder for separated audio that is, holds or lies inside one of ``inputs``
    (option name -> the data, a model or a bundle it reads), or that holds anything but an
    earlier ``--save-audio`` output: each clip's ``mixture.wav``, ``reference/`` and method
    folders would replace a user's files of the same names."""
    check_apart_from(folder, inputs, label)
    if holds_anything(folder, label) and not (Path(folder) / SAVED_AUDIO_MARKER).is_file():
        raise ValueError(f"{label} {folder} is not empty and holds no {SAVED_AUDIO_MARKER} of "
                         "an earlier --save-audio; name a new or empty folder")


def mark_audio_folder(folder: str | Path, command: str) -> None:
    """Create ``folder`` with its :data:`SAVED_AUDIO_MARKER`, so a later run may write its
    clips there again."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / SAVED_AUDIO_MARKER, {"command": command})
