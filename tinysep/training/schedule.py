"""Learning-rate schedules over optimizer steps: constant (paper 2) or cosine, with warm-up.

The schedule is a function of the optimizer's step counter, which the checkpoint
restores, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from tinysep.training.choices import SCHEDULES


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``peak`` after a linear warm-up of ``warmup_steps``; ``cosine`` then decays to
    ``final_fraction * peak`` at ``total_steps``, ``constant`` stays at ``peak``."""

    def __init__(self, peak: float, kind: str, total_steps: int, warmup_steps: int = 0,
                 final_fraction: float = 0.0):
        if kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {kind!r}")
        self.peak, self.kind = float(peak), kind
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.peak, tf.float32)
        if self.kind == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
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
