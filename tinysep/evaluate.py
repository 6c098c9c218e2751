"""Evaluate separation methods on a set of clips: in parallel, summarised, saved as JSON.

Every clip is one task: a worker process loads it itself (only the small, picklable
clip source crosses the process boundary), scores the mixture once as the NSDR
baseline, then runs and scores every requested method on it. Results stream back to
the parent, which keeps a JSON report on disk up to date, so an interrupted or crashed
run still leaves the clips that finished. A clip or method that raises is recorded
with its error and the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tinysep
from tinysep.data.clip import SOURCES, Clip
from tinysep.jsonfile import write_json_atomic
from tinysep.methods import SEPARATOR_FACTORIES, resolve_separator
from tinysep.metrics.summary import summarize_methods

# Seconds between two rewrites of the JSON report while a run is going.
JSON_WRITE_INTERVAL_S = 2.0
# Thread pools that would oversubscribe the cores when every core already runs a worker.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class ClipSource(Protocol):
    """What evaluation needs from a data loader: a name and a way to load the clip."""

    name: str

    def load(self) -> Clip: ...


@dataclass(frozen=True)
class PlayedSource:
    """A clip played ``level_db`` louder (negative: quieter), its references alike, so SDR
    tells how a method holds up on quiet or loud recordings (no clipping is added); with
    ``silenced``, that source is left out of the mixture (a band alone, say), so every method
    separates what remains and its estimate of the silenced source is scored as leak."""

    source: ClipSource
    level_db: float = 0.0
    silenced: str | None = None

    @property
    def name(self) -> str:
        return self.source.name

    def load(self) -> Clip:
        clip = self.source.load()
        if self.level_db:
            clip = clip.at_level(self.level_db)
        return clip if self.silenced is None else clip.without(self.silenced)


def _error_entry(exc: BaseException) -> dict:
    return {
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


NO_REFERENCE = "no reference"  # a clip given without its true sources: separated, not scored


def _unscored(sources=SOURCES) -> dict:
    from tinysep.metrics.scores import VALUE_KEYS

    return {name: {key: None for key in VALUE_KEYS} | {"skipped": NO_REFERENCE}
            for name in sources}


def safe_name(text: str) -> str:
    """``text`` as one file or folder name (path separators and colons replaced)."""
    cleaned = "".join("-" if c in "/\\:" else c for c in text).strip(". ")
    return cleaned or "_"


def save_clip_audio(folder: str | Path, clip: Clip, estimates: dict[str, dict]) -> Path:
    """Write ``FOLDER/<clip>/mixture.wav``, the references (``reference/<source>.wav``)
    when the clip has them and ``<method>/<source>.wav`` per method; returns the clip's
    folder. Method folders are the short labels of the table (``model:runs/a`` ->
    ``model-a``)."""
    import numpy as np

    from tinysep.data.audio_io import write_audio
    from tinysep.metrics.table import short_labels

    out = Path(folder) / safe_name(clip.name)
    out.mkdir(parents=True, exist_ok=True)
    write_audio(out / "mixture.wav", clip.mixture, clip.sample_rate)
    if getattr(clip, "has_references", True):
        (out / "reference").mkdir(exist_ok=True)
        for name in clip.sources:
            write_audio(out / "reference" / f"{name}.wav", clip.source(name), clip.sample_rate)
    labels = short_labels(estimates)
    for method, sources in estimates.items():
        method_dir = out / safe_name(labels[method])
        method_dir.mkdir(exist_ok=True)
        for name, audio in sources.items():
            write_audio(method_dir / f"{name}.wav", np.nan_to_num(audio), clip.sample_rate)
    return out


def evaluate_clip(clip: Clip, methods: Sequence[str], save_audio: str | Path | None = None,
                  ) -> dict:
    """Score every method on one loaded clip; a failing method is recorded, not raised.

    Returns ``{"name", "song", "samples", "seconds", "mixture": scores, "methods": {method:
    {"sources": scores, "separate_seconds", "score_seconds"} or {"error", "traceback"}}}``
    with ``scores`` as produced by :func:`tinysep.metrics.score_estimates`. A clip
    without references (``has_references`` False) is separated but every score is None,
    skipped as "no reference". With ``save_audio`` the mixture, references and each
    method's sources are written as wav files (:func:`save_clip_audio`).
    """
    from tinysep.dsp import SAMPLE_RATE
    from tinysep.metrics import score_estimates, score_mixture
    from tinysep.metrics.references import is_partial

    if clip.sample_rate != SAMPLE_RATE:
        raise ValueError(f"clip {clip.name}: sample rate {clip.sample_rate} Hz, expected "
                         f"{SAMPLE_RATE} Hz (the loaders resample)")
    scored = getattr(clip, "has_references", True)
    references = {name: clip.source(name) for name in clip.sources}
    framewise = tuple(clip.sources) != SOURCES  # stems: also the MUSDB18 (v4) figures
    start = time.perf_counter()
    mixture_scores = (score_mixture(references, clip.mixture, framewise=framewise) if scored
                      else _unscored(clip.sources))
    record: dict[str, Any] = {
        "name": clip.name,
        "song": clip.song_id,  # clips of one song are not independent: intervals resample songs
        "samples": int(len(clip.mixture)),
        "seconds": float(clip.seconds),
        "mixture": mixture_scores,
        "mixture_score_seconds": time.perf_counter() - start,
        "references": scored,
        "methods": {},
    }
    kept: dict[str, dict] = {}
    for method in methods:
        try:
            start = time.perf_counter()
            separator = resolve_separator(method)
            estimates = separator(clip)
            separated = time.perf_counter()
            if save_audio is not None:
                kept[method] = estimates
            # a model of other sources (two on a four-stem clip) is scored on those it shares
            shared = {name: audio for name, audio in estimates.items() if name in references}
            if scored and not shared:
                raise ValueError(f"{method} separates {', '.join(estimates)}; clip {clip.name} "
                                 f"has references for {', '.join(references)}: none in common")
            partial = is_partial(separator) or set(shared) != set(references)
            scores = (score_estimates(references, shared, mixture_scores,
                                      partial=partial, framewise=framewise)
                      if scored else _unscored(clip.sources))
            record["methods"][method] = {
                "sources": scores,
                "separate_seconds": separated - start,
                "score_seconds": time.perf_counter() - separated,
            }
        except Exception as exc:  # one method failing must not lose the others
            record["methods"][method] = _error_entry(exc)
    if save_audio is not None:
        record["audio_folder"] = str(save_clip_audio(save_audio, clip, kept))
    return record


def _evaluate_task(
    index: int, source: ClipSource, methods: Sequence[str], factories: dict | None = None,
    save_audio: str | None = None,
) -> tuple[int, dict]:
    """Worker entry point: load the clip here, in the worker, then evaluate it."""
    if factories:
        SEPARATOR_FACTORIES.update(factories)
    name = str(getattr(source, "name", f"clip {index}"))
    try:
        start = time.perf_counter()
        clip = source.load()
        load_seconds = time.perf_counter() - start
    except Exception as exc:
        return index, {"name": name, **_error_entry(exc)}
    try:
        record = evaluate_clip(clip, methods, save_audio)
    except Exception as exc:
        return index, {"name": name, **_error_entry(exc)}
    record["load_seconds"] = load_seconds
    return index, record


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which writes the report and stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers inherit the environment: one BLAS/OpenMP thread each."""
    saved = {key: os.environ.get(key) for key in _THREAD_ENV}
    os.environ.update({key: "1" for key in _THREAD_ENV})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Report:
    """The JSON report of one run, rebuilt from the records that finished so far."""

    def __init__(self, n_clips: int, methods: Sequence[str], jobs: int, meta: dict | None):
        from tinysep.metrics import FILTER_LENGTH, METRIC_LIMIT_DB, SILENT_REFERENCE_DBFS

        self.records: dict[int, dict] = {}
        self.start = time.perf_counter()
        self.header = {
            "tinysep_version": tinysep.__version__,
            **(meta or {}),
            "methods": list(methods),
            "metrics": {
                "bss_eval": "BSS-eval v3 bss_eval_sources, whole clip, no permutation "
                "(fast_bss_eval)",
                "filter_length": FILTER_LENGTH,
                "limit_db": METRIC_LIMIT_DB,
                "silent_reference_dbfs": SILENT_REFERENCE_DBFS,
                "nsdr": "SDR(estimate) - SDR(mixture as estimate)",
                "gnsdr": "NSDR weighted by clip length",
            },
            "clips_total": n_clips,
            "jobs": jobs,
        }
        self.methods = list(methods)

    def build(self, status: str) -> dict:
        records = [self.records[i] for i in sorted(self.records)]
        done = [r for r in records if "error" not in r]
        wall = time.perf_counter() - self.start
        audio = sum(r["seconds"] for r in done)
        return {
            **self.header,
            "status": status,
            "clips_done": len(done),
            "clips_failed": len(records) - len(done),
            "timing": {
                "wall_seconds": wall,
                "audio_seconds": audio,
                "clip_seconds_per_wall_second": audio / wall if wall > 0 else None,
            },
            "summary": summarize_methods(done, self.methods),
            "failures": [{"name": r["name"], "error": r["error"]} for r in records if "error" in r],
            "clips": records,
        }


