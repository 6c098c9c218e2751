"""A synthetic singing voice: glottal pulses through vowel formants, with consonants.

Source: the derivative of a Rosenberg glottal pulse (open and speed quotients per
singer, the closure step band-limited with a polyBLEP), extra spectral tilt and
aspiration noise. Pitch: the melody's notes joined by portamento, with delayed vibrato
and slow drift. Filter: five formant resonators in cascade (F1-F3 per vowel); the output is
a cross-fade of the vowel filters that follows the syllables (plus a nasal murmur at
some onsets). Consonants: filtered noise bursts (fricatives, plosives) before syllables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, lfilter, lfilter_zi, sosfilt, sosfreqz

from tinysep.data.score import VOWELS, SungNote

# Formants F1-F3 and bandwidths (Hz) of an adult male voice, scaled per singer.
FORMANTS = {
    "a": ((730, 1090, 2440), (80, 90, 120)),
    "e": ((530, 1840, 2480), (70, 100, 120)),
    "i": ((270, 2290, 3010), (60, 100, 140)),
    "o": ((570, 840, 2410), (70, 80, 120)),
    "u": ((300, 870, 2240), (60, 80, 120)),
    "m": ((250, 1100, 2300), (100, 250, 300)),  # nasal murmur
}
# F4 and F5 hardly move between vowels: one shared filter, run once on the source.
SHARED_FORMANTS = ((3400, 200), (4500, 350))
NASAL = len(VOWELS)  # index of "m" among the filters
CONTROL_HOP = 32  # samples per control frame for the vowel cross-fade


@dataclass(frozen=True)
class Singer:
    """A voice: range, vocal tract size, glottal shape, vibrato and articulation habits."""

    name: str
    low: int  # MIDI
    high: int  # MIDI
    formant_scale: float
    open_quotient: float
    speed_quotient: float
    tilt: float  # one-pole low-pass coefficient, more = darker
    breathiness: float
    vibrato_cents: float
    vibrato_hz: float
    vibrato_delay: float  # seconds into a note before vibrato starts
    glide_seconds: float  # portamento time constant
    drift_cents: float

    @property
    def vocal_range(self) -> tuple[int, int]:
        return self.low, self.high


def random_singer(rng: np.random.Generator, name: str) -> Singer:
    """Draw a singer: half are lower (male-like) voices, half higher (female-like)."""
    high_voice = rng.random() < 0.5
    low = int(rng.integers(55, 60) if high_voice else rng.integers(45, 50))
    return Singer(
        name=name, low=low, high=low + int(rng.integers(16, 20)),
        formant_scale=float(rng.uniform(1.08, 1.2) if high_voice else rng.uniform(0.93, 1.04)),
        open_quotient=float(rng.uniform(0.45, 0.75)),
        speed_quotient=float(rng.uniform(1.5, 3.5)),
        tilt=float(rng.uniform(0.0, 0.6)),
        breathiness=float(rng.uniform(0.01, 0.08)),
        vibrato_cents=float(rng.uniform(20.0, 70.0)),
        vibrato_hz=float(rng.uniform(4.5, 6.5)),
        vibrato_delay=float(rng.uniform(0.1, 0.35)),
        glide_seconds=float(rng.uniform(0.015, 0.05)),
        drift_cents=float(rng.uniform(5.0, 15.0)),
    )


def _resonator_sos(freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Two-pole resonator with unit gain at DC, as one second-order section."""
    r = np.exp(-np.pi * bandwidth / sample_rate)
    c = 2.0 * r * np.cos(2.0 * np.pi * freq / sample_rate)
    gain = 1.0 - c + r * r
    return np.array([gain, 0.0, 0.0, 1.0, -c, r * r])


