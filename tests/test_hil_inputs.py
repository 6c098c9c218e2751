"""What the harness compares, and with what: the float model a bundle records as its source, the
manifest fields only the float model can check, converted input files and silent clips, and
SDR checks that fail a board far better than its float model as well as one far worse.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile
from board_bundle import copy_bundle, make_bundle

from cli.main import main
from hil.report import finalize
from hil.report import markdown as markdown_of


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One synthetic song at 16 kHz / 16 bit, the same clip as 8-bit 44.1 kHz and as 8 kHz
    files, and a silent clip."""
    from tinysep.data.audio_io import resample
    from tinysep.data.synth import write_corpus

    root = tmp_path_factory.mktemp("inputs-data")
    write_corpus(root, songs=1, seconds=1.5, seed=8, progress=False)
    (original,) = sorted((root / "Wavfile").glob("*.wav"))
    data, rate = soundfile.read(str(original), dtype="float32", always_2d=True)
    soundfile.write(str(root / "Wavfile" / "zz_cd_8bit.wav"), resample(data, rate, 44100),
                    44100, subtype="PCM_U8")
    soundfile.write(str(root / "Wavfile" / "zz_phone.wav"), resample(data, rate, 8000), 8000,
                    subtype="PCM_16")
    soundfile.write(str(root / "Wavfile" / "zz_silent.wav"), np.zeros_like(data), rate,
                    subtype="PCM_16")
    (root / "splits.json").unlink()  # a MIR-1K-like folder: every file of Wavfile/ is a clip
    return root


def _argv(bundle, model, corpus, folder, *extra) -> list:
    return ["hil", "--emulate", "--bundle", str(bundle), "--float", str(model), "--data",
            str(corpus), "--split", "all", "--plots", "0", "--report", str(folder),
            "--no-progress", *extra]