def evaluate(
    sources: Sequence[ClipSource],
    methods: Sequence[str],
    jobs: int | None = None,
    json_path: str | Path | None = None,
    progress: bool = True,
    meta: dict | None = None,
    in_process: bool = False,
    save_audio: str | Path | None = None,
) -> dict:
    """Evaluate ``methods`` on every clip of ``sources``; returns the full report.

    ``jobs`` spawned worker processes (default: the available cores) each load their
    clips and use one BLAS thread, so the cores are shared without oversubscription.
    ``in_process=True`` runs the clips one by one in this process instead (debugging,
    tests). With ``json_path`` the report is rewritten every few seconds and on exit,
    with ``status`` "running", "complete", "interrupted" or "failed", so a crash or
    Ctrl-C leaves the finished clips on disk. ``save_audio``: a folder that receives
    every clip's mixture, references and separated sources (:func:`save_clip_audio`).
    """
    from tinysep.progress import Progress

    save = None if save_audio is None else str(save_audio)

    methods = list(methods)
    for method in methods:
        resolve_separator(method)  # an unknown name fails before any work starts
    sources = list(sources)
    jobs = 1 if in_process else max(1, min(jobs or available_cores(), max(1, len(sources))))
    report = _Report(len(sources), methods, jobs, meta)
    path = Path(json_path) if json_path is not None else None
    bar = Progress(len(sources), "eval", unit="clip", enabled=progress)
    last_write = 0.0
    status = "failed"
    shown = methods[-1] if methods else None  # whose score the bar shows (none: all reused)

    def finished(index: int, record: dict) -> None:
        nonlocal last_write
        report.records[index] = record
        bar.update(1)
        entry = record.get("methods", {}).get(shown, {})
        sdr = entry.get("sources", {}).get("vocals", {}).get("sdr")
        if sdr is not None:
            bar.postfix(f"{record['name']}: {shown} vocals SDR {sdr:.1f} dB")
        if path is not None and time.monotonic() - last_write >= JSON_WRITE_INTERVAL_S:
            write_json_atomic(path, report.build("running"))
            last_write = time.monotonic()

    try:
        if in_process:
            for index, source in enumerate(sources):
                finished(*_evaluate_task(index, source, methods, None, save))
        else:
            _run_parallel(sources, methods, jobs, finished, save)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        final = report.build(status)
        if path is not None:
            write_json_atomic(path, final)
    return final


