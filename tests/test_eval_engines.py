"""`tinysep eval --engines / --by-engine`: scores per music engine, marked trained or held out
from the model folder's record, and clips filtered by engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import save_tiny_model, write_engine_corpus

from cli.main import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_engine_corpus(tmp_path_factory.mktemp("engines") / "corpus", songs=6, seed=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    trained = {"vocals": ["additive"], "accompaniment": ["additive"]}
    return save_tiny_model(tmp_path_factory.mktemp("engines") / "model", seed=3, trained=trained)


def test_per_engine_rows_mark_held_out_engines_and_match_the_clips(corpus, model, tmp_path,
                                                                   capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--method", f"model:{model},repet,hpss,irm", "--data", str(corpus),
            "--split", "all", "--json", str(out), "--by-engine", "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accompaniment:physical" in printed and "held out" in printed
    report = json.loads(out.read_text())
    rows = {(r["role"], r["engine"]): r for r in report["by_engine"]["rows"]}
    meta = json.loads((corpus / "splits.json").read_text())
    physical = sorted(n for n, c in meta["clips"].items()
                      if c["engines"]["accompaniment"] == "physical")
    assert rows[("accompaniment", "physical")]["status"] == "held out"
    assert rows[("accompaniment", "additive")]["status"] == "trained"
    assert rows[("accompaniment", "physical")]["clips"] == len(physical) > 0
    assert sum(r["clips"] for (role, _), r in rows.items() if role == "accompaniment") == len(
        report["clips"])
    # the model's value is the mean of its per-clip SDRs over that engine's clips
    method = f"model:{model}"
    per_clip = [c["methods"][method]["sources"]["vocals"]["sdr"] for c in report["clips"]
                if c["name"] in physical]
    row = rows[("accompaniment", "physical")]["sources"]["vocals"]
    assert row["model"] == pytest.approx(float(np.mean(per_clip)), abs=1e-9)
    best = max(("repet", "hpss"), key=lambda m: np.mean(
        [c["methods"][m]["sources"]["vocals"]["sdr"] for c in report["clips"]
         if c["name"] in physical]))
    assert row["best_classic"] == best
    assert row["margin"] == pytest.approx(row["model"] - row["best_classic_sdr"])
    # the model's SIR and SAR are the means of its per-clip values too, not its SDR
    for metric in ("sir", "sar"):
        values = [c["methods"][method]["sources"]["vocals"][metric] for c in report["clips"]
                  if c["name"] in physical]
        assert row[f"model_{metric}"] == pytest.approx(float(np.mean(values)), abs=1e-9)
    assert row["model_sir"] != pytest.approx(row["model"])
    assert "model SIR v / a" in printed and f"{row['model_sir']:5.2f} / " in printed
    assert (tmp_path / "eval-engines.png").stat().st_size > 0
    # a method that was not run gets neither bars nor a legend entry
    from unittest import mock

    import matplotlib.figure

    from tinysep.metrics.by_engine import plot_engines

    no_irm = json.loads(json.dumps(report["by_engine"]["rows"]))
    for r in no_irm:
        for values in r["sources"].values():
            values["irm"] = None
    legends = []
    save = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts())
        return save(fig, *args, **kwargs)

    with mock.patch.object(matplotlib.figure.Figure, "savefig", record):
        plot_engines(no_irm, tmp_path / "no-irm.png")
        assert legends == ["model", "best classic"]
        legends.clear()
        plot_engines(report["by_engine"]["rows"], tmp_path / "irm.png")
        assert legends == ["model", "best classic", "IRM (oracle)"]


def test_a_bundle_carries_its_float_models_corpora_and_marks_held_out_engines(corpus, model,
                                                                              tmp_path, capsys):
    from convert.export import export_bundle
    from tinysep.metrics.by_engine import HELD_OUT, TRAINED, engine_status, model_engines

    bundle = tmp_path / "bundle"
    export_bundle(model, bundle, quant="int8", calibration=corpus, calibration_frames=64,
           edgetpu_compile=False, progress=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    recorded = json.loads((model / "run.json").read_text())["corpora"]
    assert manifest["provenance"]["corpora"] == recorded
    seen = model_engines(bundle)
    assert seen == model_engines(model)
    assert engine_status("accompaniment", "physical", seen) == HELD_OUT
    assert engine_status("accompaniment", "additive", seen) == TRAINED
    out = tmp_path / "eval.json"
    assert main(["eval", "--method", f"model:{bundle},hpss", "--data", str(corpus), "--split",
                 "all", "--json", str(out), "--by-engine", "--jobs", "1", "--no-progress"]) == 0
    rows = {(r["role"], r["engine"]): r["status"]
            for r in json.loads(out.read_text())["by_engine"]["rows"]}
    assert rows[("accompaniment", "physical")] == "held out"
    assert rows[("accompaniment", "additive")] == "trained"
    # a bundle from a Keras model in memory (no folder, no record) says nothing was recorded
    from tinysep.models import load_model

    bare = tmp_path / "bare"
    export_bundle(load_model(model), bare, quant="float32", edgetpu_compile=False, progress=False)
    assert json.loads((bare / "manifest.json").read_text())["provenance"]["corpora"] is None
    assert model_engines(bare) == {"train": {}, "valid": {}}
    # a record that is not one is refused by name before anything is scored
    manifest["provenance"]["corpora"] = ["not", "records"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    refused = tmp_path / "refused.json"
    assert main(["eval", "--method", f"model:{bundle},hpss", "--data", str(corpus), "--split",
                 "all", "--json", str(refused), "--by-engine", "--jobs", "1",
                 "--no-progress"]) == 2
    assert "manifest.json: 'corpora' is not an object" in capsys.readouterr().err
    assert not refused.exists()


def test_engine_filter_keeps_only_those_clips(corpus, tmp_path, capsys):
    out = tmp_path / "f.json"
    argv = ["eval", "--method", "mix", "--data", str(corpus), "--split", "all", "--json",
            str(out), "--engines", "accompaniment=physical", "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    meta = json.loads((corpus / "splits.json").read_text())
    physical = {n for n, c in meta["clips"].items() if c["engines"]["accompaniment"] == "physical"}
    assert {c["name"] for c in json.loads(out.read_text())["clips"]} == physical
    bad = argv[: argv.index("--engines")] + ["--engines", "drums=physical", "--no-progress"]
    assert main(bad) == 2
    assert "ROLE=ENGINE" in capsys.readouterr().err
    none = argv[: argv.index("--engines")] + ["--engines", "vocals=nosuch", "--no-progress"]
    assert main(none) == 2
    heard = sorted({c["engines"]["vocals"] for c in meta["clips"].values()})
    assert (f"--engines vocals=nosuch: no clip of split 'all' under {corpus} matches; its "
            f"clips play vocals: {', '.join(heard)}") in capsys.readouterr().err


def test_reuse_takes_earlier_scores_and_runs_only_the_new_method(corpus, model, tmp_path,
                                                                 capsys):
    first = tmp_path / "first.json"
    base = ["eval", "--data", str(corpus), "--split", "all", "--jobs", "1", "--no-progress"]
    assert main(base + ["--method", "hpss,mix", "--json", str(first)]) == 0
    second = tmp_path / "second.json"
    assert main(base + ["--method", f"model:{model},hpss,mix", "--json", str(second),
                        "--reuse", str(first)]) == 0
    assert "reusing hpss, mix" in capsys.readouterr().out
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert b["methods"] == [f"model:{model}", "hpss", "mix"]
    assert b["reused"]["methods"] == ["hpss", "mix"]
    for clip_a, clip_b in zip(a["clips"], b["clips"], strict=True):
        assert clip_b["methods"]["hpss"] == clip_a["methods"]["hpss"]
        assert "sources" in clip_b["methods"][f"model:{model}"]
    assert b["summary"]["hpss"]["sources"] == a["summary"]["hpss"]["sources"]
    # Every method reused, in another order: nothing runs again, the earlier scores are
    # reported in the order asked for.
    third = tmp_path / "third.json"
    assert main(base + ["--method", f"mix,model:{model}", "--json", str(third),
                        "--by-engine", "--reuse", str(second)]) == 0
    assert f"reusing mix, model:{model}" in capsys.readouterr().out
    c = json.loads(third.read_text())
    assert c["methods"] == ["mix", f"model:{model}"] and c["clips_done"] == a["clips_done"]
    assert c["summary"]["mix"]["sources"] == a["summary"]["mix"]["sources"]
    assert c["summary"][f"model:{model}"] == b["summary"][f"model:{model}"]


def test_reuse_scores_a_model_again_when_other_weights_stand_at_its_path(corpus, model,
                                                                         tmp_path, capsys):
    import shutil

    import tensorflow as tf

    from tinysep.models import build_model, save_model

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    method = f"model:{folder}"
    base = ["eval", "--data", str(corpus), "--split", "all", "--jobs", "1", "--no-progress",
            "--method", f"{method},mix"]
    first, second, third = (tmp_path / f"{n}.json" for n in ("first", "second", "third"))
    assert main(base + ["--json", str(first)]) == 0
    a = json.loads(first.read_text())
    assert set(a["model_fingerprints"]) == {method}
    # the same weights: reused; other weights saved in the same folder: scored again
    assert main(base + ["--json", str(second), "--reuse", str(first)]) == 0
    assert f"reusing {method}, mix" in capsys.readouterr().out
    tf.keras.utils.set_random_seed(4)
    save_model(build_model("dualgate-tcn", "tiny", residual=8, hidden=8, blocks=2, repeats=1),
               folder)
    assert main(base + ["--json", str(third), "--reuse", str(first)]) == 0
    out = capsys.readouterr().out
    assert f"scoring {method} again: {first} ran other files under that name" in out
    assert "reusing mix" in out
    c = json.loads(third.read_text())
    assert c["reused"]["methods"] == ["mix"]
    assert c["model_fingerprints"][method] != a["model_fingerprints"][method]
    assert c["summary"][method]["sources"] != a["summary"][method]["sources"]
    # a report that does not record its files gives no model score to reuse
    del a["model_fingerprints"]
    first.write_text(json.dumps(a))
    assert main(base + ["--json", str(third), "--reuse", str(first)]) == 0
    assert "does not record which files it ran" in capsys.readouterr().out


def test_voices_count_as_held_out_only_where_the_record_names_the_voices():
    from tinysep.metrics.by_engine import HELD_OUT, TRAINED, UNKNOWN, engine_status

    # a record from before corpora named their voices: festival trained, voices unknown
    old = {"train": {"vocals": {"festival"}}, "valid": {"vocals": {"additive"}}}
    assert engine_status("vocals", "festival", old) == TRAINED
    assert engine_status("voice", "kal", old) == UNKNOWN
    new = {"train": {"vocals": {"festival"}, "voice": {"kal", "nsh"}}, "valid": {}}
    assert engine_status("voice", "nsh", new) == TRAINED
    assert engine_status("voice", "ona", new) == HELD_OUT


def test_a_corpus_from_before_voices_were_named_records_the_default_voices(tmp_path):
    from tinysep.data.singing import DEFAULT_VOICES
    from tinysep.training.data import corpus_record

    def record(parameters: dict, engines: dict) -> dict:
        root = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        (root / "splits.json").write_text(json.dumps({
            "parameters": parameters, "splits": {"train": ["a"]},
            "clips": {"a": {"engines": {"vocals": "festival", "accompaniment": "additive",
                                        "font": None, **engines}}}}))
        return corpus_record(root, "train")["engines"]

    assert record({}, {})["voice"] == sorted(DEFAULT_VOICES)
    assert record({"voices": ["krb"]}, {})["voice"] == ["krb"]
    assert record({"voices": ["krb", "ona"]}, {"voice": "ona"})["voice"] == ["ona"]


def test_a_run_record_of_unknown_voices_marks_no_voice_held_out(tmp_path):
    from tinysep.metrics.by_engine import TRAINED, UNKNOWN, engine_status, model_engines

    older = {"engines": {"vocals": ["festival"], "accompaniment": ["additive"]}}
    newer = {"engines": {"vocals": ["festival"], "accompaniment": ["physical"],
                         "voice": ["nsh"]}, "earlier": [older]}
    (tmp_path / "run.json").write_text(json.dumps({"corpora": {"train": newer,
                                                               "valid": newer}}))
    seen = model_engines(tmp_path)
    assert seen["train"]["accompaniment"] == {"additive", "physical"}
    assert "voice" not in seen["train"]  # who sang in the older corpus is not known
    assert engine_status("voice", "ona", seen) == UNKNOWN
    assert engine_status("accompaniment", "additive", seen) == TRAINED
    (tmp_path / "run.json").write_text(json.dumps({"corpora": ["not", "records"]}))
    with pytest.raises(ValueError, match=r"run.json: 'corpora' is not an object"):
        model_engines(tmp_path)


def test_the_engine_table_keeps_its_columns_for_long_names():
    from tinysep.metrics.by_engine import format_engine_table

    def row(role, engine, classic_v, classic_a):
        source = {"model": 7.0, "best_classic": classic_v, "best_classic_sdr": 4.0,
                  "margin": 3.0, "irm": 13.0, "model_sir": 9.25, "model_sar": 11.5}
        return {"role": role, "engine": engine, "clips": 12, "status": "held out",
                "sources": {"vocals": source, "accompaniment": {**source,
                                                                "best_classic": classic_a}}}

    rows = [row("vocals", "flite", "repet", "repet"),
            row("recording", "/home/me/music/backing-tracks-2024", "repet-mfcc", "repet-sim")]
    lines = format_engine_table(rows).splitlines()
    status = {line.index("held out") for line in lines[1:]}
    margins = {line.index("+3.00") for line in lines[1:]}
    assert len(status) == 1 and len(margins) == 1
    assert lines[0].index("status") == status.pop()
    assert lines[0].index("margin") == margins.pop()
    sir = {line.index(" 9.25 / ") for line in lines[1:]}
    assert len(sir) == 1 and lines[0].index("model SIR") == sir.pop()
    assert all(line.endswith("11.50 / 11.50") for line in lines[1:])
    assert "backing-tracks-2024 " in lines[2] and "repet-mfcc/repet-sim " in lines[2]


def test_a_font_or_collection_named_by_its_path_is_the_kits_name_for_that_file(tmp_path,
                                                                             monkeypatch):
    """A corpus written with --fonts PATH names the font by its path; a model trained on the
    kit's font of that file has heard it."""
    from tinysep.data.recordings import COLLECTIONS
    from tinysep.data.soundfont import FONTS
    from tinysep.metrics.by_engine import HELD_OUT, SELECTION, TRAINED, engine_status

    seen = {"train": {"font": {"fluidr3"}, "recording": {"warzone2100"}},
            "valid": {"font": {"musescore"}}}
    assert engine_status("font", FONTS["fluidr3"][0], seen) == TRAINED
    assert engine_status("recording", COLLECTIONS["warzone2100"][0] + "/", seen) == TRAINED
    assert engine_status("font", FONTS["musescore"][0], seen) == SELECTION
    assert engine_status("font", FONTS["timgm6mb"][0], seen) == HELD_OUT
    own = tmp_path / "mine.sf2"
    monkeypatch.chdir(tmp_path)
    by_path = {"train": {"font": {str(own)}}, "valid": {}}
    assert engine_status("font", "./mine.sf2", by_path) == TRAINED  # the same file
    assert engine_status("font", "./other.sf2", by_path) == HELD_OUT
