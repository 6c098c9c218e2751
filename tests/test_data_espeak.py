"""The espeak vocal engine: pitch marks and overlap-add on known signals, every eSpeak NG
voice singing its notes at their pitch, voice selection and held-out voices, missing tools."""

import dataclasses

import numpy as np
import pytest
from scipy.signal import lfilter

from tinysep.data import engines as engines_mod
from tinysep.data import espeak_singing, singing
from tinysep.data.engines import EngineUnavailable, check_engines, plan_song
from tinysep.data.score import SungNote
from tinysep.data.synth import SAMPLE_RATE, plan_corpus, render_corpus_song

SEED = 5
needs_espeak = pytest.mark.skipif(
    espeak_singing.missing_tools(tuple(espeak_singing.ESPEAK_VOICES)) is not None,
    reason="make system-deps installs eSpeak NG")


def _vowel(f0: float, seconds: float, formant_hz: float) -> np.ndarray:
    """A pulse train at ``f0`` through one resonance at ``formant_hz`` (a one-formant vowel)."""
    n = int(seconds * SAMPLE_RATE)
    pulses = np.zeros(n)
    pulses[(np.arange(0, seconds, 1 / f0) * SAMPLE_RATE).astype(int)] = 1.0
    r = 0.97
    theta = 2 * np.pi * formant_hz / SAMPLE_RATE
    return lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], pulses)


def _f0_by_autocorrelation(x: np.ndarray, low_hz: float = 60.0, high_hz: float = 600.0) -> float:
    x = x - x.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1:]
    lo, hi = int(SAMPLE_RATE / high_hz), int(SAMPLE_RATE / low_hz)
    return SAMPLE_RATE / (lo + int(np.argmax(ac[lo:hi])))


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
    marks, periods = espeak_singing.pitch_marks(x, f0, SAMPLE_RATE)
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
    marks, periods = espeak_singing.pitch_marks(x, np.full(frames, 125.0), SAMPLE_RATE)
    syllable = espeak_singing.SpokenSyllable(x / np.max(np.abs(x)), marks, periods)
    n = SAMPLE_RATE
    out = np.zeros(n)
    espeak_singing.overlap_add(syllable, out, 1000, n - 1000, np.full(n, target_hz),
                               np.ones(n), SAMPLE_RATE)
    middle = out[4000:12000]
    assert _f0_by_autocorrelation(middle) == pytest.approx(target_hz, rel=0.02)
    assert _peak_hz(middle) == pytest.approx(900.0, abs=target_hz)  # nearest harmonic
    assert np.all(out[:1000 - 200] == 0) and np.all(out[n - 1000 + 200:] == 0)


def test_a_warp_moves_the_formant_up():
    x = _vowel(125.0, 0.6, 900.0)
    frames = int(0.6 / (singing.FRAME_MS / 1000)) + 1
    marks, periods = espeak_singing.pitch_marks(x, np.full(frames, 125.0), SAMPLE_RATE)
    syllable = espeak_singing.SpokenSyllable(x / np.max(np.abs(x)), marks, periods)
    n = SAMPLE_RATE
    peaks = {}
    for warp in (1.0, 1.3):
        out = np.zeros(n)
        espeak_singing.overlap_add(syllable, out, 0, n, np.full(n, 110.0), np.ones(n),
                                   SAMPLE_RATE, warp)
        peaks[warp] = _peak_hz(out[2000:14000])
        assert _f0_by_autocorrelation(out[2000:14000]) == pytest.approx(110.0, rel=0.02)
    assert peaks[1.3] == pytest.approx(1.3 * peaks[1.0], rel=0.12)


