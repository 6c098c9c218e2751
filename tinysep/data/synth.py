"""The synthetic music corpus: songs rendered from random scores, written in MIR-1K layout.

A song is a singing voice (`voice`) over an accompaniment of chords, a riff, bass and
drums (`instruments`, `drums`) from a random score (`score`). Everything is drawn from
``numpy.random.default_rng([seed, ...])`` so a song depends only on (seed, song number,
seconds): the same command writes the same bytes. The corpus is cut into 4-10 s clips,
each mixed at its own vocal-to-accompaniment ratio (uniform in [-5, +5] dB), and written
as 16-bit stereo wavs with the accompaniment on the left and the vocals on the right,
plus ``splits.json`` (song-disjoint train/valid/test and the generation parameters).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

import tinysep
from tinysep.data.audio_io import write_audio
from tinysep.data.clip import Clip
from tinysep.data.drums import render_drums
from tinysep.data.instruments import random_timbre, render_part
from tinysep.data.score import compose
from tinysep.data.voice import Singer, random_singer, render_voice

GENERATOR_VERSION = 1
CORPUS_FORMAT = "tinysep-synth"
SAMPLE_RATE = 16_000
CLIP_SECONDS = (4.0, 10.0)
VAR_DB = (-5.0, 5.0)
SPLIT_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}
N_SINGERS = 12
PEAK = 0.9  # written peak of max(|accompaniment|, |vocals|, |mixture|)
SPLITS_FILE = "splits.json"
WAV_DIR = "Wavfile"

# Loudness of each accompaniment part, dB relative to the others (uniform range).
PART_LEVELS_DB = {"pad": (-3.0, 0.0), "piano": (-3.0, 0.0), "organ": (-4.0, -1.0),
                  "lead": (-6.0, -2.0), "bass": (-4.0, 0.0), "drums": (-4.0, 0.0)}


@dataclass
class Song:
    """One rendered song: float32 sources at 16 kHz and a description of what plays."""

    song_id: str
    vocals: np.ndarray
    accompaniment: np.ndarray
    info: dict = field(default_factory=dict)


@lru_cache(maxsize=8)
def singer_pool(seed: int) -> tuple[Singer, ...]:
    """The corpus's singers; a song picks one, so a voice recurs across songs (as in MIR-1K)."""
    rng = np.random.default_rng([seed, 0])
    return tuple(random_singer(rng, f"singer{i:02d}") for i in range(N_SINGERS))


def song_singer(seed: int, index: int) -> Singer:
    """The singer of song ``index`` (a pure function of seed and index)."""
    rng = np.random.default_rng([seed, 3, index])
    return singer_pool(seed)[int(rng.integers(N_SINGERS))]


def song_id(seed: int, index: int) -> str:
    """``{singer}_{song}`` as MIR-1K names its songs; song numbers start at 1."""
    return f"{song_singer(seed, index).name}_{index + 1:03d}"


def _rms(x: np.ndarray) -> float:
    loud = np.abs(x) > 1e-3 * (np.max(np.abs(x)) + 1e-12)
    return float(np.sqrt(np.mean(x[loud].astype(np.float64) ** 2))) if loud.any() else 0.0


def render_song(seed: int, index: int, seconds: float, sample_rate: int = SAMPLE_RATE) -> Song:
    """Render song ``index`` of the corpus drawn with ``seed``: vocals and accompaniment."""
    rng = np.random.default_rng([seed, 1, index])
    singer = song_singer(seed, index)
    n = int(round(seconds * sample_rate))
    score = compose(rng, seconds, singer.vocal_range)

    accompaniment = np.zeros(n, dtype=np.float32)
    tracks = {name: render_part(notes, random_timbre(rng, name), n, sample_rate, rng)
              for name, notes in sorted(score.parts.items())}
    if score.drums:
        tracks["drums"] = render_drums(score.drums, n, sample_rate, rng)
    for name, track in tracks.items():
        rms = _rms(track)
        if rms > 0:
            level = 10 ** (rng.uniform(*PART_LEVELS_DB[name]) / 20)
            accompaniment += np.float32(level / rms) * track

    vocals = render_voice(score.melody, singer, n, sample_rate, rng)
    info = {"singer": singer.name, "key": score.key_name, "tempo_bpm": round(score.tempo_bpm, 2),
            "instruments": sorted(tracks), "sung_notes": len(score.melody)}
    return Song(song_id(seed, index), vocals, accompaniment, info)


