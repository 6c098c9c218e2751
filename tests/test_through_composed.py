"""The second composer: through-composed scores in several meters, and corpora that name who
composed each song."""

import json

import numpy as np
import pytest

from cli.main import main as cli_main
from tinysep.data.engines import COMPOSERS, parse_composers, plan_song
from tinysep.data.score import compose, scale_of
from tinysep.data.synth import plan_corpus, write_corpus
from tinysep.data.through_composed import METERS, compose_through
from tinysep.metrics.by_engine import (
    HELD_OUT,
    TRAINED,
    engine_status,
    matches,
    model_engines,
    parse_engine_filter,
)

VOCAL_RANGE = (55, 72)
SEEDS = range(60)


def _scores(composer, seconds=20.0):
    return [composer(np.random.default_rng(s), seconds, VOCAL_RANGE) for s in SEEDS]


def _bar_pattern(score, bar, part):
    """A part's onsets and lengths in one bar, relative to the bar's start."""
    end = bar.start + score.bar_seconds
    return tuple(sorted((round(n.start - bar.start, 4), round(n.duration, 3))
                        for n in score.parts.get(part, []) if bar.start <= n.start < end - 1e-9))


def test_the_same_draw_writes_the_same_score():
    a, b = (compose_through(np.random.default_rng(7), 20.0, VOCAL_RANGE) for _ in range(2))
    assert a == b
    assert a != compose_through(np.random.default_rng(8), 20.0, VOCAL_RANGE)


def test_every_meter_is_written_and_bars_follow_one_another():
    scores = _scores(compose_through)
    assert {s.beats_per_bar for s in scores} == {m[0] for m in METERS.values()}
    for s in scores:
        starts = np.array([b.start for b in s.bars])
        np.testing.assert_allclose(np.diff(starts), s.bar_seconds, rtol=1e-9)
        assert s.bars[-1].start + s.bar_seconds >= 20.0
    assert all(s.beats_per_bar == 4 for s in _scores(compose)[:10])


def test_the_melody_is_one_voice_in_range_on_chord_tones_at_the_downbeats():
    for s in _scores(compose_through):
        melody = s.melody
        assert len(melody) >= 5
        assert all(VOCAL_RANGE[0] <= n.pitch <= VOCAL_RANGE[1] for n in melody)
        assert all(n.duration > 0 for n in melody)
        for a, b in zip(melody, melody[1:], strict=False):
            assert b.start >= a.start + a.duration - 1e-9
        for n in melody:
            bar = s.bars[int(n.start / s.bar_seconds + 1e-9)]
            if abs(n.start - bar.start) < 1e-9:
                assert int(n.pitch) % 12 in bar.chord, (n, bar.chord)


def test_parts_change_from_bar_to_bar_where_the_loops_repeat():
    def repeats(scores):
        """The share of the piano's consecutive bars that play the same rhythm."""
        same = total = 0
        for s in scores:
            patterns = [_bar_pattern(s, bar, "piano") for bar in s.bars[:-1]]
            for a, b in zip(patterns, patterns[1:], strict=False):
                if a and b:
                    total += 1
                    same += a == b
        return same / total

    loops, through = repeats(_scores(compose)), repeats(_scores(compose_through))
    assert loops > 0.9
    assert through < 0.6, (loops, through)


def test_some_chords_leave_the_key_and_some_offbeats_swing():
    scores = _scores(compose_through)
    out_of_key = sum(any(pc not in scale_of(s.key, s.mode) for b in s.bars for pc in b.chord)
                     for s in scores)
    assert 5 <= out_of_key < len(scores)
    swung = 0
    for s in scores:
        offsets = {round((n.start % s.beat_seconds) / s.beat_seconds, 3)
                   for n in s.parts["bass"] + s.melody}
        swung += any(0.55 < o < 0.75 for o in offsets)
    assert swung >= 5


def test_composers_are_named_per_song_only_when_the_corpus_names_them(tmp_path):
    engines, fonts = ("additive", "physical"), ()
    plain = plan_corpus(12, 8.0, 3, engines, fonts)
    assert "composers" not in plain["parameters"]
    assert all("composer" not in s["engines"] for s in plain["songs"].values())
    both = plan_corpus(12, 8.0, 3, engines, fonts, composers=("loops", "through"))
    assert both["parameters"]["composers"] == ["loops", "through"]
    drawn = [s["engines"]["composer"] for s in both["songs"].values()]
    assert set(drawn) == {"loops", "through"}
    # the composer is its own draw: the rest of every song's plan is the same
    for i in range(12):
        a, b = plan_song(3, i, engines, fonts), plan_song(3, i, engines, fonts,
                                                         composers=("loops", "through"))
        assert (a.vocal_engine, a.accompaniment_engine, a.singer) == (
            b.vocal_engine, b.accompaniment_engine, b.singer)
    assert parse_composers(" through , loops") == tuple(COMPOSERS)
    with pytest.raises(ValueError, match="unknown composer.*fugue.*loops, through"):
        parse_composers("loops,fugue")


def test_a_through_composed_corpus_renders_and_records_its_meters(tmp_path, capsys):
    out = tmp_path / "c"
    assert cli_main(["synth", "--out", str(out), "--songs", "4", "--seconds", "6", "--seed",
                     "5", "--engines", "additive", "--composers", "through",
                     "--no-progress"]) == 0
    meta = json.loads((out / "splits.json").read_text())
    songs = meta["songs"].values()
    assert {s["engines"]["composer"] for s in songs} == {"through"}
    assert all(s["beats_per_bar"] in (3, 4, 6) for s in songs)
    assert all(c["engines"]["composer"] == "through" for c in meta["clips"].values())
    assert cli_main(["synth", "--out", str(tmp_path / "d"), "--songs", "4", "--composers",
                     "canon", "--no-progress"]) != 0
    assert "unknown composer(s) canon" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    summary = write_corpus(tmp_path / "e", 2, 6.0, 5, progress=False, engines="additive",
                           composers="loops")  # the default: nothing recorded
    assert "composers" not in json.loads((summary.out_dir / "splits.json").read_text())[
        "parameters"]


def test_a_model_from_before_composers_were_named_trained_on_the_loops(tmp_path):
    older = {"engines": {"vocals": ["additive"], "accompaniment": ["additive"]}}
    (tmp_path / "run.json").write_text(json.dumps({"corpora": {"train": older, "valid": {}}}))
    seen = model_engines(tmp_path)
    assert engine_status("composer", "loops", seen) == TRAINED
    assert engine_status("composer", "through", seen) == HELD_OUT
    newer = {"engines": {"vocals": ["additive"], "accompaniment": ["additive"],
                         "composer": ["loops", "through"]}}
    (tmp_path / "run.json").write_text(json.dumps({"corpora": {"train": newer, "valid": {}}}))
    assert engine_status("composer", "through", model_engines(tmp_path)) == TRAINED
    wanted = parse_engine_filter("composer=through")  # `tinysep eval --engines composer=through`
    assert matches({"vocals": "additive", "composer": "through"}, wanted)
    assert not matches({"vocals": "additive"}, wanted)
