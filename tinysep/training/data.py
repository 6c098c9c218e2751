"""Training data: load and check the splits, fingerprint them, and feed batches to the steps.

Batch ``k`` of a run is drawn from a generator seeded with ``(seed, k)``, so the data a
step sees depends only on the seed and the step number: a run resumed at step ``k``
sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tinysep.data.augment import drawn_chunks
from tinysep.data.clip import SOURCES, Clip
from tinysep.data.loaders import SPLITS_FILE, find_clips, load_clips
from tinysep.data.singing import DEFAULT_VOICES
from tinysep.dsp import HOP_SAMPLES, N_FFT, SAMPLE_RATE
from tinysep.metrics.bss import MIN_SAMPLES
from tinysep.training.prefetch import PrefetchedBatches

MIN_TRAIN_CLIPS = 2
MIN_VALID_CLIPS = 1
MIN_CLIP_SAMPLES = N_FFT  # one analysis window


@dataclass
class TrainingData:
    """The clips a run trains and validates on, and their content fingerprint."""

    train: list[Clip]
    valid: list[Clip]
    fingerprint: dict


def _check_clips(clips: Sequence[Clip], root, split: str) -> None:
    for clip in clips:
        if clip.sample_rate != SAMPLE_RATE:
            raise ValueError(f"{root} [{split}] clip {clip.name}: sample rate {clip.sample_rate} "
                             f"Hz, expected {SAMPLE_RATE} Hz")
        if len(clip.mixture) < MIN_CLIP_SAMPLES:
            raise ValueError(
                f"{root} [{split}] clip {clip.name} has {len(clip.mixture)} samples, shorter than "
                f"one {MIN_CLIP_SAMPLES}-sample analysis window; remove it or use longer clips"
            )
        for name in clip.sources:
            if not np.all(np.isfinite(clip.source(name))):
                raise ValueError(f"{root} [{split}] clip {clip.name}: {name} holds NaN or "
                                 f"infinite samples")


def fingerprint_clips(train: Sequence[Clip], valid: Sequence[Clip]) -> dict:
    """sha256 over every clip's name and sample values (each of its sources), per split,
    plus sizes.

    Independent of file paths, formats and modification times: two folders holding the
    same audio have the same fingerprint.
    """
    out: dict = {}
    digest_all = hashlib.sha256()
    for split, clips in (("train", train), ("valid", valid)):
        digest = hashlib.sha256()
        for clip in sorted(clips, key=lambda c: c.name):
            digest.update(clip.name.encode("utf-8") + b"\0")
            for name in clip.sources:
                digest.update(np.ascontiguousarray(clip.source(name), np.float32).tobytes())
        out[split] = {
            "clips": len(clips),
            "seconds": round(float(sum(c.seconds for c in clips)), 3),
            "sha256": digest.hexdigest(),
        }
        digest_all.update(digest.digest())
    out["sha256"] = digest_all.hexdigest()
    return out


def load_training_data(root, dataset: str = "auto", progress: bool = True,
                       valid_root=None, sources: Sequence[str] = SOURCES) -> TrainingData:
    """The train and valid splits of the dataset at ``root``, checked for training; the
    valid split comes from ``valid_root`` when given (e.g. a corpus of held-out engines,
    so that model selection rewards music the model does not train on). The clips are
    loaded for ``sources`` (the two default sources or the four stems).

    Errors (ValueError naming the folder, split or clip): fewer than
    :data:`MIN_TRAIN_CLIPS` train or :data:`MIN_VALID_CLIPS` valid clips, a clip shorter
    than one analysis window, non-finite samples, a wrong sample rate.
    """
    splits = {}
    for split, minimum in (("train", MIN_TRAIN_CLIPS), ("valid", MIN_VALID_CLIPS)):
        folder = valid_root if split == "valid" and valid_root else root
        found = find_clips(folder, dataset if folder == root else "auto", split, sources)
        if len(found) < minimum:
            raise ValueError(
                f"{folder}: the {split} split holds {len(found)} clip(s); training needs at "
                f"least {MIN_TRAIN_CLIPS} train and {MIN_VALID_CLIPS} valid clip(s)"
            )
        splits[split] = load_split_clips(found, folder, split, progress)
    return TrainingData(splits["train"], splits["valid"],
                        fingerprint_clips(splits["train"], splits["valid"]))


def load_split_clips(found: Sequence, folder, split: str, progress: bool = True) -> list[Clip]:
    """Load the clips ``found`` in ``split`` of ``folder``, checked as training checks them
    (length, finite samples, sample rate)."""
    clips = load_clips(found, progress=progress)
    _check_clips(clips, folder, split)
    return clips


def corpus_record(root, split: str) -> dict:
    """Which corpus and which music engines one split comes from, for the run's record:
    ``{"folder", "split", "engines": {"vocals": [...], "accompaniment": [...], "font": [...],
    "voice": [...]}}`` (engines only for a synthetic corpus whose ``splits.json`` names
    them)."""
    import json
    from pathlib import Path

    from tinysep.metrics.by_engine import clip_engines

    record: dict = {"folder": str(Path(root).resolve()), "split": split}
    try:
        engines_of = clip_engines(root)
        meta = json.loads((Path(root) / SPLITS_FILE).read_text())
        names = meta["splits"][split]
        voices = meta.get("parameters", {}).get("voices", DEFAULT_VOICES)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return record
    engines: dict[str, set] = {}
    for name in names:
        for role, engine in engines_of.get(name, {}).items():
            if engine:
                engines.setdefault(role, set()).add(str(engine))
    if "festival" in engines.get("vocals", set()) and "voice" not in engines:
        # written before clips named their voice: the corpus's voices sang its festival songs
        engines["voice"] = {str(v) for v in voices}
    if engines:
        record["engines"] = {role: sorted(found) for role, found in sorted(engines.items())}
    return record


def chunk_samples(chunk_seconds: float) -> int:
    """Samples in a training chunk: ``chunk_seconds`` rounded to whole hops (>= one window)."""
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    hops = max(int(round(chunk_seconds * SAMPLE_RATE / HOP_SAMPLES)), N_FFT // HOP_SAMPLES)
    return hops * HOP_SAMPLES


def batch_for_step(clips: Sequence[Clip], step: int, seed: int, batch_size: int,
                   samples: int, augment: dict,
                   sources: Sequence[str] = SOURCES) -> tuple[np.ndarray, np.ndarray]:
    """Batch number ``step``: mixtures ``(B, samples)`` and sources ``(B, S, samples)``.

    Augmentation (paper 2): random offsets, per-source random gain and sign flip,
    cross-song remix (see :func:`tinysep.data.augment.drawn_chunks`); ``augment``
    holds its keyword options.
    """
    mixtures, parts, _ = drawn_batch_for_step(clips, step, seed, batch_size, samples,
                                              augment, sources)
    return mixtures, parts


def drawn_batch_for_step(clips: Sequence[Clip], step: int, seed: int, batch_size: int,
                         samples: int, augment: dict, sources: Sequence[str] = SOURCES,
                         clip_odds: np.ndarray | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`batch_for_step` and, as ``(B, S)`` ints, the index in ``clips`` of the clip
    each source of each chunk was drawn from; ``clip_odds`` weighs how often each clip is
    drawn (:func:`tinysep.data.augment.drawn_chunks`)."""
    rng = np.random.default_rng([int(seed), int(step)])
    drawn = list(drawn_chunks(clips, samples, rng, count=batch_size, sources=sources,
                              clip_odds=clip_odds, **augment))
    mixtures = np.stack([chunk[0] for _, chunk in drawn])
    parts = np.stack([np.stack(chunk[1:]) for _, chunk in drawn])
    picks = np.array([picked for picked, _ in drawn], dtype=np.int64)
    return (mixtures.astype(np.float32, copy=False), parts.astype(np.float32, copy=False),
            picks)


