"""Calibration levels: representative sets replayed at several gains (coverage that follows
the gains, warnings only for a level really missing), and the calibration-level study
(int8 against float with the held-out clips played back quieter)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from convert_helpers import clips, corpus, fitted_model_folder, load

from calibration.representative import (
    DEFAULT_GAINS_DB,
    build_representative_set,
    classify_levels,
    frame_levels_dbfs,
    parse_gains,
)
from cli.main import main
from convert.calibration_study import attenuated, calibration_level_study, format_level_table
from tinysep.models import make_streaming_model


@pytest.fixture(scope="module")
def stream():
    return make_streaming_model(load("dualgate-tcn"), 2)


def _expected_coverage(rep, train) -> dict[str, int]:
    """Loud / quiet / silent counts recomputed from the recorded segments."""
    by_name = {c.name: c for c in train}
    total = dict.fromkeys(("silent", "quiet", "loud"), 0)
    for seg in rep.segments:
        audio = by_name[seg["clip"]].mixture * np.float32(10 ** (seg["gain_db"] / 20))
        levels = frame_levels_dbfs(audio)[seg["start_frame"]:seg["start_frame"] + seg["frames"]]
        for level, count in classify_levels(levels).items():
            total[level] += count
    return total


def test_coverage_follows_the_gains_and_warns_only_for_a_missing_level(stream):
    from tinysep.dsp import magnitude, stft
    from tinysep.models import compress_magnitude

    train = list(clips("train"))
    loud = build_representative_set(stream, train, 256, segment_frames=64, gains_db=(0.0,),
                                    progress=False)
    mixed = build_representative_set(stream, train, 256, segment_frames=64,
                                     gains_db=(0.0, -30.0), progress=False)
    assert [s["gain_db"] for s in mixed.segments] == [0.0, -30.0, 0.0, -30.0]
    assert loud.coverage["frames"] == _expected_coverage(loud, train)
    assert mixed.coverage["frames"] == _expected_coverage(mixed, train)
    assert loud.coverage["frames"]["quiet"] == 0 and mixed.coverage["frames"]["quiet"] >= 100
    assert mixed.coverage["frames"]["loud"] >= 100
    assert mixed.coverage["gains_db"] == [0.0, -30.0]
    assert [w.split(" (")[0] for w in loud.coverage["warnings"]] == ["no quiet frames"]
    assert mixed.coverage["warnings"] == []
    # What was recorded is the attenuated audio's features, not only its coverage count.
    seg = mixed.segments[1]
    clip = next(c for c in train if c.name == seg["clip"])
    quiet = compress_magnitude(magnitude(stft(clip.mixture * np.float32(10 ** -1.5))), 100.0)
    first = mixed.segments[0]["frames"] // 2  # segment 1's first invoke (2 frames each)
    np.testing.assert_array_equal(mixed.samples[first]["features"][0],
                                  quiet[seg["start_frame"]:seg["start_frame"] + 2])


def test_default_gains_cover_quiet_playback_even_in_a_small_set(stream):
    train = list(clips("train"))
    rep = build_representative_set(stream, train, 64, progress=False)  # < one 128-frame segment
    assert len(DEFAULT_GAINS_DB) > 1
    assert [s["gain_db"] for s in rep.segments] == list(DEFAULT_GAINS_DB)
    assert rep.frames == 64 and rep.coverage["frames"]["quiet"] > 0
    assert rep.coverage["warnings"] == []
    only = build_representative_set(stream, train, 8, gains_db=(-120.0,), progress=False)
    assert only.coverage["frames"]["silent"] == 8
    assert [w.split(" (")[0] for w in only.coverage["warnings"]] == ["no loud frames",
                                                                     "no quiet frames"]


def test_gains_are_parsed_and_checked():
    assert parse_gains("0,-30") == (0.0, -30.0)
    assert parse_gains(" 0, -20 ,-40 ") == (0.0, -20.0, -40.0)
    assert parse_gains("-120,40") == (-120.0, 40.0)  # the limits themselves are allowed
    for bad, message in (("0,loud", "comma-separated dB"), ("", "empty"),
                         ("0,nan", "from -120 to 40"), ("0,1e9", "from -120 to 40"),
                         ("-121", "from -120 to 40")):
        with pytest.raises(ValueError, match=message):
            parse_gains(bad)


def test_attenuated_scales_mixture_and_references_alike():
    clip = clips("test")[0]
    quiet = attenuated(clip, -30.0)
    for name in ("mixture", "vocals", "accompaniment"):
        np.testing.assert_allclose(getattr(quiet, name), getattr(clip, name) * 10 ** -1.5,
                                   rtol=1e-6, atol=1e-9)
    assert attenuated(clip, 0.0) is clip and quiet.name == clip.name


def test_level_study_rows_compare_int8_with_float_at_the_same_level():
    from convert.quality import float_records

    model = load("dualgate-tcn")
    clip = clips("test")[0]
    short = dataclasses.replace(clip, mixture=clip.mixture[:32000], vocals=clip.vocals[:32000],
                                accompaniment=clip.accompaniment[:32000])
    study = calibration_level_study(model, list(clips("train")), [short],
                                    gain_sets=((0.0,), (0.0, -30.0)), playback_db=(0.0, -30.0),
                                    frames=128, frames_per_invoke=2)
    rows = study["rows"]
    assert [(r["gains_db"], r["playback_db"]) for r in rows] == [
        ([0.0], 0.0), ([0.0], -30.0), ([0.0, -30.0], 0.0), ([0.0, -30.0], -30.0)]
    assert all(r["coverage"]["quiet"] == 0 for r in rows[:2])
    assert all(r["coverage"]["quiet"] > 0 and r["frames"] == 128 for r in rows[2:])
    quiet_float = float_records(model, [attenuated(short, -30.0)])[0]["sources"]
    for row in rows:
        for source, cell in row["sources"].items():
            assert cell["drop_db"] == pytest.approx(cell["sdr_reference"] - cell["sdr"])
            assert abs(cell["drop_db"]) < 3.0
            if row["playback_db"] == -30.0:  # the float reference is the quiet clip's
                assert cell["sdr_reference"] == pytest.approx(quiet_float[source]["sdr"],
                                                              abs=1e-4)
    loud = rows[0]["sources"]["vocals"]["sdr_reference"]
    assert loud != pytest.approx(rows[1]["sources"]["vocals"]["sdr_reference"], abs=1e-3)
    table = format_level_table(study).splitlines()
    assert len([line for line in table if line.startswith("| 0")]) == 4
    cov = rows[3]["coverage"]
    vocals = rows[3]["sources"]["vocals"]
    assert table[5].startswith(f"| 0,-30 | -30 | {cov['loud']} / {cov['quiet']} / "
                               f"{cov['silent']} | {vocals['sdr_reference']:.2f} | "
                               f"{vocals['sdr']:.2f} | {vocals['drop_db']:+.3f} |")


@pytest.mark.slow  # minutes on 2 cores: `make test-slow` (CI runs it)
def test_cli_gains_options_and_level_study(tmp_path, capsys):
    folder = fitted_model_folder("dualgate-tcn")
    out = tmp_path / "q"
    args = ["quantize", str(folder), "--data", str(corpus()), "--out", str(out),
            "--calibration-frames", "64", "--calibration-gains", "0,-40", "--eval-clips", "1",
            "--max-clips", "2", "--study-levels", "0;0,-30", "--study-playback=-30",
            "--study-seeds", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| 0,-30 | -30 |" in printed and "at gains 0,-40 dB: silent 0" in printed
    report = json.loads((out / "quantize.json").read_text())
    assert report["calibration"]["coverage"]["gains_db"] == [0.0, -40.0]
    study = json.loads((out / "calibration_levels.json").read_text())
    assert [(r["gains_db"], r["playback_db"]) for r in study["summary"]] == [
        ([0.0], -30.0), ([0.0, -30.0], -30.0)]
    assert (out / "calibration_levels.md").read_text().count("\n| 0") == 2
    assert (out / "calibration_levels.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args[:6], "--calibration-gains", "0,x"]) == 2
    assert "--calibration-gains" in capsys.readouterr().err

    bundle = tmp_path / "bundle"
    assert main(["export", str(folder), "--out", str(bundle), "--calibration", str(corpus()),
                 "--calibration-frames", "64", "--calibration-gains", "0,-30",
                 "--no-progress"]) == 0
    assert "(gains 0,-30 dB)" in capsys.readouterr().out
    calibration = json.loads((bundle / "calibration.json").read_text())
    assert [s["gain_db"] for s in calibration["segments"]] == [0.0, -30.0]
    assert calibration["coverage"]["frames"]["quiet"] > 0
    assert main(["export", str(folder), "--out", str(tmp_path / "b2"), "--calibration",
                 str(corpus()), "--calibration-gains", ""]) == 2
    assert "empty" in capsys.readouterr().err and not (tmp_path / "b2").exists()
