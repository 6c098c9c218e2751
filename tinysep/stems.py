"""Turn an audio file of any rate, length and channel count into one audio file per source.

The separators run on 16 kHz mono; a song is read block by block (constant memory), each
channel resampled to 16 kHz with ``CONTEXT_SECONDS`` of the audio before the block (so a
causal separator sees the same past as in one pass) and separated; the estimates are
resampled back to the file's rate. The last source (``accompaniment``, or ``other``) also
receives the residual, input minus the sum of the estimates: the band above 8 kHz that a
16 kHz model never sees stays in the song, and the stems add up to the input exactly.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from tinysep.data.audio_io import SAMPLE_RATE, check_audio_header, check_finite, resample
from tinysep.data.sources import KNOWN_SOURCES
from tinysep.folder_writes import first_names, foreign_entries
from tinysep.progress import Progress
from tinysep.quiet import native_stderr_captured

BLOCK_SECONDS = 30.0  # audio separated per step; memory is bounded by this
CONTEXT_SECONDS = 4.0  # past audio fed before each block (receptive fields here are < 2 s)
MARGIN_SECONDS = 0.05  # audio read past each block so resampling has no edge inside it
# the stems' sample format, by the input's: float stays float (peaks above full scale kept,
# so the stems still add up to the input), deeper PCM keeps 24 bits, the rest 16
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
DEEP_PCM_SUBTYPES = ("PCM_24", "PCM_32")
PARTIAL_SUFFIX = ".partial"  # DIR/.<song>.partial/ holds a song's stems while they are written

MonoSeparator = Callable[[np.ndarray], dict]  # 16 kHz mono float32 -> {source: audio}


@dataclass(frozen=True)
class AudioFileInfo:
    """What a file holds, read from its header."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | Path) -> AudioFileInfo:
    """The header of an audio file; ValueError naming the file when it is not readable audio."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder, expected an audio file (wav, flac, ogg, mp3, ...)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        with native_stderr_captured():  # decoders write notes on broken files to fd 2
            info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc)
        if "does not exist" in reason:  # libsndfile's words for contents it cannot decode
            reason = "its contents are in no format libsndfile reads"
        raise ValueError(f"{path}: not a readable audio file ({reason})") from exc
    check_audio_header(path, int(info.samplerate), int(info.channels))
    if info.frames <= 0:
        raise ValueError(f"{path}: the file holds no audio samples")
    return AudioFileInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                         str(info.format), str(info.subtype))


def output_subtype(info: AudioFileInfo) -> str:
    """The wav sample format a song's stems are written in, from its input's."""
    if info.subtype in FLOAT_SUBTYPES:
        return "FLOAT"
    return "PCM_24" if info.subtype in DEEP_PCM_SUBTYPES else "PCM_16"


def sample_range(info: AudioFileInfo, start: float = 0.0,
                 duration: float | None = None) -> tuple[int, int]:
    """``[first, end)`` samples of ``info``'s file for ``--start`` / ``--duration`` seconds."""
    if not np.isfinite(start) or start < 0:
        raise ValueError(f"start must be a non-negative number of seconds, got {start}")
    if duration is not None and not (np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    rate = info.sample_rate
    first = info.frames if start >= info.seconds else int(round(start * rate))
    if first >= info.frames:
        raise ValueError(f"{info.path}: start {start:g} s is past its end ({info.seconds:.2f} s)")
    if duration is None or duration * rate >= info.frames - first:  # no int of a huge float
        return first, info.frames
    return first, min(info.frames, first + max(1, int(round(duration * rate))))


def song_name(path: Path) -> str:
    """The name of the folder that ``path``'s stems go to (its file name without the suffix);
    ValueError naming the file when that name is no plain folder inside the output folder."""
    name = path.stem
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    if name in ("", ".", "..") or any(sep in name for sep in separators):
        raise ValueError(f"{path}: its song name {name!r} (the file name without its suffix) "
                         "names no folder inside the output folder; rename the file")
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"{path}: its song name {name!r} is the name of the hidden folder "
                         "another song's stems are written to; rename the file")
    return name


def _check_target(path: Path, target: Path, partial: Path, overwrite: bool) -> None:
    """Refuse to separate ``path`` when writing its stems would delete something other than
    an earlier stems folder: the input itself, a file, a link, a folder not asked for, or
    files of the user's kept beside earlier stems."""
    resolved = path.resolve()
    for folder in (target, partial):
        if resolved.is_relative_to(folder.resolve()):
            raise ValueError(f"{path}: the input lies inside {folder}, which separating it "
                             "would replace; move the file or choose another output folder")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"{target} exists and is not a stems folder; move it away")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    if target.exists():
        _check_only_stems(target)


def _check_only_stems(target: Path) -> None:
    """ValueError when the stems folder ``target`` holds anything but stems (``NAME.wav`` of
    a source any model separates): a user's files there are never replaced."""
    others = foreign_entries(target, {f"{source}.wav" for source in KNOWN_SOURCES})
    if others:
        raise ValueError(f"{target} holds {first_names(others)}, which separating does not "
                         "write; --overwrite replaces only stems: move them out")


def _check_finite_stems(path: Path, stems: np.ndarray, sources: Sequence[str], first: int,
                        rate: int) -> None:
    """ValueError naming ``path`` when an estimate holds NaN or infinity: written as PCM it
    would be full-scale noise (sample values too large for the arithmetic, or a broken model)."""
    bad = ~np.isfinite(stems)
    if bad.any():
        frame, _, source = np.argwhere(bad)[0]
        raise ValueError(f"{path}: the {sources[source]} estimate is NaN or infinite at "
                         f"{(first + frame) / rate:.3f} s (sample values too large for the "
                         "separator, or a broken model); no stems written")


