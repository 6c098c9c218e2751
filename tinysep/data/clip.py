"""The unit every loader yields: one mono 16 kHz clip with its reference sources."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from firmware_host.bundle.layout import SAMPLE_RATE

SOURCES = ("vocals", "accompaniment")
# How much quieter / louder (dB) a clip may be played, in training and in evaluation.
LEVEL_LIMITS_DB = (-60.0, 20.0)


@dataclass
class Clip:
    """A mixture and its references, float32 mono at ``sample_rate``.

    ``mixture == vocals + accompaniment`` up to the rounding of the stored files.
    ``song`` names the song the clip was cut from (clips of one song share it; empty
    means the clip is a song of its own), so splits and remixing can keep songs apart.
    ``stems`` holds the stems a four-stem dataset gives (``drums``, ``bass``, ``other``;
    ``accompaniment`` is then their sum) and ``sources`` the names the clip is trained
    and scored on (the two default sources unless a loader was asked for others).
    """

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int = SAMPLE_RATE
    song: str = ""
    stems: dict[str, np.ndarray] = field(default_factory=dict)
    sources: tuple[str, ...] = SOURCES

    @property
    def seconds(self) -> float:
        return len(self.mixture) / self.sample_rate

    @property
    def song_id(self) -> str:
        """The song this clip belongs to (its own name when ``song`` is empty)."""
        return self.song or self.name

    def source(self, name: str) -> np.ndarray:
        """The reference signal of source ``name`` (a default source or a loaded stem)."""
        if name in SOURCES:
            return getattr(self, name)
        if name in self.stems:
            return self.stems[name]
        raise KeyError(f"clip {self.name} has no source {name!r}; it holds "
                       f"{', '.join((*SOURCES, *self.stems))}")

    def at_level(self, level_db: float) -> Clip:
        """The clip played ``level_db`` dB louder (negative: quieter): mixture, references
        and stems alike."""
        g = np.float32(10.0 ** (level_db / 20.0))
        return dataclasses.replace(
            self, mixture=self.mixture * g, vocals=self.vocals * g,
            accompaniment=self.accompaniment * g, stems={k: v * g for k, v in self.stems.items()})

    def without(self, name: str) -> Clip:
        """The clip with source ``name`` silent: its reference all zeros and the mixture the sum
        of the other sources, e.g. a band alone, to hear what a separator calls vocals there."""
        if name not in self.sources:
            raise ValueError(f"clip {self.name} is scored on {', '.join(self.sources)}; "
                             f"it has no source {name!r} to silence")
        silent = np.zeros_like(self.mixture)
        mixture = np.sum([self.source(n) for n in self.sources if n != name], axis=0,
                         dtype=np.float32)
        stems = dict(self.stems)
        vocals, accompaniment = self.vocals, self.accompaniment
        if name == "vocals":
            vocals = silent
        elif name == "accompaniment":
            accompaniment = silent
            stems = {k: silent for k in stems}
        else:  # a stem of the accompaniment
            accompaniment = (accompaniment - stems[name]).astype(np.float32)
            stems[name] = silent
        return dataclasses.replace(self, mixture=mixture, vocals=vocals,
                                   accompaniment=accompaniment, stems=stems)

    def head(self, samples: int) -> Clip:
        """The first ``samples`` samples of the clip, every source and stem cut alike."""
        return Clip(self.name, self.mixture[:samples], self.vocals[:samples],
                    self.accompaniment[:samples], self.sample_rate, self.song,
                    {k: v[:samples] for k, v in self.stems.items()}, self.sources)
