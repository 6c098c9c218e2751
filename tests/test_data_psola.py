"""Pitch-synchronous overlap-add on known signals (pitch marks, re-pitching that keeps the
formant, the formant warp, a long consonant shortened), and what every engine singing by it
(espeak, flite, speech) must do: sing each voice's notes at their pitch, render songs with backing
vocals of its own engine, and name its Debian package when its program is missing."""

import numpy as np
import pytest
from scipy.signal import lfilter
from singing_support import (
    assert_sung_at_pitch,
    f0_by_autocorrelation,
    needs_voice_engine,
    three_notes,
)

from tinysep.data import espeak_singing, flite_singing, psola, singing, speech_singing
from tinysep.data.engines import SINGING_MODULES, EngineUnavailable, check_engines, plan_song
from tinysep.data.synth import SAMPLE_RATE, render_corpus_song

# (engine, its voices and their lowest notes, one voice for a whole song)
ENGINES = {"espeak": (espeak_singing.ESPEAK_LOWS, "it-m2"),
           "flite": (flite_singing.FLITE_LOWS, "flite-slt"),
           "speech": (speech_singing.SPEECH_LOWS, "hw-pirate")}


VOICES = [pytest.param(engine, voice, marks=needs_voice_engine(engine), id=voice)
          for engine, (lows, _) in ENGINES.items() for voice in lows]


def _vowel(f0: float, seconds: float, formant_hz: float) -> np.ndarray:
    """A pulse train at ``f0`` through one resonance at ``formant_hz`` (a one-formant vowel)."""
    n = int(seconds * SAMPLE_RATE)
    pulses = np.zeros(n)
    pulses[(np.arange(0, seconds, 1 / f0) * SAMPLE_RATE).astype(int)] = 1.0
    r = 0.97
    theta = 2 * np.pi * formant_hz / SAMPLE_RATE
    return lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], pulses)