def _separate_channel(separator: MonoSeparator, audio: np.ndarray, rate: int,
                      sources: Sequence[str]) -> np.ndarray:
    """``(len(audio), S)`` estimates at ``rate`` for one channel."""
    mono16 = resample(audio, rate, SAMPLE_RATE)
    if mono16.size < 1:
        return np.zeros((audio.size, len(sources)), np.float32)
    estimates = separator(np.ascontiguousarray(mono16, np.float32))
    missing = [s for s in sources if s not in estimates]
    if missing:
        raise ValueError(f"the separator returned no {', '.join(missing)}")
    out = np.zeros((audio.size, len(sources)), np.float32)
    for i, source in enumerate(sources):
        back = resample(np.asarray(estimates[source], np.float32), SAMPLE_RATE, rate)
        n = min(back.size, audio.size)
        out[:n, i] = back[:n]
    return out


def _separate_block(separator: MonoSeparator, chunk: np.ndarray, keep: slice, rate: int,
                    sources: Sequence[str]) -> np.ndarray:
    """``(samples, channels, S)`` stems of ``chunk[keep]``, the residual in the last source;
    overflow gives NaN or infinity quietly here, and such stems are refused by the caller."""
    stems = np.zeros((keep.stop - keep.start, chunk.shape[1], len(sources)), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for ch in range(chunk.shape[1]):
            stems[:, ch] = _separate_channel(separator, chunk[:, ch], rate, sources)[keep]
        stems[..., -1] += chunk[keep] - stems.sum(axis=2)
    return stems


def separate_file(
    path: str | Path,
    out_dir: str | Path,
    separator: MonoSeparator,
    sources: Sequence[str],
    *,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    block_seconds: float = BLOCK_SECONDS,
    lookahead_seconds: float = 0.0,
) -> dict:
    """Write ``out_dir/<file stem>/<source>.wav`` for every source; returns a summary.

    ``lookahead_seconds`` is the future audio the separator's masks depend on (a model's
    ``mask_delay``); each block is read that much further, so block edges cost nothing.

    The stems are written into a hidden folder first and renamed into place at the end,
    so an interrupted or failed run leaves no half-written stems behind.
    """
    info = probe(path)
    first, end = sample_range(info, start, duration)
    name = song_name(info.path)
    target = Path(out_dir) / name
    partial = Path(out_dir) / f".{name}{PARTIAL_SUFFIX}"
    _check_target(info.path, target, partial, overwrite)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rate, block = info.sample_rate, max(1, int(round(block_seconds * info.sample_rate)))
    context = int(round(CONTEXT_SECONDS * rate))
    margin = int(round((MARGIN_SECONDS + lookahead_seconds) * rate))
    clipped = {s: 0 for s in sources}
    subtype = output_subtype(info)
    began = time.monotonic()
    writers = []
    try:
        writers = [
            soundfile.SoundFile(str(partial / f"{s}.wav"), "w", rate, info.channels,
                                subtype, format="WAV")
            for s in sources
        ]
        with soundfile.SoundFile(str(info.path)) as reader, Progress(
            (end - first) / rate, f"separating {info.path.name}", "s", enabled=progress
        ) as bar:
            for lo in range(first, end, block):
                hi = min(end, lo + block)
                read_lo, read_hi = max(0, lo - context), min(info.frames, hi + margin)
                try:
                    with native_stderr_captured():
                        reader.seek(read_lo)
                        chunk = reader.read(read_hi - read_lo, dtype="float32",
                                            always_2d=True)
                except RuntimeError as exc:  # libsndfile's errors are RuntimeErrors
                    raise ValueError(f"{info.path}: cannot decode the audio after "
                                     f"{read_lo / rate:.1f} s ({exc}); the file is damaged or "
                                     "cut short") from None
                if chunk.shape[0] < hi - read_lo:
                    raise ValueError(f"{info.path}: the file ends at sample "
                                     f"{read_lo + chunk.shape[0]}, its header says {info.frames}")
                check_finite(info.path, chunk, rate, first=read_lo)
                keep = slice(lo - read_lo, hi - read_lo)
                stems = _separate_block(separator, chunk, keep, rate, sources)
                _check_finite_stems(info.path, stems, sources, lo, rate)
                for i, (source, writer) in enumerate(zip(sources, writers, strict=True)):
                    stem = stems[..., i]
                    if subtype != "FLOAT":
                        clipped[source] += int(np.count_nonzero(np.abs(stem) > 1.0))
                        stem = np.clip(stem, -1.0, 1.0)
                    try:
                        writer.write(stem)
                    except RuntimeError as exc:
                        raise OSError(f"{partial / (source + '.wav')}: cannot write the "
                                      f"stem ({exc})") from None
                bar.update((hi - lo) / rate)
    except BaseException:
        for writer in writers:
            writer.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for writer in writers:
        writer.close()
    if target.exists():
        try:
            _check_only_stems(target)  # again: a file may have come while the song separated
        except ValueError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(target)
    partial.rename(target)
    seconds = (end - first) / rate
    wall = time.monotonic() - began
    return {
        "input": str(info.path),
        "sample_rate": rate,
        "channels": info.channels,
        "start_seconds": first / rate,
        "seconds": seconds,
        "outputs": {s: str(target / f"{s}.wav") for s in sources},
        "clipped_samples": clipped,
        "wall_seconds": wall,
        "realtime_factor": seconds / wall if wall > 0 else None,
    }
