"""A training run's configuration: everything that decides what the run computes.

``TrainConfig`` is saved in the run folder's ``run.json``; a resumed run may change only
the fields in ``RESUMABLE_CHANGES`` unless told otherwise (``config_differences``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from tinysep.data.augment import (
    DEFAULT_ENSEMBLE_DELAY_MS,
    DEFAULT_ENSEMBLE_DETUNE_CENTS,
    DEFAULT_ENSEMBLE_VOICES,
    DEFAULT_EQ_MAX_DB,
    DEFAULT_GAIN_RANGE,
    DEFAULT_SPEED_RANGE,
    check_settings,
)
from tinysep.data.clip import LEVEL_LIMITS_DB
from tinysep.dsp import SAMPLE_RATE
from tinysep.jsonfile import is_finite_number, is_whole_number
from tinysep.training.choices import LOSSES, SCHEDULES

# Fields a resumed run may change: how long it goes on, and where the (same) data lives.
RESUMABLE_CHANGES = frozenset({"epochs", "max_minutes", "data", "valid_data"})
MAX_OVERSAMPLE = 100.0  # the most times as often a clip may be drawn as another
MAX_CHUNK_SECONDS = 60.0  # a batch of training chunks is held in memory: longer is a typo
MAX_BATCH_SIZE = 1024  # chunks per batch, all held in memory at once: more is a typo
MAX_VALID_SECONDS = 3600.0  # longer than any song: a larger cut is a typo
MAX_SEED = 2**32 - 1  # the largest seed Keras' random generators take
DEFAULT_AUGMENT = {
    "random_offset": True,
    "random_gain": True,
    "gain_range": list(DEFAULT_GAIN_RANGE),
    "sign_flip": True,
    "remix": True,
    "remix_probability": 0.5,
    "solo_probability": 0.0,  # share of chunks of one source alone, the others silent (0: off)
    "stack_probability": 0.0,  # share of chunks whose band gets another song's band (0: off)
    "eq_probability": 0.0,  # share of sources given a random EQ (0: off)
    "eq_max_db": DEFAULT_EQ_MAX_DB,  # largest boost or cut of one random EQ band
    "level_range_db": [0.0, 0.0],  # random level of the whole chunk, dB (equal: off)
    "vocals_level_db": [0.0, 0.0],  # random level of the vocals against the band, dB (0, 0: off)
    "speed_probability": 0.0,  # share of clips played at a random speed (0: off)
    "speed_range": list(DEFAULT_SPEED_RANGE),  # playback-speed factors: pitch, formants and tempo
    "ensemble_probability": 0.0,  # share of sources played by an ensemble (0: off)
    "ensemble_voices": list(DEFAULT_ENSEMBLE_VOICES),  # voices in an ensemble, the source included
    "ensemble_detune_cents": DEFAULT_ENSEMBLE_DETUNE_CENTS,  # largest detuning of a copy
    "ensemble_delay_ms": DEFAULT_ENSEMBLE_DELAY_MS,  # largest delay of a copy
}


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or the run folder does not fit the request)."""


class TrainingInterrupted(TrainingError):
    """The user stopped training (Ctrl-C, SIGTERM); the run folder says what finished."""