@needs_espeak
@pytest.mark.parametrize("voice", list(espeak_singing.ESPEAK_VOICES))
def test_each_espeak_voice_sings_its_notes_at_their_pitch(voice):
    low = espeak_singing.ESPEAK_VOICES[voice].low
    pitches = (low + 5, low + 12, low + 2)
    melody = [SungNote(0.2 + 0.7 * i, 0.6, float(p), 0.8, 0, True, None, False)
              for i, p in enumerate(pitches)]
    singer = singing.VoiceSinger(f"{voice}0", voice, low, low + 16, 1.0, 0.0, 5.0, 0.03)
    sung = espeak_singing.render_singing(melody, singer, 3 * SAMPLE_RATE, SAMPLE_RATE,
                                         np.random.default_rng(0))
    assert sung.dtype == np.float32 and sung.shape == (3 * SAMPLE_RATE,)
    assert np.sqrt(np.mean(sung.astype(np.float64) ** 2)) > 1e-2
    assert np.all(sung[:int(0.05 * SAMPLE_RATE)] == 0)  # nothing before the first syllable
    for note in melody:
        # the held middle of each note (no vibrato): within a quarter tone of the note
        a = int((note.start + 0.2) * SAMPLE_RATE)
        b = int((note.start + note.duration - 0.15) * SAMPLE_RATE)
        midi = 69 + 12 * np.log2(_f0_by_autocorrelation(sung[a:b].astype(np.float64)) / 440.0)
        assert abs(midi - note.pitch) < 0.5, (voice, note.pitch, midi)


def test_espeak_voices_are_chosen_by_name_and_recorded():
    parse = engines_mod.parse_voices
    engines = ("additive", "festival", "espeak")
    default = parse(None, engines)
    assert set(default) == set(singing.DEFAULT_VOICES) | set(
        espeak_singing.DEFAULT_ESPEAK_VOICES)
    # naming espeak voices keeps Festival's defaults, and the other way round
    assert set(parse("fr-m7", engines)) == set(singing.DEFAULT_VOICES) | {"fr-m7"}
    assert set(parse("krb", engines)) == {"krb"} | set(espeak_singing.DEFAULT_ESPEAK_VOICES)
    with pytest.raises(ValueError, match="voices fr-m7 sing with the espeak engine.*"
                                         "additive,festival leave out"):
        parse("fr-m7", ("additive", "festival"))
    held_out = ("en-klatt4", "fr-m7", "pl-f5", "pt-f4")
    assert not set(held_out) & set(espeak_singing.DEFAULT_ESPEAK_VOICES)
    meta = plan_corpus(60, 12.0, SEED, ("additive", "espeak"), (), voices=held_out)
    assert meta["parameters"]["voices"] == list(held_out)
    sung = [s["engines"] for s in meta["songs"].values() if s["engines"]["vocals"] == "espeak"]
    assert len(sung) > 10 and {e["voice"] for e in sung} == set(held_out)
    assert all("voice" not in s["engines"] for s in meta["songs"].values()
               if s["engines"]["vocals"] == "additive")
    # a song's plan is a pure function of seed and index
    assert plan_song(SEED, 3, ("additive", "espeak"), (), held_out) == plan_song(
        SEED, 3, ("additive", "espeak"), (), held_out)


@needs_espeak
def test_an_espeak_song_renders_with_backing_vocals_of_its_own_engine():
    plan = plan_song(SEED, 0, ("espeak", "physical"), (), ("it-m2",))
    assert plan.vocal_engine == "espeak" and plan.voice == "it-m2"
    stems, info = render_corpus_song(SEED, plan, 6.0, production=False, backing=1.0)
    assert stems is not None, info
    assert info["voice"] == "it-m2" and info["backing_vocals"]["kind"] in ("harmony", "oohs")
    assert np.sqrt(np.mean(stems["vocals"].astype(np.float64) ** 2)) > 1e-3


def test_a_missing_espeak_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on the search path
    assert "espeak-ng" in espeak_singing.missing_tools(("en-m1",))
    with pytest.raises(EngineUnavailable, match=r"engine espeak: .*espeak-ng.*make system-deps"):
        check_engines(("additive", "espeak"), (), ("en-m1",))
    check_engines(("additive", "physical"), (), singing.DEFAULT_VOICES)  # espeak does not sing


@needs_espeak
def test_a_voice_espeak_cannot_speak_skips_its_songs(monkeypatch):
    broken = dataclasses.replace(espeak_singing.ESPEAK_VOICES["fr-m7"], language="xx-none")
    monkeypatch.setitem(espeak_singing.ESPEAK_VOICES, "fr-m7", broken)
    espeak_singing.syllable_bank.cache_clear()
    plan = plan_song(SEED, 0, ("espeak", "physical"), (), ("fr-m7",))
    stems, info = render_corpus_song(SEED, plan, 3.0, production=False)
    espeak_singing.syllable_bank.cache_clear()
    assert stems is None
    assert info["skipped"].startswith("the espeak engine failed: espeak voice fr-m7 wrote no "
                                      "audio for 'la'")
