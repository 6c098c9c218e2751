"""Learning-rate schedules: constant (paper 2) or cosine, with a linear warm-up.

``constant`` and ``cosine`` are functions of the optimizer's step counter, which the
checkpoint restores, so a resumed run continues the schedule where it stopped.
``cosine-budget`` decays over whichever runs out first, the steps or the wall-clock
budget (``max_minutes``): on shared cores the number of steps a budget allows is not
known in advance, and a cosine cut short by the budget would end at a high rate. Its
time progress is fed in by the trainer (:meth:`StepSchedule.set_time_fraction`), so it
depends on the machine's speed and is not bit-for-bit reproducible.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from tinysep.training.choices import SCHEDULES


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``peak`` after a linear warm-up of ``warmup_steps``; ``cosine`` then decays to
    ``final_fraction * peak`` at ``total_steps`` (``cosine-budget``: or at the end of the
    time budget, if that comes first), ``constant`` stays at ``peak``."""

    def __init__(self, peak: float, kind: str, total_steps: int, warmup_steps: int = 0,
                 final_fraction: float = 0.0):
        if kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {kind!r}")
        self.peak, self.kind = float(peak), kind
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.final_fraction = float(final_fraction)
        self.time_fraction = tf.Variable(0.0, trainable=False, dtype=tf.float32)

    def set_time_fraction(self, fraction: float) -> None:
        """Share of the time budget used so far (``cosine-budget`` only)."""
        self.time_fraction.assign(min(max(float(fraction), 0.0), 1.0))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.peak, tf.float32)
        if self.kind in ("cosine", "cosine-budget"):
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            if self.kind == "cosine-budget":
                progress = tf.maximum(progress, self.time_fraction)
            final = self.peak * self.final_fraction
            rate = final + (self.peak - final) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        if self.warmup_steps > 0:
            rate *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return rate

    def value(self, step: int) -> float:
        """The rate at ``step`` as a Python float (for logs)."""
        return float(self(tf.constant(step)))

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "kind": self.kind,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_fraction": self.final_fraction,
        }
