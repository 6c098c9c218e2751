"""Train a separator: augmented chunks -> STFT -> masks -> L1 loss, with checkpoints.

:func:`train` runs one training (fresh or resumed) into a run folder (see
:mod:`tinysep.training.run_folder`): the best weights by validation SDR, the last
epoch's beside them (``last/``), the full training config with the data fingerprint,
TensorFlow checkpoints of model and optimizer, TensorBoard logs and a history plot.
What it guarantees:

- the same config, data and seed give the same run: batch ``k`` is drawn from a
  generator seeded with ``(seed, k)`` and weights start from ``seed``;
- a killed run resumes (``resume=True``) from its last complete epoch with the
  optimizer state and step count it had, and then sees the batches it would have seen;
- a resumed run whose config differs from the stored one (other than the fields in
  :data:`tinysep.training.config.RESUMABLE_CHANGES`) stops with the differences listed;
- bad data (too few clips, a clip shorter than one window) and a NaN loss stop with a
  :class:`TrainingError` or ValueError naming the cause; the last good checkpoint and
  the best weights stay on disk;
- ``max_minutes`` bounds the training time of the run, resumes included (time spent
  loading data and tracing the graph is not counted);
- training stops early when the mean validation SDR of vocals and accompaniment has
  not improved for ``patience`` epochs;
- with ``weight_average``, a moving average of the weights is validated, selected and
  saved as the best weights, and resumes with the run (`tinysep.training.averaging`).
"""

from __future__ import annotations

import contextlib
import copy
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysep.training.config import TrainConfig, TrainingError, TrainingInterrupted
from tinysep.training.run_folder import (
    CHECKPOINT_DIR,
    LOG_DIR,
    PLOT_FILE,
    STATE_FILE,
    check_folder,
    drop_staged_best,
    plot_history,
    prepare_folder,
    promote_best,
    removed_if_setup_fails,
    save_best,
    save_last,
    settle_staged_best,
    write_json,
)

CHECKPOINTS_KEPT = 3
LOGGED_AUDIO_SECONDS = 5.0  # the validation clip's audio in TensorBoard is cut to this
VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"  # ends a variable's name in a checkpoint
REFIT_CLIPS = 64  # training mixtures a model carried to another framing re-measures its inputs on


@dataclass
class TrainResult:
    """What a finished (or stopped) call of :func:`train` reports."""

    out: Path
    status: str  # "finished" (all epochs), "early-stopped", "time-budget"
    epochs: int
    steps: int
    train_seconds: float
    best_epoch: int | None
    best_sdr: dict
    history: list[dict]


def _load_initial_weights(model, model_config: dict, folder: str, matching: bool) -> dict:
    """Start from the weights of the saved model in ``folder``: the same architecture, or
    with ``matching`` any model whose layers of the same name and weight shapes are
    copied (the others keep their fresh initialization). Returns what was copied."""
    from tinysep.models.reframing import feature_layout
    from tinysep.models.registry import (
        copy_matching_layers,
        feature_layouts_differ,
        graph_differences,
        graph_of,
        load_model,
        read_config,
    )

    try:
        theirs = graph_of(read_config(folder))
    except (OSError, ValueError) as exc:
        raise ValueError(f"init_from: {exc}") from None
    ours = graph_of(model_config)
    if theirs != ours and not matching:
        raise ValueError(f"init_from {folder}: its model differs from this run's "
                         f"({graph_differences(theirs, ours)}; its value first); init_matching "
                         "copies only the layers that match")
    try:  # the loader's errors name the weights file and what is wrong with it
        source = load_model(folder)
    except (OSError, ValueError) as exc:
        raise ValueError(f"init_from: {exc}") from None
    weighted = sum(1 for layer in model.layers if layer.weights)
    if theirs == ours:
        model.set_weights(source.get_weights())
        return {"layers_copied": weighted, "layers_fresh": []}
    fresh = copy_matching_layers(source, model)
    initial = {"layers_copied": weighted - len(fresh), "layers_fresh": fresh}
    if feature_layouts_differ(source, model):
        initial["reframed_from"] = list(feature_layout(source.tinysep_config["params"]))
    return initial


