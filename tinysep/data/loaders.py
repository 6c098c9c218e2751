"""Find and load the clips of MIR-1K, MUSDB18-HQ or the synthetic corpus as 16 kHz mono `Clip`s.

`find_clips` only lists files and returns small picklable `ClipSource`s, so evaluation
workers can each `load()` their own clips in parallel. Layouts:

- ``mir1k``: ``ROOT/Wavfile/*.wav``, stereo, left accompaniment, right vocals; mixture =
  left + right. Splits from ``ROOT/splits.json`` when present, else by song
  (``{singer}_{song}`` of ``{singer}_{song}_{clip}.wav``) from a stable hash, ~70/10/20.
- ``synth``: the corpus `tinysep synth` writes: the mir1k layout with ``splits.json``;
  asked for the four stems (``sources``), each clip is read from its
  ``Stems/<clip>/{vocals,drums,bass,other}.wav`` instead, mixture = their sum (clips whose
  accompaniment is a recording, which has no separate drums and bass, are left out).
- ``musdb``: ``ROOT/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav``;
  accompaniment = drums + bass + other, channels averaged, resampled to 16 kHz; every
  stem is kept in ``Clip.stems``. Split test = the test folder; train and valid divide
  the train folder by a stable hash.

``sources`` (default vocals, accompaniment; see :mod:`tinysep.data.sources`) names what
the clips are trained and scored on; MIR-1K holds only the two default sources.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysep.data.audio_io import SAMPLE_RATE, read_audio, resample, to_mono
from tinysep.data.clip import SOURCES, Clip
from tinysep.data.sources import STEMS, check_sources, needs_stems
from tinysep.progress import Progress

DATASETS = ("mir1k", "musdb", "synth")
SPLITS = ("train", "valid", "test", "all")
MUSDB_STEMS = ("mixture", "vocals", "drums", "bass", "other")
SPLITS_FILE = "splits.json"
WAV_DIR = "Wavfile"  # Wavfile/<clip>.wav: MIR-1K's layout, which a synthetic corpus shares
SYNTH_STEMS_DIR = "Stems"  # Stems/<clip>/<stem>.wav in a synthetic corpus
SYNTH_FORMAT = "tinysep-synth"
MIR1K_FRACTIONS = {"test": 0.2, "valid": 0.1}  # the rest is train
MUSDB_VALID_FRACTION = 0.15

_MIR1K_HINT = "expected MIR-1K layout Wavfile/*.wav"
_MUSDB_HINT = ("expected MUSDB18-HQ layout train/<track>/ and test/<track>/ folders holding "
               + ", ".join(f"{s}.wav" for s in MUSDB_STEMS))


@dataclass(frozen=True)
class ClipSource:
    """Where one clip lives: its name, its files, its dataset kind, its song and the
    sources it is loaded for."""

    name: str
    paths: tuple[str, ...]
    dataset: str
    song: str = ""
    sources: tuple[str, ...] = SOURCES

    def load(self, sample_rate: int = SAMPLE_RATE) -> Clip:
        """Read the files into a mono float32 `Clip` at ``sample_rate``."""
        if self.dataset == "synth" and needs_stems(self.sources):
            return _load_synth_stems(self, sample_rate)
        if self.dataset in ("mir1k", "synth"):
            return _load_stereo_clip(self, sample_rate)
        if self.dataset == "musdb":
            return _load_musdb_track(self, sample_rate)
        raise ValueError(f"clip {self.name}: unknown dataset kind {self.dataset!r}")


def song_of(clip_name: str) -> str:
    """``singer_song`` from a MIR-1K clip name ``singer_song_clip`` (the name if it has no clip)."""
    parts = clip_name.split("_")
    return "_".join(parts[:-1]) if len(parts) >= 3 else clip_name


def _stable_rank(ids: Iterable[str]) -> list[str]:
    """Ids ordered by a hash that does not depend on the Python process (unlike ``hash``)."""
    return sorted(set(ids), key=lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest())


def hash_split(song_ids: Iterable[str]) -> dict[str, str]:
    """Song id -> split, ~70/10/20 by stable hash rank; test gets at least 20% of songs."""
    ranked = _stable_rank(song_ids)
    n = len(ranked)
    n_test = int(np.ceil(MIR1K_FRACTIONS["test"] * n))
    n_valid = int(round(MIR1K_FRACTIONS["valid"] * n)) if n - n_test >= 2 else 0
    return {s: "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
            for i, s in enumerate(ranked)}


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")


def check_dataset_folder(root: Path) -> None:
    """Raise naming ``root`` unless it is a folder (a dataset is a folder of clips)."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: a file, not a dataset folder")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")


