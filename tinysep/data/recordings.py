"""Recorded accompaniment: excerpts of instrumental recordings, the corpus's one world that
no synthesizer of the kit made (real mixes, rooms, instruments and production).

A collection is a folder of instrumental recordings (Ogg Vorbis, Opus, FLAC or WAV): one of
`COLLECTIONS`, the game soundtracks Debian ships under free licences, or a folder of the
user's own (backing tracks, stems of their band). A song of the ``recorded`` engine plays one
excerpt of one recording of its collection as its whole accompaniment; the parts of a mix
cannot be told apart, so the excerpt is the ``other`` stem and ``drums`` and ``bass`` are
silent. Holding a collection out of training keeps its composers, players and studios
unheard.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from tinysep.data.audio_io import AUDIO_SUFFIXES, check_audio_header, resample, to_mono
from tinysep.folder_writes import nesting

# name: (folder, Debian package that installs it)
COLLECTIONS = {
    "warzone2100": ("/usr/share/games/warzone2100/music", "warzone2100-music"),
    "supertux": ("/usr/share/games/supertux2/music", "supertux-data"),
    "hedgewars": ("/usr/share/games/hedgewars/Data/Music", "hedgewars-data"),
    "freedroidrpg": ("/usr/share/freedroidrpg/data/sound/music", "freedroidrpg-data"),
    "openclonk": ("/usr/share/games/openclonk/Music.ocg", "openclonk-data"),
    "lincity": ("/usr/share/games/lincity-ng/music", "lincity-ng-data"),
    "xmoto": ("/usr/share/games/xmoto/Textures/Musics", "xmoto-data"),
}
DEFAULT_COLLECTIONS = ("warzone2100", "supertux", "hedgewars")
MIN_EXCERPT_DBFS = -40.0  # an excerpt quieter than this (a fade, a pause) is drawn again
EXCERPT_TRIES = 8


class RecordingError(RuntimeError):
    """A collection with no readable recording, or a recording that cannot be used."""


def collection_folder(name: str) -> Path:
    """The folder of a named collection, or ``name`` itself as a folder path."""
    return Path(COLLECTIONS[name][0]) if name in COLLECTIONS else Path(name)


def parse_collections(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Collection names of `COLLECTIONS` or folder paths (made absolute) from ``"a,b"`` or a
    list (default `DEFAULT_COLLECTIONS`), in the order given, without repeats."""
    if text is None:
        return DEFAULT_COLLECTIONS
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)
             if n.strip()]
    if not names:
        raise ValueError(f"no recordings given; expected collections among "
                         f"{', '.join(COLLECTIONS)} or folders of instrumental recordings")
    for name in names:
        if name not in COLLECTIONS and "/" not in name:
            raise ValueError(f"unknown recordings {name!r}; expected one of "
                             f"{', '.join(COLLECTIONS)} or a folder path (holding a '/')")
    # a folder is named by its absolute path, so the corpus records where its music came from
    named = [n if n in COLLECTIONS else str(Path(n).expanduser().resolve()) for n in names]
    return tuple(dict.fromkeys(named))


@lru_cache(maxsize=32)
def collection_files(name: str) -> tuple[str, ...]:
    """The audio files of a collection, sorted by path (so a seed picks the same ones);
    linked folders are followed, each real folder once."""
    found, seen = [], set()
    for root, dirs, files in os.walk(collection_folder(name), followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up: do not walk it twice
            dirs[:] = []
            continue
        seen.add(real)
        found += [os.path.join(root, f) for f in files if Path(f).suffix.lower() in AUDIO_SUFFIXES
                  and os.path.isfile(os.path.join(root, f))]
    return tuple(sorted(found))


def collection_fingerprint(name: str) -> str:
    """``"N files, HASH"`` over the collection's file names and sizes, recorded with a corpus
    so a rewrite notices a collection whose files changed."""
    folder = collection_folder(name)
    digest = hashlib.sha256()
    files = collection_files(name)
    for path in files:
        digest.update(f"{os.path.relpath(path, folder)}\0{os.path.getsize(path)}\n".encode())
    return f"{len(files)} files, {digest.hexdigest()[:16]}"


def check_apart_from(name: str, out: str | Path) -> None:
    """ValueError when a collection folder holds the corpus folder ``out`` or lies inside it:
    the corpus would then play its own clips."""
    folder = collection_folder(name)
    relation = nesting(folder, out)
    if relation is not None:
        raise ValueError(f"recordings {name}: folder {folder} {relation} the corpus folder "
                         f"{out}; keep the recordings apart from the corpus")


def missing_collection(name: str) -> str | None:
    """Why a collection cannot play (folder or files missing, with what to install), or None."""
    folder = collection_folder(name)
    if name in COLLECTIONS:
        hint = (f"install the Debian package {COLLECTIONS[name][1]} (`make system-deps` "
                f"installs everything the engines need)")
    else:
        hint = f"give a folder holding {', '.join(AUDIO_SUFFIXES)} files"
    if folder.exists() and not folder.is_dir():
        return f"recordings {name}: {folder} is a file, not a folder; {hint}"
    if not folder.is_dir():
        return f"recordings {name}: folder {folder} does not exist; {hint}"
    if not collection_files(name):
        return f"recordings {name}: folder {folder} holds no audio files; {hint}"
    return None


@lru_cache(maxsize=256)
def _frames(path: str) -> tuple[int, int, int]:
    """(frames, sample rate, channels) of one recording, its header checked."""
    try:
        info = soundfile.info(path)
        check_audio_header(path, int(info.samplerate), int(info.channels))
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise RecordingError(f"recording {path}: cannot read it ({exc})") from exc
    return int(info.frames), int(info.samplerate), int(info.channels)


def _read_excerpt(path: str, start: int, frames: int, rate: int, n: int, sr: int) -> np.ndarray:
    try:
        data, _ = soundfile.read(path, start=start, frames=frames, dtype="float32",
                                 always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise RecordingError(f"recording {path}: cannot read it ({exc})") from exc
    audio = resample(to_mono(data), rate, sr)
    if len(audio) < n:
        audio = np.pad(audio, (0, n - len(audio)))
    return np.asarray(audio[:n], dtype=np.float32)


def recorded_excerpt(collection: str, n: int, sr: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``n`` samples at ``sr`` from one recording of ``collection`` drawn with ``rng``, and
    which file (relative to the collection's folder) and second they start at. Raises
    RecordingError when no audible excerpt is found in `EXCERPT_TRIES` draws."""
    files = collection_files(collection)
    if not files:
        raise RecordingError(missing_collection(collection) or f"recordings {collection}: empty")
    floor = 10 ** (MIN_EXCERPT_DBFS / 20)
    unreadable = None
    for _ in range(EXCERPT_TRIES):
        path = files[int(rng.integers(len(files)))]
        try:
            total, rate, _channels = _frames(path)
            frames = int(np.ceil(n * rate / sr)) + 1
            if total <= frames:
                continue
            start = int(rng.integers(total - frames))
            audio = _read_excerpt(path, start, frames, rate, n, sr)
        except RecordingError as exc:  # a damaged file: draw another
            unreadable = exc
            continue
        if not np.all(np.isfinite(audio)):
            continue
        if float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) >= floor:
            return audio, {"recording_file": os.path.relpath(path, collection_folder(collection)),
                           "recording_start_seconds": round(start / rate, 6)}
    also = f"; {unreadable}" if unreadable is not None else ""
    raise RecordingError(f"recordings {collection}: no audible excerpt of {n / sr:g} s in "
                         f"{EXCERPT_TRIES} draws (recordings too short, silent or "
                         f"unreadable){also}")
