"""The espeak vocal engine: every eSpeak NG voice singing its notes at their pitch, voice
selection and held-out voices, missing tools."""

import dataclasses

import numpy as np
import pytest
from singing_support import assert_sung_at_pitch, three_notes

from tinysep.data import engines as engines_mod
from tinysep.data import espeak_singing, singing
from tinysep.data.engines import EngineUnavailable, check_engines, plan_song
from tinysep.data.synth import SAMPLE_RATE, plan_corpus, render_corpus_song

SEED = 5
needs_espeak = pytest.mark.skipif(
    espeak_singing.missing_tools(tuple(espeak_singing.ESPEAK_VOICES)) is not None,
    reason="make system-deps installs eSpeak NG")


@needs_espeak
@pytest.mark.parametrize("voice", list(espeak_singing.ESPEAK_VOICES))
def test_each_espeak_voice_sings_its_notes_at_their_pitch(voice):
    low = espeak_singing.ESPEAK_VOICES[voice].low
    melody = three_notes(low)
    singer = singing.VoiceSinger(f"{voice}0", voice, low, low + 16, 1.0, 0.0, 5.0, 0.03)
    sung = espeak_singing.render_singing(melody, singer, 3 * SAMPLE_RATE, SAMPLE_RATE,
                                         np.random.default_rng(0))
    assert sung.shape == (3 * SAMPLE_RATE,)
    assert_sung_at_pitch(sung, melody, voice)


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