def _run_parallel(
    sources: Sequence[ClipSource],
    methods: Sequence[str],
    jobs: int,
    finished: Callable[[int, dict], None],
    save_audio: str | None = None,
) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_ignore_sigint)
    pending: dict[Future, int] = {}
    clean_exit = False
    try:
        with _single_threaded_children():
            for index, source in enumerate(sources):
                pending[executor.submit(_evaluate_task, index, source, methods,
                                        dict(SEPARATOR_FACTORIES), save_audio)] = index
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    finished(*future.result())
                except BrokenProcessPool as exc:
                    record = {"name": sources[index].name, **_error_entry(exc)}
                    record["error"] = f"a worker process died before this clip finished ({exc})"
                    finished(index, record)
        clean_exit = True
    finally:
        if not clean_exit:
            for future in pending:
                future.cancel()
            # Workers ignore SIGINT: stop them now instead of after their current clip.
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


def measure_speed(
    clips: Sequence[Clip], methods: Sequence[str], repeats: int = 3, isolated: bool = True
) -> dict:
    """Evaluation speed of one worker: clip-seconds per wall-second, per method.

    For each method and repeat, every clip is separated and scored; the rows hold the
    median over repeats of separation alone, scoring alone and both, plus a
    ``metrics`` row for scoring alone (its cost per method per clip, whatever the
    method). One warm-up pass first keeps lazy imports and JIT compiles out of the
    timings. ``isolated`` (default) measures in a spawned process with one BLAS thread,
    exactly like an evaluation worker; otherwise in this process as it is.
    """
    if not clips:
        raise ValueError("measure_speed needs at least one clip")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if not isolated:
        return _measure_speed(list(clips), list(methods), repeats)
    import multiprocessing

    with _single_threaded_children():
        executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        with executor:
            return executor.submit(_measure_speed, list(clips), list(methods), repeats,
                                   dict(SEPARATOR_FACTORIES)).result()


