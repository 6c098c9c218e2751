"""An exponential moving average of a model's weights, kept beside the training.

A warm-started model's validation SDR swings by tenths of a dB from epoch to epoch as
the weights wander around a good point; their running average sits nearer its middle.
The average covers every floating-point weight (trainable ones and the normalisation
statistics), starts at the weights the run starts from (or, turned on by a resume, at the
weights it resumes from), and is checkpointed with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every training step."""

    def __init__(self, model, decay: float):
        import tensorflow as tf

        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay!r}")
        self.model = model
        self.decay = float(decay)
        self.averaged = [w for w in model.weights if w.dtype.is_floating]
        self.variables = [tf.Variable(w, trainable=False, name=f"average_{i}")
                          for i, w in enumerate(self.averaged)]

    def restart(self) -> None:
        """The average starts again from the model's weights."""
        for average, weight in zip(self.variables, self.averaged, strict=True):
            average.assign(weight)

    def update(self) -> None:
        """One step of the average (runs inside the compiled training step)."""
        for average, weight in zip(self.variables, self.averaged, strict=True):
            average.assign(self.decay * average + (1.0 - self.decay) * weight)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after."""
        own = [w.numpy() for w in self.averaged]
        for weight, average in zip(self.averaged, self.variables, strict=True):
            weight.assign(average)
        try:
            yield
        finally:
            for weight, value in zip(self.averaged, own, strict=True):
                weight.assign(value)
