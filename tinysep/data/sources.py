"""Source sets a separator can be trained for: the two default sources or the four stems.

A source set is an ordered tuple of names that together make up the whole mixture, each
part once: ``("vocals", "accompaniment")`` (the default) or the MUSDB18 stems ``("vocals",
"drums", "bass", "other")`` in any order (``accompaniment = drums + bass + other``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tinysep.data.clip import SOURCES

STEMS = ("vocals", "drums", "bass", "other")
ACCOMPANIMENT_STEMS = STEMS[1:]  # everything but the voice
# What each source name covers, in stems.
PARTS = {
    "vocals": ("vocals",),
    "accompaniment": ACCOMPANIMENT_STEMS,
    "drums": ("drums",),
    "bass": ("bass",),
    "other": ("other",),
}
KNOWN_SOURCES = tuple(PARTS)


def check_sources(sources: Iterable[str], what: str = "sources") -> tuple[str, ...]:
    """``sources`` as a tuple, or ValueError naming what is wrong: unknown or repeated
    names, or a set that does not cover the mixture exactly once (e.g. vocals,drums)."""
    if isinstance(sources, str) or not isinstance(sources, Iterable):
        raise ValueError(f"{what} must be a list of source names, got {sources!r}")
    names = tuple(sources)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{what} must be a list of source names, got {sources!r}")
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"{what}: unknown source(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(KNOWN_SOURCES)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what}: {', '.join(repeated)} listed twice")
    covered = sorted(part for n in names for part in PARTS[n])
    if len(names) < 2 or covered != sorted(STEMS):
        raise ValueError(
            f"{what} {','.join(names) or '(none named)'} do not make up the mixture exactly "
            f"once: use {','.join(SOURCES)} or {','.join(STEMS)} (any order)")
    return names


def parse_sources(text: str) -> tuple[str, ...]:
    """``"vocals,drums,bass,other"`` -> the checked tuple of names."""
    return check_sources([part.strip() for part in str(text).split(",") if part.strip()],
                         "--sources")


def needs_stems(sources: Iterable[str]) -> bool:
    """True when ``sources`` name a stem that a two-source dataset does not hold."""
    return any(name not in SOURCES for name in sources)
