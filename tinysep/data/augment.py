"""Training-time augmentation (paper 2): random chunks, per-source gain and sign, remixing,
and (off by default) a random EQ per source, a random playback speed (pitch, formants and
tempo together) and a source sung or played by an ensemble (detuned, late copies of it), so
timbres, voices, registers and sections the corpus never had are trained on, a random
level of the whole chunk, so quiet and loud recordings are trained on, chunks of one
source alone (an intro without a voice, a verse sung a cappella), so a source's mask learns
to pass nothing of the others, and a second band stacked on a chunk's band, so denser
bands, filling the voice's register, are trained on.

`training_chunks` draws endless ``(mixture, *sources)`` float32 chunks (by default
``(mixture, vocals, accompaniment)``; with the four stems ``(mixture, vocals, drums, bass,
other)``) from clips held in memory (see `tinysep.data.loaders.load_split`). Each
augmentation can be switched off and works per source; the mixture is always recomputed
as the exact sum of the sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import fft

from tinysep.data.clip import LEVEL_LIMITS_DB, SOURCES, Clip
from tinysep.data.sources import check_sources
from tinysep.dsp import SAMPLE_RATE
from tinysep.jsonfile import is_finite_number

DEFAULT_GAIN_RANGE = (0.25, 1.25)  # linear gain per source
GAIN_LIMITS = (0.0, 10.0)  # the widest gain range accepted (x10: +20 dB, as loud as sensible)
DEFAULT_EQ_MAX_DB = 9.0  # largest boost or cut of one random EQ band
EQ_PIVOT_HZ = 1000.0  # the random tilt turns around this frequency
EQ_BAND_RANGE_HZ = (80.0, 6000.0)  # centres of the random bands
# Playback-speed factors (x1.18 and x0.85: almost three semitones up and down); a source
# played faster is higher in pitch and formants and shorter in time.
DEFAULT_SPEED_RANGE = (0.85, 1.18)
SPEED_LIMITS = (0.5, 2.0)  # the widest speed range accepted
SPEED_MARGIN = 256  # samples resampled beyond each end of a chunk and cut off (FFT wrap)
# An ensemble: the source and copies of it, each detuned by up to +-DETUNE cents and late by
# up to DELAY ms (a section of singers or players, a doubled take, a chorus effect).
DEFAULT_ENSEMBLE_VOICES = (2, 4)  # the source counts as one voice
DEFAULT_ENSEMBLE_DETUNE_CENTS = 20.0
DEFAULT_ENSEMBLE_DELAY_MS = 30.0
ENSEMBLE_VOICE_LIMITS = (1, 8)
VOCALS_LEVEL_LIMITS_DB = (-20.0, 20.0)  # the widest voice-against-band offset accepted
# The values the numeric settings may take: probabilities, a band's boost in dB, an
# ensemble's detuning (cents) and delay (ms).
SETTING_LIMITS = {"remix_probability": (0.0, 1.0), "solo_probability": (0.0, 1.0),
                  "stack_probability": (0.0, 1.0),
                  "eq_probability": (0.0, 1.0),
                  "eq_max_db": (0.0, 24.0), "speed_probability": (0.0, 1.0),
                  "ensemble_probability": (0.0, 1.0), "ensemble_detune_cents": (0.0, 100.0),
                  "ensemble_delay_ms": (0.0, 100.0)}
# The settings that switch a step on or off: true or false, nothing else.
FLAG_SETTINGS = ("random_offset", "random_gain", "sign_flip", "remix")
# The [low, high] settings: their limits, unit, and whether they count things (whole numbers).
RANGE_LIMITS = {"gain_range": (GAIN_LIMITS, "linear gains", False),
                "speed_range": (SPEED_LIMITS, "playback-speed factors", False),
                "level_range_db": (LEVEL_LIMITS_DB, "dB", False),
                "vocals_level_db": (VOCALS_LEVEL_LIMITS_DB, "dB", False),
                "ensemble_voices": (ENSEMBLE_VOICE_LIMITS, "whole numbers of voices", True)}


def _is_range(pair, low: float, high: float, whole: bool) -> bool:
    """True if ``pair`` is ``[a, b]`` with ``low <= a <= b <= high`` (whole numbers if
    ``whole``)."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return False
    if not all(is_finite_number(v) for v in pair):
        return False
    if whole and not all(float(v).is_integer() for v in pair):
        return False
    return low <= pair[0] <= pair[1] <= high


