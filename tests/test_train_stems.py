"""Training four stems: `tinysep train --sources vocals,drums,bass,other` on a corpus with
stems: batches carry every stem, the loss covers all of them, validation reports each
stem's SDR, and run.json and the model folder record the sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cli.main import main as cli_main
from tinysep.data.loaders import load_split
from tinysep.data.sources import STEMS
from tinysep.data.synth import write_corpus
from tinysep.models import build_model, load_model, separate
from tinysep.training.data import batch_for_step, fingerprint_clips
from tinysep.training.spectral import batch_loss, tf_stft

SMALL_UNET = ["--option", "channels=[4,8]", "--option", "units=6"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train4") / "synth"
    write_corpus(root, songs=6, seconds=5.0, seed=8, progress=False, stems=True)
    return root


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs4") / "four"
    code = cli_main(["train", "--model", "unet-se-sru", "--sources", "vocals,drums,bass,other",
                     *SMALL_UNET, "--data", str(corpus), "--out", str(out), "--epochs", "1",
                     "--steps-per-epoch", "2", "--batch-size", "2", "--chunk-seconds", "0.5",
                     "--valid-clips", "1", "--valid-seconds", "2", "--no-progress"])
    assert code == 0
    return out


def test_a_four_stem_run_records_and_reports_every_stem(corpus, run):
    record = json.loads((run / "run.json").read_text())
    assert record["model_config"]["options"]["sources"] == list(STEMS)
    assert record["model"]["sources"] == list(STEMS)
    assert json.loads((run / "config.json").read_text())["params"]["sources"] == list(STEMS)
    state = json.loads((run / "state.json").read_text())
    valid = state["history"][0]["valid_sdr"]
    assert list(valid) == [*STEMS, "mean"]
    scored = [valid[s] for s in STEMS if valid[s] is not None]
    assert len(scored) >= 3 and all(np.isfinite(scored))
    assert valid["mean"] == pytest.approx(np.mean(scored))
    model = load_model(run)
    clip = load_split(corpus, split="valid", progress=False, sources=STEMS)[0]
    estimates = separate(model, clip.mixture)
    assert list(estimates) == list(STEMS)
    np.testing.assert_allclose(sum(estimates.values()), clip.mixture, atol=1e-4)


def test_the_epoch_line_names_each_stem(corpus, tmp_path, capsys):
    code = cli_main(["train", "--model", "unet-se-sru", "--preset", "tiny4", *SMALL_UNET,
                     "--data", str(corpus), "--out", str(tmp_path / "r"), "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch-size", "2", "--chunk-seconds", "0.5",
                     "--valid-clips", "1", "--valid-seconds", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("epoch ")]
    assert all(f" {s} " in line for s in STEMS) and "accompaniment" not in line
    assert "validation SDR vocals" in captured.out and "other" in captured.out


def test_bad_sources_stop_with_the_reason(corpus, tmp_path, capsys):
    code = cli_main(["train", "--sources", "vocals,drums", "--data", str(corpus),
                     "--out", str(tmp_path / "bad")])
    assert code == 2
    assert "exactly once" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_batches_carry_every_stem_and_the_fingerprint_covers_them(corpus):
    clips = load_split(corpus, split="train", progress=False, sources=STEMS)
    mixture, sources = batch_for_step(clips, 3, 0, 4, 4000, {}, STEMS)
    assert mixture.shape == (4, 4000) and sources.shape == (4, 4, 4000)
    np.testing.assert_allclose(sources.sum(axis=1), mixture, atol=1e-6)
    two = load_split(corpus, split="train", progress=False)
    assert fingerprint_clips(clips, clips[:1]) != fingerprint_clips(two, two[:1])


def test_the_loss_averages_over_all_four_stems():
    model = build_model("dualgate-tcn", sources=list(STEMS), residual=4, hidden=4, blocks=1,
                        repeats=1)
    rng = np.random.default_rng(0)
    sources = rng.normal(0, 0.1, (2, 4, 1024)).astype(np.float32)
    mixture = sources.sum(axis=1)
    loss = float(batch_loss(model, tf.constant(mixture), tf.constant(sources), "l1", 0.0,
                            training=False))
    spec = tf_stft(tf.constant(mixture))
    masks = np.asarray(model(tf.abs(spec), training=False))
    terms = [np.mean(np.abs(masks[..., i] * np.abs(spec.numpy())
                            - np.abs(tf_stft(tf.constant(sources[:, i])).numpy())))
             for i in range(4)]
    assert loss == pytest.approx(np.mean(terms), rel=1e-5)
