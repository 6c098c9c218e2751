"""Output options checked before any work: a file the user did not name is never replaced,
a path that cannot be written is refused with the option's name, and bad numbers are refused
before the first step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.common import CliError, check_output_file, check_output_folder
from cli.demo import OUT_MARKER, _claim_out
from cli.main import main
from tinysep.pretrained import default_model_path


def write_song(path: Path, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(3)
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return path


def test_check_output_file_names_the_option_and_the_obstacle(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    with pytest.raises(CliError, match=r"--json .*notes.txt is a file, not a folder"):
        check_output_file(blocker / "deeper" / "report.json", "--json")
    with pytest.raises(CliError, match="is a folder"):
        check_output_file(tmp_path, "--json", suffix="")
    (tmp_path / "taken.json").mkdir()
    with pytest.raises(CliError, match="taken.json is a folder"):
        check_output_file(tmp_path / "taken.json", "--json")
    with pytest.raises(CliError, match="must name a .json file"):
        check_output_file(tmp_path / "report.txt", "--json")
    check_output_file(tmp_path / "new" / "report.json", "--json")  # a new folder is fine
    assert blocker.read_text() == "mine"


def test_eval_refuses_to_replace_a_picture_or_json_it_did_not_write(tmp_path, capsys):
    song = write_song(tmp_path / "song.wav")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"holiday")
    assert main(["eval", "--method", "mix", "--data", str(song),
                 "--json", str(tmp_path / "photo.json")]) == 2
    assert "photo.png exists and was not written with" in capsys.readouterr().err
    assert photo.read_bytes() == b"holiday"
    assert not (tmp_path / "photo.json").exists()

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": "tinysep-bundle"}))
    assert main(["eval", "--method", "mix", "--data", str(song), "--json", str(manifest)]) == 2
    assert "is not a report of `tinysep eval`" in capsys.readouterr().err
    assert json.loads(manifest.read_text()) == {"format": "tinysep-bundle"}

    # its own report and plot are replaced by the next run of the same command
    report = tmp_path / "report.json"
    assert main(["eval", "--method", "mix", "--data", str(song), "--json", str(report)]) == 0
    first = json.loads(report.read_text())
    assert (tmp_path / "report.png").stat().st_size > 0
    assert main(["eval", "--method", "mix", "--data", str(song), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["methods"] == first["methods"]


def test_eval_and_bench_refuse_a_json_under_a_file_before_any_work(tmp_path, capsys):
    song = write_song(tmp_path / "song.wav")
    blocker = tmp_path / "afile.txt"
    blocker.write_text("mine")
    assert main(["eval", "--method", "mix", "--data", str(song),
                 "--json", str(blocker / "x.json")]) == 2
    assert "afile.txt is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "e.json").mkdir()
    assert main(["bench", "--section", "model_size", "--json", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr()
    assert "e.json is a folder" in err.err and "[bench]" not in err.err  # before any section
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_outputs_in_a_folder_nothing_can_be_written_in_are_refused_before_any_work(
        tmp_path, capsys):
    # /proc refuses new files even to root, for whom permission bits refuse nothing
    song = write_song(tmp_path / "song.wav")
    assert main(["eval", "--method", "repet", "--data", str(song),
                 "--json", "/proc/tinysep-report.json"]) == 2
    err = capsys.readouterr().err
    assert "--json /proc/tinysep-report.json: cannot write in /proc" in err
    assert len(err.strip().splitlines()) == 1  # refused before the first clip
    assert main(["separate", str(song), "--out", "/proc/tinysep/stems"]) == 2
    assert "--out /proc/tinysep/stems: cannot write in /proc" in capsys.readouterr().err
    model = str(default_model_path())
    for command in (["train", "--data", str(tmp_path), "--epochs", "1"], ["demo"],
                    ["quantize", model, "--data", str(tmp_path)],
                    ["prune", model, "--data", str(tmp_path), "--sparsity", "0.5"],
                    ["sweep", model, "--data", str(tmp_path)],
                    ["ablate", "--data", str(tmp_path)]):
        assert main([*command, "--out", "/proc/tinysep-out"]) == 2, command
        assert "--out /proc/tinysep-out: cannot write in /proc" in capsys.readouterr().err
    with pytest.raises(CliError, match="--report /proc/x: cannot write in /proc"):
        check_output_folder(Path("/proc/x"), "--report")


def test_the_write_check_leaves_nothing_behind(tmp_path):
    check_output_file(tmp_path / "report.json", "--json")
    check_output_folder(tmp_path / "out" / "deeper")
    check_output_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_summary_inside_its_bundle_folder(tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(["export", "tinysep/pretrained/dualgate-tcn-tiny", "--quant", "float32",
                 "--out", str(out), "--json", str(out / "manifest.json")])
    assert code == 2
    assert "lies inside the bundle folder" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_bad_options_and_foreign_folders_before_synthesizing(tmp_path, capsys):
    out = tmp_path / "demo"
    for bad, words in ((["--songs", "1"], "--songs must be a whole number from 2 to"),
                       (["--model", str(tmp_path / "gone")], "--model: "),
                       (["--train", "--model", str(tmp_path)], "--model and --train exclude"),
                       (["--seconds", "1e12"], "--seconds must be between 1 and"),
                       (["--quant", "bogus"], "--quant must be one of"),
                       (["--baselines", "bogus"], "--baselines:"),
                       (["--max-sdr-drop", "-1"], "--max-sdr-drop must be"),
                       (["--train", "--train-minutes", "-1"], "--train-minutes must be"),
                       (["--jobs", "0"], "--jobs must be at least 1")):
        assert main(["demo", "--out", str(out), *bad]) == 2, bad
        captured = capsys.readouterr()
        assert words in captured.err, bad
        assert "[1/" not in captured.out, bad  # no step started
    for option in ("--seconds", "--train-minutes", "--max-sdr-drop"):
        with pytest.raises(SystemExit) as stop:  # refused at parsing
            main(["demo", "--out", str(out), option, "nan"])
        assert stop.value.code == 2
        assert f"argument {option}: expected a finite number, got 'nan'" in \
            capsys.readouterr().err
    assert not out.exists()

    mine = tmp_path / "mywork"
    (mine / "bundle").mkdir(parents=True)
    (mine / "bundle" / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(mine)]) == 2
    assert "holds files an earlier demo did not write" in capsys.readouterr().err
    assert sorted(p.name for p in mine.rglob("*")) == ["bundle", "notes.txt"]
    assert not (mine / OUT_MARKER).exists()

    blocker = tmp_path / "afile.txt"
    blocker.write_text("mine")
    assert main(["demo", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "mine"


def test_demo_takes_back_a_folder_an_earlier_demo_wrote(tmp_path):
    earlier = tmp_path / "earlier"
    (earlier / "hil").mkdir(parents=True)
    (earlier / "data").mkdir()
    (earlier / "eval.json").write_text('{"command": "eval"}')
    _claim_out(earlier)  # the names a demo writes, its corpus and report among them
    assert (earlier / OUT_MARKER).is_file()
    (earlier / "notes.txt").write_text("mine")
    _claim_out(earlier)  # marked as the demo's: taken whatever else it holds
    odd = tmp_path / "odd"
    (odd / "hil").mkdir(parents=True)
    (odd / "eval.json").write_text("{}")
    (odd / "notes.txt").write_text("mine")
    with pytest.raises(CliError, match="holds files an earlier demo did not write"):
        _claim_out(odd)
    assert not (odd / OUT_MARKER).exists()
    results = tmp_path / "results"  # a user's own eval report alone is not a demo's folder
    results.mkdir()
    (results / "eval.json").write_text('{"my": "own results"}')
    with pytest.raises(CliError, match="holds files an earlier demo did not write"):
        _claim_out(results)
    assert sorted(p.name for p in results.iterdir()) == ["eval.json"]


def test_demo_keeps_its_output_apart_from_the_model_it_runs(tmp_path, capsys):
    shipped = default_model_path()
    out = shipped / "demo"
    assert main(["demo", "--out", str(out)]) == 2
    assert f"--out {out} lies inside the shipped model folder {shipped}" in \
        capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--max-sdr-drop", "--max-sdr-gain", "--min-realtime",
                                    "--timeout", "--connect-timeout", "--recovery-seconds"])
def test_hil_refuses_a_threshold_that_is_not_a_number(tmp_path, capsys, option):
    report = tmp_path / "report"
    with pytest.raises(SystemExit) as stop:
        main(["hil", "--emulate", "--bundle", str(tmp_path), "--float", str(tmp_path),
              "--data", str(tmp_path), option, "nan", "--report", str(report)])
    assert stop.value.code == 2
    assert f"argument {option}: expected a finite number, got 'nan'" in capsys.readouterr().err
    assert not report.exists()


def test_synth_refuses_a_song_longer_than_it_can_hold(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["synth", "--engines", "additive", "--songs", "1", "--seconds", "1e12",
                 "--out", str(out)]) == 2
    assert "seconds must be between 1 and 600" in capsys.readouterr().err
    assert not out.exists()


def test_export_refuses_an_invoke_block_or_calibration_gain_out_of_range(tmp_path, capsys):
    out = tmp_path / "bundle"
    for bad, words in ((["--frames-per-invoke", "100000"], "--frames-per-invoke must be from 1 "
                        "to 64"),
                       (["--calibration-gains", "0,1e9"], "dB values from -120 to 40, got "
                        "[1000000000.0]")):
        code = main(["export", "tinysep/pretrained/dualgate-tcn-tiny", "--out", str(out),
                     "--calibration", str(tmp_path), *bad])
        assert code == 2, bad
        assert words in capsys.readouterr().err, bad
    assert not out.exists()


def test_export_force_replaces_a_bundle_but_not_files_the_export_did_not_write(tmp_path):
    from convert.export import check_destination
    from firmware_host.bundle.layout import FORMAT, MANIFEST_FILE, MODEL_FILE

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / MANIFEST_FILE).write_text(json.dumps({"format": FORMAT}))
    (bundle / MODEL_FILE).write_bytes(b"model")
    check_destination(bundle, force=True)  # a bundle of its own files only: replaceable
    with pytest.raises(ValueError, match="already exists; pass --force"):
        check_destination(bundle, force=False)
    (bundle / "NOTES.txt").write_text("mine")
    with pytest.raises(ValueError, match="also holds NOTES.txt, which an export does not write"):
        check_destination(bundle, force=True)
    assert (bundle / "NOTES.txt").read_text() == "mine"


def test_eval_refuses_an_empty_data_path_rather_than_reading_the_current_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--method", "mix", "--data", "", "--json", str(tmp_path / "r.json")])
    assert stop.value.code == 2
    assert "argument --data: an empty path" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("command", ["synth", "train", "export", "prune", "quantize", "sweep",
                                     "ablate", "demo"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_every_seed_option_refuses_a_seed_out_of_range_by_name(command, seed, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--seed", seed])
    assert stop.value.code == 2
    assert (f"argument --seed: expected a whole number from 0 to {2**32 - 1}, got '{seed}'"
            in capsys.readouterr().err)


@pytest.mark.parametrize("command", [
    ["models", "--model", "dualgate-tcn", "--preset", "tiny"],
    ["bench", "--section", "model_size"],
])
def test_a_json_report_replaces_only_its_own_earlier_report(tmp_path, capsys, command):
    """``--json`` naming a file another program wrote (here a run's record) is refused before
    any work and the file keeps its bytes; the command's own earlier report is replaced."""
    foreign = tmp_path / "run.json"
    foreign.write_text('{"train_config": {"epochs": 3}}\n')
    assert main([*command, "--json", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert f"--json {foreign} exists and is not a report of `tinysep {command[0]}`" in err
    assert foreign.read_text() == '{"train_config": {"epochs": 3}}\n'
    own = tmp_path / "own.json"
    assert main([*command, "--json", str(own)]) == 0
    assert json.loads(own.read_text())["command"] == command[0]
    own.write_text(own.read_text().replace("\n", "\n "))  # edited, still its report
    assert main([*command, "--json", str(own)]) == 0
    assert json.loads(own.read_text())["command"] == command[0]


@pytest.mark.parametrize("command", ["export", "prune", "quantize", "sweep", "soup"])
def test_an_output_inside_a_folder_the_command_reads_is_refused_before_any_work(
        command, tmp_path, capsys):
    """What the command writes would mix with, or replace, the data or models it reads."""
    data = tmp_path / "data"
    (data / "Wavfile").mkdir(parents=True)
    (data / "Wavfile" / "mine.wav").write_bytes(b"a user's file")
    model = default_model_path()
    out = data / "out"
    argv = {
        "export": ["export", str(model), "--out", str(out), "--quant", "int8",
                   "--calibration", str(data)],
        "prune": ["prune", str(model), "--out", str(out), "--data", str(data),
                  "--sparsity", "0.5"],
        "quantize": ["quantize", str(model), "--out", str(out), "--data", str(data)],
        "sweep": ["sweep", str(model), "--out", str(out), "--data", str(data)],
        "soup": ["soup", str(model), str(model), "--out", str(model / "soup")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    if command == "soup":
        assert f"--out {model / 'soup'} lies inside the MODEL folder {model}" in err
    else:
        option = "--calibration" if command == "export" else "--data"
        assert f"--out {out} lies inside the {option} folder {data}" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in data.rglob("*")) == ["Wavfile", "mine.wav"]
    assert not (model / "soup").exists()


def test_ablate_refuses_a_users_folder_the_data_and_options_its_variants_switch(tmp_path,
                                                                                capsys):
    data = tmp_path / "data"
    data.mkdir()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for extra, words in (
            (["--out", str(mine)], "holds notes.txt, which an ablation does not write"),
            (["--out", str(data / "ab")], "lies inside the --data folder"),
            (["--out", str(tmp_path / "ab"), "--option", "recurrent=lstm"],
             "--option recurrent: the ablation switches it per variant"),
            (["--out", str(tmp_path / "ab"), "--variants", ","], "--variants names no variant")):
        assert main(["ablate", "--data", str(data), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (extra, err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "mine", "notes.txt"]
