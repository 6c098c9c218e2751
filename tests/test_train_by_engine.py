"""`tinysep train` by engine: with --teacher-skip, chunks that drew a source from the named
engines learn from the true sources alone while the others mix in the teacher; with
--oversample, the clips the named engines made are drawn more often. Checked on the batches
(which clip each chunk came from), on the loss (chunk by chunk) and on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from train_helpers import tiny_config

from cli.main import main as cli_main
from tinysep.data.augment import drawn_chunks
from tinysep.data.clip import Clip
from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.metrics.by_engine import clip_engines
from tinysep.models import model_from_config
from tinysep.train import train
from tinysep.training.config import DEFAULT_AUGMENT
from tinysep.training.data import (
    batch_for_step,
    drawn_batch_for_step,
    sources_made_by,
    taught_shares,
)
from tinysep.training.spectral import batch_loss

SCALE = 100_000  # a coded sample's value: clip * SCALE + position + 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six songs over two accompaniment engines (additive and physical)."""
    root = tmp_path_factory.mktemp("skip") / "synth"
    write_corpus(root, songs=6, seconds=6.0, seed=4, progress=False,
                 engines=("additive", "physical"))
    return root



def _coded_clips() -> list[Clip]:
    """Six clips of three songs whose samples say which clip they are."""
    clips = []
    for k in range(6):
        vocals = k * SCALE + np.arange(4000, dtype=np.float32) + 1
        clips.append(Clip(f"c{k}", 2 * vocals, vocals, vocals.copy(), song=f"song{k // 2}"))
    return clips


