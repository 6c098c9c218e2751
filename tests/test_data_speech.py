"""The speech vocal engine: recorded voice packs chosen by name beside the other voice
engines, a missing pack naming its Debian package, and a damaged line skipping its songs
(what every overlap-add engine shares is tested in test_data_psola)."""

import shutil

import numpy as np
import pytest
from singing_support import needs_voice_engine

from tinysep.data import engines as engines_mod
from tinysep.data import speech_singing
from tinysep.data.engines import EngineUnavailable, check_engines, plan_song
from tinysep.data.synth import plan_corpus, render_corpus_song

SEED = 13
needs_packs = needs_voice_engine("speech")


def test_speech_voices_are_chosen_by_name_and_three_are_held_out_by_default():
    parse = engines_mod.parse_voices
    defaults = set(parse(None, ("additive", "speech")))
    assert defaults == set(speech_singing.DEFAULT_SPEECH_VOICES)
    assert len(defaults) == len(speech_singing.SPEECH_VOICES) - 3
    assert not {"hw-singer", "hw-mobster", "hw-default-es"} & defaults
    with pytest.raises(ValueError, match="voices hw-singer sing with the speech engine"):
        parse("hw-singer", ("additive", "flite"))
    held_out = ("hw-singer",)
    meta = plan_corpus(30, 12.0, SEED, ("additive", "speech"), (), voices=held_out)
    sung = [s["engines"] for s in meta["songs"].values() if s["engines"]["vocals"] == "speech"]
    assert len(sung) > 8 and {e["voice"] for e in sung} == set(held_out)
    # the singer's range starts near the pack's own low note
    singer = engines_mod._voice_singer(SEED, 0, "speech", held_out)
    low = speech_singing.SPEECH_LOWS["hw-singer"]
    assert low - 3 <= singer.low <= low + 4


@needs_packs
def test_every_pack_yields_a_voiced_nucleus_for_most_of_its_lines():
    for voice in speech_singing.SPEECH_VOICES:
        bank = speech_singing.syllable_bank(voice, 16000)
        lines = speech_singing.voice_lines(voice)
        assert len(bank) >= 0.85 * len(lines), voice
        # pitch marks one period apart, in the range of a human voice
        periods = np.concatenate([s.periods for s in bank])
        assert 16000 / np.median(periods) == pytest.approx(350, rel=0.35), voice
        assert all(np.all(np.diff(s.marks) > 0) for s in bank)


def test_a_missing_pack_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setattr(speech_singing, "VOICE_ROOT", tmp_path)
    assert "Debian package hedgewars-data" in speech_singing.missing_tools(("hw-pirate",))
    with pytest.raises(EngineUnavailable,
                       match=r"engine speech: the recorded lines of hw-pirate .*hedgewars-data"
                             r".*make system-deps"):
        check_engines(("additive", "speech"), (), ("hw-pirate",))


@needs_packs
def test_a_damaged_line_skips_its_songs_and_names_the_file(monkeypatch, tmp_path):
    pack = tmp_path / "Pirate"
    shutil.copytree(speech_singing.VOICE_ROOT / "Pirate", pack)
    (pack / "Amazing.ogg").write_bytes(b"OggS not really")
    monkeypatch.setattr(speech_singing, "VOICE_ROOT", tmp_path)
    speech_singing.syllable_bank.cache_clear()
    try:
        plan = plan_song(SEED, 0, ("speech", "physical"), (), ("hw-pirate",))
        stems, info = render_corpus_song(SEED, plan, 3.0, production=False)
    finally:
        speech_singing.syllable_bank.cache_clear()
    assert stems is None
    assert "speech voice hw-pirate: cannot read" in info["skipped"]
    assert "Amazing.ogg" in info["skipped"] and "hedgewars-data" in info["skipped"]
