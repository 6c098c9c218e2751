"""Evaluation inputs that are not a dataset: a plain audio file, a folder of them, or
``.npy`` arrays, each a mixture with its reference sources when they are there.

Layout (the same for ``.wav`` and ``.npy``)::

    song.wav                  the mixture (any rate and channel count: mixed to mono and
                              resampled to 16 kHz, as the datasets are)
    song.vocals.wav           its references, optional: both or none
    song.accompaniment.wav

A ``.npy`` file holds one 1-D float array of 16 kHz samples in [-1, 1]. ``--data`` may
name one mixture file or a folder; in a folder every file that is not a reference is a
mixture, and a reference with no mixture of its name beside it is refused. A mixture
without references is separated (and its outputs kept with ``--save-audio``) but not
scored: BSS-eval needs the true sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_host.bundle.layout import SAMPLE_RATE
from tinysep.data.clip import SOURCES, Clip
from tinysep.folder_writes import first_names

SUFFIXES = (".wav", ".npy")
FILES = "files"  # the --dataset name of mixture files (not a dataset layout)


@dataclass
class InputClip(Clip):
    """A :class:`Clip` that may have no references (they are then silent placeholders)."""

    has_references: bool = True

    def without(self, name: str) -> Clip:
        """As :meth:`Clip.without`; a mixture without references has no sources to leave out."""
        if not self.has_references:
            raise ValueError(f"clip {self.name} has no references: leaving {name} out of it "
                             "needs the sources apart")
        return super().without(name)


def reference_path(mixture: Path, source: str) -> Path:
    """``song.wav`` -> ``song.vocals.wav`` (the reference of ``source`` beside a mixture)."""
    return mixture.with_name(f"{mixture.stem}.{source}{mixture.suffix}")


def is_reference(path: Path) -> bool:
    """True for ``NAME.vocals.wav`` / ``NAME.accompaniment.npy`` and the like."""
    return any(path.stem.endswith(f".{source}") for source in SOURCES)


def read_input(path: Path) -> np.ndarray:
    """Mono float32 16 kHz samples of a ``.wav`` (any rate / channels) or ``.npy`` file."""
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the array ({exc})") from exc
        data = np.asarray(data)
        if data.ndim == 2 and 1 in data.shape:
            data = data.reshape(-1)
        if data.ndim != 1 or data.size == 0 or data.dtype.kind not in "fiu":
            raise ValueError(f"{path}: expected a non-empty 1-D array of 16 kHz audio samples, "
                             f"got shape {data.shape} of {data.dtype}")
        data = data.astype(np.float32)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{path}: the array holds NaN or infinite values")
        return data
    from tinysep.data.audio_io import read_mono

    return read_mono(path, SAMPLE_RATE)


@dataclass(frozen=True)
class FileSource:
    """One mixture file and its reference files (picklable: workers load it themselves)."""

    name: str
    mixture: Path
    references: tuple[Path, ...] = ()  # in SOURCES order, or empty

    @property
    def paths(self) -> tuple[str, ...]:
        """The mixture file, then its reference files (in SOURCES order) when present."""
        return (str(self.mixture), *(str(p) for p in self.references))

    def load(self, sample_rate: int = SAMPLE_RATE) -> InputClip:
        """Read the mixture and its references (16 kHz mono, the only rate given here)."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"{self.mixture}: mixture files are read at {SAMPLE_RATE} Hz, "
                             f"not {sample_rate} Hz")
        mixture = read_input(self.mixture)
        if not self.references:
            silent = np.zeros_like(mixture)
            return InputClip(self.name, mixture, silent, silent.copy(), SAMPLE_RATE,
                             has_references=False)
        refs = [read_input(p) for p in self.references]
        for path, ref in zip(self.references, refs, strict=True):
            if len(ref) != len(mixture):
                raise ValueError(f"{path}: {len(ref)} samples at 16 kHz, but the mixture "
                                 f"{self.mixture.name} has {len(mixture)}: a reference must "
                                 "have the mixture's length")
        return InputClip(self.name, mixture, refs[0], refs[1], SAMPLE_RATE)


def _source_for(mixture: Path) -> FileSource:
    refs = [reference_path(mixture, s) for s in SOURCES]
    present = [p.is_file() for p in refs]
    if any(present) and not all(present):
        missing = [p.name for p, ok in zip(refs, present, strict=True) if not ok]
        raise ValueError(f"{mixture}: has some references but not {', '.join(missing)}; give "
                         f"both {' and '.join(p.name for p in refs)} or neither")
    return FileSource(mixture.stem, mixture, tuple(refs) if all(present) else ())


def _check_no_orphans(folder: Path, sources: list[FileSource]) -> None:
    """A reference with no mixture beside it is a misnamed mixture, not a file to skip."""
    claimed = {ref for source in sources for ref in source.references}
    orphans = sorted(p.name for p in folder.iterdir() if p.is_file() and is_reference(p)
                     and p.suffix.lower() in SUFFIXES and p not in claimed)
    if orphans:
        raise ValueError(f"{folder}: {first_names(orphans, 4)}: reference(s) with no "
                         "mixture beside them (for NAME.vocals.wav the mixture is NAME.wav); "
                         "rename the mixture or move them out")


def is_input_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding mixture files directly (not a dataset)."""
    return path.is_dir() and any(p.suffix.lower() in SUFFIXES and not is_reference(p)
                                 for p in path.iterdir() if p.is_file())


def is_mixture_input(path: str | Path) -> bool:
    """True when ``path`` is a mixture file or a folder of them, False for a dataset folder
    (MIR-1K, MUSDB18-HQ, a synth corpus); ValueError naming ``path`` when it is neither,
    FileNotFoundError when it does not exist."""
    from tinysep.data.loaders import WAV_DIR, detect_dataset

    path = Path(path)
    if path.is_file():
        return True
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    try:
        detect_dataset(path)
        return False
    except ValueError:
        if is_input_folder(path):
            return True
        if (path / WAV_DIR).is_dir():  # a dataset with a broken splits file: say so
            raise
    empty = "; the folder is empty" if not any(path.iterdir()) else ""
    raise ValueError(f"{path}: neither a dataset (MIR-1K, MUSDB18-HQ, a synth corpus) nor a "
                     f"folder of mixture files ({' / '.join(SUFFIXES)}){empty}")


def input_sources(path: str | Path) -> list[FileSource]:
    """The mixtures of a file or a folder (see the module docstring), sorted by name."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: not a mixture file; expected {' or '.join(SUFFIXES)} "
                             "(or a dataset folder)")
        if is_reference(path):
            raise ValueError(f"{path}: a reference source, not a mixture; give the mixture "
                             f"file it belongs to")
        return [_source_for(path)]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    mixtures = sorted(p for p in path.iterdir() if p.is_file()
                      and p.suffix.lower() in SUFFIXES and not is_reference(p))
    if not mixtures:
        raise ValueError(f"{path}: no mixture files ({', '.join(SUFFIXES)}) in the folder")
    sources = [_source_for(p) for p in mixtures]
    _check_no_orphans(path, sources)
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: {', '.join(twice)} given both as .wav and .npy; keep one")
    return sources
