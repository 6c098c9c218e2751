"""`tinysep eval --tags`: a user's own clips scored group by group (one row per tag value, as
--by-engine per engine), and clear errors for a tags file that is not what it should be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.main import main
from tinysep.metrics.tags import read_clip_tags

RATE = 16_000


def _song(folder: Path, name: str, seed: int, vocal_gain: float) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    tremolo = 1 + np.sin(2 * np.pi * 4 * t)
    vocals = vocal_gain * np.sin(2 * np.pi * (300 + 40 * seed) * t) * tremolo
    band = 0.2 * np.sign(np.sin(2 * np.pi * 110 * t)) + 0.05 * rng.normal(size=t.size)
    sf.write(folder / f"{name}.wav", (vocals + band).astype(np.float32), RATE)
    sf.write(folder / f"{name}.vocals.wav", vocals.astype(np.float32), RATE)
    sf.write(folder / f"{name}.accompaniment.wav", band.astype(np.float32), RATE)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("songs")
    for seed, (name, gain) in enumerate((("a1", 0.3), ("a2", 0.05), ("b1", 0.3), ("b2", 0.02))):
        _song(folder, name, seed, gain)
    return folder


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_rows_are_the_means_of_their_clips(songs, tmp_path, capsys):
    tags = _write(tmp_path / "tags.json", {
        "a1": {"style": "loud", "take": 1}, "a2": {"style": "quiet", "take": 1},
        "b1": {"style": "loud", "take": 2}, "b2": {"style": "quiet", "take": None}})
    out = tmp_path / "report.json"
    code = main(["eval", "--method", "repet,irm", "--data", str(songs), "--tags", str(tags),
                 "--json", str(out), "--jobs", "1", "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    per_clip = {c["name"]: c["methods"] for c in report["clips"]}
    rows = {f"{r['role']}:{r['engine']}": r for r in report["by_tag"]["rows"]}
    # b2 has no take: it is left out of that tag's rows, and counted under its style
    assert {k: r["clips"] for k, r in rows.items()} == {
        "style:loud": 2, "style:quiet": 2, "take:1": 2, "take:2": 1}
    members = {"style:loud": ("a1", "b1"), "style:quiet": ("a2", "b2"), "take:1": ("a1", "a2"),
               "take:2": ("b1",)}
    for key, clips in members.items():
        for source in ("vocals", "accompaniment"):
            cell = rows[key]["sources"][source]
            for method, field in (("irm", "irm"), ("repet", "best_classic_sdr")):
                expected = np.mean([per_clip[c][method]["sources"][source]["sdr"]
                                    for c in clips])
                assert cell[field] == pytest.approx(expected, abs=1e-9), (key, source, method)
    # the quiet voice is the harder one to find: the groups differ where they should
    assert rows["style:loud"]["sources"]["vocals"]["irm"] > \
        rows["style:quiet"]["sources"]["vocals"]["irm"]
    printed = capsys.readouterr().out
    assert "per tag:" in printed and "style:quiet" in printed
    assert (tmp_path / "report-tags.png").stat().st_size > 1000


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not readable JSON"),
    ("[]", "expected a JSON object"),
    ({"a1": "rock"}, "clip 'a1': expected an object of tags"),
    ({"a1": {"genre": ["rock"]}}, "clip 'a1', tag 'genre': expected a string"),
    ({"a1": {"": 1}}, "tag names are 1 to 64 characters"),
    ({"a1": {"n": float("nan")}}, "finite number"),
])
def test_a_malformed_tags_file_is_named(tmp_path, content, message):
    path = _write(tmp_path / "tags.json", content)
    with pytest.raises(ValueError, match=message) as caught:
        read_clip_tags(path)
    assert str(path) in str(caught.value)


def test_a_tagged_clip_that_is_not_there_stops_before_anything_runs(songs, tmp_path, capsys):
    tags = _write(tmp_path / "tags.json", {"a1": {"style": "x"}, "song-typo": {"style": "y"}})
    out = tmp_path / "report.json"
    code = main(["eval", "--method", "irm", "--data", str(songs), "--tags", str(tags),
                 "--json", str(out), "--jobs", "1", "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert "song-typo" in err and str(tags) in err
    assert not out.exists() and not (tmp_path / "report-tags.png").exists()
    missing = tmp_path / "none.json"
    assert main(["eval", "--method", "irm", "--data", str(songs), "--tags", str(missing),
                 "--json", str(out), "--no-progress"]) != 0
    assert "is missing: a tags file" in capsys.readouterr().err