def taught_shares(picks: np.ndarray, untaught: np.ndarray | None) -> np.ndarray:
    """``(B,)`` float32: 1 for a chunk the teacher is asked about, 0 for one that drew a
    source the teacher must not teach (``untaught[clip, source]``, see
    :func:`sources_made_by`); all ones without ``untaught``."""
    if untaught is None:
        return np.ones(len(picks), np.float32)
    columns = np.arange(picks.shape[1])[None, :]
    return (~untaught[picks, columns].any(axis=1)).astype(np.float32)


def sources_made_by(clips: Sequence[Clip], engines_of: dict[str, dict],
                    wanted: dict[str, set[str]], sources: Sequence[str] = SOURCES) -> np.ndarray:
    """``(clips, sources)`` bools: True where a clip's source was made by an engine of
    ``wanted`` (``{role: {engines}}``, :func:`tinysep.metrics.by_engine.parse_engine_filter`),
    by the clip's ``engines_of`` record (``splits.json``;
    :func:`tinysep.metrics.by_engine.source_made_by`)."""
    from tinysep.metrics.by_engine import source_made_by

    return np.array([[source_made_by(engines_of.get(clip.name, {}), source, wanted)
                      for source in sources] for clip in clips], dtype=bool).reshape(
        len(clips), len(sources))


