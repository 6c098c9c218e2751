"""Tags a user gives their own clips (genre, singer, take...), read from a JSON file, so that
``tinysep eval --tags`` can score a folder of songs group by group, as ``--by-engine`` scores
a synthetic corpus engine by engine.

The file is one JSON object: clip name (the mixture's file name without its suffix) ->
``{tag: value}``, each value a string, number or boolean (``null``: the clip has no value
for that tag). Every clip is counted once per tag, under its value.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tinysep.jsonfile import is_finite_number, read_json

MAX_TAG_CHARS = 64  # a tag's name
MAX_VALUE_CHARS = 200  # a tag's value as text
MAX_TAGS_PER_CLIP = 32


def _value_text(value, where: str) -> str | None:
    """A tag's value as the text its row is named by; None for ``null``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_finite_number(value):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= MAX_VALUE_CHARS:
        return value
    raise ValueError(f"{where}: expected a string of 1 to {MAX_VALUE_CHARS} characters, a finite "
                     f"number, true, false or null, got {value!r:.80}")


def read_clip_tags(path: str | Path) -> dict[str, dict[str, str]]:
    """``{clip: {tag: value text}}`` from the tags file at ``path``; ValueError naming the file
    and the clip or tag that is not as described in the module docstring."""
    path = Path(path)
    try:
        data = read_json(path, "a tags file")
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    if not data:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping clip names to "
                         '{tag: value} objects, e.g. {"song01": {"genre": "rock"}}')
    tags: dict[str, dict[str, str]] = {}
    for clip, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: clip {clip!r}: expected an object of tags, got "
                             f"{type(entry).__name__}")
        if len(entry) > MAX_TAGS_PER_CLIP:
            raise ValueError(f"{path}: clip {clip!r}: {len(entry)} tags, at most "
                             f"{MAX_TAGS_PER_CLIP}")
        values = {}
        for tag, value in entry.items():
            if not tag.strip() or len(tag) > MAX_TAG_CHARS:
                raise ValueError(f"{path}: clip {clip!r}: tag names are 1 to {MAX_TAG_CHARS} "
                                 f"characters, got {tag!r:.80}")
            text = _value_text(value, f"{path}: clip {clip!r}, tag {tag!r}")
            if text is not None:
                values[tag] = text
        tags[clip] = values
    return tags


def check_tagged_clips(tags: dict[str, dict[str, str]], clip_names: Iterable[str],
                       path: str | Path) -> None:
    """ValueError when the tags name a clip that is not among ``clip_names`` (a typo would
    otherwise leave that clip out of every group without a word)."""
    unknown = sorted(set(tags) - set(clip_names))
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"{path}: {len(unknown)} tagged clip(s) are not among the clips "
                         f"found: {shown}")


def tag_names(tags: dict[str, dict[str, str]]) -> tuple[str, ...]:
    """Every tag any clip has, in the order they first appear."""
    return tuple(dict.fromkeys(tag for values in tags.values() for tag in values))
