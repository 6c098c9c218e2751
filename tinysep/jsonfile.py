"""Read a JSON object with errors that name the file; write a JSON file atomically, so a
reader (or a kill) never sees half a file."""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path


def write_json_atomic(path: str | Path, data, indent: int = 1) -> None:
    """Write ``data`` to ``path`` (parents created) through a temporary file beside it and a
    rename; NaN and infinity are refused, as JSON has no spelling for them."""
    write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (parents created) through ``.NAME.tmp-PID`` beside it and a
    rename, so a reader never sees half a file; the temporary file goes on an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, with an error naming the file if it is missing or bad."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {what}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # undecodable bytes too
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def is_whole_number(value) -> bool:
    """A whole number (numpy's too) that is not a bool: JSON's true and false are no counts."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))