def batches_from(clips: Sequence[Clip], first_step: int, seed: int, batch_size: int,
                 samples: int, augment: dict, sources: Sequence[str] = SOURCES,
                 untaught: np.ndarray | None = None, clip_odds: np.ndarray | None = None,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless batches for steps ``first_step, first_step + 1, ...``: mixtures, sources and
    each chunk's share of the teacher (:func:`taught_shares`)."""
    step = int(first_step)
    while True:
        mixtures, parts, picks = drawn_batch_for_step(clips, step, seed, batch_size, samples,
                                                      augment, sources, clip_odds)
        yield mixtures, parts, taught_shares(picks, untaught)
        step += 1


def time_batches(clips: Sequence[Clip], augment: dict, batch_size: int, samples: int,
                 count: int, seed: int = 0) -> list[float]:
    """Wall seconds each of ``count`` consecutive batches took to make (as training makes
    them: :func:`batch_for_step` with ``augment``), for ``tinysep bench``. A first batch,
    which pays one-time costs (FFT plans, caches), is made before and not timed."""
    batch_for_step(clips, count, seed, batch_size, samples, augment)
    seconds = []
    for step in range(count):
        start = time.perf_counter()
        batch_for_step(clips, step, seed, batch_size, samples, augment)
        seconds.append(time.perf_counter() - start)
    return seconds


def prefetched_batches(clips: Sequence[Clip], first_step: int, seed: int, batch_size: int,
                       samples: int, augment: dict, sources: Sequence[str] = SOURCES,
                       untaught: np.ndarray | None = None, clip_odds: np.ndarray | None = None,
                       ) -> PrefetchedBatches:
    """:func:`batches_from` made ahead on a worker thread while the model trains
    (``taught``: :func:`taught_shares` of ``untaught``; ``clip_odds``: how often each clip
    is drawn); close it when training ends."""
    return PrefetchedBatches(batches_from(clips, first_step, seed, batch_size, samples,
                                          augment, sources, untaught, clip_odds))


def validation_clips(clips: Sequence[Clip], count: int, max_seconds: float,
                     levels_db: Sequence[float] = (0.0,)) -> list[Clip]:
    """``count`` valid clips spread evenly over the split (sorted by name, so over its
    songs), each long enough for BSS-eval and cut to ``max_seconds`` so that
    validation stays a small share of an epoch; each played at every level of
    ``levels_db`` (dB, references alike), so a model is also chosen for quiet input."""
    if count < 1:
        raise ValueError(f"valid_clips must be at least 1, got {count}")
    limit = int(max_seconds * SAMPLE_RATE)
    usable = [c for c in sorted(clips, key=lambda c: c.name) if len(c.mixture) >= MIN_SAMPLES]
    if not usable:
        raise ValueError(f"no validation clip has the {MIN_SAMPLES} samples BSS-eval needs "
                         f"({MIN_SAMPLES / SAMPLE_RATE:.3f} s)")
    picks = sorted(set(np.linspace(0, len(usable) - 1, min(count, len(usable))).round()))
    chosen = []
    for index in picks:
        clip = usable[int(index)]
        if len(clip.mixture) > limit:
            clip = clip.head(limit)
        chosen.append(clip)
    return [clip if level == 0 else clip.at_level(level)
            for level in levels_db for clip in chosen]