@dataclass
class TrainConfig:
    """Everything that decides what a training run computes (saved in ``run.json``)."""

    model: str = "dualgate-tcn"
    preset: str = "tiny"
    options: dict = field(default_factory=dict)
    data: str = ""
    dataset: str = "auto"
    valid_data: str = ""  # validation (model selection) from this folder's valid split
    init_from: str = ""  # saved model folder whose weights start the run
    init_matching: bool = False  # init_from another architecture: copy the layers that match or fit
    # A saved model whose separations are a second target (knowledge distillation): the
    # loss is (1 - teacher_weight) x loss against the true sources + teacher_weight x the
    # same loss against the teacher's estimates.
    teacher: str = ""
    teacher_weight: float = 0.5
    # ROLE=ENGINE,... (as eval's --engines filter): chunks drawing a source those engines
    # made learn from the true sources alone, e.g. where the teacher is known to be weak.
    teacher_skip: str = ""
    # ROLE=ENGINE,...: train clips with a source those engines made are drawn
    # oversample_factor times as often as the others (a world the corpus holds little of).
    oversample: str = ""
    oversample_factor: float = 2.0
    epochs: int = 50
    steps_per_epoch: int = 200
    batch_size: int = 16
    chunk_seconds: float = 2.0
    learning_rate: float = 3e-4  # paper 2
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    loss: str = "l1"
    sdr_weight: float = 0.01
    augment: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_AUGMENT))
    seed: int = 0
    patience: int = 10  # epochs without a better validation SDR before stopping; 0: never
    valid_clips: int = 8
    valid_seconds: float = 10.0
    valid_levels_db: list = field(default_factory=lambda: [0.0])  # levels valid clips play at
    max_minutes: float | None = None
    # Exponential moving average of the weights, decay per step (0: off). With it,
    # validation, selection and the saved best weights use the average.
    weight_average: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = "config") -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: the training config must be an object, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown training field(s) {unknown}; "
                             f"known: {sorted(known)}")
        data = copy.deepcopy(data)
        if isinstance(data.get("augment"), dict):
            # a setting the config does not name is at its default (off for every setting
            # added since the first runs): a run stored before it existed trained without it
            data["augment"] = {**copy.deepcopy(DEFAULT_AUGMENT), **data["augment"]}
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_json({**self.to_json(), **changes})

    def validate(self) -> None:
        """Raise ValueError naming the first field of the wrong type or out of range."""
        self._check_names()
        self._check_counts()
        self._check_lengths()
        self._check_optimizer()
        self._check_augment()
        self._check_init_and_teacher()
        self._check_sampling()

    def _check_names(self) -> None:
        """Text fields (folders, names, choices) are strings; options and augment objects."""
        for key in ("model", "preset", "data", "dataset", "valid_data", "init_from", "teacher",
                    "teacher_skip", "oversample", "lr_schedule", "loss"):
            value = getattr(self, key)
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
        for key in ("options", "augment"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be an object of KEY: VALUE settings, got {value!r}")
        if not self.data:
            raise ValueError("data: a dataset folder is required")

    def _check_counts(self) -> None:
        """Epochs, steps, batch and clip counts, patience and the seed are whole numbers."""
        for key in ("epochs", "steps_per_epoch", "batch_size", "valid_clips"):
            value = getattr(self, key)
            if not is_whole_number(value) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be at most {MAX_BATCH_SIZE} (a batch of chunks is "
                             f"held in memory), got {self.batch_size!r}")
        for key in ("warmup_steps", "patience"):
            value = getattr(self, key)
            if not is_whole_number(value) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        if not is_whole_number(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, "
                             f"got {self.seed!r}")

    def _check_lengths(self) -> None:
        """Chunk and validation lengths within their bounds; the time budget, if any."""
        for key in ("chunk_seconds", "valid_seconds"):
            value = getattr(self, key)
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"{key} must be a positive number, got {value!r}")
        if self.chunk_seconds > MAX_CHUNK_SECONDS:
            raise ValueError(f"chunk_seconds must be at most {MAX_CHUNK_SECONDS:g} s (a batch "
                             f"of such chunks is held in memory), got {self.chunk_seconds!r}")
        check_valid_seconds(self.valid_seconds)
        budget = self.max_minutes
        if budget is not None and (not is_finite_number(budget) or budget <= 0):
            raise ValueError(f"max_minutes must be a positive number (or null: no budget), "
                             f"got {budget!r}")

    def _check_optimizer(self) -> None:
        """Learning rate, its schedule, the loss and the weight average."""
        if not is_finite_number(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a positive number, "
                             f"got {self.learning_rate!r}")
        if not (is_finite_number(self.weight_average) and 0.0 <= self.weight_average < 1.0):
            raise ValueError(f"weight_average is a decay per step in [0, 1) (0: off), got "
                             f"{self.weight_average!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine-budget" and self.max_minutes is None:
            raise ValueError("lr_schedule 'cosine-budget' decays over the time budget: "
                             "it needs max_minutes")
        if not (is_finite_number(self.final_lr_fraction)
                and 0.0 <= self.final_lr_fraction <= 1.0):
            raise ValueError(f"final_lr_fraction must be a number in [0, 1], "
                             f"got {self.final_lr_fraction!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not is_finite_number(self.sdr_weight) or self.sdr_weight < 0:
            raise ValueError(f"sdr_weight must be a number >= 0 (the weight of the SDR term), "
                             f"got {self.sdr_weight!r}")

    def _check_augment(self) -> None:
        """Known augmentation keys with values in range; the validation levels."""
        unknown = sorted(set(self.augment) - set(DEFAULT_AUGMENT))
        if unknown:
            raise ValueError(f"augment: unknown key(s) {unknown}; known: {sorted(DEFAULT_AUGMENT)}")
        check_valid_levels(self.valid_levels_db)
        try:
            check_settings(**self.augment)
        except ValueError as exc:
            raise ValueError(f"augment: {exc}") from None

    def _check_init_and_teacher(self) -> None:
        """The starting weights and the teacher of a distillation run."""
        if not isinstance(self.init_matching, bool):
            raise ValueError(f"init_matching must be true or false, got {self.init_matching!r}")
        if self.init_matching and not self.init_from:
            raise ValueError("init_matching copies layers from init_from: give init_from too")
        weight = self.teacher_weight
        if not (is_finite_number(weight) and 0.0 < weight <= 1.0):
            raise ValueError(f"teacher_weight is the share of the loss against the teacher, in "
                             f"(0, 1], got {weight!r}")
        if self.teacher_skip and not self.teacher:
            raise ValueError("teacher_skip names songs the teacher does not teach: give "
                             "teacher too")
        self._check_engine_filter("teacher_skip")

    def _check_sampling(self) -> None:
        """Which train clips are drawn more often, and how much more often."""
        self._check_engine_filter("oversample")
        factor = self.oversample_factor
        if not (is_finite_number(factor) and 0.0 < factor <= MAX_OVERSAMPLE):
            raise ValueError(f"oversample_factor is how many times as often the oversampled "
                             f"clips are drawn, in (0, {MAX_OVERSAMPLE:g}], got {factor!r}")

    def _check_engine_filter(self, key: str) -> None:
        """A ROLE=ENGINE,... field, when set, parses."""
        from tinysep.metrics.by_engine import parse_engine_filter

        if getattr(self, key):
            try:
                parse_engine_filter(getattr(self, key))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def model_config(self) -> dict:
        from tinysep.models import make_config

        return make_config(self.model, self.preset, **self.options)


def config_differences(stored: TrainConfig, given: TrainConfig,
                       allowed: frozenset[str] = RESUMABLE_CHANGES) -> list[str]:
    """``"field: stored X, given Y"`` for every field that differs and may not change."""
    a, b = stored.to_json(), given.to_json()
    return [f"{key}: stored {a[key]!r}, given {b[key]!r}"
            for key in a if key not in allowed and a[key] != b[key]]


def check_valid_seconds(seconds: float) -> None:
    """Raise ValueError unless validation clips cut to ``seconds`` keep the samples BSS-eval
    scores and stay within :data:`MAX_VALID_SECONDS`."""
    from tinysep.metrics.bss import MIN_SAMPLES  # imported here: the metrics load slowly

    if seconds > MAX_VALID_SECONDS:
        raise ValueError(f"valid_seconds must be at most {MAX_VALID_SECONDS:g} s, "
                         f"got {seconds!r}")
    if int(seconds * SAMPLE_RATE) < MIN_SAMPLES:  # the cut tinysep.training.data makes
        raise ValueError(f"valid_seconds must be at least {MIN_SAMPLES / SAMPLE_RATE:g} s (the "
                         f"{MIN_SAMPLES} samples BSS-eval scores), got {seconds!r}")


def check_valid_levels(levels) -> None:
    """Raise ValueError unless ``levels`` is a non-empty list of levels in dB within
    :data:`~tinysep.data.clip.LEVEL_LIMITS_DB` (the levels validation clips play at)."""
    low, high = LEVEL_LIMITS_DB
    if (not isinstance(levels, list) or not levels
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and low <= v <= high for v in levels)):
        raise ValueError(f"valid_levels_db must be a list of levels in dB from {low:g} to "
                         f"{high:g}, got {levels!r}")
