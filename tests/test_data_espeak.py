"""The espeak vocal engine: voice selection and held-out voices, a voice eSpeak NG cannot
speak (what every overlap-add engine shares is tested in test_data_psola)."""

import dataclasses

import pytest
from singing_support import needs_voice_engine

from tinysep.data import engines as engines_mod
from tinysep.data import espeak_singing, singing
from tinysep.data.engines import plan_song
from tinysep.data.synth import plan_corpus, render_corpus_song

SEED = 5
needs_espeak = needs_voice_engine("espeak")


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
