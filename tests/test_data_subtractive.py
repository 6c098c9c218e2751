"""The subtractive engine: band-limited oscillators, a resonant filter that sweeps, notes at
their pitch, drum-machine sounds where drums sound, and a corpus that plays it only when
named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinysep.data import subtractive
from tinysep.data.engines import ENGINES, STANDARD_ENGINES, SongPlan, render_stems
from tinysep.data.score import Note
from tinysep.data.synth import plan_corpus

SR = 16_000


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(len(x))
    return np.fft.rfftfreq(len(x), 1 / SR), np.abs(np.fft.rfft(x * window)) ** 2


def _alias_share(x: np.ndarray, f0: float) -> float:
    """Share of the power away from the harmonics of ``f0`` (what aliasing adds)."""
    freqs, power = _spectrum(x)
    harmonic = np.abs(freqs / f0 - np.round(freqs / f0)) * f0 < 40.0
    return float(power[~harmonic].sum() / power.sum())


def test_oscillators_are_band_limited():
    f0 = 1234.5  # high, and no divisor of the sample rate: a naive saw aliases everywhere
    n = SR
    saw = subtractive._oscillator("saw", f0, n, SR, 0.5, 0.0)
    naive = 2 * ((f0 / SR * np.arange(n)) % 1.0) - 1
    assert _alias_share(saw, f0) < 0.25 * _alias_share(naive, f0)
    assert _alias_share(saw, f0) < 0.01
    for wave in ("square", "pulse"):
        assert _alias_share(subtractive._oscillator(wave, f0, n, SR, 0.3, 0.0), f0) < 0.01


@pytest.mark.parametrize("width", [0.15, 0.3, 0.5])
def test_a_pulse_has_its_width_and_no_offset(width):
    pulse = subtractive._oscillator("pulse", 110.0, SR, SR, width, 0.0)
    assert abs(float(np.mean(pulse))) < 0.01
    assert float(np.mean(pulse < 0)) == pytest.approx(width, abs=0.02)


def test_the_resonant_lowpass_cuts_above_its_cutoff_and_peaks_at_it():
    noise = np.random.default_rng(0).standard_normal(4 * SR)
    cutoff = np.full(len(noise), 1000.0)
    freqs, flat = _spectrum(subtractive._resonant_lowpass(noise, cutoff, 0.7, SR))
    _, peaked = _spectrum(subtractive._resonant_lowpass(noise, cutoff, 6.0, SR))

    def band(power, lo, hi):
        return float(power[(freqs >= lo) & (freqs < hi)].mean())

    assert band(flat, 4000, 6000) < 1e-3 * band(flat, 100, 500)  # 12 dB / octave
    assert band(peaked, 900, 1100) > 10 * band(peaked, 100, 500)  # the resonance


def test_a_note_sounds_at_its_pitch_and_its_filter_closes():
    patch = subtractive.Patch(wave="saw", voices=1, detune_cents=0.0, pulse_width=0.5,
                              sub_level=0.0, cutoff_hz=400.0, envelope_octaves=3.0,
                              filter_decay=0.08, resonance=1.0, attack=0.005, decay=0.3,
                              sustain=0.6, release=0.1)
    note = Note(0.0, 1.0, 57.0, 1.0)  # A3, 220 Hz
    wave = subtractive.render_note(note, patch, SR, np.random.default_rng(1))
    assert wave.dtype == np.float32 and len(wave) == int(1.1 * SR)
    freqs, power = _spectrum(wave[: SR // 2])
    assert freqs[np.argmax(power)] == pytest.approx(220.0, abs=4.0)

    def bright(x):  # share of the power above 1 kHz
        f, p = _spectrum(x)
        return float(p[f > 1000].sum() / p.sum())

    early, late = wave[: SR // 20], wave[SR // 2 : SR // 2 + SR // 20]
    assert bright(early) > 4 * bright(late)  # the envelope opened it, then it closed
    assert np.max(np.abs(wave[-SR // 50 :])) < 0.05 * np.max(np.abs(wave))  # released
    # detuned copies beat: the level of the fundamental wavers over a second
    wide = subtractive.render_note(note, dataclasses.replace(patch, voices=3, detune_cents=30,
                                                             envelope_octaves=0.0,
                                                             cutoff_hz=3000.0),
                                   SR, np.random.default_rng(1))
    frames = wide[SR // 10 : SR].reshape(-1, SR // 50)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    assert levels.max() > 1.2 * levels.min()


def test_drum_machine_sounds_sit_where_drums_do():
    rng = np.random.default_rng(2)
    for _ in range(5):
        kick_f, kick_p = _spectrum(subtractive._kick(SR, rng))
        hat_f, hat_p = _spectrum(subtractive._hat(SR, rng))
        assert kick_p[kick_f < 300].sum() > 0.8 * kick_p.sum()
        assert hat_p[hat_f > 4000].sum() > 0.8 * hat_p.sum()
    hits = {"kick": [(0.0, 1.0), (0.5, 0.5)], "hat": [(0.25, 1.0)]}
    track = subtractive.render_drums(hits, SR, SR, rng)
    assert track.dtype == np.float32 and len(track) == SR
    assert np.abs(track[: SR // 4]).max() == pytest.approx(1.0, abs=0.05)  # peak-normalised
    assert 0.3 < np.abs(track[SR // 2 : SR // 2 + 400]).max() < 0.7  # at half velocity


def test_the_engine_plays_a_song_and_only_when_named():
    assert "subtractive" in ENGINES and "subtractive" not in STANDARD_ENGINES
    plain = plan_corpus(30, 12.0, 3, STANDARD_ENGINES, ("timgm6mb",))
    assert all(s["engines"]["accompaniment"] != "subtractive" for s in plain["songs"].values())
    named = plan_corpus(30, 12.0, 3, ("additive", "subtractive"), ())
    assert "subtractive" in {s["engines"]["accompaniment"] for s in named["songs"].values()}
    song = render_stems(3, SongPlan(1, "additive", "subtractive", None, "x"), 4.0, SR)
    assert set(song.info["waves"]) == set(song.info["instruments"]) - {"drums"}
    assert set(song.info["waves"].values()) <= set(subtractive.WAVES)
    for name in ("drums", "bass", "other"):
        assert np.sqrt(np.mean(song.stems[name].astype(np.float64) ** 2)) > 1e-3, name
    again = render_stems(3, SongPlan(1, "additive", "subtractive", None, "x"), 4.0, SR)
    np.testing.assert_array_equal(song.accompaniment, again.accompaniment)