def check_settings(**settings) -> None:
    """Raise ValueError naming the first augmentation setting whose value is out of range
    (the keyword arguments of :func:`training_chunks`; absent ones are not checked)."""
    for key in FLAG_SETTINGS:
        if key in settings and not isinstance(settings[key], bool):
            raise ValueError(f"{key} must be true or false, got {settings[key]!r}")
    for key, (low, high) in SETTING_LIMITS.items():
        value = settings.get(key)
        if key in settings and not (is_finite_number(value) and low <= value <= high):
            raise ValueError(f"{key} must be a number in [{low:g}, {high:g}], "
                             f"got {settings[key]!r}")
    for key, ((low, high), unit, whole) in RANGE_LIMITS.items():
        pair = settings.get(key)
        if key in settings and not _is_range(pair, low, high, whole):
            raise ValueError(f"{key} must be [low, high] {unit} with {low:g} <= low <= high "
                             f"<= {high:g}, got {pair!r}")


def eq_gain_db(frequencies: np.ndarray, rng: np.random.Generator,
               max_db: float = DEFAULT_EQ_MAX_DB) -> np.ndarray:
    """A random smooth EQ curve in dB at ``frequencies`` (Hz): a tilt of up to +-``max_db``/3
    dB per octave around 1 kHz plus one to three bell bands (centre log-uniform in 80 Hz -
    6 kHz, +-``max_db``, half an octave to two octaves wide), kept within +-``1.5 max_db``."""
    octaves = np.log2(np.maximum(frequencies, 20.0) / EQ_PIVOT_HZ)
    gain = rng.uniform(-max_db / 3, max_db / 3) * np.clip(octaves, -3.0, 3.0)
    low, high = np.log2(EQ_BAND_RANGE_HZ[0]), np.log2(EQ_BAND_RANGE_HZ[1])
    for _ in range(int(rng.integers(1, 4))):
        centre = rng.uniform(low, high) - np.log2(EQ_PIVOT_HZ)
        half_width = rng.uniform(0.25, 1.0)  # octaves
        bell = np.exp(-0.5 * ((octaves - centre) / half_width) ** 2)
        gain += rng.uniform(-max_db, max_db) * bell
    return np.clip(gain, -1.5 * max_db, 1.5 * max_db)


def random_eq(signal: np.ndarray, rng: np.random.Generator,
              max_db: float = DEFAULT_EQ_MAX_DB) -> np.ndarray:
    """``signal`` through a random :func:`eq_gain_db` curve (zero phase, applied in the
    frequency domain: the curve is smooth, so its impulse response is short)."""
    spectrum = fft.rfft(np.asarray(signal, np.float32))  # single precision: 3x faster
    frequencies = np.fft.rfftfreq(len(signal), 1.0 / SAMPLE_RATE)
    spectrum *= (10.0 ** (eq_gain_db(frequencies, rng, max_db) / 20.0)).astype(np.float32)
    return fft.irfft(spectrum, n=len(signal))


