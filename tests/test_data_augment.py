"""Training augmentation: gains, sign flips, cross-song remixing, offsets, random EQ, playback
speed, ensembles, exact mixtures."""

import numpy as np
import pytest

from tinysep.data.augment import (
    eq_gain_db,
    played_at_speed,
    played_by_an_ensemble,
    random_eq,
    training_batches,
    training_chunks,
)
from tinysep.data.clip import Clip
from tinysep.dsp import SAMPLE_RATE

CHUNK = 1000
LENGTH = 20_000
SCALE = 100_000  # a sample's value encodes (clip, position): clip * SCALE + position + 1


def _coded_clips() -> list[Clip]:
    """Clips whose every sample says where it came from; two clips per song, four songs."""
    clips = []
    for k in range(8):
        position = np.arange(LENGTH, dtype=np.float32)
        vocals = k * SCALE + position + 1
        accompaniment = -(k * SCALE + position + 1)
        clips.append(Clip(f"s{k // 2}_1_{k % 2:02d}", vocals + accompaniment, vocals,
                          accompaniment, song=f"s{k // 2}_1"))
    return clips


def _decode(chunk: np.ndarray) -> tuple[int, int, float]:
    """(clip, offset, factor) of a chunk cut from a coded source and scaled by ``factor``."""
    factor = float(chunk[-1] - chunk[0]) / (len(chunk) - 1)  # positions step by 1 unscaled
    raw = np.abs(chunk[0] / factor) - 1
    clip = int(raw // SCALE)
    return clip, int(round(raw - clip * SCALE)), factor


def _chunks(n: int, seed: int = 0, **options) -> list[tuple[np.ndarray, ...]]:
    return list(training_chunks(_coded_clips(), CHUNK, np.random.default_rng(seed), count=n,
                                **options))


def test_mixture_is_exactly_the_sum_of_the_sources():
    for mixture, vocals, accompaniment in _chunks(200):
        assert mixture.dtype == vocals.dtype == accompaniment.dtype == np.float32
        assert mixture.shape == vocals.shape == accompaniment.shape == (CHUNK,)
        np.testing.assert_array_equal(mixture, vocals + accompaniment)


def test_gains_are_per_source_and_within_range():
    v_gain, a_gain = [], []
    for _, vocals, accompaniment in _chunks(300, sign_flip=False, remix=False):
        v_gain.append(_decode(vocals)[2])
        a_gain.append(-_decode(accompaniment)[2])  # accompaniment counts downwards
    v_gain, a_gain = np.array(v_gain), np.array(a_gain)
    for g in (v_gain, a_gain):
        assert g.min() >= 0.25 - 1e-4 and g.max() <= 1.25 + 1e-4
        assert g.min() < 0.35 and g.max() > 1.15  # the whole range is used
    assert np.mean(np.abs(v_gain - a_gain) > 0.01) > 0.9  # independent per source
    plain = [_decode(v)[2] for _, v, _ in _chunks(20, sign_flip=False, random_gain=False)]
    assert plain == [1.0] * 20


def test_sign_flips_are_per_source_and_about_half():
    v_sign, a_sign = [], []
    for _, vocals, accompaniment in _chunks(400, random_gain=False, remix=False):
        v_sign.append(np.sign(_decode(vocals)[2]))
        a_sign.append(-np.sign(_decode(accompaniment)[2]))
    v_sign, a_sign = np.array(v_sign), np.array(a_sign)
    assert set(v_sign) == set(a_sign) == {-1.0, 1.0}
    assert 0.4 < np.mean(v_sign < 0) < 0.6 and 0.4 < np.mean(a_sign < 0) < 0.6
    assert 0.35 < np.mean(v_sign != a_sign) < 0.65  # flipped independently
    unflipped = _chunks(50, random_gain=False, sign_flip=False, remix=False)
    assert all(_decode(v)[2] == 1.0 and _decode(a)[2] == -1.0 for _, v, a in unflipped)


def test_remix_pairs_vocals_and_accompaniment_of_different_songs():
    clips = _coded_clips()
    remixed = _chunks(200, random_gain=False, sign_flip=False, remix_probability=1.0)
    for _, vocals, accompaniment in remixed:
        v_clip, _, _ = _decode(vocals)
        a_clip, _, _ = _decode(accompaniment)
        assert clips[v_clip].song_id != clips[a_clip].song_id
    half = _chunks(400, random_gain=False, sign_flip=False, remix_probability=0.5)
    mixed = [_decode(v)[0] != _decode(a)[0] for _, v, a in half]
    assert 0.4 < np.mean(mixed) < 0.6
    for _, vocals, accompaniment in _chunks(100, random_gain=False, sign_flip=False, remix=False):
        assert _decode(vocals)[:2] == _decode(accompaniment)[:2]  # same clip, same time


def test_offsets_are_random_or_on_the_chunk_grid():
    offsets = [_decode(v)[1] for _, v, _ in _chunks(200, random_gain=False, sign_flip=False)]
    assert max(offsets) <= LENGTH - CHUNK
    assert np.mean(np.array(offsets) % CHUNK != 0) > 0.9
    assert len(set(offsets)) > 150
    grid = [_decode(v)[1] for _, v, _ in _chunks(200, random_gain=False, sign_flip=False,
                                                  random_offset=False)]
    assert all(o % CHUNK == 0 for o in grid) and len(set(grid)) == LENGTH // CHUNK


def test_same_seed_same_chunks_other_seed_other_chunks():
    a, b, c = _chunks(20, seed=4), _chunks(20, seed=4), _chunks(20, seed=5)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_short_clips_are_zero_padded_and_a_single_song_is_never_remixed():
    short = Clip("a_1_01", np.ones(300, np.float32) * 3, np.ones(300, np.float32),
                 np.ones(300, np.float32) * 2)
    chunks = training_chunks([short], 500, np.random.default_rng(0), count=5,
                             random_gain=False, sign_flip=False)
    for mixture, vocals, _ in chunks:
        np.testing.assert_array_equal(vocals[:300], 1.0)
        np.testing.assert_array_equal(vocals[300:], 0.0)
        np.testing.assert_array_equal(mixture[:300], 3.0)


def test_batches_stack_chunks():
    batches = training_batches(_coded_clips(), CHUNK, 4, np.random.default_rng(0))
    mixture, vocals, accompaniment = next(batches)
    assert mixture.shape == vocals.shape == accompaniment.shape == (4, CHUNK)
    np.testing.assert_array_equal(mixture, vocals + accompaniment)


@pytest.mark.parametrize("options, message", [
    ({"chunk_samples": 0}, "chunk_samples"),
    ({"gain_range": (1.0, 0.5)}, "gain_range"),
    ({"remix_probability": 1.5}, "remix_probability"),
    ({"eq_probability": -0.1}, "eq_probability"),
    ({"eq_max_db": 30.0}, "eq_max_db"),
    ({"level_range_db": (0.0, -10.0)}, "level_range_db"),
    ({"level_range_db": (-80.0, 0.0)}, "level_range_db"),
    ({"speed_probability": 1.5}, "speed_probability"),
    ({"speed_range": (1.2, 0.9)}, "speed_range"),
    ({"speed_range": (0.1, 1.0)}, "speed_range"),
    ({"speed_range": "fast"}, "speed_range"),
    ({"ensemble_probability": 2.0}, "ensemble_probability"),
    ({"ensemble_voices": (2.5, 4)}, "ensemble_voices"),
    ({"ensemble_voices": (0, 4)}, "ensemble_voices"),
    ({"ensemble_voices": (2, float("inf"))}, "ensemble_voices"),
    ({"ensemble_voices": (float("nan"), 3)}, "ensemble_voices"),
    ({"ensemble_detune_cents": -5.0}, "ensemble_detune_cents"),
    ({"ensemble_delay_ms": 500.0}, "ensemble_delay_ms"),
])
def test_bad_options_are_named(options, message):
    args = {"chunk_samples": CHUNK, **options}
    chunk_samples = args.pop("chunk_samples")
    with pytest.raises(ValueError, match=message):
        next(training_chunks(_coded_clips(), chunk_samples, np.random.default_rng(0), **args))
    with pytest.raises(ValueError, match="at least one clip"):
        next(training_chunks([], CHUNK, np.random.default_rng(0)))


def _sine_level_db(signal: np.ndarray, frequency: float) -> float:
    """Level in dB of ``frequency`` in ``signal`` (a whole number of periods long)."""
    t = np.arange(len(signal)) / SAMPLE_RATE
    return 20 * np.log10(2 * abs(np.mean(signal * np.exp(-2j * np.pi * frequency * t))))


def test_random_eq_applies_its_curve_and_stays_within_bounds():
    frequencies = np.fft.rfftfreq(16_000, 1.0 / SAMPLE_RATE)
    curves = [eq_gain_db(frequencies, np.random.default_rng(seed), 9.0) for seed in range(50)]
    assert max(np.abs(c).max() for c in curves) <= 13.5 + 1e-9
    assert max(np.abs(c).max() for c in curves) > 6.0  # it does boost or cut somewhere
    assert np.std([c[np.searchsorted(frequencies, 3000)] for c in curves]) > 2.0
    np.testing.assert_array_equal(curves[3], eq_gain_db(frequencies, np.random.default_rng(3)))
    # a 1 s signal of three sines comes out of the EQ scaled by the curve at each sine
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tones = (200.0, 1000.0, 4000.0)
    signal = sum(np.sin(2 * np.pi * f * t) for f in tones).astype(np.float32)
    out = random_eq(signal, np.random.default_rng(7))
    curve = eq_gain_db(np.fft.rfftfreq(SAMPLE_RATE, 1.0 / SAMPLE_RATE), np.random.default_rng(7))
    assert out.dtype == np.float32 and out.shape == signal.shape
    for f in tones:
        assert _sine_level_db(out, f) == pytest.approx(curve[int(f)], abs=0.05)
    np.testing.assert_allclose(random_eq(signal, np.random.default_rng(7), max_db=0.0), signal,
                               atol=1e-5)


def test_eq_is_per_source_with_its_probability_and_keeps_the_mixture_exact():
    plain = _chunks(60, seed=4, random_gain=False, sign_flip=False, remix=False)
    eq_all = _chunks(60, seed=4, random_gain=False, sign_flip=False, remix=False,
                     eq_probability=1.0)
    changed = 0
    for (_, v0, a0), (mixture, v1, a1) in zip(plain, eq_all, strict=True):
        np.testing.assert_array_equal(mixture, v1 + a1)
        changed += (not np.allclose(v0, v1)) + (not np.allclose(a0, a1))
    assert changed == 120  # every source of every chunk
    half = _chunks(200, seed=4, random_gain=False, sign_flip=False, remix=False,
                   eq_probability=0.5)
    shares = [_decode(v)[2] for _, v, _ in half]  # an EQed ramp no longer steps by exactly 1
    equalized = sum(abs(s - 1.0) > 1e-6 for s in shares) / len(shares)
    assert 0.35 < equalized < 0.65


def test_level_scales_every_source_of_a_chunk_alike_within_its_range():
    chunks = _chunks(200, seed=6, remix=False, random_gain=False, sign_flip=False,
                     level_range_db=(-30.0, 6.0))
    levels = []
    for mixture, vocals, accompaniment in chunks:
        np.testing.assert_array_equal(mixture, vocals + accompaniment)
        clip_v, offset_v, factor_v = _decode(vocals)
        clip_a, offset_a, factor_a = _decode(-accompaniment)
        assert (clip_v, offset_v) == (clip_a, offset_a)
        assert factor_v == pytest.approx(factor_a, rel=1e-4)
        levels.append(20 * np.log10(factor_v))
    assert -30.0 <= min(levels) < -28.0 and 4.0 < max(levels) <= 6.0
    assert np.mean(levels) == pytest.approx(-12.0, abs=2.0)
    unscaled = _chunks(20, seed=6, remix=False, random_gain=False, sign_flip=False)
    assert all(_decode(v)[2] == pytest.approx(1.0) for _, v, _ in unscaled)


@pytest.mark.parametrize("speed", [0.85, 0.93, 1.07, 1.18])
def test_a_source_played_faster_is_higher_by_the_speed_and_keeps_its_level(speed):
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    tones = (220.0, 1000.0)
    signal = sum(np.sin(2 * np.pi * f * t) for f in tones).astype(np.float32)
    out = played_at_speed(signal, 4000, SAMPLE_RATE, speed)
    assert out.dtype == np.float32 and out.shape == (SAMPLE_RATE,)
    for f in tones:
        # the tone moved to f * speed (the FFT sizes round the speed by < 0.5 %) at 0 dB
        moved = max(np.arange(f * speed * 0.99, f * speed * 1.01, 0.25),
                    key=lambda g: _sine_level_db(out, g))
        assert moved == pytest.approx(f * speed, rel=0.005)
        assert _sine_level_db(out * np.hanning(len(out)) * 2, moved) == pytest.approx(0.0,
                                                                                     abs=0.3)
        assert _sine_level_db(out, f) < -20.0  # nothing is left where it was
    # it starts where asked: played at speed 1 it is the signal itself
    np.testing.assert_allclose(played_at_speed(signal, 4000, 2000, 1.0), signal[4000:6000],
                               atol=1e-4)
    # past the end of the signal it is silent
    tail = played_at_speed(signal, len(signal) - 1000, 4000, speed)
    assert np.abs(tail[:int(900 / speed)]).max() > 0.5
    assert np.abs(tail[int(1100 / speed):]).max() < 0.01


def _slope(chunk: np.ndarray) -> float:
    """Samples of a coded ramp advanced per output sample, away from the chunk's ends."""
    middle = np.arange(100, len(chunk) - 100)
    return float(np.polyfit(middle, chunk[middle], 1)[0])


def test_speed_is_shared_by_the_sources_of_a_clip_and_drawn_anew_for_a_remix():
    plain = dict(random_gain=False, sign_flip=False)
    together = _chunks(200, seed=8, remix=False, speed_probability=0.5, **plain)
    speeds = []
    for mixture, vocals, accompaniment in together:
        np.testing.assert_array_equal(mixture, vocals + accompaniment)
        np.testing.assert_allclose(accompaniment, -vocals, rtol=1e-6)  # aligned, same speed
        speeds.append(_slope(vocals))
    speeds = np.array(speeds)
    changed = np.abs(speeds - 1.0) > 0.002
    assert 0.35 < changed.mean() < 0.65
    assert speeds.min() > 0.85 * 0.995 and speeds.max() < 1.18 * 1.005
    assert speeds.min() < 0.88 and speeds.max() > 1.14  # the whole range is used
    assert (speeds[changed] < 1.0).mean() == pytest.approx(0.5, abs=0.15)  # log-uniform
    remixed = _chunks(200, seed=8, remix_probability=1.0, speed_probability=1.0, **plain)
    pairs = np.array([(_slope(v), -_slope(a)) for _, v, a in remixed])
    assert np.mean(np.abs(pairs[:, 0] - pairs[:, 1]) > 0.01) > 0.8  # each its own speed
    again = _chunks(20, seed=8, remix=False, speed_probability=0.5, **plain)
    for a, b in zip(again, together[:20], strict=True):  # same seed, same chunks
        np.testing.assert_array_equal(a[1], b[1])


def _spectrum_db(signal: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    return np.array([_sine_level_db(signal, f) for f in frequencies])


def test_an_ensemble_spreads_the_pitch_by_its_detuning_and_keeps_the_level():
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    rms = float(np.sqrt(np.mean(tone ** 2)))
    rng = np.random.default_rng(3)
    grid = np.arange(960.0, 1040.0, 0.5)
    spread, levels, leads = [], [], []
    for _ in range(12):
        out = played_by_an_ensemble(tone[SAMPLE_RATE:3 * SAMPLE_RATE], tone, SAMPLE_RATE, 1.0,
                                    rng, voices=4, detune_cents=20.0, delay_ms=30.0)
        assert out.dtype == np.float32 and out.shape == (2 * SAMPLE_RATE,)
        levels.append(float(np.sqrt(np.mean(out ** 2))) / rms)
        spectrum = _spectrum_db(out * np.hanning(len(out)) * 2, grid)
        # the lead stays at 1000 Hz at half the amplitude (-6 dB); a copy detuned by a few
        # cents falls in the same bin and adds or cancels, by chance
        leads.append(spectrum[grid == 1000.0][0])
        peaks = grid[spectrum > -16.0]
        assert peaks.min() >= 1000.0 * 2 ** (-21 / 1200) - 1.0  # nothing beyond the detuning
        assert peaks.max() <= 1000.0 * 2 ** (21 / 1200) + 1.0
        spread.append(peaks.max() - peaks.min())
    assert max(spread) > 8.0  # copies do move: 20 cents at 1 kHz is 11.6 Hz
    assert np.median(leads) == pytest.approx(-6.0, abs=2.0)
    assert 0.6 < np.median(levels) < 1.4  # the level stays about the source's
    # one voice is the source itself; copies that are neither detuned nor late double it
    np.testing.assert_array_equal(
        played_by_an_ensemble(tone[100:1100], tone, 100, 1.0, rng, voices=1), tone[100:1100])
    doubled = played_by_an_ensemble(tone[100:1100], tone, 100, 1.0, rng, voices=2,
                                    detune_cents=0.0, delay_ms=0.0)
    np.testing.assert_allclose(doubled, tone[100:1100] * np.sqrt(2.0), atol=1e-4)


def test_a_late_copy_sounds_after_the_source():
    impulse = np.zeros(SAMPLE_RATE, dtype=np.float32)
    impulse[4000] = 1.0
    rng = np.random.default_rng(5)
    lags = []
    for _ in range(30):
        out = played_by_an_ensemble(impulse[:8000], impulse, 0, 1.0, rng, voices=2,
                                    detune_cents=0.0, delay_ms=30.0)
        assert out[4000] == pytest.approx(1 / np.sqrt(2.0), abs=1e-3)
        lags.append(int(np.argmax(np.abs(out[4001:4600]))) + 1)
    lags = np.array(lags)
    assert lags.min() >= 1 and lags.max() <= int(0.030 * SAMPLE_RATE) + 1
    assert lags.max() - lags.min() > 0.015 * SAMPLE_RATE  # the delay is drawn anew each time


def test_ensembles_are_drawn_per_source_and_keep_the_mixture_exact():
    plain = dict(random_gain=False, sign_flip=False, remix=False)
    chunks = _chunks(300, seed=9, ensemble_probability=0.5, ensemble_voices=(2, 3),
                     ensemble_detune_cents=0.0, ensemble_delay_ms=10.0, **plain)
    changed = []
    for mixture, vocals, accompaniment in chunks:
        np.testing.assert_array_equal(mixture, vocals + accompaniment)
        # a ramp played by copies late by a few samples is no longer a ramp of step 1
        changed.append((abs(_slope(vocals) - 1.0) > 0.05, abs(-_slope(accompaniment) - 1.0)
                        > 0.05))
    changed = np.array(changed)
    assert 0.4 < changed[:, 0].mean() < 0.6 and 0.4 < changed[:, 1].mean() < 0.6
    assert 0.1 < (changed[:, 0] & changed[:, 1]).mean() < 0.4  # independent per source
    again = _chunks(20, seed=9, ensemble_probability=0.5, ensemble_voices=(2, 3),
                    ensemble_detune_cents=0.0, ensemble_delay_ms=10.0, **plain)
    for a, b in zip(again, chunks[:20], strict=True):
        np.testing.assert_array_equal(a[1], b[1])
    off = _chunks(20, seed=9, **plain)
    unused = _chunks(20, seed=9, ensemble_probability=0.0, ensemble_voices=(8, 8),
                     ensemble_detune_cents=100.0, ensemble_delay_ms=100.0, **plain)
    for a, b in zip(off, unused, strict=True):
        np.testing.assert_array_equal(a[0], b[0])  # off, its settings change nothing