def detect_dataset(root: str | Path) -> str:
    """Which layout ``root`` holds: synth, mir1k or musdb (error if none)."""
    root = Path(root)
    check_dataset_folder(root)
    meta = root / SPLITS_FILE
    if (root / WAV_DIR).is_dir():
        if meta.is_file() and _read_meta(meta).get("format") == SYNTH_FORMAT:
            return "synth"
        return "mir1k"
    for sub in ("train", "test"):
        folder = root / sub
        if folder.is_dir() and any((t / "mixture.wav").is_file() for t in folder.iterdir()):
            return "musdb"
    raise ValueError(f"cannot tell which dataset {root} holds: expected Wavfile/*.wav (MIR-1K "
                     f"or a tinysep synth corpus) or MUSDB18-HQ's train/<track>/ and "
                     f"test/<track>/ folders of {', '.join(f'{s}.wav' for s in MUSDB_STEMS)}")


def find_clips(root: str | Path, dataset: str = "auto", split: str = "test",
               sources: Sequence[str] = SOURCES) -> list[ClipSource]:
    """The clips of one split (train, valid, test or all) of the dataset at ``root``, to be
    loaded for ``sources`` (the two default sources or the four stems)."""
    _check_choice(dataset, ("auto", *DATASETS), "dataset")
    _check_choice(split, SPLITS, "split")
    sources = check_sources(sources)
    root = Path(root)
    check_dataset_folder(root)
    if dataset == "auto":
        dataset = detect_dataset(root)
    if dataset == "musdb":
        found = _find_musdb(root, split)
    else:
        if dataset == "mir1k" and needs_stems(sources):
            raise ValueError(f"{root}: MIR-1K holds only vocals and accompaniment, not "
                             f"{', '.join(s for s in sources if s not in SOURCES)}")
        found = _find_stereo(root, split, require_meta=dataset == "synth", kind=dataset)
        if dataset == "synth" and needs_stems(sources):
            found = [_with_stem_files(root, s) for s in _without_mixed_stems(root, found, split)]
    if sources == SOURCES:
        return found
    return [ClipSource(s.name, s.paths, s.dataset, s.song, sources) for s in found]


def _without_mixed_stems(root: Path, found: list[ClipSource], split: str) -> list[ClipSource]:
    """``found`` without the clips whose accompaniment is a recording (the ``recorded``
    engine): its drums, bass and other cannot be told apart, so four-stem work leaves them
    out, with a warning that counts them (an error when no clip is left)."""
    clips = _read_meta(root / SPLITS_FILE).get("clips")
    mixed = {name for name, entry in (clips.items() if isinstance(clips, dict) else ())
             if isinstance(entry, dict) and isinstance(entry.get("engines"), dict)
             and entry["engines"].get("accompaniment") == "recorded"}
    kept = [s for s in found if s.name not in mixed]
    dropped = len(found) - len(kept)
    if dropped and not kept:
        raise ValueError(f"{root}: every clip of the {split} split plays a recording as its "
                         f"whole accompaniment, whose {', '.join(STEMS[1:])} cannot be told "
                         f"apart; four-stem work needs songs of the other accompaniment engines")
    if dropped:
        warnings.warn(f"{root}: {dropped} of {len(found)} clips of the {split} split play a "
                      f"recording as their whole accompaniment and are left out of four-stem "
                      f"work", stacklevel=3)
    return kept


def _with_stem_files(root: Path, source: ClipSource) -> ClipSource:
    """``source`` with its ``Stems/<clip>/<stem>.wav`` files (checked to exist)."""
    folder = root / SYNTH_STEMS_DIR / source.name
    paths = tuple(str(folder / f"{stem}.wav") for stem in STEMS)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{missing[0]} is missing: the four stems of clip {source.name} are read from "
            f"{folder}/{{{','.join(STEMS)}}}.wav (`tinysep synth` writes them unless "
            "--no-stems)")
    return ClipSource(source.name, paths, source.dataset, source.song)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        raise ValueError(f"{path}: expected a JSON object with a 'splits' object "
                         f"(train/valid/test lists of clip names)")
    return meta