def test_the_batch_says_which_clip_gave_each_source():
    """The picks are the clips the samples came from, the remix included; a chunk is
    untaught exactly when one of its sources came from an untaught clip source."""
    clips = _coded_clips()
    plain = {"random_gain": False, "sign_flip": False, "remix_probability": 0.7}
    mixtures, parts, picks = drawn_batch_for_step(clips, 3, 9, 64, 500, plain)
    assert picks.shape == (64, 2)
    decoded = np.floor((parts[:, :, 0] - 1) / SCALE).astype(int)
    np.testing.assert_array_equal(decoded, picks)
    assert (picks[:, 0] // 2 != picks[:, 1] // 2).any()  # some chunks were remixed
    np.testing.assert_array_equal(mixtures, parts.sum(axis=1))
    _, again_parts = batch_for_step(clips, 3, 9, 64, 500, plain)
    np.testing.assert_array_equal(again_parts, parts)
    untaught = np.zeros((6, 2), dtype=bool)
    untaught[4, 1] = True  # the accompaniment of clip 4 only
    shares = taught_shares(picks, untaught)
    np.testing.assert_array_equal(shares == 0.0, picks[:, 1] == 4)
    assert shares.dtype == np.float32 and set(shares) == {0.0, 1.0}
    np.testing.assert_array_equal(taught_shares(picks, None), np.ones(64, np.float32))


def test_roles_pick_the_sources_they_made():
    """A vocal role marks the vocals, an accompaniment role the accompaniment (or each of its
    stems), the composer every source, a sound font the part a font engine plays; a clip
    missing from splits.json is marked nowhere."""
    clips = [Clip(name, np.zeros(8), np.zeros(8), np.zeros(8)) for name in "abcd"]
    engines = {"a": {"vocals": "festival", "accompaniment": "recorded", "composer": "loops",
                     "recording": "supertux"},
               "b": {"vocals": "espeak", "accompaniment": "additive", "composer": "through"},
               "c": {"vocals": "choir", "accompaniment": "additive", "font": "fluidr3"}}
    table = sources_made_by(clips, engines, {"accompaniment": {"recorded"}})
    np.testing.assert_array_equal(table, [[False, True], [False, False], [False, False],
                                          [False, False]])
    table = sources_made_by(clips, engines, {"vocals": {"espeak"}, "recording": {"supertux"}})
    np.testing.assert_array_equal(table, [[False, True], [True, False], [False, False],
                                          [False, False]])
    table = sources_made_by(clips, engines, {"composer": {"loops"}},
                            ("vocals", "drums", "bass", "other"))
    np.testing.assert_array_equal(table[0], [True] * 4)
    assert not table[1:].any()
    table = sources_made_by(clips, engines, {"font": {"fluidr3"}})
    np.testing.assert_array_equal(table[2], [True, False])  # the choir sings it, not additive
    engines["c"]["accompaniment"] = "soundfont"
    engines["c"]["vocals"] = "festival"
    table = sources_made_by(clips, engines, {"font": {"fluidr3"}})
    np.testing.assert_array_equal(table[2], [False, True])
    assert sources_made_by([], engines, {"font": {"fluidr3"}}).shape == (0, 2)


def test_an_untaught_chunk_learns_from_the_true_sources_alone(tmp_path):
    """The loss with per-chunk shares is the mean of each chunk's own loss: a chunk at 0
    scores against the true sources only, one at 1 mixes in the teacher by its weight; all
    ones is the plain distillation loss."""
    root = tmp_path / "c"
    write_corpus(root, songs=3, seconds=4.0, seed=2, progress=False)
    clips = load_split(root, split="train", progress=False)
    mixture, sources = (tf.constant(a) for a in batch_for_step(clips, 7, 1, 4, 8000,
                                                                DEFAULT_AUGMENT))
    keras.utils.set_random_seed(1)
    model = model_from_config(tiny_config(root).model_config())
    teacher = model_from_config(tiny_config(root).model_config())

    def loss(rows, taught=None, weight=0.6, teach=True) -> float:
        share = None if taught is None else tf.constant(taught, tf.float32)
        return float(batch_loss(model, tf.gather(mixture, rows), tf.gather(sources, rows),
                                "sdr", 0.0, False, teacher if teach else None, weight, share))

    taught_rows, truth_rows = [0, 2], [1, 3]
    expected = (loss(taught_rows) + loss(truth_rows, teach=False)) / 2
    mixed = loss([0, 1, 2, 3], [1.0, 0.0, 1.0, 0.0])
    assert mixed == pytest.approx(expected, abs=1e-3)
    assert abs(loss([0, 1, 2, 3]) - loss([0, 1, 2, 3], teach=False)) > 1.0  # the teacher counts
    assert abs(mixed - loss([0, 1, 2, 3])) > 0.1
    assert loss([0, 1, 2, 3], [1.0] * 4) == pytest.approx(loss([0, 1, 2, 3]), abs=1e-3)
    assert loss([0, 1, 2, 3], [0.0] * 4) == pytest.approx(loss([0, 1, 2, 3], teach=False),
                                                        abs=1e-3)


def test_a_run_that_skips_an_engine_records_it(corpus, tmp_path, capsys):
    """A run taught except on one accompaniment engine trains, says how many train clips
    the teacher skips (and, with --oversample beside it, how many are favoured) and records
    the filter; a resume keeps it."""
    teacher = tmp_path / "teacher"
    train(tiny_config(corpus, epochs=1), teacher, progress=False)
    engines = clip_engines(corpus)
    assert {entry["accompaniment"] for entry in engines.values()} == {"additive", "physical"}
    train_clips = {clip.name for clip in load_split(corpus, split="train", progress=False)}
    skipped = sum(engines[name]["accompaniment"] == "physical" for name in train_clips)
    out = tmp_path / "taught"
    config = tiny_config(corpus, epochs=1, teacher=str(teacher),
                         teacher_skip="accompaniment=physical", oversample="vocals=additive")
    capsys.readouterr()
    train(config, out, progress=False)
    said = f"teacher skips accompaniment=physical: {skipped} of {len(train_clips)} train clips"
    err = capsys.readouterr().err
    assert 0 < skipped < len(train_clips) and said in err
    assert f"oversample vocals=additive: {len(train_clips)} of {len(train_clips)}" in err
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["teacher_skip"] == "accompaniment=physical"
    result = train(config.replace(epochs=2), out, resume=True, allow_changes=True,
                   progress=False)
    assert result.epochs == 2


def test_a_skip_that_cannot_work_stops_before_the_run_starts(corpus, tmp_path, capsys):
    """A filter with no teacher, a malformed one and one that matches no train clip (a
    misspelt engine) each stop with the reason; no run folder is left."""
    teacher = tmp_path / "teacher"
    train(tiny_config(corpus, epochs=1), teacher, progress=False)
    with pytest.raises(ValueError, match="teacher_skip .*give teacher too"):
        tiny_config(corpus, teacher_skip="accompaniment=physical").validate()
    with pytest.raises(ValueError, match="teacher_skip: .*expected ROLE=ENGINE"):
        tiny_config(corpus, teacher=str(teacher), teacher_skip="physical").validate()
    misspelt = tiny_config(corpus, teacher=str(teacher), teacher_skip="accompaniment=phisical")
    with pytest.raises(ValueError, match="matches no train clip .*accompaniment=physical"):
        train(misspelt, tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    code = cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "b"),
                     "--teacher-skip", "accompaniment=physical"])
    assert code != 0 and "give --teacher too" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_odds_draw_clips_in_proportion_for_every_source():
    """A clip with ten times the odds of each of five others is drawn about two thirds of
    the time, for the vocals and for a remixed accompaniment alike; odds that are not one
    positive number per clip are refused."""
    clips = _coded_clips()
    odds = [10.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    drawn = list(drawn_chunks(clips, 500, np.random.default_rng(2), count=3000,
                              clip_odds=odds, remix_probability=1.0))
    picks = np.array([picked for picked, _ in drawn])
    assert np.mean(picks[:, 0] == 0) == pytest.approx(10 / 15, abs=0.03)
    # a partner comes from another song: for a first pick of song 1 or 2, clip 0 (odds 10),
    # clip 1 and the two clips of the third song (odds 1 each)
    remixed = picks[picks[:, 0] >= 2, 1]
    assert np.mean(remixed == 0) == pytest.approx(10 / 13, abs=0.04)
    uniform = list(drawn_chunks(clips, 500, np.random.default_rng(2), count=3000))
    assert np.mean([picked[0] == 0 for picked, _ in uniform]) == pytest.approx(1 / 6, abs=0.03)
    for bad in ([1.0] * 5, [0.0] + [1.0] * 5, [float("nan")] + [1.0] * 5):
        with pytest.raises(ValueError, match="clip_odds must be one finite positive number"):
            next(drawn_chunks(clips, 500, np.random.default_rng(0), clip_odds=bad))


def test_a_run_that_oversamples_an_engine_says_how_many_clips(corpus, tmp_path, capsys):
    """--oversample names how many train clips are favoured and records the setting; bad
    filters, factors, and a factor with no filter are refused before any work."""
    engines = clip_engines(corpus)
    train_clips = {clip.name for clip in load_split(corpus, split="train", progress=False)}
    favoured = sum(engines[name]["accompaniment"] == "physical" for name in train_clips)
    out = tmp_path / "oversampled"
    config = tiny_config(corpus, epochs=1, oversample="accompaniment=physical",
                         oversample_factor=3.0)
    capsys.readouterr()
    train(config, out, progress=False)
    said = (f"oversample accompaniment=physical: {favoured} of {len(train_clips)} train clips "
            f"are drawn 3 times as often")
    assert said in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["oversample_factor"] == 3.0
    with pytest.raises(ValueError, match="oversample: .*expected ROLE=ENGINE"):
        tiny_config(corpus, oversample="physical").validate()
    for factor in (0.0, -1.0, 1000.0, float("inf")):
        with pytest.raises(ValueError, match="oversample_factor"):
            tiny_config(corpus, oversample="accompaniment=physical",
                    oversample_factor=factor).validate()
    with pytest.raises(ValueError, match="oversample 'vocals=flite' matches no train clip"):
        train(tiny_config(corpus, oversample="vocals=flite"), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    code = cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "b"),
                     "--oversample-factor", "3"])
    assert code != 0 and "give --oversample too" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("kind", ["l1", "sdr", "l1+sdr", "bss-sdr"])
