"""Backing vocals: harmony lines in the key, chord oohs, rendered into the vocals stem only,
never on the choir engine, recorded in the corpus parameters and refused when out of range."""

import json

import numpy as np
import pytest

from cli.main import main as cli_main
from tinysep.data import backing, singing
from tinysep.data.engines import SongPlan, add_backing, render_stems
from tinysep.data.score import Bar, SongScore, SungNote, compose, scale_of
from tinysep.data.synth import SAMPLE_RATE, write_corpus

SEED, SECONDS = 5, 4.0


def _note(start: float, pitch: float) -> SungNote:
    return SungNote(start=start, duration=0.5, pitch=pitch, velocity=0.9, vowel=0,
                    syllable_start=True, consonant="s", nasal_onset=False)


def _score(key: int, mode: str) -> SongScore:
    bars = [Bar(start=2.0 * i, chord=(0, 4, 7) if i % 2 == 0 else (5, 9, 0), section="A",
                section_index=i // 2, fill=False) for i in range(4)]
    return SongScore(key=key, mode=mode, tempo_bpm=120.0, beat_seconds=0.5, bars=bars)


@pytest.mark.parametrize(("key", "mode", "pitch", "steps", "expected"), [
    (0, "major", 64, 2, 67),   # E -> G, a minor third up in C major
    (0, "major", 60, 2, 64),   # C -> E, a major third up
    (0, "major", 64, -2, 60),  # E -> C, a third down
    (0, "major", 64, 5, 72),   # E -> C, a sixth up
    (0, "major", 71, 2, 74),   # B -> D, across the octave
    (9, "minor", 69, 2, 72),   # A -> C in A minor
    (9, "minor", 69, -2, 65),  # A -> F, a third down in A minor
    (9, "minor", 71, -5, 62),  # B -> D, a sixth down
])
def test_a_harmony_line_moves_each_note_by_scale_degrees_and_keeps_its_timing(
        key, mode, pitch, steps, expected):
    melody = [_note(0.0, pitch), _note(0.7, pitch)]
    line = backing.harmony_line(melody, _score(key, mode), steps)
    assert [n.pitch for n in line] == [expected, expected]
    assert [(n.start, n.duration, n.vowel, n.consonant) for n in line] == [
        (n.start, n.duration, n.vowel, n.consonant) for n in melody]


def test_a_harmony_line_of_a_composed_melody_stays_in_its_key():
    score = compose(np.random.default_rng(3), 12.0, (55, 72))
    scale = set(scale_of(score.key, score.mode))
    for steps in (2, -2, 5, -5):
        line = backing.harmony_line(score.melody, score, steps)
        assert {int(n.pitch) % 12 for n in line} <= scale
        moved = [n.pitch - m.pitch for n, m in zip(line, score.melody, strict=True)]
        assert all(np.sign(m) == np.sign(steps) and abs(m) <= 9 for m in moved)


def test_ooh_lines_hold_chord_tones_for_whole_bars_on_one_vowel():
    score = _score(0, "major")
    lines = backing.ooh_lines(score, (55, 72), 3, 7.0, np.random.default_rng(1))
    assert len(lines) == 3 and all(lines)
    bars = {bar.start: bar for bar in score.bars}
    vowels = {n.vowel for line in lines for n in line}
    assert len(vowels) == 1 and vowels <= set(backing.OOH_VOWELS)
    for line in lines:
        for n in line:
            bar = bars[n.start]
            assert int(n.pitch) % 12 in bar.chord
            assert 55 - 6 <= n.pitch <= 72 + 6
            assert n.duration == pytest.approx(0.96 * score.bar_seconds)
            assert n.consonant is None
    # three voices on a triad sing three different tones at once
    for start in {n.start for n in lines[0]}:
        assert len({line[[m.start for m in line].index(start)].pitch for line in lines}) == 3
    # a song shorter than its form never draws only sections that start after its end
    for seed in range(5):
        short = backing.ooh_lines(score, (55, 72), 1, 1.0, np.random.default_rng(seed))
        assert short[0] and short[0][0].start < 1.0


def test_backing_goes_into_the_vocals_stem_only():
    plan = SongPlan(1, "additive", "additive", None, "x")
    plain = render_stems(SEED, plan, SECONDS, SAMPLE_RATE)
    added = render_stems(SEED, plan, SECONDS, SAMPLE_RATE, backing=1.0)
    assert "backing_vocals" not in plain.info
    info = added.info["backing_vocals"]
    assert info["kind"] in ("harmony", "oohs")
    for name in ("drums", "bass", "other"):
        np.testing.assert_array_equal(plain.stems[name], added.stems[name])
    difference = added.stems["vocals"] - plain.stems["vocals"]
    level = 20 * np.log10(backing.sung_rms(difference) / backing.sung_rms(plain.stems["vocals"]))
    low = min(backing.HARMONY_LEVEL_DB[0], backing.OOH_LEVEL_DB[0])
    assert low - 1 < level < 2.0, level  # audible, and below the lead plus a little overlap
    # the same song with a zero share renders exactly as without the option
    none = render_stems(SEED, plan, SECONDS, SAMPLE_RATE, backing=0.0)
    np.testing.assert_array_equal(none.stems["vocals"], plain.stems["vocals"])


def test_the_choir_engine_never_gets_backing_vocals():
    score = compose(np.random.default_rng(2), SECONDS, (55, 70))
    lead = np.ones(int(SECONDS * SAMPLE_RATE), np.float32)
    plan = SongPlan(0, "choir", "soundfont", "timgm6mb", "choir1")
    vocals, info = add_backing(SEED, plan, score, lead, (55, 70), SECONDS, SAMPLE_RATE, 1.0)
    assert info is None and vocals is lead


@pytest.mark.skipif(singing.missing_tools() is not None,
                    reason="make system-deps installs Festival and its voices")
def test_festival_backing_is_sung_by_festival_voices():
    score = compose(np.random.default_rng(4), SECONDS, (50, 66))
    lead = np.zeros(int(SECONDS * SAMPLE_RATE), np.float32)
    lead[:1000] = 0.5
    shares = []
    for index in range(6):
        plan = SongPlan(index, "festival", "additive", None, "kal-1")
        vocals, info = add_backing(SEED, plan, score, lead, (50, 66), SECONDS, SAMPLE_RATE, 0.5)
        shares.append(info is not None)
        if info is not None:
            assert backing.sung_rms(vocals[1000:]) > 0  # the backing sings past the lead
    assert any(shares) and not all(shares)  # a 0.5 share gives some songs backing, not all


def test_a_corpus_records_its_backing_share_and_refuses_one_out_of_range(tmp_path, capsys):
    out = tmp_path / "corpus"
    write_corpus(out, songs=2, seconds=SECONDS, seed=SEED, progress=False,
                 engines=("additive",), backing_vocals=1.0)
    meta = json.loads((out / "splits.json").read_text())
    assert meta["parameters"]["backing_vocals"] == 1.0
    assert all("backing_vocals" in song for song in meta["songs"].values())
    with pytest.raises(ValueError, match="backing vocals.*between 0 and 1.*1.5"):
        write_corpus(tmp_path / "other", songs=2, seconds=SECONDS, seed=SEED, progress=False,
                     engines=("additive",), backing_vocals=1.5)
    assert not (tmp_path / "other").exists()
    code = cli_main(["synth", "--out", str(tmp_path / "cli"), "--songs", "2", "--seconds", "4",
                     "--engines", "additive", "--backing-vocals", "-0.2"])
    assert code != 0
    assert "backing vocals" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
