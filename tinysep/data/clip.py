"""The unit every loader yields: one mono 16 kHz clip with its two reference sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOURCES = ("vocals", "accompaniment")


@dataclass
class Clip:
    """A mixture and its references, float32 mono at ``sample_rate``.

    ``mixture == vocals + accompaniment`` up to the rounding of the stored files.
    ``song`` names the song the clip was cut from (clips of one song share it; empty
    means the clip is a song of its own), so splits and remixing can keep songs apart.
    """

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int = 16_000
    song: str = ""

    @property
    def seconds(self) -> float:
        return len(self.mixture) / self.sample_rate

    @property
    def song_id(self) -> str:
        """The song this clip belongs to (its own name when ``song`` is empty)."""
        return self.song or self.name

    def source(self, name: str) -> np.ndarray:
        if name not in SOURCES:
            raise KeyError(f"unknown source {name!r}; expected one of {SOURCES}")
        return getattr(self, name)