def _peak_hz(x: np.ndarray) -> float:
    """Frequency of the largest peak of the smoothed spectrum (where the formant is)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    smooth = np.convolve(spectrum, np.ones(31) / 31, mode="same")
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[int(np.argmax(smooth))])


def test_pitch_marks_fall_once_per_period_on_the_peaks():
    x = _vowel(125.0, 0.5, 700.0)
    frames = int(0.5 / (singing.FRAME_MS / 1000)) + 1
    f0 = np.full(frames, 125.0)
    f0[:10] = 0.0  # an unvoiced start: the marks begin after it
    marks, periods = psola.pitch_marks(x, f0, SAMPLE_RATE)
    assert marks[0] >= 10 * SAMPLE_RATE * singing.FRAME_MS / 1000
    assert len(marks) == pytest.approx((len(x) - marks[0]) / 128, abs=2)
    np.testing.assert_array_equal(periods, 128)
    spacing = np.diff(marks)
    assert np.all(np.abs(spacing - 128) <= 1), spacing
    # each mark on its period's largest sample
    for m in marks[1:-1]:
        assert x[m] == pytest.approx(np.max(x[m - 40:m + 40]))


@pytest.mark.parametrize("target_hz", [90.0, 220.0, 330.0])
def test_overlap_add_moves_the_pitch_and_keeps_the_formant(target_hz):
    x = _vowel(125.0, 0.6, 900.0)
    frames = int(0.6 / (singing.FRAME_MS / 1000)) + 1
    marks, periods = psola.pitch_marks(x, np.full(frames, 125.0), SAMPLE_RATE)
    syllable = psola.SpokenSyllable(x / np.max(np.abs(x)), marks, periods)
    n = SAMPLE_RATE
    out = np.zeros(n)
    psola.overlap_add(syllable, out, 1000, n - 1000, np.full(n, target_hz), np.ones(n),
                      SAMPLE_RATE)
    middle = out[4000:12000]
    assert f0_by_autocorrelation(middle) == pytest.approx(target_hz, rel=0.02)
    assert _peak_hz(middle) == pytest.approx(900.0, abs=target_hz)  # nearest harmonic
    assert np.all(out[:1000 - 200] == 0) and np.all(out[n - 1000 + 200:] == 0)


def test_a_warp_moves_the_formant_up():
    x = _vowel(125.0, 0.6, 900.0)
    frames = int(0.6 / (singing.FRAME_MS / 1000)) + 1
    marks, periods = psola.pitch_marks(x, np.full(frames, 125.0), SAMPLE_RATE)
    syllable = psola.SpokenSyllable(x / np.max(np.abs(x)), marks, periods)
    n = SAMPLE_RATE
    peaks = {}
    for warp in (1.0, 1.3):
        out = np.zeros(n)
        psola.overlap_add(syllable, out, 0, n, np.full(n, 110.0), np.ones(n), SAMPLE_RATE,
                          warp)
        peaks[warp] = _peak_hz(out[2000:14000])
        assert f0_by_autocorrelation(out[2000:14000]) == pytest.approx(110.0, rel=0.02)
    assert peaks[1.3] == pytest.approx(1.3 * peaks[1.0], rel=0.12)


def test_a_long_consonant_keeps_its_end_faded_in():
    rng = np.random.default_rng(0)
    noise = 0.3 * rng.standard_normal(int(0.3 * SAMPLE_RATE))  # 300 ms of unvoiced consonant
    x = np.concatenate([noise, _vowel(140.0, 0.5, 700.0)])
    whole = psola.spoken_syllable(x, SAMPLE_RATE, 45)
    short = psola.spoken_syllable(x, SAMPLE_RATE, 45, max_onset_seconds=0.1)
    assert whole.onset > 0.25 * SAMPLE_RATE  # the nucleus starts after the noise
    assert short.onset == pytest.approx(0.1 * SAMPLE_RATE, abs=1)
    np.testing.assert_array_equal(np.diff(short.marks), np.diff(whole.marks))
    np.testing.assert_array_equal(short.periods, whole.periods)
    assert short.audio[0] == 0.0  # faded in, no click
    fade = int(psola.ONSET_FADE_SECONDS * SAMPLE_RATE)
    # past the fade, the same samples as the whole syllable's (up to the normalisation)
    cut = whole.onset - short.onset
    ratio = short.audio[fade:fade + 400] / whole.audio[cut + fade:cut + fade + 400]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    # a short consonant is left alone
    same = psola.spoken_syllable(x, SAMPLE_RATE, 45, max_onset_seconds=0.5)
    np.testing.assert_array_equal(same.audio, whole.audio)


@pytest.mark.parametrize(("engine", "voice"), VOICES)
def test_each_voice_sings_its_notes_at_their_pitch(engine, voice):
    low = ENGINES[engine][0][voice]
    melody = three_notes(low)
    singer = singing.VoiceSinger(f"{voice}0", voice, low, low + 16, 1.0, 0.0, 5.0, 0.03)
    sung = SINGING_MODULES[engine].render_singing(melody, singer, 3 * SAMPLE_RATE, SAMPLE_RATE,
                                                  np.random.default_rng(0))
    assert sung.shape == (3 * SAMPLE_RATE,)
    assert_sung_at_pitch(sung, melody, voice)


@pytest.mark.parametrize("engine", [pytest.param(e, marks=needs_voice_engine(e)) for e in ENGINES])
def test_a_song_renders_with_backing_vocals_of_its_own_engine(engine):
    voice = ENGINES[engine][1]
    plan = plan_song(5, 0, (engine, "physical"), (), (voice,))
    assert plan.vocal_engine == engine and plan.voice == voice
    stems, info = render_corpus_song(5, plan, 6.0, production=False, backing=1.0)
    assert stems is not None, info
    assert info["voice"] == voice and info["backing_vocals"]["kind"] in ("harmony", "oohs")
    assert np.sqrt(np.mean(stems["vocals"].astype(np.float64) ** 2)) > 1e-3


@pytest.mark.parametrize(("engine", "program"), [("espeak", "espeak-ng"), ("flite", "flite")])
def test_a_missing_program_names_its_package(engine, program, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no program on the search path
    voice = ENGINES[engine][1]
    assert f"{program} program (Debian package {program})" in SINGING_MODULES[
        engine].missing_tools((voice,))
    with pytest.raises(EngineUnavailable,
                       match=rf"engine {engine}: the {program} program.*make system-deps"):
        check_engines(("additive", engine), (), (voice,))
    check_engines(("additive", "physical"), (), singing.DEFAULT_VOICES)  # it does not sing
