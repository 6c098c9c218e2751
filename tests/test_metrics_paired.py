"""Paired differences between methods: means over the clips both scored, and intervals that
resample whole songs, so clips of one song do not pass for independent evidence."""

from __future__ import annotations

import pytest

from tinysep.metrics.by_engine import by_engine
from tinysep.metrics.paired import (
    format_interval,
    format_paired_table,
    paired_difference,
    paired_rows,
)


def _clip(name: str, scores: dict[str, float | None]) -> dict:
    """A clip record of an eval report: each method's vocals SDR (None: not scored)."""
    def values(sdr):
        return {"sdr": sdr, "sir": sdr, "sar": sdr, "si_sdr": sdr, "nsdr": None, "leak": None,
                "skipped": None}

    mixture = {"vocals": values(0.0), "accompaniment": values(0.0)}
    return {"name": name, "samples": 16000, "seconds": 1.0, "mixture": mixture, "methods": {
        method: {"sources": {"vocals": values(value), "accompaniment": values(0.0)},
                 "separate_seconds": 0.1, "score_seconds": 0.1}
        for method, value in scores.items()}}


def test_a_constant_difference_has_no_spread():
    clips = [_clip(f"c{i}", {"a": 5.0 + i, "b": 3.0 + i}) for i in range(6)]
    diff = paired_difference(clips, "a", "b", "vocals")
    assert diff == {"mean": pytest.approx(2.0), "low": pytest.approx(2.0),
                    "high": pytest.approx(2.0), "clips": 6, "songs": 6}


def test_the_interval_resamples_songs_not_clips():
    """Two songs of ten clips each, one +1 dB ahead, one +3: the mean is +2, and with only two
    songs behind it the interval reaches both songs' values; counted as twenty independent
    clips it would be much narrower."""
    clips = [_clip(f"s{s}_{i}", {"a": 1.0 + 2 * s, "b": 0.0}) for s in range(2) for i in range(10)]
    named = [{**clip, "song": clip["name"].split("_")[0]} for clip in clips]
    by_song = paired_difference(named, "a", "b", "vocals")
    by_clip = paired_difference(clips, "a", "b", "vocals")
    assert by_song["mean"] == pytest.approx(2.0) and by_clip["mean"] == pytest.approx(2.0)
    assert (by_song["clips"], by_song["songs"]) == (20, 2)
    assert by_song["low"] == pytest.approx(1.0) and by_song["high"] == pytest.approx(3.0)
    assert by_clip["high"] - by_clip["low"] < 1.0
    assert 1.0 < by_clip["low"] < 2.0 < by_clip["high"] < 3.0
    assert paired_difference(named, "a", "b", "vocals") == by_song  # reproducible


def test_only_clips_both_methods_scored_count():
    clips = [_clip("x", {"a": 4.0, "b": 1.0}), _clip("y", {"a": 9.0, "b": None}),
             _clip("z", {"a": float("nan"), "b": 2.0}), _clip("w", {"b": 2.0})]
    diff = paired_difference(clips, "a", "b", "vocals")
    assert diff["mean"] == pytest.approx(3.0) and diff["clips"] == 1
    assert diff["low"] is None and format_interval(diff) == "+3.00 [one song]"
    assert paired_difference([clips[1], clips[3]], "a", "b", "vocals") is None
    assert format_interval(None) == "n/a"


def test_rows_and_table_name_every_other_method():
    clips = [_clip(f"c{i}", {"m": 6.0 + i % 3, "r": 4.0, "h": 1.0}) for i in range(9)]
    report = {"methods": ["m", "r", "h"], "clips": clips + [{"name": "bad", "error": "x"}]}
    rows = paired_rows(report, "m")
    assert [row["method"] for row in rows] == ["r", "h"]
    vocals = rows[0]["sources"]["vocals"]
    assert vocals["mean"] == pytest.approx(3.0) and vocals["clips"] == 9
    assert vocals["low"] < 3.0 < vocals["high"]
    table = format_paired_table(rows, "m").splitlines()
    assert table[0].startswith("paired: m minus each method")
    assert table[2].startswith("r ") and "+3.00 [" in table[2] and table[2].endswith("9 / 9")


def test_engine_rows_carry_the_margin_interval():
    clips = [_clip(f"c{i}", {"model:x": 7.0 + (i % 4) * 0.5, "repet": 4.0, "hpss": 2.0})
             for i in range(8)]
    report = {"methods": ["model:x", "repet", "hpss"], "clips": clips}
    engines = {c["name"]: {"vocals": "additive"} for c in clips}
    row = by_engine(report, engines, "model:x", roles=("vocals",), status="")[0]
    vocals = row["sources"]["vocals"]
    assert vocals["best_classic"] == "repet"
    assert vocals["margin_low"] < vocals["margin"] < vocals["margin_high"]
    assert vocals["margin"] == pytest.approx(3.75)


def test_the_engine_plot_adds_a_margin_panel_when_rows_carry_intervals(tmp_path):
    import matplotlib.image as mpimg

    from tinysep.metrics.by_engine import plot_engines

    clips = [_clip(f"c{i}", {"model:x": 7.0 + (i % 4) * 0.5, "repet": 4.0}) for i in range(8)]
    report = {"methods": ["model:x", "repet"], "clips": clips}
    engines = {c["name"]: {"vocals": "additive", "recording": f"/music/set{i % 2}"}
               for i, c in enumerate(clips)}
    rows = by_engine(report, engines, "model:x", roles=("vocals", "recording"), status="")
    bare = [{**row, "sources": {s: {k: v for k, v in e.items() if not k.startswith("margin_")}
                                for s, e in row["sources"].items()}} for row in rows]
    with_margins = mpimg.imread(plot_engines(rows, tmp_path / "m.png"))
    without = mpimg.imread(plot_engines(bare, tmp_path / "b.png"))
    assert with_margins.shape[0] > 1.5 * without.shape[0]  # a second level of panels
    assert with_margins.shape[1] == without.shape[1]


def test_long_row_labels_of_a_stacked_plot_slant_and_short_ones_stand(tmp_path, monkeypatch):
    """Many rows named by long folder names would overlap under their bars: they slant."""
    from tinysep.metrics import by_engine as engine_table

    drawn = []
    real_labels = engine_table._row_labels

    def record(ax, x, labels, slant):
        real_labels(ax, x, labels, slant)
        drawn.append([(t.get_rotation(), t.get_horizontalalignment())
                      for t in ax.get_xticklabels()])

    monkeypatch.setattr(engine_table, "_row_labels", record)
    clips = [_clip(f"c{i}", {"model:x": 7.0 + (i % 4) * 0.5, "repet": 4.0}) for i in range(16)]
    report = {"methods": ["model:x", "repet"], "clips": clips}
    for name, slant in (("/music/a-long-soundtrack-name-", True), ("s", False)):
        engines = {c["name"]: {"recording": f"{name}{i % 8}"} for i, c in enumerate(clips)}
        rows = by_engine(report, engines, "model:x", roles=("recording",), status="")
        assert len(rows) == 8 > engine_table.WIDE_PLOT_ROWS
        drawn.clear()
        engine_table.plot_engines(rows, tmp_path / f"{slant}.png")
        assert drawn and all(len(axis) == 8 for axis in drawn)
        expected = (30.0, "right") if slant else (0.0, "center")
        assert {label for axis in drawn for label in axis} == {expected}
