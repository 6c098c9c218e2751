"""Randomized production around the engines: rooms, EQ, dynamics, saturation, noise, doubling.

Everything nonlinear (compression, saturation) is applied per stem, everything shared
(room, band limits) is linear and applied to every accompaniment stem alike, so the stems
still sum to the mix exactly. The vocal stem carries its own reverb and doubling (as a
produced vocal stem does); the noise floor belongs to the accompaniment ("other").
Parameters are drawn from ``numpy.random.default_rng([seed, 7, song])``.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from tinysep.data.sources import ACCOMPANIMENT_STEMS, STEMS


def room_ir(rng: np.random.Generator, sr: int, rt60: float, predelay: float,
            brightness: float) -> np.ndarray:
    """A synthetic room: sparse early reflections then exponentially decaying noise that
    darkens over time (high frequencies die first)."""
    n = int((predelay + rt60 * 1.1) * sr) + 1
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(predelay * sr)] = 0
    # darken the late tail: blend of the tail and a low-passed copy, weighted by time
    cutoff = 1500 + 5000 * brightness
    low = sosfilt(butter(2, min(cutoff, 0.45 * sr), fs=sr, output="sos"), tail)
    w = np.clip(t / max(rt60, 1e-3), 0, 1)
    tail = (1 - w) * tail + w * low
    ir = 0.3 * tail / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    for _ in range(int(rng.integers(3, 9))):
        k = int(rng.uniform(0.002, max(predelay, 0.004) + 0.02) * sr)
        if k < n:
            ir[k] += rng.uniform(-0.5, 0.5)
    ir[0] = 1.0
    return ir


def tilt_eq(x: np.ndarray, sr: int, db_per_octave: float, pivot: float = 1000.0) -> np.ndarray:
    """A gentle spectral tilt: a first-order shelf around ``pivot`` (+ brightens)."""
    if abs(db_per_octave) < 1e-3:
        return x
    b, a = butter(1, pivot, btype="high", fs=sr)
    high = lfilter(b, a, x)
    gain = 10 ** (db_per_octave * 3 / 20) - 1  # about three octaves of tilt above the pivot
    return x + gain * high


def compress(x: np.ndarray, sr: int, threshold_db: float, ratio: float,
             release: float = 0.12) -> np.ndarray:
    """Feed-forward RMS compressor with make-up gain back to the input's RMS."""
    power = lfilter([1 - np.exp(-1 / (release * sr))], [1, -np.exp(-1 / (release * sr))],
                    x.astype(np.float64) ** 2)
    rms = np.sqrt(np.maximum(power, 1e-12))
    ref = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    level_db = 20 * np.log10(rms / ref)
    over = np.maximum(level_db - threshold_db, 0)
    gain = 10 ** (-over * (1 - 1 / ratio) / 20)
    y = x * gain
    return y * (ref / (np.sqrt(np.mean(y ** 2)) + 1e-12))


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """Soft clipping (tanh) at ``drive`` times the signal's peak, level kept."""
    peak = np.max(np.abs(x)) + 1e-12
    return np.tanh(drive * x / peak) * peak / np.tanh(drive)


def band_limit(x: np.ndarray, sr: int, low: float, high: float) -> np.ndarray:
    """High-pass at ``low`` Hz and low-pass at ``high`` Hz (telephone, lo-fi, old records)."""
    sos = butter(2, [low, min(high, 0.47 * sr)], btype="band", fs=sr, output="sos")
    return sosfilt(sos, x)


def double(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A second take: 10-35 ms later, a few cents off (resampled), a little quieter."""
    cents = rng.uniform(-12, 12)
    factor = 2 ** (cents / 1200)
    n = len(x)
    src = np.arange(n) * factor
    take = np.interp(src, np.arange(n), x, right=0.0)
    delay = int(rng.uniform(0.010, 0.035) * sr)
    take = np.concatenate([np.zeros(delay), take[: n - delay]])
    return x + rng.uniform(0.4, 0.8) * take


def _noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pink-ish noise (white through a 1/f filter), or mains hum with harmonics."""
    if rng.random() < 0.25:
        t = np.arange(n) / sr
        mains = 50.0 if rng.random() < 0.5 else 60.0
        return sum(np.sin(2 * np.pi * mains * k * t) / k for k in (1, 2, 3, 5))
    white = rng.standard_normal(n)
    return lfilter([0.049922, -0.095993, 0.050612, -0.004408],
                   [1, -2.494956, 2.017265, -0.522189], white)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def produce(stems: dict[str, np.ndarray], sr: int, rng: np.random.Generator) -> tuple[
        dict[str, np.ndarray], dict]:
    """Apply a random production to the four stems; returns them and what was done."""
    out = {k: np.asarray(v, np.float64) for k, v in stems.items()}
    info: dict = {}
    for name in STEMS:
        x = out[name]
        if _rms(x) == 0:
            continue
        x = tilt_eq(x, sr, float(rng.uniform(-2.0, 2.0)))
        if rng.random() < 0.6:
            x = compress(x, sr, float(rng.uniform(-12, -3)), float(rng.uniform(1.5, 6)))
        if rng.random() < 0.25:
            x = saturate(x, float(rng.uniform(1.2, 4.0)))
        out[name] = x
    voc = out["vocals"]
    info["vocal_double"] = bool(rng.random() < 0.35)
    if info["vocal_double"]:
        voc = double(voc, sr, rng)
    vocal_rt60 = float(rng.uniform(0.3, 2.2))
    vocal_wet = float(rng.uniform(0.0, 1.2))
    ir = room_ir(rng, sr, vocal_rt60, float(rng.uniform(0.0, 0.06)), float(rng.uniform(0, 1)))
    ir[0] = 0.0  # wet part only
    out["vocals"] = voc + vocal_wet * fftconvolve(voc, ir)[: len(voc)]
    out["vocals"] *= _rms(voc) / (_rms(out["vocals"]) + 1e-12)
    info["vocal_reverb"] = {"rt60": round(vocal_rt60, 3), "wet": round(vocal_wet, 3)}
    # one room for the band
    rt60 = float(rng.uniform(0.2, 1.6))
    wet = float(rng.uniform(0.0, 1.5))
    ir = room_ir(rng, sr, rt60, float(rng.uniform(0.0, 0.04)), float(rng.uniform(0, 1)))
    ir[1:] *= wet
    for name in ACCOMPANIMENT_STEMS:
        if _rms(out[name]) > 0:
            out[name] = fftconvolve(out[name], ir)[: len(out[name])]
    info["room"] = {"rt60": round(rt60, 3), "wet": round(wet, 3)}
    # shared band limits (linear: the stems still sum to the mix)
    if rng.random() < 0.3:
        low, high = float(rng.uniform(40, 250)), float(rng.uniform(3500, 7500))
        for name in STEMS:
            out[name] = band_limit(out[name], sr, low, high)
        info["band"] = [round(low, 1), round(high, 1)]
    if rng.random() < 0.5:
        acc = sum(out[name] for name in ACCOMPANIMENT_STEMS)
        floor_db = float(rng.uniform(-60, -30))
        noise = _noise(rng, len(acc), sr)
        out["other"] = out["other"] + noise * (_rms(acc) * 10 ** (floor_db / 20)
                                               / (_rms(noise) + 1e-12))
        info["noise_db"] = round(floor_db, 1)
    return {k: v.astype(np.float32) for k, v in out.items()}, info
