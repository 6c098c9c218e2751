"""The speech vocal engine: recorded voices of three collections chosen by name beside the
other voice engines, a missing voice naming its collection's Debian package, and a damaged
line skipping its songs (what every overlap-add engine shares is tested in test_data_psola)."""

import dataclasses
import shutil

import numpy as np
import pytest
import soundfile as sf
from singing_support import needs_voice_engine

from tinysep.data import engines as engines_mod
from tinysep.data import speech_singing
from tinysep.data.engines import EngineUnavailable, check_engines, plan_song
from tinysep.data.synth import plan_corpus, render_corpus_song

SEED = 13
needs_packs = needs_voice_engine("speech")


def test_speech_voices_are_chosen_by_name_and_some_are_held_out_by_default():
    parse = engines_mod.parse_voices
    defaults = set(parse(None, ("additive", "speech")))
    assert defaults == set(speech_singing.DEFAULT_SPEECH_VOICES)
    held_out = set(speech_singing.HELD_OUT_SPEECH_VOICES)
    assert defaults | held_out == set(speech_singing.SPEECH_VOICES) and not defaults & held_out
    assert {"hw-singer", "hw-mobster", "hw-default-es", "kl-en", "kt-en"} <= held_out
    # no default voice comes from KTuberling, and none shares a language with it in KLettres
    tuberling = {v[3:] for v in speech_singing.SPEECH_VOICES if v.startswith("kt-")}
    assert len(tuberling) == 10
    assert not {v for v in defaults if v.startswith("kt-") or v[3:] in tuberling}
    assert {"kl-pt-br", "kl-en-gb", "hw-pirate"} <= defaults
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
def test_every_voice_has_readable_lines_in_its_collection():
    for voice, spec in speech_singing.SPEECH_VOICES.items():
        lines = speech_singing.voice_lines(voice)
        assert len(lines) >= 39, voice
        assert all(line.is_relative_to(speech_singing.COLLECTIONS[spec.collection].root)
                   for line in lines)
        assert sf.info(str(lines[0])).duration > 0.2, voice


# men, women and a low growl, one or more from each collection
@needs_packs
@pytest.mark.parametrize("voice", ["hw-pirate", "hw-mobster", "kl-ml", "kl-tn", "kl-pt-br",
                                   "kt-en"])
def test_a_voice_yields_a_voiced_nucleus_at_its_own_pitch_for_most_lines(voice):
    bank = speech_singing.syllable_bank(voice, 16000)
    lines = speech_singing.voice_lines(voice)
    assert len(bank) >= 0.65 * len(lines)
    # pitch marks one period apart, the voice's median pitch near or above its low note
    periods = np.concatenate([s.periods for s in bank])
    median_note = 69 + 12 * np.log2(16000 / np.median(periods) / 440)
    low = speech_singing.SPEECH_LOWS[voice]
    assert low - 4 <= median_note <= low + 20
    assert all(np.all(np.diff(s.marks) > 0) for s in bank)


def _moved(collection: str, root) -> dict:
    """The collections with one of them looked for under ``root``."""
    moved = dict(speech_singing.COLLECTIONS)
    moved[collection] = dataclasses.replace(moved[collection], root=root)
    return moved


def test_a_missing_voice_names_its_collections_package(monkeypatch, tmp_path):
    monkeypatch.setattr(speech_singing, "COLLECTIONS", _moved("hedgewars", tmp_path))
    assert "Debian package hedgewars-data" in speech_singing.missing_tools(("hw-pirate",))
    with pytest.raises(EngineUnavailable,
                       match=r"engine speech: the recorded lines of hw-pirate .*hedgewars-data"
                             r".*install the Debian package\(s\) hedgewars-data "
                             r".*make system-deps"):
        check_engines(("additive", "speech"), (), ("hw-pirate",))
    monkeypatch.setattr(speech_singing, "COLLECTIONS", _moved("ktuberling", tmp_path))
    with pytest.raises(EngineUnavailable,
                       match=r"recorded lines of kt-de under .*/de \(Debian package "
                             r"ktuberling-data\).*install the Debian package\(s\) "
                             r"ktuberling-data \("):
        check_engines(("additive", "speech"), (), ("kl-fr", "kt-de"))


@needs_packs
def test_a_damaged_line_skips_its_songs_and_names_the_file(monkeypatch, tmp_path):
    pack = tmp_path / "Pirate"
    shutil.copytree(speech_singing.voice_folder("hw-pirate"), pack)
    (pack / "Amazing.ogg").write_bytes(b"OggS not really")
    monkeypatch.setattr(speech_singing, "COLLECTIONS", _moved("hedgewars", tmp_path))
    speech_singing.syllable_bank.cache_clear()
    try:
        plan = plan_song(SEED, 0, ("speech", "physical"), (), ("hw-pirate",))
        stems, info = render_corpus_song(SEED, plan, 3.0, production=False)
    finally:
        speech_singing.syllable_bank.cache_clear()
    assert stems is None
    assert "speech voice hw-pirate: cannot read" in info["skipped"]
    assert "Amazing.ogg" in info["skipped"] and "hedgewars-data" in info["skipped"]
