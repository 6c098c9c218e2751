"""TensorBoard logs of a training run, written through TensorBoard's own summary API.

A run folder's ``logs/`` holds, per session of the run: the hyper-parameters (TensorBoard's
HParams tab), scalars every step (loss, learning rate) and every epoch (mean loss,
validation SDR), and each epoch one validation clip as audio (mixture and the model's
sources) and as a log-magnitude spectrogram image (mixture over vocals over
accompaniment). ``tensorboard --logdir RUN/logs`` shows them; :func:`read_scalars` and
:func:`read_tags` read them back (tests, reports).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from tinysep.quiet import native_stderr_captured

SPECTROGRAM_FLOOR_DB = -80.0  # the image's colour scale spans this far below its loudest bin
AUDIO_OUTPUTS = 1  # audio clips kept per tag and step


def _hparam_value(value) -> bool | int | float | str:
    """A TensorBoard HParams value (bool, number or string; anything else as JSON)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def flatten_hparams(values: Mapping, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as flat ``a.b`` HParams entries (None reads ``"none"``)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_hparams(value, f"{name}."))
        else:
            flat[name] = "none" if value is None else _hparam_value(value)
    return flat


def spectrogram_image(signals: list[np.ndarray]) -> np.ndarray:
    """Log-magnitude spectrograms of ``signals`` stacked top to bottom, low frequencies at
    the bottom of each, as one ``(height, width, 3)`` uint8 image (viridis colours)."""
    from matplotlib import colormaps

    from tinysep.dsp.stft import stft

    panels = [20.0 * np.log10(np.abs(stft(np.asarray(s, np.float32))).T[::-1] + 1e-8)
              for s in signals]
    top = max(float(p.max()) for p in panels)
    gap = np.full((2, panels[0].shape[1]), SPECTROGRAM_FLOOR_DB + top)
    stacked = np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=0)
    scaled = np.clip((stacked - top) / -SPECTROGRAM_FLOOR_DB + 1.0, 0.0, 1.0)
    rgb = colormaps["viridis"](scaled)[..., :3]
    return (255 * rgb).round().astype(np.uint8)


class RunLog:
    """TensorBoard event files of one training session (hyper-parameters, scalars, audio,
    spectrogram images)."""

    def __init__(self, folder: str | Path):
        self.writer = tf.summary.create_file_writer(str(folder))

    def hparams(self, values: Mapping, trial_id: str) -> None:
        """The run's hyper-parameters (nested mappings flattened to ``a.b`` names)."""
        from tensorboard.plugins.hparams import api as hp

        with self.writer.as_default():
            hp.hparams(flatten_hparams(values), trial_id=trial_id)

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self.writer.as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

    def audio(self, tag: str, audio: np.ndarray, sample_rate: int, step: int) -> None:
        """One mono clip (float samples in [-1, 1]; louder ones are clipped)."""
        clip = np.clip(np.asarray(audio, np.float32), -1.0, 1.0).reshape(1, -1, 1)
        # TensorFlow's wav encoder logs a oneDNN fallback note as an error line ("E0000 ...
        # DT_STRING") straight to file descriptor 2; the clip is written all the same
        with native_stderr_captured(), self.writer.as_default():
            tf.summary.audio(tag, clip, sample_rate, step=int(step),
                             max_outputs=AUDIO_OUTPUTS)

    def spectrogram(self, tag: str, signals: list[np.ndarray], step: int) -> None:
        """``signals`` as one stacked spectrogram image (see :func:`spectrogram_image`)."""
        image = spectrogram_image(signals)[None]
        with self.writer.as_default():
            tf.summary.image(tag, image, step=int(step))

    def flush(self) -> None:
        self.writer.flush()


def _events(folder: str | Path):
    """Every event of the event files in ``folder``, file by file (oldest first)."""
    from tensorflow.core.util.event_pb2 import Event

    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            yield Event.FromString(record.numpy())


def read_tags(folder: str | Path) -> dict[str, str]:
    """``{tag: TensorBoard plugin}`` (scalars, audio, images, hparams) in ``folder``."""
    tags: dict[str, str] = {}
    for event in _events(folder):
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin:
                tags.setdefault(value.tag, plugin)
    return tags


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the scalar summaries in ``folder``."""
    plugins: dict[str, str] = {}
    out: dict[str, list[tuple[int, float]]] = {}
    for event in _events(folder):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name:
                plugins[value.tag] = value.metadata.plugin_data.plugin_name
            if plugins.get(value.tag) == "scalars":
                number = float(tf.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((int(event.step), number))
    return out