def test_export_records_the_float_model_and_calibration_set_it_came_from():
    from convert.manifest import float_model_digest
    from tinysep.models import load_model

    bundle, model = make_bundle(float_model=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    provenance = manifest["provenance"]
    assert provenance["float_model"] == float_model_digest(load_model(model))
    other = float_model_digest(load_model(make_bundle(seed=8, float_model=True)[1]))
    assert other["config_sha256"] == provenance["float_model"]["config_sha256"]  # same layout
    assert other["weights_sha256"] != provenance["float_model"]["weights_sha256"]
    assert len(provenance["calibration"]["sha256"]) == 64
    assert provenance["calibration"]["invokes"] == manifest["calibration"]["invokes"]


def test_options_added_later_leave_an_earlier_models_architecture_hash_as_it_was():
    """A model on the default framing hashes as it did before ``framing`` and ``pool_above``
    existed (its parameters without them), so bundles exported then still match it; the long
    framing, or pooling, changes the hash."""
    import hashlib

    from convert.manifest import float_model_digest
    from tinysep.models import build_model
    from tinysep.models.registry import model_config, resolved_params

    options = {"residual": 8, "hidden": 8, "blocks": 2, "repeats": 1}
    model = build_model("dualgate-tcn", "tiny", **options)
    params = resolved_params(model_config(model))
    assert params["framing"] == "hann512" and params["pool_above"] == 0
    before = {k: v for k, v in params.items() if k not in ("framing", "pool_above")}
    text = json.dumps({"name": "dualgate-tcn", "params": before}, sort_keys=True)
    assert float_model_digest(model)["config_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    long = build_model("dualgate-tcn", "tiny", framing="long1024", **options)
    pooled = build_model("dualgate-tcn", "tiny", framing="long1024", pool_above=257,
                         mask="anchored", **options)
    hashes = {float_model_digest(m)["config_sha256"] for m in (model, long, pooled)}
    assert len(hashes) == 3


def test_hil_reports_converted_and_silent_clips(corpus, tmp_path, capsys):
    bundle, model = make_bundle(float_model=True)
    assert main(_argv(bundle, model, corpus, tmp_path)) == 0
    report = json.loads((tmp_path / "hil.json").read_text())
    clips = {c["name"]: c for c in report["clips"]}
    assert len(clips) == 4 and all(c["status"] == "ok" for c in clips.values())
    cd = clips["zz_cd_8bit"]["input"]
    assert cd["files"][0]["sample_rate"] == 44100 and cd["files"][0]["subtype"] == "PCM_U8"
    assert cd["converted"] == ["resampled 44100 Hz -> 16000 Hz", "PCM_U8 -> PCM_16"]
    assert clips["zz_phone"]["input"]["converted"] == ["resampled 8000 Hz -> 16000 Hz"]
    native = [c for name, c in clips.items() if not name.startswith("zz_")][0]
    assert native["input"]["converted"] == [] and not native["silent"]
    assert clips["zz_silent"]["silent"] and not clips["zz_cd_8bit"]["silent"]
    summary = report["summary"]
    assert summary["silent_clips"] == ["zz_silent"]
    assert sorted(summary["converted_clips"]) == ["zz_cd_8bit", "zz_phone"]
    sdr = next(c for c in report["checks"] if c["name"] == "sdr_drop_vocals")
    assert sdr["passed"] and "1 silent clip(s) have no SDR and are not scored" in sdr["text"]
    markdown = (tmp_path / "hil.md").read_text()
    assert "## Converted inputs" in markdown and "resampled 8000 Hz -> 16000 Hz" in markdown
    assert "| zz_silent | 1.5 | silent: not scored" in markdown

    # a run stopped early says how many of its planned clips it never streamed
    stopped = json.loads(json.dumps(report))
    stopped["clips_planned"] = 6
    assert "4 of 4 clips ok (2 of the 6 planned clips not streamed)" in markdown_of(stopped)
    assert "4 of 4 clips ok," in markdown_of(report)

    # a report of silent clips only cannot pass on "n/a"
    report["clips"] = [clips["zz_silent"]]
    report["clips_planned"] = 1
    report["session"] = None
    finalize(report)
    sdr = next(c for c in report["checks"] if c["name"] == "sdr_drop_vocals")
    assert sdr["passed"] is False and "no clip could be scored" in sdr["text"]
    assert not report["passed"]


def test_sdr_checks_are_two_sided(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    assert main(_argv(bundle, model, corpus, tmp_path, "--max-clips", "1")) == 0
    report = json.loads((tmp_path / "hil.json").read_text())
    clip = report["clips"][0]
    for source in clip["drop"]["int8_board"]:
        clip["drop"]["int8_board"][source] = -6.8  # the board 6.8 dB better than "its" float
    finalize(report)
    failed = [c for c in report["checks"] if c["passed"] is False]
    assert [c["name"] for c in failed] == ["sdr_drop_vocals", "sdr_drop_accompaniment"]
    assert "far better than its float model" in failed[0]["text"]
    assert failed[0]["threshold"] == [-0.5, 0.5]


def test_a_float_model_that_is_not_the_source_is_refused_unless_overridden(corpus, tmp_path,
                                                                           capsys):
    bundle = make_bundle()
    _, other_model = make_bundle(seed=8, float_model=True)
    argv = _argv(bundle, other_model, corpus, tmp_path / "r1", "--max-clips", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is not the one" in err and "weights differ" in err and "--allow-float-mismatch" in err
    report = json.loads((tmp_path / "r1" / "hil.json").read_text())
    assert report["status"] == "refused" and report["fault"] == "input" and report["clips"] == []

    argv = _argv(bundle, other_model, corpus, tmp_path / "r2", "--max-clips", "1",
                 "--allow-float-mismatch", "--max-sdr-drop", "100", "--max-sdr-gain", "100")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "WARNING: OVERRIDDEN (--allow-float-mismatch)" in captured.err
    report = json.loads((tmp_path / "r2" / "hil.json").read_text())
    assert report["provenance"]["overridden"] and report["provenance"]["match"] is False
    check = next(c for c in report["checks"] if c["name"] == "float_model_provenance")
    assert check["passed"] is None and check["text"].startswith("OVERRIDDEN")
    assert "**WARNING: OVERRIDDEN" in (tmp_path / "r2" / "hil.md").read_text()


@pytest.mark.parametrize("field, value", [("sample_rate", 44100), ("hop_samples", 256)])
def test_manifest_fields_the_model_cannot_check_are_checked_against_the_float_model(
    corpus, tmp_path, capsys, field, value
):
    bundle, model = make_bundle(float_model=True)
    edited = copy_bundle(bundle, tmp_path / "edited")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["audio"][field] = value
    (edited / "manifest.json").write_text(json.dumps(manifest))
    status = main(_argv(edited, model, corpus, tmp_path / "r", "--max-clips", "1"))
    assert status == 2
    err = capsys.readouterr().err
    assert f"audio.{field}" in err and str(value) in err


def test_a_report_folder_keeps_a_users_files_and_an_earlier_report_is_replaced_whole(
        corpus, tmp_path, capsys):
    bundle, model = make_bundle(float_model=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "hil.md").write_text("my notes")
    (mine / "todo.txt").write_text("mine")
    assert main(_argv(bundle, model, corpus, mine, "--max-clips", "1")) == 2
    assert "holds todo.txt, which a HIL run does not write" in capsys.readouterr().err
    (mine / "todo.txt").unlink()  # a hil.md alone is no earlier report either: no hil.json
    assert main(_argv(bundle, model, corpus, mine, "--max-clips", "1")) == 2
    assert "holds hil.md but no hil.json of an earlier HIL run" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["hil.md"]
    assert (mine / "hil.md").read_text() == "my notes"
    for folder in (bundle, bundle / "report", model):
        assert main(_argv(bundle, model, corpus, folder, "--max-clips", "1")) == 2
        assert "name a folder apart from it" in capsys.readouterr().err
    assert not (bundle / "report").exists() and not (bundle / "hil.json").exists()

    report = tmp_path / "report"
    assert main(_argv(bundle, model, corpus, report, "--max-clips", "2", "--plots", "2")) == 0
    assert len(list((report / "figures").glob("clip_*.png"))) == 2
    assert main(_argv(bundle, model, corpus, report, "--max-clips", "1")) == 0
    assert "replacing the earlier HIL report" in capsys.readouterr().out
    assert not list(report.glob("figures/clip_*.png"))  # no figure of the earlier run stays
    assert len(json.loads((report / "hil.json").read_text())["clips"]) == 1
    # written with the permissions of any new file of the user's (not a private temp file's)
    mask = os.umask(0)
    os.umask(mask)
    assert (report / "hil.md").stat().st_mode & 0o777 == 0o666 & ~mask
    # a port that cannot be opened keeps the earlier report
    before = (report / "hil.json").read_bytes()
    argv = _argv(bundle, model, corpus, report, "--max-clips", "1")
    argv[argv.index("--emulate")] = "--port=socket://127.0.0.1:99999"
    assert main(argv) == 2
    assert (report / "hil.json").read_bytes() == before
