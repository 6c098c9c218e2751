"""Reading and writing wav files as float32, down-mixing to mono and resampling to 16 kHz.

Every error names the file, so a bad file in a folder of a thousand is easy to find.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile

from firmware_host.bundle.layout import SAMPLE_RATE  # the kit's one sample rate
from tinysep.quiet import native_stderr_captured

# header values a readable recording can hold: telephone-band rates up to the highest rate
# audio interfaces record at, and up to 64 channels
SAMPLE_RATE_LIMITS = (1000, 768000)
MAX_CHANNELS = 64


# File endings libsndfile reads (what `read_audio` opens when a folder is searched for audio).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au",
                  ".w64")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 of shape ``(samples, channels)`` and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        with native_stderr_captured():  # decoders write notes on broken files to fd 2
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no audio samples")
    check_audio_header(path, int(rate), data.shape[1])
    check_finite(path, data, int(rate))
    return data, int(rate)


def check_audio_header(path: str | Path, sample_rate: int, channels: int) -> None:
    """ValueError naming ``path`` when its header gives a rate or channel count no recording
    has: most likely a damaged header, and resampling from it would take minutes or say
    nothing."""
    low, high = SAMPLE_RATE_LIMITS
    if not low <= sample_rate <= high:
        raise ValueError(f"{path}: header says {sample_rate} Hz; expected a sample rate from "
                         f"{low} to {high} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"{path}: header says {channels} channels; expected 1 to "
                         f"{MAX_CHANNELS}")


def check_finite(path: str | Path, audio: np.ndarray, sample_rate: int, first: int = 0) -> None:
    """ValueError naming ``path`` and the time of the first NaN or infinite sample of
    ``audio`` (``(samples,)`` or ``(samples, channels)``, read from sample ``first`` on)."""
    bad = ~np.isfinite(audio)
    if bad.any():
        sample = first + int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
        raise ValueError(f"{path}: sample {sample} ({sample / sample_rate:.3f} s) is NaN or "
                         "infinite; expected finite audio samples")


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mean over channels of ``(samples, channels)`` audio; 1-D input is returned as is."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"expected audio of shape (samples,) or (samples, channels), "
                         f"got {audio.shape}")
    return audio.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(audio: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling along axis 0 (``scipy.signal.resample_poly``), float32 out."""
    audio = np.asarray(audio)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(from_rate), int(to_rate))
    out = resample_poly(audio.astype(np.float64), int(to_rate) // g, int(from_rate) // g, axis=0)
    return out.astype(np.float32)


def read_mono(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file, average its channels and resample it to ``sample_rate``: float32 ``(n,)``."""
    data, rate = read_audio(path)
    return resample(to_mono(data), rate, sample_rate)


def write_audio(
    path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16"
) -> None:
    """Write ``(samples,)`` or ``(samples, channels)`` float audio, clipped to [-1, 1]."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.shape[0] == 0:
        raise ValueError(f"{path}: expected non-empty (samples,) or (samples, channels) audio, "
                         f"got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{path}: refusing to write audio that holds NaN or infinity")
    try:
        soundfile.write(str(path), np.clip(audio, -1.0, 1.0), int(sample_rate), subtype=subtype)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot write audio ({exc})") from exc
