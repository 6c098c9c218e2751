"""The corpus's music engines: real sound fonts (fluidsynth), real Festival voices, physical
models; stems, determinism, engine metadata, missing tools and skipped songs."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.main import main as cli_main
from tinysep.data import engines as engines_mod
from tinysep.data import espeak_singing, flite_singing, recordings, singing, soundfont
from tinysep.data.engines import (
    ENGINES,
    EngineUnavailable,
    SongPlan,
    check_engines,
    parse_engines,
    plan_song,
    render_stems,
)
from tinysep.data.loaders import detect_dataset, load_split
from tinysep.data.score import SungNote
from tinysep.data.sources import STEMS
from tinysep.data.synth import (
    SAMPLE_RATE,
    mix_stems,
    plan_corpus,
    render_corpus_song,
    silence_reason,
    write_corpus,
)

SEED, SECONDS = 5, 4.0
FONT = "timgm6mb"  # the smallest Debian font: loads in a fraction of a second

needs_fluidsynth = pytest.mark.skipif(not soundfont.font_path(FONT).is_file(),
                                      reason="make system-deps installs the sound fonts")
needs_festival = pytest.mark.skipif(singing.missing_tools() is not None,
                                    reason="make system-deps installs Festival and its voices")
needs_espeak = pytest.mark.skipif(
    espeak_singing.missing_tools(espeak_singing.DEFAULT_ESPEAK_VOICES) is not None,
    reason="make system-deps installs eSpeak NG")
needs_recordings = pytest.mark.skipif(
    any(recordings.missing_collection(c) for c in recordings.DEFAULT_COLLECTIONS),
    reason="make system-deps installs the recorded engine's soundtracks")
needs_flite = pytest.mark.skipif(
    flite_singing.missing_tools(flite_singing.DEFAULT_FLITE_VOICES) is not None,
    reason="make system-deps installs Flite")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# (vocal engine, accompaniment engine): every engine appears at least once
COMBOS = [("additive", "soundfont"), ("festival", "physical"), ("choir", "additive"),
          ("festival", "soundfont"), ("additive", "subtractive"), ("espeak", "physical"),
          ("flite", "subtractive")]


@needs_fluidsynth
@needs_festival
@needs_espeak
@needs_flite
@pytest.mark.parametrize(("vocal", "accompaniment"), COMBOS)
def test_each_engine_renders_distinct_non_silent_stems_that_sum_to_the_mix(vocal,
                                                                           accompaniment):
    index = 1  # a song with drums in every combination (the score draws them 90% of the time)
    plan = SongPlan(index, vocal, accompaniment, FONT, "x")
    stems, info = render_corpus_song(SEED, plan, SECONDS, production=True)
    assert stems is not None, info
    assert "drums" in info["instruments"]
    for name in STEMS:
        assert stems[name].shape == (int(SECONDS * SAMPLE_RATE),)
        assert _rms(stems[name]) > 1e-3, name
    for i, a in enumerate(STEMS):
        for b in STEMS[i + 1:]:
            corr = abs(np.corrcoef(stems[a], stems[b])[0, 1])
            assert corr < 0.8, (a, b, corr)
    stereo, scaled = mix_stems(stems, var_db=2.0)
    left = scaled["drums"].astype(np.float64) + scaled["bass"] + scaled["other"]
    np.testing.assert_allclose(stereo[:, 0], left, atol=1e-6)
    np.testing.assert_array_equal(stereo[:, 1], scaled["vocals"])
    assert 10 * np.log10(_rms(stereo[:, 1]) ** 2 / _rms(stereo[:, 0]) ** 2) == pytest.approx(
        2.0, abs=0.01)


@needs_fluidsynth
@needs_festival
def test_engines_sound_different_on_the_same_score():
    """The same score through two accompaniment / vocal engines gives different audio."""
    songs = {combo: render_stems(SEED, SongPlan(1, *combo, FONT, "x"), SECONDS, SAMPLE_RATE)
             for combo in [("additive", "additive"), ("festival", "soundfont"),
                           ("choir", "physical")]}
    bands = [s.stems["other"] for s in songs.values()]
    voices = [s.stems["vocals"] for s in songs.values()]
    for group in (bands, voices):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                assert abs(np.corrcoef(group[i], group[j])[0, 1]) < 0.5


@needs_fluidsynth
def test_a_sound_font_stem_depends_only_on_its_notes():
    notes = [soundfont.MidiNote(0.05, 0.3, 48, 100), soundfont.MidiNote(0.2, 0.4, 55, 80)]
    first = soundfont.render_notes(FONT, 33, notes, 12_000, SAMPLE_RATE)
    soundfont.render_notes(FONT, 0, notes, 12_000, SAMPLE_RATE, drums=True)  # other state
    again = soundfont.render_notes(FONT, 33, notes, 12_000, SAMPLE_RATE)
    np.testing.assert_array_equal(first, again)
    assert _rms(first[800:]) > 1e-3
    assert _rms(first[:700]) < 1e-6  # nothing before the first note (reverb/chorus off)


@needs_fluidsynth
@needs_festival
@needs_recordings
def test_same_command_writes_the_same_bytes_with_any_number_of_workers(tmp_path):
    kwargs = dict(songs=3, seconds=SECONDS, seed=SEED, progress=False, engines=ENGINES,
                  fonts=(FONT,), production=True, stems=True)
    write_corpus(tmp_path / "a", workers=2, **kwargs)
    write_corpus(tmp_path / "b", workers=1, **kwargs)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    meta = json.loads(a["splits.json"])
    for clip in meta["clips"]:
        for stem in STEMS:
            assert f"Stems/{clip}/{stem}.wav" in a
        left, _ = sf.read(tmp_path / "a" / "Wavfile" / f"{clip}.wav")
        parts = sum(sf.read(tmp_path / "a" / "Stems" / clip / f"{s}.wav")[0]
                    for s in ("drums", "bass", "other"))
        assert np.max(np.abs(parts - left[:, 0])) <= 3 / 32768
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folders
    # the loaders read the multi-engine corpus as vocals vs accompaniment, as before
    assert detect_dataset(tmp_path / "a") == "synth"
    clips = load_split(tmp_path / "a", "auto", "all", progress=False)
    assert sorted(c.name for c in clips) == sorted(meta["clips"])
    for clip in clips:
        np.testing.assert_allclose(clip.mixture, clip.vocals + clip.accompaniment, atol=1e-6)
        assert _rms(clip.vocals) > 1e-3 and _rms(clip.accompaniment) > 1e-3


def test_splits_name_the_engines_of_every_song_and_clip():
    meta = plan_corpus(40, 12.0, SEED, ENGINES, ("fluidr3", "timgm6mb"),
                       collections=("lincity", "xmoto"))
    seen_vocals, seen_band, seen_fonts, seen_collections = set(), set(), set(), set()
    for song in meta["songs"].values():
        e = song["engines"]
        seen_vocals.add(e["vocals"])
        seen_band.add(e["accompaniment"])
        uses_font = e["vocals"] == "choir" or e["accompaniment"] == "soundfont"
        assert (e["font"] is not None) == uses_font
        seen_fonts.add(e["font"])
        assert ("recording" in e) == (e["accompaniment"] == "recorded")
        seen_collections.add(e.get("recording"))
        for clip in song["clips"]:
            assert meta["clips"][clip]["engines"] == e
    assert seen_vocals == {"additive", "festival", "choir", "espeak", "flite", "speech"}
    assert seen_band == {"additive", "soundfont", "physical", "subtractive", "recorded"}
    assert seen_collections == {None, "lincity", "xmoto"}
    assert meta["parameters"]["recordings"] == ["lincity", "xmoto"]
    assert {"fluidr3", "timgm6mb"} <= seen_fonts
    assert meta["parameters"]["engines"] == list(ENGINES)
    # an engine left out never plays
    only = plan_corpus(20, 12.0, SEED, ("additive", "physical"), ())
    assert {s["engines"]["accompaniment"] for s in only["songs"].values()} <= {"additive",
                                                                              "physical"}
    assert {s["engines"]["vocals"] for s in only["songs"].values()} == {"additive"}


def test_additive_songs_keep_their_names_when_other_engines_join():
    for index in range(10):
        plan = plan_song(SEED, index, ENGINES, (FONT,), collections=("xmoto",))
        if plan.vocal_engine == "additive":
            assert plan.song_id == plan_song(SEED, index, ("additive",), ()).song_id


def test_engine_names_are_checked():
    assert parse_engines("physical, festival") == ("physical", "festival")
    with pytest.raises(ValueError, match="unknown engine.*banjo.*expected"):
        parse_engines("additive,banjo")
    with pytest.raises(ValueError, match="no vocal engine"):
        parse_engines("soundfont,physical")
    with pytest.raises(ValueError, match="no accompaniment engine"):
        parse_engines("festival")


def test_missing_festival_names_the_engine_and_the_package(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EngineUnavailable, match=r"engine festival: .*festival.*make system-deps"):
        check_engines(("additive", "festival"), ())
    out = tmp_path / "corpus"
    code = cli_main(["synth", "--out", str(out), "--songs", "2", "--seconds", "2",
                     "--engines", "additive,festival", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "engine festival" in err and "Debian package" in err and "festival" in err
    assert "make system-deps" in err and "--engines" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_voice_names_its_package(monkeypatch, tmp_path):
    if singing.missing_tools() is not None:
        pytest.skip("make system-deps installs Festival and its voices")
    gone = dataclasses.replace(singing.VOICES["ona"], folder="catalan/not-installed")
    monkeypatch.setitem(singing.VOICES, "ona", gone)
    check_engines(("additive", "festival"), (), ("kal",))  # the voices asked for are there
    with pytest.raises(EngineUnavailable,
                       match=r"engine festival: .*voice\(s\) ona .*festvox-ca-ona-hts.*--voices"):
        check_engines(("additive", "festival"), (), ("kal", "ona"))
    check_engines(("additive", "physical"), (), ("ona",))  # festival does not play


def test_the_added_voices_sing_only_when_named(tmp_path):
    parse = engines_mod.parse_voices
    assert parse(None, engines_mod.STANDARD_ENGINES) == singing.DEFAULT_VOICES
    assert parse("ona, krb,krb", engines_mod.STANDARD_ENGINES) == ("krb", "ona")
    with pytest.raises(ValueError, match="unknown voice.*tenor.*expected.*kal.*en-m1"):
        parse("kal,tenor", engines_mod.STANDARD_ENGINES)
    with pytest.raises(ValueError, match="only with the festival, espeak, flite and speech "
                                         "engines.*additive,physical"):
        write_corpus(tmp_path / "corpus", songs=2, seconds=2.0, seed=SEED, progress=False,
                     engines="additive,physical", voices="krb")
    assert list(tmp_path.iterdir()) == []
    standard = engines_mod.STANDARD_ENGINES
    default = plan_corpus(40, 12.0, SEED, standard, (FONT,))
    named = plan_corpus(40, 12.0, SEED, standard, (FONT,), voices=("krb", "ona"))
    assert "voices" not in default["parameters"]  # corpora from before keep their parameters
    assert named["parameters"]["voices"] == ["krb", "ona"]
    for meta, voices in ((default, set(singing.DEFAULT_VOICES)), (named, {"krb", "ona"})):
        festival = [s["engines"] for s in meta["songs"].values()
                    if s["engines"]["vocals"] == "festival"]
        assert festival and {e["voice"] for e in festival} <= voices
        assert all("voice" not in s["engines"] for s in meta["songs"].values()
                   if s["engines"]["vocals"] != "festival")
        for song in meta["songs"].values():
            for clip in song["clips"]:
                assert meta["clips"][clip]["engines"] == song["engines"]
    # the voices change who sings, not which engines play
    for a, b in zip(default["songs"].values(), named["songs"].values(), strict=True):
        assert {k: v for k, v in a["engines"].items() if k != "voice"} == {
            k: v for k, v in b["engines"].items() if k != "voice"}


ADDED_VOICES = [v for v in singing.VOICES if v not in singing.DEFAULT_VOICES]


@pytest.mark.parametrize("voice", ADDED_VOICES)
def test_each_added_voice_sings_its_notes_at_their_pitch(voice):
    if singing.missing_tools((voice,)) is not None:
        pytest.skip("make system-deps installs Festival and its voices")
    import pyworld

    low = singing.VOICES[voice].low
    pitches = (low + 5, low + 9, low + 2)
    melody = [SungNote(0.2 + 0.7 * i, 0.6, float(p), 0.8, 0, True, None, False)
              for i, p in enumerate(pitches)]
    singer = singing.VoiceSinger(f"{voice}0", voice, low, low + 16, 1.0, 0.0, 5.0, 0.03)
    sung = singing.render_singing(melody, singer, 3 * SAMPLE_RATE, SAMPLE_RATE,
                                  np.random.default_rng(0))
    assert _rms(sung) > 1e-3
    x = sung.astype(np.float64)
    f0, t = pyworld.dio(x, SAMPLE_RATE, frame_period=5.0, f0_floor=60, f0_ceil=900)
    for note in melody:
        # the held middle of each note (no vibrato): within a quarter tone of the note
        middle = (t > note.start + 0.2) & (t < note.start + note.duration - 0.15) & (f0 > 0)
        assert middle.sum() >= 10, (voice, note.pitch)
        midi = 69 + 12 * np.log2(np.median(f0[middle]) / 440.0)
        assert abs(midi - note.pitch) < 0.5, (voice, note.pitch, midi)


def test_a_missing_sound_font_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setitem(soundfont.FONTS, "fluidr3", (str(tmp_path / "gone.sf2"),
                                                     "fluid-soundfont-gm"))
    with pytest.raises(EngineUnavailable, match=r"soundfont.*fluidr3.*fluid-soundfont-gm"):
        check_engines(("additive", "soundfont"), ("fluidr3",))


def test_the_opt_in_fonts_play_only_when_named():
    assert engines_mod.parse_fonts(None) == soundfont.DEFAULT_FONTS
    assert not {"csound", "opl3", "freepats"} & set(soundfont.DEFAULT_FONTS)
    assert engines_mod.parse_fonts("opl3, csound") == ("opl3", "csound")
    meta = plan_corpus(30, 12.0, SEED, ("additive", "soundfont"), ("opl3",))
    assert {s["engines"]["font"] for s in meta["songs"].values()} <= {"opl3", None}


@pytest.mark.parametrize("font", ["csound", "opl3", "freepats"])
def test_each_opt_in_font_plays_the_band_in_its_own_sound(font):
    # against FluidR3 (Csound's small bank shares samples with TimGM6mb)
    if not soundfont.font_path(font).is_file() or not soundfont.font_path("fluidr3").is_file():
        pytest.skip("make system-deps installs the sound fonts")
    plan = SongPlan(1, "additive", "soundfont", font, "x")
    ours = render_stems(SEED, plan, SECONDS, SAMPLE_RATE)
    theirs = render_stems(SEED, SongPlan(1, "additive", "soundfont", "fluidr3", "x"), SECONDS,
                          SAMPLE_RATE)
    for name in ("drums", "bass", "other"):
        assert _rms(ours.stems[name]) > 1e-3, name
    assert abs(np.corrcoef(ours.stems["other"], theirs.stems["other"])[0, 1]) < 0.5
    np.testing.assert_array_equal(ours.stems["vocals"], theirs.stems["vocals"])


@needs_fluidsynth
def test_a_font_that_fails_to_load_skips_its_songs_and_counts_them(tmp_path):
    bad = tmp_path / "broken.sf2"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST" + bytes(64))
    out = tmp_path / "corpus"
    summary = write_corpus(out, songs=6, seconds=3.0, seed=SEED, progress=False,
                           engines=("additive", "soundfont"), fonts=(str(bad), FONT),
                           stems=True)
    meta = json.loads((out / "splits.json").read_text())
    broken = [sid for sid, s in meta["songs"].items() if s["engines"]["font"] == str(bad)
              and s["engines"]["accompaniment"] == "soundfont"]
    assert broken, "the plan should give the broken font a soundfont song"
    assert sorted(meta["skipped"]) == sorted(broken) == sorted(summary.skipped)
    assert all("failed to load" in r for r in meta["skipped"].values())
    listed = [c for names in meta["splits"].values() for c in names]
    assert sorted(listed) == sorted(meta["clips"])
    assert not any(meta["clips"][c]["song"] in broken for c in listed)
    wavs = sorted(p.stem for p in (out / "Wavfile").glob("*.wav"))
    assert wavs == sorted(listed)
    assert sorted(p.name for p in (out / "Stems").iterdir()) == sorted(listed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.sf2", "corpus"]


@needs_festival
def test_a_voice_that_speaks_nothing_skips_its_songs_and_counts_them(monkeypatch, tmp_path):
    mute = dataclasses.replace(singing.VOICES["kal"], function="voice_not_installed")
    monkeypatch.setitem(singing.VOICES, "mute", mute)
    out = tmp_path / "corpus"
    summary = write_corpus(out, songs=6, seconds=3.0, seed=SEED, progress=False,
                           engines=("festival", "additive"), voices=("kal", "mute"))
    meta = json.loads((out / "splits.json").read_text())
    sung_by = {sid: s["engines"].get("voice") for sid, s in meta["songs"].items()}
    assert "mute" in sung_by.values() and "kal" in sung_by.values()
    skipped = sorted(sid for sid, voice in sung_by.items() if voice == "mute")
    assert sorted(meta["skipped"]) == skipped == sorted(summary.skipped)
    assert all("festival voice mute wrote no audio" in r for r in meta["skipped"].values())
    listed = sorted(c for names in meta["splits"].values() for c in names)
    assert listed == sorted(p.stem for p in (out / "Wavfile").glob("*.wav"))
    assert not any(meta["clips"][c]["song"] in skipped for c in listed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_a_silent_song_is_skipped():
    song = render_stems(SEED, SongPlan(0, "additive", "additive", None, "x"), 2.0, SAMPLE_RATE)
    assert silence_reason(song.stems) is None
    quiet = dict(song.stems, vocals=np.zeros_like(song.stems["vocals"]))
    assert silence_reason(quiet) == "vocals render silent"
    no_band = {k: (v if k == "vocals" else 1e-7 * v) for k, v in song.stems.items()}
    assert silence_reason(no_band) == "accompaniment renders silent"
    broken = dict(song.stems, bass=np.full_like(song.stems["bass"], np.nan))
    assert silence_reason(broken) == "rendered non-finite samples"


@needs_fluidsynth
def test_every_song_skipped_writes_nothing(tmp_path):
    bad = tmp_path / "broken.sf2"
    bad.write_bytes(b"not a sound font")
    with pytest.raises(ValueError, match="every song was skipped.*failed to load"):
        write_corpus(tmp_path / "corpus", songs=2, seconds=2.0, seed=SEED, progress=False,
                     engines=("choir", "soundfont"), fonts=(str(bad),))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.sf2"]


def test_unknown_font_names_are_refused():
    with pytest.raises(ValueError, match="unknown sound font 'piano'"):
        engines_mod.parse_fonts("piano")


def test_no_accompaniment_pool_holds_a_sung_sound():
    # the choir engine sings with these programs; an accompaniment playing them would label
    # the same sound vocals in one song and accompaniment in another
    for style, pools in soundfont.STYLES.items():
        for role, programs in pools.items():
            if role != "kit":
                assert not set(programs) & set(soundfont.SUNG_PROGRAMS), (style, role)