def clip_bounds(n_samples: int, rng: np.random.Generator,
                sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Cut a song into consecutive clips of 4-10 s (one shorter clip if the song is < 4 s)."""
    low, high = (int(s * sample_rate) for s in CLIP_SECONDS)
    bounds, start = [], 0
    while n_samples - start > high:
        length = int(rng.integers(low, min(high, n_samples - start - low) + 1))
        bounds.append((start, start + length))
        start += length
    bounds.append((start, n_samples))
    return bounds


def split_songs(n_songs: int, seed: int) -> dict[str, list[int]]:
    """Song numbers per split, about 70/10/20, the test split getting at least 20%."""
    order = [int(i) for i in np.random.default_rng([seed, 2]).permutation(n_songs)]
    n_test = int(np.ceil(SPLIT_FRACTIONS["test"] * n_songs))
    n_valid = int(round(SPLIT_FRACTIONS["valid"] * n_songs)) if n_songs - n_test >= 2 else 0
    return {"train": sorted(order[n_test + n_valid:]),
            "valid": sorted(order[n_test:n_test + n_valid]),
            "test": sorted(order[:n_test])}


def mix_clip(vocals: np.ndarray, accompaniment: np.ndarray, var_db: float) -> np.ndarray:
    """Stereo (samples, 2) clip: left accompaniment, right vocals scaled to ``var_db``.

    Both channels get the same final gain so that the peak of either source and of
    their sum is ``PEAK``.
    """
    e_voc = float(np.sum(vocals.astype(np.float64) ** 2))
    e_acc = float(np.sum(accompaniment.astype(np.float64) ** 2))
    v = vocals.astype(np.float64)
    if e_voc > 0 and e_acc > 0:
        v *= np.sqrt(e_acc / e_voc) * 10 ** (var_db / 20)
    a = accompaniment.astype(np.float64)
    peak = max(np.max(np.abs(a)), np.max(np.abs(v)), np.max(np.abs(a + v)), 1e-9)
    return (np.stack([a, v], axis=1) * (PEAK / peak)).astype(np.float32)


def synthetic_clips(count: int, seconds: float, seed: int) -> list[Clip]:
    """``count`` whole songs of corpus ``seed``, mixed at 0 dB and kept in memory (for
    calibration, benchmarks and tests that need music but no corpus on disk)."""
    clips = []
    for index in range(count):
        song = render_song(seed, index, seconds)
        stereo = mix_clip(song.vocals, song.accompaniment, var_db=0.0)
        accompaniment, vocals = stereo[:, 0].copy(), stereo[:, 1].copy()
        clips.append(Clip(song.song_id, accompaniment + vocals, vocals, accompaniment))
    return clips


def corpus_parameters(songs: int, seconds: float, seed: int) -> dict:
    """What determines the corpus's content (compared when writing into an existing folder)."""
    return {"songs": int(songs), "seconds": float(seconds), "seed": int(seed),
            "sample_rate": SAMPLE_RATE, "clip_seconds": list(CLIP_SECONDS),
            "var_db": list(VAR_DB), "generator_version": GENERATOR_VERSION}


def _check_arguments(songs: int, seconds: float, seed: int) -> None:
    if int(songs) != songs or songs < 1:
        raise ValueError(f"songs must be a positive whole number, got {songs}")
    if not np.isfinite(seconds) or seconds < 1.0:
        raise ValueError(f"seconds must be at least 1, got {seconds}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed}")


def _check_destination(out: Path, parameters: dict) -> None:
    """Refuse a non-empty folder unless it holds a corpus written with the same parameters."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    meta_path = out / SPLITS_FILE
    hint = "choose an empty or new folder"
    if not meta_path.is_file():
        raise ValueError(f"{out} is not empty and holds no {SPLITS_FILE} of an earlier corpus; "
                         f"{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: unreadable ({exc}); {hint}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CORPUS_FORMAT:
        raise ValueError(f"{out} is not empty and its {SPLITS_FILE} is not a tinysep synthetic "
                         f"corpus; {hint}")
    old = meta.get("parameters", {})
    diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in parameters.items() if old.get(k) != v]
    if diff:
        raise ValueError(f"{out} holds a corpus with other parameters ({', '.join(diff)}); "
                         f"{hint} or delete it")


@dataclass
class CorpusSummary:
    """What `write_corpus` wrote: songs, clips and seconds of audio per split."""

    out_dir: Path
    songs: dict[str, int]
    clips: dict[str, int]
    seconds: dict[str, float]
    elapsed: float

    @property
    def total_minutes(self) -> float:
        return sum(self.seconds.values()) / 60.0


def plan_corpus(songs: int, seconds: float, seed: int) -> dict:
    """The corpus's metadata before rendering: splits, clip names and their bounds."""
    _check_arguments(songs, seconds, seed)
    n = int(round(seconds * SAMPLE_RATE))
    split_of = {i: name for name, idx in split_songs(songs, seed).items() for i in idx}
    clips, song_meta = {}, {}
    for i in range(songs):
        sid = song_id(seed, i)
        rng = np.random.default_rng([seed, 4, i])
        names = []
        for c, (a, b) in enumerate(clip_bounds(n, rng), start=1):
            name = f"{sid}_{c:02d}"
            clips[name] = {"song": sid, "split": split_of[i], "start_seconds": a / SAMPLE_RATE,
                           "seconds": (b - a) / SAMPLE_RATE,
                           "var_db": round(float(rng.uniform(*VAR_DB)), 4)}
            names.append(name)
        song_meta[sid] = {"index": i, "split": split_of[i], "clips": names}
    splits = {s: [c for c, m in clips.items() if m["split"] == s] for s in SPLIT_FRACTIONS}
    return {"format": CORPUS_FORMAT, "kit_version": tinysep.__version__,
            "parameters": corpus_parameters(songs, seconds, seed), "complete": False,
            "channels": {"left": "accompaniment", "right": "vocals"},
            "splits": splits, "songs": song_meta, "clips": clips}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def write_corpus(out_dir: str | Path, songs: int, seconds: float, seed: int,
                 progress: bool = True) -> CorpusSummary:
    """Render ``songs`` songs of ``seconds`` each and write them in MIR-1K layout.

    Writes ``out_dir/Wavfile/{singer}_{song}_{clip:02d}.wav`` (16 kHz, 16-bit, left
    accompaniment, right vocals) and ``out_dir/splits.json``. Refuses a non-empty
    folder unless it holds an earlier corpus with the same parameters (then it is
    rewritten, with the same bytes).
    """
    from tqdm import tqdm

    begin = time.perf_counter()
    out = Path(out_dir)
    meta = plan_corpus(songs, seconds, seed)
    _check_destination(out, meta["parameters"])
    wav_dir = out / WAV_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out / SPLITS_FILE
    _write_json(meta_path, meta)

    for i in tqdm(range(songs), desc="synth songs", unit="song", file=sys.stderr,
                  disable=not progress):
        song = render_song(seed, i, seconds)
        song_meta = meta["songs"][song.song_id]
        song_meta.update(song.info)
        for name in song_meta["clips"]:
            clip = meta["clips"][name]
            a = int(round(clip["start_seconds"] * SAMPLE_RATE))
            b = a + int(round(clip["seconds"] * SAMPLE_RATE))
            stereo = mix_clip(song.vocals[a:b], song.accompaniment[a:b], clip["var_db"])
            write_audio(wav_dir / f"{name}.wav", stereo, SAMPLE_RATE)
    meta["complete"] = True
    _write_json(meta_path, meta)

    per_split = {s: [meta["clips"][c] for c in meta["splits"][s]] for s in SPLIT_FRACTIONS}
    return CorpusSummary(
        out_dir=out,
        songs={s: len({c["song"] for c in cl}) for s, cl in per_split.items()},
        clips={s: len(cl) for s, cl in per_split.items()},
        seconds={s: float(sum(c["seconds"] for c in cl)) for s, cl in per_split.items()},
        elapsed=time.perf_counter() - begin,
    )