def test_chunk_weights_weigh_each_chunk_of_every_loss(kind):
    """For every loss kind, weights of one reproduce the batch mean, and a weight of zero
    leaves a chunk out: [1, 0, 2] scores as the first chunk plus twice the third, over 3."""
    from tinysep.training.spectral import separation_loss, tf_stft

    rng = np.random.default_rng(5)
    sources = tf.constant(rng.normal(size=(3, 2, 4000)).astype(np.float32))
    spec = tf_stft(tf.reduce_sum(sources, axis=1))
    target = tf.abs(tf_stft(tf.reshape(sources, (6, 4000))))
    target = tf.transpose(tf.reshape(target, (3, 2, *target.shape[1:])), (0, 2, 3, 1))
    masks = tf.constant(rng.uniform(size=target.shape).astype(np.float32))

    def loss(rows, weights=None) -> float:
        pick = [tf.gather(t, rows) for t in (spec, masks, target, sources)]
        given = None if weights is None else tf.constant(weights, tf.float32)
        return float(separation_loss(kind, *pick, 0.3, given))

    whole = loss([0, 1, 2])
    assert loss([0, 1, 2], [1.0, 1.0, 1.0]) == pytest.approx(whole, rel=1e-4, abs=1e-4)
    expected = (loss([0]) + 2 * loss([2])) / 3
    assert loss([0, 1, 2], [1.0, 0.0, 2.0]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert abs(loss([1]) - loss([0])) > 1e-3  # the chunks differ, so leaving one out shows
