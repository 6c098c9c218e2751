"""Short training runs on clips in memory: fine-tuning after pruning, quantization-aware
training, and the small fitted models the tests need.

Batches are augmented waveform chunks (:func:`tinysep.data.augment.training_batches`);
the loss is one of the training losses (``l1`` on masked magnitudes, ``sdr`` on the
resynthesised waveforms, or ``l1+sdr``, see :mod:`tinysep.training.spectral`), so a model
is fine-tuned with the loss it was trained with (:func:`training_loss_of` reads it from a
run folder). Keras ``fit`` drives the steps so tfmot's callbacks (the pruning step) run
as they expect; the batches are made on a worker thread
(:class:`tinysep.training.prefetch.PrefetchedBatches`), so the dataset only hands them on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tinysep.data.clip import SOURCES, Clip
from tinysep.dsp import DEFAULT_FRAMING, FRAMINGS, Framing, get_framing
from tinysep.model_record import FINE_TUNED_FROM, RECORD_FILES, trained_config

DEFAULT_LOSS = ("l1", 0.01)


def fine_tuned_record(source: str | Path, data: str | Path, command: str, origin: str) -> dict:
    """The ``training.json`` of a model fine-tuned from ``source`` on the train split of
    ``data`` (pruned, or trained aware of its int8 form): the command, the source's record
    under ``origin`` (one of :data:`FINE_TUNED_FROM`) and the corpora it has heard, the
    source's with ``data`` first (``tinysep eval --by-engine`` then marks its engines as
    trained)."""
    from tinysep.metrics.by_engine import recorded_corpora
    from tinysep.training.data import corpus_record
    from tinysep.training.run_folder import corpus_history
    from tinysep.training.soup import ingredient_record

    if origin not in FINE_TUNED_FROM:
        raise ValueError(f"origin must be one of {FINE_TUNED_FROM}, got {origin!r}")
    theirs = recorded_corpora(source) or {}
    train = corpus_record(data, "train")
    earlier = [c for c in corpus_history(theirs.get("train")) if c != train]
    if earlier:
        train["earlier"] = earlier
    corpora = {"train": train}
    if theirs.get("valid"):
        corpora["valid"] = theirs["valid"]
    return {"command": command, origin: ingredient_record(source), "corpora": corpora}


def training_loss_of(folder: str | Path) -> tuple[str, float]:
    """``(loss, sdr_weight)`` a model folder was trained with (its ``run.json`` from
    ``tinysep train``, or the ``training.json`` of a shipped or fine-tuned model: then that of
    the model it was fine-tuned from; of a weight soup: its best ingredient's), else plain
    ``l1``."""
    for name in RECORD_FILES:  # an unreadable record falls back to the next one
        try:
            config = trained_config(json.loads((Path(folder) / name).read_text()))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(config, dict) and "loss" in config:
            return str(config["loss"]), float(config.get("sdr_weight", DEFAULT_LOSS[1]))
    return DEFAULT_LOSS


def chunk_samples(chunk_frames: int, framing: str | Framing = DEFAULT_FRAMING) -> int:
    """Samples of a chunk whose STFT at ``framing`` has ``chunk_frames`` frames."""
    framing = get_framing(framing)
    per_frame = framing.n_fft // framing.hop
    samples = (chunk_frames - (per_frame - 1)) * framing.hop
    if samples < framing.hop:
        raise ValueError(f"chunk_frames must be at least {per_frame} (framing "
                         f"{framing.name}), got {chunk_frames}")
    return samples


def framing_of(model) -> Framing:
    """A model's framing: its config's, else the one whose bins its input has."""
    from tinysep.models.registry import model_framing

    if getattr(model, "tinysep_config", None) is not None:
        return model_framing(model)
    bins = int(model.inputs[0].shape[-1])
    for framing in FRAMINGS.values():
        if framing.n_bins == bins:
            return framing
    raise ValueError(f"model {model.name!r} takes {bins} bins, which no framing gives")


def audio_batches(
    clips: Sequence[Clip], chunk_frames: int, batch_size: int, seed: int = 0,
    sources: Sequence[str] = SOURCES, framing: str | Framing = DEFAULT_FRAMING, **augment
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless ``(mixtures (B, samples), sources (B, S, samples))`` chunks whose STFT at
    ``framing`` has ``chunk_frames`` frames; ``sources`` in the model's order (S of them)."""
    from tinysep.data.augment import training_batches

    if not clips:
        raise ValueError("training needs at least one clip")
    samples = chunk_samples(chunk_frames, framing)
    rng = np.random.default_rng(seed)
    for mixture, *stems in training_batches(
        clips, samples, batch_size, rng, sources=tuple(sources), **augment
    ):
        yield mixture.astype(np.float32), np.stack(stems, 1).astype(np.float32)


def feature_batches(clips: Sequence[Clip], frames: int, batch_size: int, gain: float,
                    seed: int = 0, framing: str | Framing = DEFAULT_FRAMING) -> np.ndarray:
    """One batch of features ``log1p(gain |X|)`` ``(B, frames, bins)`` at ``framing`` (for
    range probes)."""
    from tinysep.dsp import magnitude, stft

    mixture, _ = next(audio_batches(clips, frames, batch_size, seed, framing=framing))
    return np.stack([np.log1p(gain * magnitude(stft(x, framing=framing)))
                     for x in mixture]).astype(np.float32)


def _trainer(model, kind: str, sdr_weight: float, features_gain: float | None,
             framing: Framing, teacher=None):
    """A Keras model whose ``fit`` trains ``model`` on ``(mixture, sources)`` batches (on the
    ``teacher``'s separations of the mixture instead of the sources, with one)."""
    import tensorflow as tf
    import tf_keras as keras

    from tinysep.training.spectral import separation_loss, separations, tf_stft

    class SeparationTrainer(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs, training=False):
            return self.inner(inputs, training=training)

        def train_step(self, data):
            mixture, sources = data
            spec = tf_stft(mixture, framing)
            batch, count, samples = (int(d) for d in sources.shape)
            if teacher is None:
                target = tf.abs(tf_stft(tf.reshape(sources, (batch * count, samples)),
                                        framing))
                target = tf.transpose(tf.reshape(target, (batch, count, *target.shape[1:])),
                                      (0, 2, 3, 1))
            else:  # the teacher's masked magnitudes and their waveforms, as distillation's
                taught = tf.stop_gradient(teacher(tf.abs(spec), training=False))
                target, sources = separations(spec, taught, samples, framing)
            x = tf.abs(spec)
            if features_gain is not None:
                x = tf.math.log1p(features_gain * x)
            with tf.GradientTape() as tape:
                masks = self.inner(x, training=True)
                loss = separation_loss(kind, spec, masks, target, sources, sdr_weight,
                                       framing=framing)
            variables = self.inner.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables,
                                               strict=True))
            return {"loss": loss}

    return SeparationTrainer(model)