def _chunk(signal: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples from ``start``, zero-padded past the end of ``signal``."""
    piece = signal[start:start + length]
    if len(piece) == length:
        return piece.astype(np.float32, copy=True)
    out = np.zeros(length, dtype=np.float32)
    out[:len(piece)] = piece
    return out


def _speed_span(length: int, speed: float) -> tuple[int, int]:
    """``(source samples, output samples)`` of the FFT resampling behind a chunk of
    ``length`` samples at ``speed``, margins included: both are FFT-friendly sizes, so the
    speed used is their ratio, within a fraction of a percent of ``speed``."""
    out = fft.next_fast_len(length + 2 * SPEED_MARGIN)
    return fft.next_fast_len(int(round(out * speed))), out


def played_at_speed(signal: np.ndarray, start: int, length: int, speed: float) -> np.ndarray:
    """``length`` samples of ``signal`` from ``start`` played ``speed`` times as fast
    (band-limited FFT resampling: pitch and formants rise by ``speed``, time shrinks by
    it); beyond the ends of ``signal`` it is silent."""
    source_len, out_len = _speed_span(length, speed)
    lead = int(round(SPEED_MARGIN * source_len / out_len))
    segment = np.zeros(source_len, dtype=np.float32)
    lo, hi = max(start - lead, 0), min(start - lead + source_len, len(signal))
    if hi > lo:
        segment[lo - (start - lead):hi - (start - lead)] = signal[lo:hi]
    spectrum = fft.rfft(segment)  # single precision, as random_eq
    resampled = np.zeros(out_len // 2 + 1, dtype=np.complex64)
    keep = min(len(spectrum), len(resampled))
    resampled[:keep] = spectrum[:keep]
    played = fft.irfft(resampled, n=out_len)
    return played[SPEED_MARGIN:SPEED_MARGIN + length] * np.float32(out_len / source_len)


def played_by_an_ensemble(lead: np.ndarray, signal: np.ndarray, start: int, speed: float,
                          rng: np.random.Generator, voices: int,
                          detune_cents: float = DEFAULT_ENSEMBLE_DETUNE_CENTS,
                          delay_ms: float = DEFAULT_ENSEMBLE_DELAY_MS) -> np.ndarray:
    """``lead`` (``signal`` from ``start`` played at ``speed``) plus ``voices - 1`` copies of
    it, each detuned by a cent count uniform in +-``detune_cents`` and late by a delay
    uniform in [0, ``delay_ms``], summed and scaled by 1/sqrt(``voices``): copies that
    drift apart add in power, so the level stays about that of the source."""
    out = lead.astype(np.float64)
    for _ in range(voices - 1):
        factor = speed * 2.0 ** (rng.uniform(-detune_cents, detune_cents) / 1200.0)
        late = int(round(rng.uniform(0.0, delay_ms) * SAMPLE_RATE / 1000.0 * factor))
        out += played_at_speed(signal, start - late, len(lead), factor)
    return (out / np.sqrt(voices)).astype(np.float32)


def _offset(n_samples: int, length: int, rng: np.random.Generator, random_offset: bool) -> int:
    """Chunk start: anywhere (random offset) or on the grid of whole chunks from 0."""
    if n_samples <= length:
        return 0
    if random_offset:
        return int(rng.integers(0, n_samples - length + 1))
    return int(rng.integers(0, n_samples // length)) * length


def _clip_drawer(count: int, rng: np.random.Generator, odds: Sequence[float] | None):
    """A function drawing a clip index: uniform without ``odds``, else in proportion to
    them (checked: one finite positive number per clip)."""
    if odds is None:
        return lambda: int(rng.integers(count))
    odds = np.asarray(odds, dtype=np.float64)
    if odds.shape != (count,) or not np.all(np.isfinite(odds)) or not np.all(odds > 0):
        raise ValueError(f"clip_odds must be one finite positive number per clip ({count}), "
                         f"got shape {odds.shape}")
    cumulative = np.cumsum(odds / odds.sum())
    return lambda: min(int(np.searchsorted(cumulative, rng.random(), side="right")), count - 1)


def training_chunks(clips: Sequence[Clip], chunk_samples: int, rng: np.random.Generator,
                    **options) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield augmented ``(mixture, *sources)`` chunks: :func:`drawn_chunks` without the
    clips each source was drawn from (``options`` are its keyword arguments)."""
    for _, chunk in drawn_chunks(clips, chunk_samples, rng, **options):
        yield chunk


def drawn_chunks(
    clips: Sequence[Clip],
    chunk_samples: int,
    rng: np.random.Generator,
    *,
    random_offset: bool = True,
    random_gain: bool = True,
    gain_range: tuple[float, float] = DEFAULT_GAIN_RANGE,
    sign_flip: bool = True,
    remix: bool = True,
    remix_probability: float = 0.5,
    solo_probability: float = 0.0,
    stack_probability: float = 0.0,
    eq_probability: float = 0.0,
    eq_max_db: float = DEFAULT_EQ_MAX_DB,
    level_range_db: tuple[float, float] = (0.0, 0.0),
    vocals_level_db: tuple[float, float] = (0.0, 0.0),
    speed_probability: float = 0.0,
    speed_range: tuple[float, float] = DEFAULT_SPEED_RANGE,
    ensemble_probability: float = 0.0,
    ensemble_voices: tuple[int, int] = DEFAULT_ENSEMBLE_VOICES,
    ensemble_detune_cents: float = DEFAULT_ENSEMBLE_DETUNE_CENTS,
    ensemble_delay_ms: float = DEFAULT_ENSEMBLE_DELAY_MS,
    sources: Sequence[str] = SOURCES,
    count: int | None = None,
    clip_odds: Sequence[float] | None = None,
) -> Iterator[tuple[tuple[int, ...], tuple[np.ndarray, ...]]]:
    """Yield ``count`` (default: endless) augmented ``(mixture, *sources)`` chunks, each
    with the indices in ``clips`` of the clips its sources were drawn from (one per source).

    - random_offset: chunks start anywhere in a clip, else on multiples of ``chunk_samples``;
    - random_gain: each source is scaled by its own gain uniform in ``gain_range``;
    - sign_flip: each source is multiplied by -1 with probability 1/2, independently;
    - remix: every source after the first comes, with ``remix_probability`` each, from a
      clip of another song than the first source's (at its own offset): with the two
      default sources, the vocals of one clip over the accompaniment of another song;
    - speed_probability: a clip is played, with this probability, at a speed log-uniform
      in ``speed_range`` (:func:`played_at_speed`); the sources of one clip share their
      speed and stay aligned, a source remixed from another song gets its own;
    - stack_probability: a chunk's band (every source after the first) gets, with this
      probability, the same sources of a clip of another song than the first source's
      added (at their own offset and normal speed; with ``random_gain`` each scaled by a
      gain uniform in ``gain_range``): two bands at once, denser than either. The indices
      yielded name the chunk's own clips, not the stacked one;
    - eq_probability: each source goes, with this probability, through its own
      :func:`random_eq` (bands up to +-``eq_max_db``);
    - vocals_level_db: the first source (the vocals) is scaled by a gain uniform in dB in
      this range and the others are not: the voice under or over the band by more than the
      song's own mix puts it (``(0, 0)``: off; a range below zero, voices quieter than the
      band, as the band's instruments together often are louder than one voice);
    - level_range_db: the whole chunk (every source alike) is then scaled by a gain
      uniform in dB in this range (``(0, 0)``: off);
    - solo_probability: a chunk keeps, with this probability, one of its sources (drawn
      uniformly) and the others are silent (all zeros): the accompaniment without a voice
      or the voice a cappella.
    Clips shorter than a chunk are zero-padded. ``sources`` are read with
    ``Clip.source`` (the four stems need clips loaded for them). ``clip_odds`` (one positive
    number per clip; None: all alike) weighs how often each clip is drawn, for every source.
    """
    if not clips:
        raise ValueError("training chunks need at least one clip")
    if int(chunk_samples) != chunk_samples or chunk_samples < 1:
        raise ValueError(f"chunk_samples must be a positive whole number, got {chunk_samples}")
    check_settings(gain_range=gain_range, remix_probability=remix_probability,
                   solo_probability=solo_probability, stack_probability=stack_probability,
                   eq_probability=eq_probability, eq_max_db=eq_max_db,
                   level_range_db=level_range_db, vocals_level_db=vocals_level_db,
                   speed_probability=speed_probability,
                   speed_range=speed_range, ensemble_probability=ensemble_probability,
                   ensemble_voices=ensemble_voices, ensemble_detune_cents=ensemble_detune_cents,
                   ensemble_delay_ms=ensemble_delay_ms)
    log_speeds = np.log(np.asarray(speed_range, dtype=np.float64))
    low, high = gain_range
    level_low, level_high = level_range_db
    vocals_low, vocals_high = vocals_level_db
    chunk_samples = int(chunk_samples)
    names = check_sources(sources)
    songs = [c.song_id for c in clips]
    other_songs = len(set(songs)) >= 2
    can_remix = remix and other_songs and remix_probability > 0
    can_stack = other_songs and stack_probability > 0 and len(names) > 1
    draw_clip = _clip_drawer(len(clips), rng, clip_odds)

    produced = 0
    while count is None or produced < count:
        i = draw_clip()
        picks = [i]
        for _ in names[1:]:
            j = i
            if can_remix and rng.random() < remix_probability:
                while songs[j] == songs[i]:
                    j = draw_clip()
            picks.append(j)
        signals = [clips[j].source(name) for j, name in zip(picks, names, strict=True)]
        speeds = {j: 1.0 for j in picks}
        if speed_probability > 0:
            for j in dict.fromkeys(picks):
                if rng.random() < speed_probability:
                    speeds[j] = float(np.exp(rng.uniform(*log_speeds)))
        spans = [chunk_samples if speeds[j] == 1.0 else int(round(chunk_samples * speeds[j]))
                 for j in picks]
        first = _offset(len(signals[0]), spans[0], rng, random_offset)
        starts = [first] + [first if j == i else _offset(len(x), span, rng, random_offset)
                            for j, x, span in zip(picks[1:], signals[1:], spans[1:],
                                                  strict=True)]
        parts = [_chunk(x, start, chunk_samples) if speeds[j] == 1.0
                 else played_at_speed(x, start, chunk_samples, speeds[j])
                 for j, x, start in zip(picks, signals, starts, strict=True)]
        if ensemble_probability > 0:
            for k, (j, x, start) in enumerate(zip(picks, signals, starts, strict=True)):
                if rng.random() < ensemble_probability:
                    voices = int(rng.integers(ensemble_voices[0], ensemble_voices[1] + 1))
                    parts[k] = played_by_an_ensemble(parts[k], x, start, speeds[j], rng,
                                                     voices, ensemble_detune_cents,
                                                     ensemble_delay_ms)
        if can_stack and rng.random() < stack_probability:
            stacked = i
            while songs[stacked] == songs[i]:
                stacked = draw_clip()
            for n, name in enumerate(names[1:], start=1):
                extra = clips[stacked].source(name)
                start = _offset(len(extra), chunk_samples, rng, random_offset)
                gain = np.float32(rng.uniform(low, high)) if random_gain else np.float32(1.0)
                parts[n] = parts[n] + _chunk(extra, start, chunk_samples) * gain
        if eq_probability > 0:
            parts = [random_eq(part, rng, eq_max_db) if rng.random() < eq_probability else part
                     for part in parts]
        if random_gain:
            for part in parts:
                part *= np.float32(rng.uniform(low, high))
        if vocals_low or vocals_high:  # (0, 0) draws nothing: earlier runs repeat their chunks
            parts[0] = parts[0] * np.float32(10.0 ** (rng.uniform(vocals_low, vocals_high) / 20.0))
        if sign_flip:
            parts = [-part if rng.random() < 0.5 else part for part in parts]
        if level_high > level_low:
            level = np.float32(10.0 ** (rng.uniform(level_low, level_high) / 20.0))
            parts = [part * level for part in parts]
        if solo_probability > 0 and rng.random() < solo_probability:
            solo = int(rng.integers(len(parts)))
            parts = [part if k == solo else np.zeros_like(part) for k, part in enumerate(parts)]
        mixture = parts[0] + parts[1]
        for part in parts[2:]:
            mixture = mixture + part
        yield tuple(picks), (mixture, *parts)
        produced += 1


def training_batches(
    clips: Sequence[Clip], chunk_samples: int, batch_size: int, rng: np.random.Generator,
    **options,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Endless batches ``(mixture, *sources)``, each ``(batch_size, chunk_samples)``.

    ``options`` are those of `training_chunks` (except ``count``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chunks = training_chunks(clips, chunk_samples, rng, **options)
    while True:
        batch = [next(chunks) for _ in range(batch_size)]
        yield tuple(np.stack(parts) for parts in zip(*batch, strict=True))