def _measure_speed(clips: list[Clip], methods: list[str], repeats: int,
                   factories: dict | None = None) -> dict:
    import numpy as np

    from tinysep.metrics import score_estimates, score_mixture

    if factories:
        SEPARATOR_FACTORIES.update(factories)
    audio = float(sum(c.seconds for c in clips))
    refs = [{name: c.source(name) for name in SOURCES} for c in clips]
    mixtures = [score_mixture(r, c.mixture) for r, c in zip(refs, clips, strict=True)]
    warm = clips[0]
    for method in methods:
        score_estimates(refs[0], resolve_separator(method)(warm), mixtures[0])

    def rate(seconds: list[float]) -> float:
        median = float(np.median(seconds))
        return audio / median if median > 0 else float("inf")

    rows = []
    score_times: list[float] = []
    for method in methods:
        separate_t, score_t = [], []
        for _ in range(repeats):
            sep = sco = 0.0
            for clip, ref, mix in zip(clips, refs, mixtures, strict=True):
                start = time.perf_counter()
                estimates = resolve_separator(method)(clip)
                mid = time.perf_counter()
                score_estimates(ref, estimates, mix)
                sep += mid - start
                sco += time.perf_counter() - mid
            separate_t.append(sep)
            score_t.append(sco)
        score_times += score_t
        both = [a + b for a, b in zip(separate_t, score_t, strict=True)]
        rows.append({
            "method": method,
            "separate_x": rate(separate_t),
            "score_x": rate(score_t),
            "total_x": rate(both),
            "total_seconds_median": float(np.median(both)),
        })
    rows.append({
        "method": "metrics",
        "separate_x": None,
        "score_x": rate(score_times),
        "total_x": rate(score_times),
        "total_seconds_median": float(np.median(score_times)),
    })
    return {
        "clips": len(clips),
        "audio_seconds": audio,
        "repeats": repeats,
        "unit": "clip-seconds per wall-second, one process (x real time)",
        "rows": rows,
    }
