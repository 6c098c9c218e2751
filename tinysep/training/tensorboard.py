"""TensorBoard scalars written with TensorFlow alone (the ``tensorboard`` package, only
needed to *view* the logs, is not a dependency of the kit).

Each value is a ``tf.summary.write`` tensor summary tagged for TensorBoard's scalars
plugin, which is exactly what ``tf.summary.scalar`` writes when TensorBoard is installed.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework.summary_pb2 import SummaryMetadata

_SCALAR_METADATA = SummaryMetadata()
_SCALAR_METADATA.plugin_data.plugin_name = "scalars"


class ScalarLog:
    """Scalars (loss, learning rate, validation SDR) into TensorBoard event files."""

    def __init__(self, folder: str | Path):
        self.writer = tf.summary.create_file_writer(str(folder))

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self.writer.as_default():
            tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step),
                             metadata=_SCALAR_METADATA.SerializeToString())

    def flush(self) -> None:
        self.writer.flush()


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from the event files in ``folder`` (for tests, reports)."""
    from tensorflow.core.util.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((int(event.step), number))
    return out