@lru_cache(maxsize=64)
def formant_filters(scale: float, sample_rate: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The shared upper formants, then one F1-F3 cascade per vowel and the nasal (sos arrays).

    Each vowel is scaled to the same loudness for a source falling at 6 dB/octave above
    300 Hz, so that vowels differ in colour rather than by 15 dB in level.
    """
    nyquist = sample_rate / 2

    def cascade(pairs) -> np.ndarray:
        return np.stack([_resonator_sos(min(f * scale, 0.9 * nyquist), b * scale, sample_rate)
                         for f, b in pairs])

    shared = cascade(SHARED_FORMANTS)
    freq_grid = np.linspace(50.0, 0.95 * nyquist, 512)
    source_power = 1.0 / (1.0 + (freq_grid / 300.0) ** 2)
    _, shared_response = sosfreqz(shared, worN=freq_grid, fs=sample_rate)
    vowels = []
    for name in (*VOWELS, "m"):
        sos = cascade(zip(*FORMANTS[name], strict=True))
        _, response = sosfreqz(sos, worN=freq_grid, fs=sample_rate)
        power = np.abs(response * shared_response) ** 2 * source_power
        sos[0, :3] /= np.sqrt(power.sum() / source_power.sum())
        vowels.append(sos)
    return shared, tuple(vowels)


def _poly_blep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Residual of a band-limited unit step at phase 0 (``t`` in [0, 1), ``dt`` = f0/fs)."""
    out = np.zeros_like(t)
    after = t < dt
    x = t[after] / dt[after]
    out[after] = 2 * x - x * x - 1
    before = t > 1 - dt
    x = (t[before] - 1) / dt[before]
    out[before] = x * x + 2 * x + 1
    return out


def glottal_source(cycles: np.ndarray, f0: np.ndarray, singer: Singer,
                   sample_rate: int) -> np.ndarray:
    """Rosenberg pulse derivative at the given cumulative phase, closure step = 1 (float32)."""
    phase = (cycles % 1.0).astype(np.float32)
    oq, sq = singer.open_quotient, singer.speed_quotient
    t_open, t_close = oq * sq / (1 + sq), oq / (1 + sq)
    opening = phase < t_open
    f32 = np.float32
    arg = np.where(opening, phase * f32(np.pi / t_open),
                   (phase - f32(t_open)) * f32(np.pi / (2 * t_close)))
    amp = np.where(opening, f32(t_close / t_open), f32(-1.0))  # in units of the closure step
    amp[phase >= f32(oq)] = 0.0
    pulse = amp * np.sin(arg)
    pulse += f32(0.5) * _poly_blep((phase - f32(oq)) % f32(1.0),
                                   (f0 / sample_rate).astype(np.float32))
    return pulse


def _current(starts: np.ndarray, n: int, hop: int = 1) -> np.ndarray:
    """Index of the latest segment started at or before each sample (0 before the first)."""
    idx = np.searchsorted(starts, np.arange(0, n, hop), side="right") - 1
    return np.maximum(idx, 0)


def _one_pole(x: np.ndarray, seconds: float, rate: float) -> np.ndarray:
    """Exponential smoothing with time constant ``seconds``, starting settled at x[0]."""
    a = np.exp(-1.0 / (seconds * rate))
    b, den = [1.0 - a], [1.0, -a]
    y, _ = lfilter(b, den, x, zi=lfilter_zi(b, den) * x[0])
    return y


def _upsample(frames: np.ndarray, hop: int, n: int) -> np.ndarray:
    """Linear interpolation of control values given every ``hop`` samples, to ``n`` samples."""
    nxt = np.append(frames[1:], frames[-1])
    ramp = (np.arange(hop, dtype=np.float32) / np.float32(hop))[None, :]
    up = frames[:, None] + (nxt - frames)[:, None] * ramp
    return up.reshape(-1)[:n]


def render_voice(melody: list[SungNote], singer: Singer, n_samples: int, sample_rate: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The sung melody as float32 audio of ``n_samples`` (peak about 1, silent in rests)."""
    out = np.zeros(n_samples, dtype=np.float32)
    notes = [m for m in melody if int(round(m.start * sample_rate)) < n_samples]
    if not notes:
        return out
    sr = sample_rate
    starts = np.array([int(round(m.start * sr)) for m in notes])
    pitches = np.array([m.pitch for m in notes])

    # Pitch (at the control rate): held between notes, glided, delayed vibrato, slow drift.
    hop = CONTROL_HOP
    control_rate = sr / hop
    current = _current(starts, n_samples, hop)
    pitch = _one_pole(pitches[current], singer.glide_seconds, control_rate)
    t = np.arange(len(current)) / control_rate
    since_onset = t - starts[current] / sr
    vib_on = np.clip((since_onset - singer.vibrato_delay) / 0.25, 0.0, 1.0)
    cents = singer.vibrato_cents * vib_on * np.sin(2 * np.pi * singer.vibrato_hz * t
                                                   + rng.uniform(0, 2 * np.pi))
    drift = _one_pole(rng.standard_normal(len(t)), 0.1, control_rate)
    cents += singer.drift_cents * drift / (np.std(drift) + 1e-9)
    f0 = _upsample(440.0 * 2.0 ** ((pitch - 69.0 + cents / 100.0) / 12.0), hop, n_samples)
    cycles = np.cumsum(f0) / sr + rng.random()

    source = glottal_source(cycles, f0, singer, sr)
    if singer.tilt:
        source = lfilter([1.0 - singer.tilt], [1.0, -singer.tilt], source).astype(np.float32)
    noise = np.diff(rng.standard_normal(n_samples + 1, dtype=np.float32))
    source += np.float32(singer.breathiness) * noise * (0.3 + 0.7 * (cycles % 1.0
                                                                     < singer.open_quotient))

    # Loudness: voiced from each note's start to its end, minus a gap for the next consonant.
    gate = np.zeros(n_samples, dtype=np.float32)
    for i, m in enumerate(notes):
        end = m.start + m.duration
        if i + 1 < len(notes) and notes[i + 1].start <= end + 1e-6:
            nxt = notes[i + 1]
            if nxt.consonant is not None:
                end -= rng.uniform(0.04, 0.08)
            elif nxt.syllable_start:
                end -= 0.012
        a, b = starts[i], min(n_samples, int(round(end * sr)))
        gate[a:max(a + 1, b)] = m.velocity
    envelope = _one_pole(gate, 0.02, sr).astype(np.float32)
    active = np.cumsum(gate > 0)
    hold = int(0.25 * sr)
    near = (active - np.concatenate([np.zeros(hold, dtype=active.dtype), active[:-hold]])) > 0
    envelope *= near
    source *= envelope

    # Vowel filters cross-faded along the syllables.
    seg_starts, seg_filter = [], []
    for m, start in zip(notes, starts, strict=True):
        if m.syllable_start and m.nasal_onset:
            seg_starts.append(start)
            seg_filter.append(NASAL)
            start += int(rng.uniform(0.04, 0.07) * sr)
        seg_starts.append(start)
        seg_filter.append(m.vowel)
    seg_starts = np.array(seg_starts)
    frames = _current(seg_starts, n_samples, CONTROL_HOP)
    filter_of_frame = np.array(seg_filter)[frames]
    smooth = np.hanning(int(0.04 * sr / CONTROL_HOP) + 2)[1:-1]
    smooth = (smooth / smooth.sum()).astype(np.float32)
    voice = np.zeros(n_samples, dtype=np.float32)
    shared, vowel_filters = formant_filters(singer.formant_scale, sr)
    source = sosfilt(shared, source).astype(np.float32)
    for k, sos in enumerate(vowel_filters):
        weight = np.convolve((filter_of_frame == k).astype(np.float32), smooth, mode="same")
        if not weight.any():
            continue
        weight *= np.float32(0.5 if k == NASAL else 1.0)
        voice += _upsample(weight, CONTROL_HOP, n_samples) * sosfilt(sos, source).astype(np.float32)

    peak = np.max(np.abs(voice))
    if peak > 0:
        voice /= peak
    voiced_rms = float(np.sqrt(np.mean(voice[gate > 0] ** 2))) if gate.any() else 0.0
    _add_consonants(voice, notes, starts, singer, voiced_rms, sr, rng)
    peak = np.max(np.abs(voice))
    return (voice / peak if peak > 0 else voice).astype(np.float32)


@lru_cache(maxsize=64)
def _consonant_filters(scale: float, sr: int) -> dict[str, np.ndarray]:
    nyq = 0.45 * sr

    def band(lo: float, hi: float) -> np.ndarray:
        return butter(2, [lo * scale, min(hi * scale, nyq)], btype="bandpass", fs=sr, output="sos")

    return {"s": butter(4, min(4200 * scale, nyq), btype="highpass", fs=sr, output="sos"),
            "sh": band(1800, 4500), "f": band(1200, 7000), "h": band(500, 3500),
            "t": band(3000, 7000), "k": band(1400, 3500), "p": band(400, 2000)}


def _add_consonants(voice: np.ndarray, notes: list[SungNote], starts: np.ndarray, singer: Singer,
                    level: float, sr: int, rng: np.random.Generator) -> None:
    """Noise bursts ending at the vowel onsets: fricatives (s, sh, f, h) and plosives (t, k, p)."""
    if level <= 0:
        return
    filters = _consonant_filters(singer.formant_scale, sr)
    for m, onset in zip(notes, starts, strict=True):
        if m.consonant is None:
            continue
        plosive = m.consonant in ("t", "k", "p")
        length = int((rng.uniform(0.015, 0.035) if plosive else rng.uniform(0.05, 0.11)) * sr)
        begin = int(onset) - length + int(0.01 * sr)
        if begin < 0 or begin + length > len(voice):
            continue
        burst = sosfilt(filters[m.consonant], rng.standard_normal(length))
        ramp = np.linspace(0.0, 1.0, length)
        shape = np.exp(-4 * ramp) if plosive else np.sin(np.pi * ramp) ** 0.7
        burst *= shape / (np.sqrt(np.mean((burst * shape) ** 2)) + 1e-12)
        level_db = rng.uniform(-8.0, -2.0) if plosive else rng.uniform(-14.0, -6.0)
        voice[begin:begin + length] += level * 10 ** (level_db / 20) * burst
