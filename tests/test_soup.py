"""Weight soups: `tinysep soup` averages models of one graph, keeps in a greedy soup only the
models that raise the selection score, records every ingredient's corpora, and refuses models
it cannot average with an error naming the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_models_support import randomize

from cli.main import main
from tinysep.data.synth import write_corpus
from tinysep.metrics.by_engine import engine_status, model_engines
from tinysep.models import build_model, load_model, save_model
from tinysep.training.config import TrainConfig
from tinysep.training.data import corpus_record, load_training_data, validation_clips
from tinysep.training.soup import greedy_soup
from tinysep.training.validation import validation_sdr

OTHER_CORPUS = {"folder": "/elsewhere/corpus", "split": "train",
                "engines": {"vocals": ["espeak"], "accompaniment": ["subtractive"]}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("soup") / "synth"
    write_corpus(root, songs=6, seconds=6.0, seed=5, progress=False)
    return root


def _model(folder: Path, seed: int, corpora: dict | None, record_file: str = "run.json",
           **options) -> Path:
    model = randomize(build_model("dualgate-tcn", "tiny", **options), seed=seed, scale=0.1)
    save_model(model, folder)
    if corpora is not None:
        (folder / record_file).write_text(json.dumps({"command": f"made by seed {seed}",
                                                      "corpora": corpora}))
    return folder


@pytest.fixture(scope="module")
def ingredients(corpus, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("ingredients")
    own = {"train": corpus_record(corpus, "train"), "valid": corpus_record(corpus, "valid")}
    return [_model(root / "a", 1, own),
            _model(root / "b", 2, {"train": OTHER_CORPUS}, record_file="training.json"),
            _model(root / "c", 3, own)]


def test_a_soup_is_the_mean_of_its_models_and_hears_what_each_heard(corpus, ingredients,
                                                                   tmp_path):
    out = tmp_path / "soup"
    assert main(["soup", *map(str, ingredients), "--out", str(out)]) == 0
    weights = [load_model(f).get_weights() for f in ingredients]
    soup = load_model(out).get_weights()
    assert len(soup) == len(weights[0])
    for i, value in enumerate(soup):
        np.testing.assert_allclose(value, np.mean([w[i] for w in weights], axis=0), atol=1e-6)
    assert not np.allclose(soup[3], weights[0][3])  # the ingredients do differ
    seen = model_engines(out)
    assert engine_status("vocals", "espeak", seen) == "trained"  # only ingredient b heard it
    assert engine_status("accompaniment", "subtractive", seen) == "trained"
    assert engine_status("vocals", "choir", seen) == "held out"
    for engine in corpus_record(corpus, "train")["engines"]["vocals"]:  # a and c heard them
        assert engine_status("vocals", engine, seen) == "trained"
    record = json.loads((out / "training.json").read_text())
    assert record["command"].startswith("tinysep soup ")
    assert record["soup"]["kept"] == [str(f.resolve()) for f in ingredients]
    assert [i["command"] for i in record["soup"]["ingredients"]] == \
        ["made by seed 1", "made by seed 2", "made by seed 3"]


def test_greedy_soup_adds_best_first_and_keeps_only_what_helps():
    own = {"a": 3.0, "b": 2.0, "c": 2.5}
    trials: list[tuple[str, ...]] = []

    def score(names):
        trials.append(tuple(names))
        # a soup scores the mean of its members, plus 0.8 for having b in it
        return float(np.mean([own[n] for n in names])) + (0.8 if "b" in names and
                                                          len(names) > 1 else 0.0)

    kept, best, single = greedy_soup(["a", "b", "c"], score)
    assert single == own
    # alone, then a+c (2.75 < 3: dropped), then a+b (2.5 + 0.8 = 3.3: kept)
    assert trials[3:] == [("a", "c"), ("a", "b")]
    assert kept == ["a", "b"] and best == pytest.approx(3.3)


def test_greedy_cli_scores_on_the_valid_split(corpus, ingredients, tmp_path):
    out = tmp_path / "greedy"
    assert main(["soup", *map(str, ingredients), "--greedy", "--valid-data", str(corpus),
                 "--valid-clips", "2", "--out", str(out)]) == 0
    selection = json.loads((out / "training.json").read_text())["soup"]["selection"]
    singles = selection["single_mean_db"]
    assert set(singles) == {str(f.resolve()) for f in ingredients}
    assert selection["soup_mean_db"] >= max(singles.values())
    clips = load_training_data(corpus, progress=False).valid
    valid = validation_clips(clips, 2, TrainConfig().valid_seconds, [0.0])
    assert validation_sdr(load_model(out), valid)["mean"] == \
        pytest.approx(selection["soup_mean_db"], abs=1e-4)


@pytest.mark.parametrize("case, message", [
    ("one", "at least two models"),
    ("greedy", "--greedy scores the soups"),
    ("graph", "differs from"),
    ("record", "records no training corpora"),
    ("engines", "'corpora.train.engines' is not an object of roles"),
    ("earlier", "'corpora.train.earlier[0]' is not a corpus record"),
    ("twice", "given twice"),
    ("full", "not an empty folder"),
    ("nan", "hold NaN or infinity; a soup with this model would too"),
])
def test_bad_soups_name_the_problem(case, message, ingredients, tmp_path, capsys):
    out = tmp_path / "soup"
    models = [str(ingredients[0]), str(ingredients[1])]
    extra: list[str] = []
    if case == "one":
        models = models[:1]
    elif case == "greedy":
        extra = ["--greedy"]
    elif case == "graph":
        models.append(str(_model(tmp_path / "deeper", 4, None, blocks=4)))
    elif case == "record":
        models.append(str(_model(tmp_path / "bare", 5, None)))
    elif case == "engines":
        models.append(str(_model(tmp_path / "listed", 5, {"train": {"engines": [1]}})))
    elif case == "earlier":
        models.append(str(_model(tmp_path / "nested", 5, {"train": {"earlier": ["x"]}})))
    elif case == "twice":
        models.append(str(ingredients[0]) + "/")
    elif case == "full":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "nan":
        broken = _model(tmp_path / "nan", 6, {"train": OTHER_CORPUS})
        model = load_model(broken)
        weights = model.get_weights()
        weights[-1] = np.full_like(weights[-1], np.nan)
        model.set_weights(weights)
        save_model(model, broken)
        models.append(str(broken))
    assert main(["soup", *models, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    if case in ("graph", "record", "nan"):
        assert models[-1] in err  # the folder at fault is named
    if case == "full":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_shipped_soup_keeps_its_record_and_its_engine_table(corpus, ingredients, tmp_path):
    from tinysep.pretrained import ship_model

    out = tmp_path / "soup"
    assert main(["soup", *map(str, ingredients[:2]), "--out", str(out)]) == 0
    report = tmp_path / "eval.json"
    assert main(["eval", "--method", f"model:{out},repet", "--data", str(corpus), "--split",
                 "all", "--max-clips", "3", "--by-engine", "--no-progress", "--json",
                 str(report)]) == 0
    folder = ship_model(out, report, "soup-test", package_dir=tmp_path / "package")
    record = json.loads((folder / "training.json").read_text())
    assert record["command"].startswith("tinysep soup ")
    assert record["soup"]["kept"] == [str(f.resolve()) for f in ingredients[:2]]
    assert "espeak" in record["corpora"]["train"]["engines"]["vocals"]
    assert set(record["test"]["baselines_sdr_mean_db"]) == {"repet"}
    rows = record["test"]["by_engine"]
    assert rows and all(r["status"] == "trained" for r in rows)  # a heard the whole corpus
    np.testing.assert_array_equal(load_model(folder).get_weights()[5],
                                  load_model(out).get_weights()[5])
    # a report in which every engine was heard cannot stand for music the model never heard
    with pytest.raises(ValueError, match="no engine in it is held out"):
        ship_model(out, report, "x", held_out_reports=[report], package_dir=tmp_path / "package")
    assert not (tmp_path / "package" / "x").exists()
    own = json.loads((out / "training.json").read_text())
    (out / "training.json").write_text(json.dumps({"command": own["command"]}))
    with pytest.raises(ValueError, match="not the record of a soup or a fine-tuned model"):
        ship_model(out, report, "x", package_dir=tmp_path / "package")
    assert not (tmp_path / "package" / "x").exists()


def test_a_shipped_soup_keeps_the_rows_of_engines_it_never_heard(corpus, ingredients, tmp_path):
    """Rows of another corpus whose engines no ingredient heard go into the record apart."""
    from tinysep.pretrained import ship_model

    other = _model(tmp_path / "d", 4, {"train": OTHER_CORPUS}, record_file="training.json")
    out = tmp_path / "soup"
    assert main(["soup", str(ingredients[1]), str(other), "--out", str(out)]) == 0
    report = tmp_path / "eval.json"
    assert main(["eval", "--method", f"model:{out},repet", "--data", str(corpus), "--split",
                 "all", "--max-clips", "3", "--by-engine", "--no-progress", "--json",
                 str(report)]) == 0
    folder = ship_model(out, report, "soup-test", held_out_reports=[report],
                        package_dir=tmp_path / "package")
    record = json.loads((folder / "training.json").read_text())
    [table] = record["test"]["held_out"]
    assert table["data"] == str(corpus) and table["clips"] == 3
    heard = record["corpora"]["train"]["engines"]
    assert table["rows"] and all(r["status"] == "held out" for r in table["rows"])
    assert all(r["engine"] not in heard.get(r["role"], []) for r in table["rows"])
    mixed = tmp_path / "mixed.json"
    assert main(["eval", "--method", f"model:{ingredients[0]}", "--data", str(corpus),
                 "--split", "all", "--max-clips", "1", "--no-progress",
                 "--json", str(mixed)]) == 0
    with pytest.raises(ValueError, match=f"holds no 'model:{out}'"):
        ship_model(out, report, "y", held_out_reports=[mixed], package_dir=tmp_path / "package")
    assert not (tmp_path / "package" / "y").exists()
    broken = tmp_path / "broken.json"
    broken.write_text(report.read_text()[:200])  # a report cut short
    with pytest.raises(ValueError, match="broken.json is not readable JSON"):
        ship_model(out, report, "y", held_out_reports=[broken], package_dir=tmp_path / "package")
    assert not (tmp_path / "package" / "y").exists()


def test_a_model_saved_before_an_option_existed_soups_with_one_at_its_default(
        corpus, ingredients, tmp_path, capsys):
    """An option a model's config does not pin reads at its default: a model saved before
    ``mask_delay`` existed is the graph of ``mask_delay=0``, and a look-ahead model is not."""
    older = tmp_path / "older"
    shutil.copytree(ingredients[0], older)
    config = json.loads((older / "config.json").read_text())
    assert config["params"].pop("mask_delay") == 0
    (older / "config.json").write_text(json.dumps(config))
    out = tmp_path / "soup"
    assert main(["soup", str(older), str(ingredients[2]), "--out", str(out)]) == 0
    expected = np.mean([load_model(f).get_weights()[-1] for f in (older, ingredients[2])], axis=0)
    np.testing.assert_allclose(load_model(out).get_weights()[-1], expected, rtol=1e-6)
    ahead = _model(tmp_path / "ahead", 6, None, mask_delay=2)
    assert main(["soup", str(older), str(ahead), "--out", str(tmp_path / "no")]) == 2
    assert f"{ahead}: a dualgate-tcn model that differs from {older} (mask_delay)" in \
        capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    config["params"]["residual"] = -1  # a hand-edited config: the folder is named
    (older / "config.json").write_text(json.dumps(config))
    assert main(["soup", str(ahead), str(older), "--out", str(tmp_path / "no")]) == 2
    assert (f"{older}: residual must be a whole number from 1 to 4096, got -1"
            in capsys.readouterr().err)


def test_a_soup_of_a_soup_keeps_every_run_under_it(ingredients, tmp_path):
    """A soup given as an ingredient brings its own soup record, so the runs it averaged
    stay named under the outer soup."""
    inner = tmp_path / "inner"
    assert main(["soup", *map(str, ingredients[:2]), "--out", str(inner)]) == 0
    outer = tmp_path / "outer"
    assert main(["soup", str(ingredients[2]), str(inner), "--out", str(outer)]) == 0
    record = json.loads((outer / "training.json").read_text())
    plain, nested = record["soup"]["ingredients"]
    assert "soup" not in plain
    assert nested["command"].startswith("tinysep soup ")
    assert nested["soup"]["kept"] == [str(f.resolve()) for f in ingredients[:2]]
    assert [i["command"] for i in nested["soup"]["ingredients"]] == [
        "made by seed 1", "made by seed 2"]


def test_greedy_lines_tell_apart_runs_in_folders_of_one_name(corpus, ingredients, tmp_path,
                                                             capsys):
    """runs/x/tcn and runs/y/tcn are printed as x/tcn and y/tcn, not as tcn twice."""
    import shutil

    runs = [tmp_path / run / "tcn" for run in ("x", "y")]
    for source, run in zip((ingredients[0], ingredients[2]), runs, strict=True):
        shutil.copytree(source, run)
    assert main(["soup", *map(str, runs), "--greedy", "--valid-data", str(corpus),
                 "--valid-clips", "2", "--out", str(tmp_path / "soup")]) == 0
    lines = [line.split("dB", 1)[1].strip() for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and " dB  " in line]
    assert {"x/tcn", "y/tcn"} <= set(lines) and "tcn" not in lines
