"""The flite vocal engine: voice selection beside the other voice engines and a voice Flite
lacks (what every overlap-add engine shares is tested in test_data_psola)."""

import dataclasses

import pytest
from singing_support import needs_voice_engine

from tinysep.data import engines as engines_mod
from tinysep.data import espeak_singing, flite_singing, singing
from tinysep.data.engines import EngineUnavailable, check_engines, plan_song
from tinysep.data.synth import plan_corpus, render_corpus_song

SEED = 9
needs_flite = needs_voice_engine("flite")


def test_flite_voices_are_chosen_by_name_beside_the_other_voice_engines():
    parse = engines_mod.parse_voices
    engines = ("additive", "festival", "espeak", "flite")
    assert set(parse(None, engines)) == (set(singing.DEFAULT_VOICES)
                                         | set(espeak_singing.DEFAULT_ESPEAK_VOICES)
                                         | set(flite_singing.DEFAULT_FLITE_VOICES))
    # naming a flite voice keeps the other engines' defaults
    assert set(parse("flite-rms", ("additive", "flite", "espeak"))) == (
        {"flite-rms"} | set(espeak_singing.DEFAULT_ESPEAK_VOICES))
    with pytest.raises(ValueError, match="voices flite-awb sing with the flite engine.*"
                                         "additive,espeak leave out"):
        parse("flite-awb", ("additive", "espeak"))
    with pytest.raises(ValueError, match="unknown voice.*awb.*flite-awb"):
        parse("awb", engines)  # Flite's own name is not the corpus's
    held_out = ("flite-awb", "flite-rms")
    meta = plan_corpus(40, 12.0, SEED, ("additive", "flite"), (), voices=held_out)
    assert meta["parameters"]["voices"] == list(held_out)
    sung = [s["engines"] for s in meta["songs"].values() if s["engines"]["vocals"] == "flite"]
    assert len(sung) > 10 and {e["voice"] for e in sung} == set(held_out)
    # a male voice's singer is planned in a male range
    singer = engines_mod._voice_singer(SEED, 0, "flite", ("flite-rms",))
    assert singer.voice == "flite-rms" and singer.low >= flite_singing.FLITE_LOWS["flite-rms"] - 3


@needs_flite
def test_a_voice_flite_lacks_is_named_and_skips_its_songs(monkeypatch):
    # flite speaks an unknown voice with its default one without a word: the engine must not
    broken = dataclasses.replace(flite_singing.FLITE_VOICES["flite-rms"], name="rms-none")
    monkeypatch.setitem(flite_singing.FLITE_VOICES, "flite-rms", broken)
    assert "flite-rms" in flite_singing.missing_tools(("flite-awb", "flite-rms"))
    with pytest.raises(EngineUnavailable, match=r"engine flite: the Flite voice\(s\) flite-rms"):
        check_engines(("additive", "flite"), (), ("flite-rms",))
    flite_singing.syllable_bank.cache_clear()
    plan = plan_song(SEED, 0, ("flite", "physical"), (), ("flite-rms",))
    stems, info = render_corpus_song(SEED, plan, 3.0, production=False)
    flite_singing.syllable_bank.cache_clear()
    assert stems is None
    assert info["skipped"].startswith("the flite engine failed: flite voice flite-rms: flite "
                                      "has no voice 'rms-none'")