def _refit_input_norm(model, clips) -> int:
    """Measure the input normalisation of a model carried to another framing again, on up
    to :data:`REFIT_CLIPS` training mixtures spread over the corpus; returns the frames."""
    from tinysep.models.reframing import refit_input_norm

    picked = clips[:: max(1, len(clips) // REFIT_CLIPS)][:REFIT_CLIPS]
    return refit_input_norm(model, (clip.mixture for clip in picked))


def _load_teacher(config: TrainConfig, sources: tuple[str, ...]):
    """The teacher model of a distillation run (None without one); it must separate the
    same sources, in the same order, as the model it teaches."""
    if not config.teacher:
        return None
    from tinysep.models.registry import load_model, model_sources
    from tinysep.training.run_folder import trained_corpora

    try:
        teacher = load_model(config.teacher)
        trained_corpora(config.teacher)
    except (OSError, ValueError) as exc:
        raise ValueError(f"teacher: {exc}") from None
    if model_sources(teacher) != tuple(sources):
        raise ValueError(f"teacher {config.teacher} separates {list(model_sources(teacher))}, "
                         f"the model it teaches {list(sources)}: they must be the same")
    teacher.trainable = False
    return teacher


def _by_engine(config: TrainConfig, clips, sources: tuple[str, ...]):
    """``(untaught, clip_odds)``: which source of which train clip the teacher does not
    teach (``teacher_skip``) and how often each train clip is drawn (``oversample``); each
    None when its setting is off. The corpus's engine record is read once for both."""
    if not (config.teacher_skip or config.oversample):
        return None, None
    import numpy as np

    from tinysep.metrics.by_engine import clip_engines

    engines_of = clip_engines(config.data)
    untaught = clip_odds = None
    if config.teacher_skip:
        untaught = _made_by(config, "teacher_skip", clips, sources, engines_of)
        print(f"teacher skips {config.teacher_skip}: {int(untaught.any(axis=1).sum())} of "
              f"{len(clips)} train clips learn from their true sources alone", file=sys.stderr)
    if config.oversample:
        favoured = _made_by(config, "oversample", clips, sources, engines_of).any(axis=1)
        print(f"oversample {config.oversample}: {int(favoured.sum())} of {len(clips)} train "
              f"clips are drawn {config.oversample_factor:g} times as often as the others",
              file=sys.stderr)
        clip_odds = np.where(favoured, float(config.oversample_factor), 1.0)
    return untaught, clip_odds


def _made_by(config: TrainConfig, key: str, clips, sources: tuple[str, ...],
             engines_of: dict):
    """The ``(clips, sources)`` table of the train sources made by the engines of the
    config's filter ``key`` (:func:`tinysep.training.data.sources_made_by`). A filter that
    matches no train clip is refused: it would change nothing, most likely through a
    misspelt engine."""
    from tinysep.folder_writes import first_names
    from tinysep.metrics.by_engine import parse_engine_filter
    from tinysep.training.data import sources_made_by

    wanted = getattr(config, key)
    table = sources_made_by(clips, engines_of, parse_engine_filter(wanted), sources)
    if not table.any():
        made = sorted({f"{role}={engine}" for entry in engines_of.values()
                       for role, engine in entry.items() if engine})
        makers = first_names(made, 8) if made else "engines no splits.json there names"
        raise ValueError(f"{key} {wanted!r} matches no train clip of {config.data}; its songs "
                         f"were made by {makers}")
    return table


def train_step_function(model, optimizer, config: TrainConfig, average=None, teacher=None):
    """One optimizer step on a batch ``(mixture, sources, taught)``, as a traced function
    that returns the loss and whether it and every gradient were finite."""
    import tensorflow as tf

    from tinysep.training.spectral import batch_loss

    variables = model.trainable_variables

    @tf.function(autograph=False)  # straight-line code: skipping autograph halves tracing
    def step(mixture, sources, taught):
        with tf.GradientTape() as tape:
            loss = batch_loss(model, mixture, sources, config.loss, config.sdr_weight,
                              training=True, teacher=teacher,
                              teacher_weight=config.teacher_weight, taught=taught)
        grads = tape.gradient(loss, variables)
        finite = tf.math.is_finite(loss)
        for g in grads:
            finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
        # A non-finite step is applied too, but reported: training then stops without
        # saving, so nothing it touched reaches the disk.
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        if average is not None:
            average.update()
        return loss, finite

    return step


class _Session:
    """One call of :func:`train`: the model, optimizer and checkpoints of a run folder, and
    the run's state (``state.json``), which it commits after every epoch."""

    def __init__(self, config: TrainConfig, out: Path, state: dict, model, progress: bool):
        import tensorflow as tf
        import tf_keras as keras

        from tinysep.training.schedule import StepSchedule

        self.config, self.out, self.state, self.model = config, out, state, model
        self.progress = progress
        self.schedule = StepSchedule(config.learning_rate, config.lr_schedule,
                                     config.total_steps, config.warmup_steps,
                                     config.final_lr_fraction)
        self.optimizer = keras.optimizers.Adam(learning_rate=self.schedule)
        self.optimizer.build(model.trainable_variables)
        self.average = None
        tracked = {"model": model, "optimizer": self.optimizer}
        if config.weight_average > 0:
            from tinysep.training.averaging import WeightAverage

            self.average = WeightAverage(model, config.weight_average)
            tracked["average"] = self.average.variables
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(out / CHECKPOINT_DIR),
                                                  max_to_keep=CHECKPOINTS_KEPT)
        self.log = None  # opened by open_log, once the run folder is set up
        self.mixture_logged = False
        self.budget = None if config.max_minutes is None else 60.0 * config.max_minutes
        self.started = time.perf_counter()
        self.seconds_before = float(state["train_seconds"])
        self.valid_seconds = 0.0
        self.committed = copy.deepcopy(state)  # the state that matches the last checkpoint

    def start_clock(self) -> None:
        """Training time counts from here (data loading and tracing excluded)."""
        self.started = time.perf_counter()
        if self.budget is not None:
            self.schedule.set_time_fraction(self.elapsed() / self.budget)

    def open_log(self) -> None:
        """Start this session's TensorBoard events, with the run's hyper-parameters."""
        from tinysep.training.tensorboard import RunLog

        self.log = RunLog(self.out / LOG_DIR)
        self.log.hparams({**self.config.to_json(), "model_config": self.config.model_config()},
                         trial_id=self.out.name)

    def restore(self) -> None:
        """Load the checkpoint the state names (a fresh run has none); writes nothing, and a
        checkpoint that is damaged or does not fit this run's model is a TrainingError
        naming the run folder."""
        if not self.state["checkpoint"]:
            return
        import tensorflow as tf

        path = self.out / self.state["checkpoint"]
        failure = (f"cannot resume {self.out}: its checkpoint {path} does not restore into "
                   f"this run's model and optimizer")
        try:
            mismatches = self._shape_mismatches(path)
            if mismatches:
                more = f"; {len(mismatches) - 1} more differ" if len(mismatches) > 1 else ""
                raise TrainingError(f"{failure}: its weights have other shapes ({mismatches[0]}"
                                    f"{more}); the run folder is unchanged")
            self._restore_from(path)
        except (tf.errors.OpError, ValueError, AssertionError, KeyError, TypeError, IndexError,
                OSError) as exc:
            raise TrainingError(f"{failure} ({_first_line(exc)}); the run folder is "
                                f"unchanged") from None
        restored = int(self.optimizer.iterations.numpy())
        if restored != self.state["step"]:
            raise TrainingError(f"{path}: the optimizer restored at step {restored}, but "
                                f"{self.out / STATE_FILE} says {self.state['step']}")

    def _shape_mismatches(self, path: Path) -> list[str]:
        """``"name: shape in the checkpoint, shape here"`` for each variable that both the
        checkpoint ``path`` and this session hold with other shapes. Found before restoring,
        since a restore that fails on a shape leaves TensorFlow warnings behind."""
        import tensorflow as tf

        with tempfile.TemporaryDirectory() as folder:  # this session's variables, as saved
            ours = dict(tf.train.list_variables(self.checkpoint.write(f"{folder}/probe")))
        theirs = dict(tf.train.list_variables(str(path)))
        return [f"{name.removesuffix(VARIABLE_SUFFIX)}: {theirs[name]} in the checkpoint, "
                f"{shape} here"
                for name, shape in ours.items() if name in theirs and theirs[name] != shape]

    def _restore_from(self, path: Path) -> None:
        """Restore model, optimizer and weight average from the checkpoint ``path``."""
        import tensorflow as tf

        names = {name for name, _ in tf.train.list_variables(str(path))}
        if self.average is not None and not any(n.startswith("average/") for n in names):
            # the average is turned on by this resume: it starts from the restored weights
            tf.train.Checkpoint(model=self.model, optimizer=self.optimizer).restore(
                str(path)).assert_existing_objects_matched()
            self.average.restart()
        else:
            self.checkpoint.restore(str(path)).assert_existing_objects_matched()

    def elapsed(self) -> float:
        """Training seconds of the run so far, earlier sessions included."""
        return self.seconds_before + time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        """True when another validation would overrun ``max_minutes``."""
        return self.budget is not None and self.elapsed() + self.valid_seconds >= self.budget

    def stop_reason(self) -> str | None:
        if self.state["epoch"] >= self.config.epochs:
            return "finished"
        if self.config.patience > 0 and self.state["epochs_since_best"] >= self.config.patience:
            return "early-stopped"
        if self.out_of_time():
            return "time-budget"
        return None

    def fail(self, message: str) -> TrainingError:
        """Record the failure beside the last good checkpoint; the error to raise."""
        drop_staged_best(self.out)
        failed = {**copy.deepcopy(self.committed), "status": "failed", "stop_reason": message}
        write_json(self.out / STATE_FILE, failed)
        kept = (f"the last good checkpoint ({self.out / failed['checkpoint']}, epoch "
                f"{failed['epoch']}) and the best weights are kept; --resume continues from it"
                if failed["checkpoint"] else "no epoch had finished, so there is no checkpoint")
        return TrainingError(f"{message}; {kept}")

    def crashed(self, exc: Exception) -> TrainingError:
        """Record an unexpected error as a failure after the last finished epoch."""
        epoch = self.committed["epoch"] + 1
        return self.fail(f"training failed during epoch {epoch} "
                         f"({type(exc).__name__}: {_first_line(exc)})")

    def interrupted(self) -> TrainingError:
        """Record a stop by the user (Ctrl-C, SIGTERM) after the last finished epoch."""
        drop_staged_best(self.out)
        done = self.committed
        stopped = {**copy.deepcopy(done), "status": "stopped",
                   "stop_reason": f"interrupted during epoch {done['epoch'] + 1}"}
        write_json(self.out / STATE_FILE, stopped)
        if done["history"]:
            plot_history(done["history"], self.out / PLOT_FILE,
                         f"{self.config.model} {self.config.preset} ({self.out.name})")
        kept = (f"{done['epoch']} epoch(s), {done['step']} steps finished and are kept "
                f"(best epoch {done['best']['epoch']}); --resume continues from there"
                if done["checkpoint"] else "no epoch had finished, so nothing is kept")
        return TrainingInterrupted(f"training interrupted during epoch {done['epoch'] + 1}; "
                                   f"{kept}")

    def train_epoch(self, epoch: int, step_fn, batches,
                    stop_requested: threading.Event) -> tuple[list[float], bool]:
        """Up to ``steps_per_epoch`` steps; returns the losses and whether time ran out.

        The step bar is drawn on a terminal only: in a log the epoch line says it all.
        """
        from tinysep.progress import Progress

        losses: list[float] = []
        bar = Progress(self.config.steps_per_epoch, f"epoch {epoch}/{self.config.epochs}",
                       unit="step", enabled=self.progress and sys.stderr.isatty())
        try:
            for _ in range(self.config.steps_per_epoch):
                loss, finite = step_fn(*next(batches))
                loss = float(loss)
                if not bool(finite):
                    raise self.fail(f"the training loss (or its gradient) became {loss} at "
                                    f"step {self.state['step'] + 1} (epoch {epoch}); lower "
                                    f"--learning-rate or check the data")
                self.state["step"] += 1
                losses.append(loss)
                if self.budget is not None:
                    self.schedule.set_time_fraction(self.elapsed() / self.budget)
                self.log.scalar("train/loss", loss, self.state["step"])
                self.log.scalar("train/learning_rate",
                                self.schedule.value(self.state["step"] - 1), self.state["step"])
                bar.update(1)
                if stop_requested.is_set():  # a SIGTERM whose interrupt was swallowed
                    raise KeyboardInterrupt
                bar.postfix(f"loss {np.mean(losses[-50:]):.4g}")
                if self.out_of_time():
                    return losses, True
            return losses, False
        finally:
            bar.close()

    def log_clip(self, clip, step: int) -> None:
        """One validation clip's separated audio and spectrogram into TensorBoard."""
        from tinysep.models import separate

        length = min(len(clip.mixture), int(LOGGED_AUDIO_SECONDS * clip.sample_rate))
        mixture = clip.mixture[:length]
        estimates = separate(self.model, mixture)
        if not self.mixture_logged:  # the mixture does not change: once per session
            self.log.audio("valid_clip/mixture", mixture, clip.sample_rate, step)
            self.mixture_logged = True
        for name in estimates:
            self.log.audio(f"valid_clip/{name}", estimates[name], clip.sample_rate, step)
        self.log.spectrogram("valid_clip/spectrogram", [mixture, *estimates.values()], step)

    def end_epoch(self, epoch: int, losses: list[float], train_seconds: float, valid) -> None:
        """Validate, keep the best weights, checkpoint, log and commit the state; with a
        weight average, the average is what is validated and kept."""
        if not all(np.all(np.isfinite(w)) for w in self.model.get_weights()):
            raise self.fail(f"the weights became NaN or infinite in epoch {epoch}; lower "
                            f"--learning-rate or check the data")
        with (self.average.swapped_in() if self.average is not None
              else contextlib.nullcontext()):
            improved, entry = self._validate(epoch, losses, train_seconds, valid)
            save_last(self.model, self.out, self.config.model_config(), entry)
        saved = Path(self.manager.save(checkpoint_number=epoch))
        self.state["checkpoint"] = str(saved.relative_to(self.out))
        self.commit()
        promote_best(self.out)  # only now does the committed state name these weights
        print(_epoch_line(entry, improved, self.elapsed()), file=sys.stderr, flush=True)

    def _validate(self, epoch: int, losses: list[float], train_seconds: float,
                  valid) -> tuple[bool, dict]:
        """Score the model on ``valid``, keep it if best, log; whether it improved, and the
        epoch's history entry."""
        from tinysep.training.validation import NonFiniteOutput, validation_sdr

        start = time.perf_counter()
        try:
            sdr = validation_sdr(self.model, valid)
        except NonFiniteOutput as exc:
            raise self.fail(f"validation after epoch {epoch} failed: {exc}") from exc
        self.valid_seconds = time.perf_counter() - start
        state = self.state
        state["epoch"] = epoch
        entry = {
            "epoch": epoch,
            "step": state["step"],
            "steps": len(losses),
            "loss": float(np.mean(losses)),
            "learning_rate": self.schedule.value(state["step"] - 1),
            "valid_sdr": sdr,
            "train_seconds": train_seconds,
            "valid_seconds": self.valid_seconds,
        }
        state["history"].append(entry)
        best = state["best"]["valid_sdr"].get("mean")
        improved = sdr["mean"] is not None and (best is None or sdr["mean"] > best)
        if improved:
            save_best(self.model, self.out, self.config.model_config())
            state["best"] = {"epoch": epoch, "step": state["step"], "valid_sdr": sdr}
            state["epochs_since_best"] = 0
        else:
            state["epochs_since_best"] += 1
        self.log.scalar("epoch/loss", entry["loss"], state["step"])
        for key, value in sdr.items():
            if value is not None:
                self.log.scalar(f"valid/sdr_{key}", value, state["step"])
        self.log_clip(valid[0], state["step"])
        self.log.flush()
        return improved, entry

    def commit(self, stop_reason: str | None = None) -> None:
        """Write the state (after the checkpoint it names)."""
        self.state["train_seconds"] = self.elapsed()
        self.state["status"] = "running" if stop_reason is None else "stopped"
        self.state["stop_reason"] = stop_reason
        write_json(self.out / STATE_FILE, self.state)
        self.committed = copy.deepcopy(self.state)


def train(config: TrainConfig, out: str | Path, *, resume: bool = False,
          allow_changes: bool = False, progress: bool = True,
          command: str | None = None) -> TrainResult:
    """Train (or, with ``resume``, continue) the run in ``out``; see the module docstring.

    Raises :class:`TrainingError` for a diverged loss or a run folder that does not fit
    (not new or empty without ``resume``; missing, of a different config or with a
    damaged progress record or checkpoint with it; overlapping a folder the run reads),
    ValueError for bad data or config values. A refused run writes nothing.
    """
    import tf_keras as keras

    from tinysep.models import count_params, macs_per_hop, model_from_config
    from tinysep.models.registry import model_sources
    from tinysep.training.data import (
        chunk_samples,
        load_training_data,
        prefetched_batches,
        validation_clips,
    )

    out = Path(out)
    config.validate()
    model_config = config.model_config()
    state = check_folder(config, out, resume, allow_changes)  # before the (slow) data loading
    if resume:
        settle_staged_best(out, state)
    sources = model_sources(model_config)
    teacher = _load_teacher(config, sources)
    data = load_training_data(config.data, config.dataset, progress=progress,
                              valid_root=config.valid_data or None, sources=sources)
    valid = validation_clips(data.valid, config.valid_clips, config.valid_seconds,
                             config.valid_levels_db)
    untaught, clip_odds = _by_engine(config, data.train, sources)

    keras.utils.set_random_seed(config.seed)
    model = model_from_config(model_config)
    initial = None
    # a run stopped before its first checkpoint starts again from init_from, not at random
    if config.init_from and not state["checkpoint"]:
        initial = _load_initial_weights(model, model_config, config.init_from,
                                        config.init_matching)
        if "reframed_from" in initial:
            initial["input_norm_frames"] = _refit_input_norm(model, data.train)
            framing, pool = initial["reframed_from"]
            print(f"init from {config.init_from}: carried from framing {framing} (pool_above "
                  f"{pool}) to this model's; input normalisation measured on "
                  f"{initial['input_norm_frames']} frames", file=sys.stderr)
        if initial["layers_fresh"]:
            print(f"init from {config.init_from}: {initial['layers_copied']} layers copied, "
                  f"{len(initial['layers_fresh'])} start fresh: "
                  f"{', '.join(initial['layers_fresh'])}", file=sys.stderr)
    model_info = {"parameters": count_params(model), "macs_per_hop": macs_per_hop(model),
                  "sources": list(sources)}
    if initial is not None:
        model_info["init"] = initial
    session = _Session(config, out, state, model, progress)
    session.restore()  # before run.json records the resume: a failed restore changes nothing
    with removed_if_setup_fails(out, resume):
        prepare_folder(config, out, resume, allow_changes, data.fingerprint, command,
                       model_info, state)
        session.open_log()
    step_fn = train_step_function(model, session.optimizer, config, session.average, teacher)
    session.start_clock()
    # a fresh run makes at least one step whatever the budget; a resumed one may be done
    stop_reason = session.stop_reason() if state["step"] else None
    with (_terminate_as_interrupt() as stop_requested,
          prefetched_batches(data.train, state["step"], config.seed, config.batch_size,
                             chunk_samples(config.chunk_seconds), config.augment, sources,
                             untaught, clip_odds) as batches):
        try:
            while stop_reason is None:
                epoch = state["epoch"] + 1
                start = time.perf_counter()
                losses, out_of_time = session.train_epoch(epoch, step_fn, batches,
                                                          stop_requested)
                session.end_epoch(epoch, losses, time.perf_counter() - start, valid)
                stop_reason = "time-budget" if out_of_time else session.stop_reason()
        except KeyboardInterrupt:
            raise session.interrupted() from None
        except TrainingError:
            raise  # recorded where it was raised
        except Exception as exc:  # a bug, a full disk: the folder still says what finished
            print(f"tinysep train: {session.crashed(exc)}", file=sys.stderr)
            raise
    session.commit(stop_reason)
    if state["history"]:
        plot_history(state["history"], out / PLOT_FILE,
                     f"{config.model} {config.preset} ({out.name})")
    return TrainResult(out, stop_reason, state["epoch"], state["step"], state["train_seconds"],
                       state["best"]["epoch"], state["best"]["valid_sdr"], state["history"])


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a job scheduler, `kill`) stops training like Ctrl-C: the run folder then
    says what finished. Only the main thread can take signals; elsewhere nothing changes.
    Yields an event set by SIGTERM: an interrupt raised while Python runs a garbage
    collection callback is swallowed there, so the training loop checks it after each step."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def raise_interrupt(signum, frame):
        requested.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (TensorFlow's run on over many lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _epoch_line(entry: dict, improved: bool, total_seconds: float) -> str:
    sdr = entry["valid_sdr"]

    def fmt(value):
        return "  n/a" if value is None else f"{value:5.2f}"

    return (f"epoch {entry['epoch']:3d}  step {entry['step']:6d}  loss {entry['loss']:.4g}  "
            "valid SDR " + "".join(f"{k} {fmt(v)} " for k, v in sdr.items() if k != "mean")
            + f"mean {fmt(sdr['mean'])} dB{'  *best' if improved else ''}  "
            f"({entry['train_seconds']:.0f}+{entry['valid_seconds']:.0f} s, "
            f"total {total_seconds / 60:.1f} min)")