def sources_of(model) -> tuple[str, ...]:
    """The sources ``model`` separates: its config's, else by its number of masks."""
    from tinysep.data.sources import STEMS
    from tinysep.models.registry import model_sources

    config = getattr(model, "tinysep_config", None)
    if config is not None:
        return model_sources(config)
    masks = int(model.outputs[0].shape[-1])
    for candidate in (SOURCES, STEMS):
        if len(candidate) == masks:
            return tuple(candidate)
    raise ValueError(f"model {model.name!r} has {masks} masks and no config naming its sources: "
                     "pass sources=")


def fine_tune(
    model,
    clips: Sequence[Clip],
    steps: int,
    *,
    loss: str = "l1",
    sdr_weight: float = 0.01,
    batch_size: int = 4,
    chunk_frames: int = 64,
    learning_rate: float = 1e-3,
    callbacks: Sequence = (),
    seed: int = 0,
    progress: bool = False,
    features_gain: float | None = None,
    freeze_batchnorm: bool = True,
    sources: Sequence[str] | None = None,
    teacher=None,
) -> list[float]:
    """Fine-tune ``model`` (magnitudes -> masks; features -> masks with ``features_gain``)
    for ``steps`` batches with ``loss``; returns the loss of every step.

    ``freeze_batchnorm``: BatchNorm layers keep the statistics of the full training run
    (inference mode, not trained): on the small batches of fine-tuning (pruning, QAT) they
    would drift and move the float model with them. Pass False to fit a model from scratch.
    ``sources``: the stems the masks stand for, in order (default: the model's config, or,
    for a model that lost it to a tfmot clone, its own source list when it has as many masks).
    ``teacher``: a float model of the same framing and sources (magnitudes -> masks) whose
    separations of each chunk are the targets instead of the stems, so the model learns what
    the teacher does (quantization-aware training that keeps the float model's separation).
    """
    import tensorflow as tf
    import tf_keras as keras

    from tinysep.progress import Progress
    from tinysep.training.choices import LOSSES
    from tinysep.training.prefetch import PrefetchedBatches

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    framing = framing_of(model)
    samples = chunk_samples(chunk_frames, framing)
    if freeze_batchnorm:
        for layer in model.layers:
            inner = getattr(layer, "layer", layer)  # tfmot wraps layers
            if isinstance(inner, keras.layers.BatchNormalization):
                inner.trainable = False
    sources = tuple(sources) if sources is not None else sources_of(model)
    if teacher is not None and (framing_of(teacher) != framing
                                or sources_of(teacher) != sources):
        raise ValueError("the teacher must have the model's framing and sources: "
                         f"{framing_of(teacher).name} {sources_of(teacher)} against "
                         f"{framing.name} {sources}")
    trainer = _trainer(model, loss, sdr_weight, features_gain, framing, teacher)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    losses: list[float] = []

    class _Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float((logs or {}).get("loss", np.nan)))
            bar.update(1)
            bar.postfix(f"loss {losses[-1]:.4g}")

    # The kit's own progress (a bar on a terminal, a few lines in a log), not Keras's bar,
    # whose ETA counts graph tracing as step time. Both close whatever fails once they start.
    with (Progress(steps, "fine-tuning", unit="step", enabled=progress) as bar,
          PrefetchedBatches(audio_batches(clips, chunk_frames, batch_size, seed,
                                          sources, framing)) as batches):
        dataset = tf.data.Dataset.from_generator(
            lambda: batches,
            output_signature=(tf.TensorSpec((batch_size, samples), tf.float32),
                              tf.TensorSpec((batch_size, len(sources), samples), tf.float32)),
        )
        trainer.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0,
                    callbacks=[*callbacks, _Record()])
    return losses