def _find_stereo(root: Path, split: str, require_meta: bool, kind: str) -> list[ClipSource]:
    """MIR-1K layout (also the synthetic corpus): stereo wavs, splits from file or hash."""
    wav_dir = root / WAV_DIR
    if not wav_dir.is_dir():
        raise ValueError(f"no Wavfile/ folder in {root}: {_MIR1K_HINT}")
    meta_path = root / SPLITS_FILE
    if require_meta or meta_path.is_file():
        if not meta_path.is_file():
            raise ValueError(f"no {SPLITS_FILE} in {root}: expected a tinysep synthetic corpus "
                             f"(write one with `tinysep synth --out {root}`)")
        meta = _read_meta(meta_path)
        if require_meta and meta.get("format") != SYNTH_FORMAT:
            raise ValueError(f"{meta_path}: not a tinysep synthetic corpus "
                             f"(format {meta.get('format')!r}, expected {SYNTH_FORMAT!r})")
        if meta.get("complete") is False:
            raise ValueError(f"{root}: the corpus is incomplete (its writing was interrupted); "
                             f"write it again with `tinysep synth`")
        wanted = ("train", "valid", "test") if split == "all" else (split,)
        names = []
        for s in wanted:
            listed = meta["splits"].get(s, [])
            if not isinstance(listed, list):
                raise ValueError(f"{meta_path}: splits.{s} must be a list of clip names")
            names += [str(n) for n in listed]
        clip_songs = meta.get("clips", {})
        if not isinstance(clip_songs, dict):
            raise ValueError(f"{meta_path}: 'clips' must be an object mapping clip names to "
                             f"their records, got {type(clip_songs).__name__}")
        sources = []
        for name in sorted(names):
            if not name or Path(name).name != name or name in (".", ".."):
                raise ValueError(f"{meta_path}: clip name {name!r} is not a file name inside "
                                 f"{wav_dir} (no folders, no '..')")
            path = wav_dir / f"{name}.wav"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {meta_path} but missing")
            entry = clip_songs.get(name, {})
            if not isinstance(entry, dict):
                raise ValueError(f"{meta_path}: clips.{name} must be an object, got "
                                 f"{type(entry).__name__}")
            song = entry.get("song") or song_of(name)
            if not isinstance(song, str):
                raise ValueError(f"{meta_path}: clips.{name}.song must be a song name (a "
                                 f"string), got {song!r}")
            sources.append(ClipSource(name, (str(path),), kind, song))
        return sources

    wavs = sorted(p for p in wav_dir.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not wavs:
        raise ValueError(f"no .wav files in {wav_dir}: {_MIR1K_HINT}")
    split_of = hash_split(song_of(p.stem) for p in wavs)
    return [ClipSource(p.stem, (str(p),), kind, song_of(p.stem)) for p in wavs
            if split == "all" or split_of[song_of(p.stem)] == split]


def _musdb_tracks(root: Path, sub: str) -> list[Path]:
    folder = root / sub
    if not folder.is_dir():
        raise ValueError(f"no {sub}/ folder in {root}: {_MUSDB_HINT}")
    tracks = sorted(p for p in folder.iterdir() if p.is_dir())
    if not tracks:
        raise ValueError(f"no track folders in {folder}: {_MUSDB_HINT}")
    for track in tracks:
        missing = [f"{s}.wav" for s in MUSDB_STEMS if not (track / f"{s}.wav").is_file()]
        if missing:
            raise ValueError(f"{track}: missing {', '.join(missing)}; {_MUSDB_HINT}")
    return tracks


def _find_musdb(root: Path, split: str) -> list[ClipSource]:
    tracks: list[Path] = []
    if split in ("test", "all"):
        tracks += _musdb_tracks(root, "test")
    if split in ("train", "valid", "all"):
        train = _musdb_tracks(root, "train")
        if split == "all":
            tracks += train
        else:
            ranked = _stable_rank(t.name for t in train)
            n_valid = int(round(MUSDB_VALID_FRACTION * len(ranked))) if len(ranked) >= 2 else 0
            valid = set(ranked[:max(n_valid, 1 if len(ranked) >= 2 else 0)])
            tracks += [t for t in train if (t.name in valid) == (split == "valid")]
    return [ClipSource(t.name, tuple(str(t / f"{s}.wav") for s in MUSDB_STEMS), "musdb", t.name)
            for t in sorted(tracks, key=lambda p: p.name)]


def _load_stereo_clip(source: ClipSource, sample_rate: int) -> Clip:
    (path,) = source.paths
    data, rate = read_audio(path)
    if data.shape[1] != 2:
        raise ValueError(f"{path}: expected 2 channels (left accompaniment, right vocals), "
                         f"got {data.shape[1]}")
    data = resample(data, rate, sample_rate)
    accompaniment = np.ascontiguousarray(data[:, 0])
    vocals = np.ascontiguousarray(data[:, 1])
    return Clip(source.name, accompaniment + vocals, vocals, accompaniment, sample_rate,
                source.song)


def _load_synth_stems(source: ClipSource, sample_rate: int) -> Clip:
    """A synthetic corpus clip from its four mono stems; the mixture is their sum."""
    if len(source.paths) != len(STEMS):
        raise ValueError(f"clip {source.name}: expected the paths of its stems "
                         f"{', '.join(STEMS)}, got {len(source.paths)} path(s)")
    stems = {}
    for stem, path in zip(STEMS, source.paths, strict=True):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: stem {stem} of clip {source.name} is missing")
        data, rate = read_audio(path)
        stems[stem] = np.ascontiguousarray(resample(to_mono(data), rate, sample_rate),
                                           np.float32)
    lengths = {stem: len(x) for stem, x in stems.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{Path(source.paths[0]).parent}: the stems of clip {source.name} "
                         f"differ in length ({lengths} samples); they must match")
    return _stem_clip(source, stems, None, sample_rate)


def _stem_clip(source: ClipSource, stems: dict[str, np.ndarray], mixture: np.ndarray | None,
               sample_rate: int) -> Clip:
    """A `Clip` holding every stem; accompaniment = drums + bass + other and, when no
    mixture file is given, mixture = the sum of the four stems."""
    accompaniment = (stems["drums"].astype(np.float64) + stems["bass"]
                     + stems["other"]).astype(np.float32)
    if mixture is None:
        mixture = (accompaniment.astype(np.float64) + stems["vocals"]).astype(np.float32)
    return Clip(source.name, mixture, stems["vocals"], accompaniment, sample_rate,
                source.song, {k: stems[k] for k in STEMS if k != "vocals"}, source.sources)


def _load_musdb_track(source: ClipSource, sample_rate: int) -> Clip:
    stems = {}
    rate0 = None
    for stem, path in zip(MUSDB_STEMS, source.paths, strict=True):
        data, rate = read_audio(path)
        if rate0 is None:
            rate0, length = rate, len(data)
        elif rate != rate0 or len(data) != length:
            raise ValueError(f"{path}: {len(data)} samples at {rate} Hz, but "
                             f"{source.paths[0]} has {length} at {rate0} Hz; the stems of a "
                             f"track must match")
        stems[stem] = resample(to_mono(data), rate, sample_rate)
    accompaniment = (stems["drums"] + stems["bass"] + stems["other"]).astype(np.float32)
    mixture = stems.pop("mixture")
    if source.sources == SOURCES:
        return Clip(source.name, mixture, stems["vocals"], accompaniment, sample_rate,
                    source.song, {k: stems[k] for k in STEMS if k != "vocals"})
    return _stem_clip(source, stems, mixture, sample_rate)


def load_clips(sources: list[ClipSource], progress: bool = False, stream=None) -> list[Clip]:
    """Load every source into memory, in order. With ``progress``, the kit's
    :class:`~tinysep.progress.Progress` reports on ``stream`` (stderr by default): a bar on
    a terminal, a few plain lines otherwise."""
    clips = []
    with Progress(len(sources), "loading clips", "clips", enabled=progress,
                  stream=stream) as bar:
        for source in sources:
            clips.append(source.load())
            bar.update(1)
    return clips


def load_split(root: str | Path, dataset: str = "auto", split: str = "train",
               progress: bool = True, sources: Sequence[str] = SOURCES) -> list[Clip]:
    """All clips of one split in memory (training sets here are small)."""
    found = find_clips(root, dataset, split, sources)
    if not found:
        raise ValueError(f"{root}: the {split} split of this {dataset} dataset holds no clips")
    return load_clips(found, progress=progress)
