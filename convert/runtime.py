"""Run a deploy bundle on the host: the board agent's own pipeline on the LiteRT interpreter.

:class:`BundleRunner` wraps :class:`firmware_host.board.pipeline.StreamingSeparator`, the code
a board runs, around an interpreter of this host: the same bundle parse, input features,
quantization, state carrying, streaming STFT and int16 output, so a host run equals a board
run on the same runtime and kernels bit for bit. :meth:`BundleRunner.invoke` and
:meth:`BundleRunner.run` take model-input frames (for comparisons with other model forms),
:meth:`BundleRunner.separate` a float mixture. :func:`run_whole_clip` runs a whole-clip model
(all frames in one invoke, see :func:`convert.quantize.quantize_whole_clip`) for comparison,
and :func:`measure_latency` times one hop on one core.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from firmware_host.board.model_check import check_model
from firmware_host.board.pipeline import PCM_SCALE, StreamingSeparator, to_pcm
from firmware_host.bundle.features import input_features
from firmware_host.bundle.layout import HOP_SAMPLES, MANIFEST_FILE, SAMPLE_RATE
from firmware_host.bundle.manifest import Bundle, read_bundle
from firmware_host.bundle.quantization import DTYPES
from firmware_host.bundle.tensors import TensorSpec

HOP_SECONDS = HOP_SAMPLES / SAMPLE_RATE
MEMORY_BUNDLE = "<memory>"  # the folder name of a runner made from model bytes


def host_interpreter(model, num_threads: int = 1):
    """A LiteRT interpreter with tensors allocated, for a model file path or its bytes."""
    from ai_edge_litert.interpreter import Interpreter

    from tinysep.quiet import quiet_runtime

    where = MEMORY_BUNDLE if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        with quiet_runtime():  # without the "Created TensorFlow Lite XNNPACK delegate" line
            if isinstance(model, (bytes, bytearray)):
                interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
            else:
                interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:  # not a flatbuffer, an op it lacks, ...
        kind = ValueError if isinstance(exc, ValueError) else RuntimeError
        raise kind(f"{where}: the TFLite interpreter cannot load it ({exc})") from None
    return interpreter


def _as_json(value):
    """A JSON object or list for a mapping or sequence that is not a dict or list."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    raise TypeError(f"a manifest holds JSON values only, not {type(value).__name__}")


class BundleRunner:
    """One bundle on one interpreter of this host, with its states (one stream at a time).

    ``bundle``: a bundle folder or an already read :class:`Bundle`; ``interpreter``: one made
    by the caller (another runtime or kernels), else LiteRT's with ``num_threads``.
    """

    def __init__(self, bundle: str | Path | Bundle, num_threads: int = 1,
                 interpreter=None) -> None:
        bundle = bundle if isinstance(bundle, Bundle) else read_bundle(str(bundle))
        if interpreter is None:
            interpreter = host_interpreter(bundle.model_path, num_threads)
        self._load(bundle, interpreter)

    @classmethod
    def from_content(cls, content: bytes, manifest: dict, num_threads: int = 1) -> BundleRunner:
        """A runner over model bytes and their manifest (no bundle folder needed). The manifest
        goes through JSON as a file would, so mappings and sequences of any kind (a Keras
        model's tracked config) are read as JSON objects and lists."""
        text = json.dumps(manifest, default=_as_json)
        bundle = Bundle(MEMORY_BUNDLE, json.loads(text), text)
        runner = cls.__new__(cls)
        runner._load(bundle, host_interpreter(content, num_threads))
        return runner

    def _load(self, bundle: Bundle, interpreter) -> None:
        check_model(bundle, interpreter)
        self.bundle = bundle
        self.folder = Path(bundle.folder)
        self.manifest = bundle.manifest
        self.frames_per_invoke = bundle.frames_per_invoke
        self.sources = list(bundle.sources)
        self.separator = StreamingSeparator(bundle, interpreter)

    @property
    def interpreter(self):
        """The interpreter the pipeline invokes (replaceable, e.g. by a timing wrapper)."""
        return self.separator.interpreter

    @interpreter.setter
    def interpreter(self, interpreter) -> None:
        self.separator.interpreter = interpreter

    def reset(self) -> None:
        """States and STFT buffers back to zero (stream start / RESET_STATE)."""
        self.separator.reset()

    def features(self, magnitude: np.ndarray) -> np.ndarray:
        """The model input ``(T, features)`` for float32 magnitudes ``|X|`` ``(T, bins)``: the
        manifest's transform (and pooling), as the board computes it."""
        bundle = self.bundle
        return input_features(magnitude, bundle.transform_kind, bundle.transform_gain,
                              bundle.pool_above)

    def bin_masks(self, masks: np.ndarray) -> np.ndarray:
        """The model's masks ``(..., features, S)`` on every bin ``(..., bins, S)`` (each
        pooled pair's masks on both of its bins), as the board applies them."""
        return self.separator.bin_masks(masks)

    def invoke(self, features: np.ndarray) -> np.ndarray:
        """One invoke: ``(K, features)`` model-input frames -> the model's ``(K, features, S)``
        float masks (:meth:`bin_masks` spreads them to every bin)."""
        return self.separator.invoke_features(features)[0]

    def run(self, features: np.ndarray) -> np.ndarray:
        """The model's masks ``(T, features, S)`` for model-input frames ``(T, features)`` from
        a fresh state; the tail is zero-padded to a whole invoke."""
        features = np.asarray(features, np.float32)
        k = self.frames_per_invoke
        n = features.shape[0]
        padded = np.zeros((-(-n // k) * k, features.shape[1]), np.float32)
        padded[:n] = features
        self.reset()
        masks = [self.invoke(padded[i : i + k]) for i in range(0, padded.shape[0], k)]
        return np.concatenate(masks, axis=0)[:n]

    def stream(self, pcm: np.ndarray, chunk_samples: int | None = None) -> np.ndarray:
        """int16 sources ``(S, len(pcm))`` for int16 ``pcm``, aligned with it: the stream runs
        from a fresh state in chunks of ``chunk_samples`` (a whole number of hops; the whole
        clip at once by default) and is flushed with the pipeline's delay of silence."""
        pcm = np.asarray(pcm, dtype=np.int16)
        delay = self.bundle.delay_samples
        hop = self.bundle.hop
        chunk = chunk_samples or -(-(pcm.size + delay) // hop) * hop
        if chunk % hop:
            raise ValueError(f"chunk_samples {chunk} is not a whole number of {hop}-sample hops")
        total = -(-(pcm.size + delay) // chunk) * chunk
        padded = np.zeros(total, dtype=np.int16)
        padded[: pcm.size] = pcm
        self.separator.reset()
        pieces = [
            self.separator.process(padded[start : start + chunk])[0]
            for start in range(0, total, chunk)
        ]
        return np.concatenate(pieces, axis=1)[:, delay : delay + pcm.size]

    def separate(self, mixture: np.ndarray) -> dict[str, np.ndarray]:
        """``{source: float32 audio}`` for a mono 16 kHz float mixture, aligned with it: the
        mixture as int16 through :meth:`stream`, as a board receives and returns it."""
        audio = np.asarray(mixture, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"mixture must be non-empty mono audio, got shape {audio.shape}")
        separated = self.stream(to_pcm(audio)).astype(np.float32) / np.float32(PCM_SCALE)
        return {source: separated[i] for i, source in enumerate(self.sources)}


def separate_with_bundle(bundle: str | Path | BundleRunner, mixture: np.ndarray) -> dict:
    """Separate a mono 16 kHz ``mixture`` with a bundle (folder or loaded runner)."""
    runner = bundle if isinstance(bundle, BundleRunner) else BundleRunner(bundle)
    return runner.separate(mixture)


def tensor_spec(detail: dict, name: str = "") -> TensorSpec:
    """The bundle contract's record of an interpreter tensor (an entry of
    ``get_input_details()``), for models that come without a manifest."""
    dtype = np.dtype(detail["dtype"]).name
    if dtype not in DTYPES:
        raise ValueError(f"tensor {name or detail.get('name')!r} has dtype {dtype}; a "
                         f"bundle's inputs and outputs are one of {sorted(DTYPES)}")
    scale = zero_point = None
    if dtype != "float32":
        scale, zero_point = detail.get("quantization", (0.0, 0))
        scale, zero_point = float(scale), int(zero_point)
    shape = [int(d) for d in detail["shape"]]
    return TensorSpec(name or detail.get("name", ""), int(detail["index"]), shape, dtype,
                      scale, zero_point)


def run_whole_clip(content: bytes, features: np.ndarray) -> np.ndarray:
    """The model's masks (one per input position) from a whole-clip model (all frames in
    one invoke, zero states); ``features`` are zero-padded or cut to the model's frame count."""
    interpreter = host_interpreter(content, 1)
    runner = interpreter.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    feats = next(n for n in ins if n in ("features", "magnitude"))
    frames = int(ins[feats]["shape"][1])
    x = np.zeros((1, frames, features.shape[1]), np.float32)
    n = min(frames, len(features))
    x[0, :n] = features[:n]
    inputs = {feats: tensor_spec(ins[feats], feats).quantize(x)}
    for name, detail in ins.items():
        if name != feats:
            inputs[name] = tensor_spec(detail, name).zero()
    out = runner(**inputs)
    masks = tensor_spec(outs["masks"], "masks").dequantize(out["masks"])
    return masks[0][: len(features)]


def measure_latency(bundle: str | Path | BundleRunner, invokes: int = 400,
                    warmup: int = 40) -> dict:
    """Host time per hop on one thread: ``invoke`` alone (what a C runtime pays) and the
    whole Python step (quantize, invoke, dequantize, state feedback); medians in us."""
    runner = bundle if isinstance(bundle, BundleRunner) else BundleRunner(bundle)
    k = runner.frames_per_invoke
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 3, (invokes + warmup, k, runner.bundle.n_features))
    invoke_s, step_s = [], []
    for i in range(invokes + warmup):
        start = time.perf_counter()
        runner.invoke(frames[i])
        step = time.perf_counter() - start
        start = time.perf_counter()
        runner.interpreter.invoke()
        bare = time.perf_counter() - start
        if i >= warmup:
            step_s.append(step)
            invoke_s.append(bare)
    invoke_us = float(np.median(invoke_s)) * 1e6
    step_us = float(np.median(step_s)) * 1e6
    return {
        "frames_per_invoke": k,
        "invoke_us": invoke_us,
        "invoke_us_per_hop": invoke_us / k,
        "step_us_per_hop": step_us / k,
        "realtime_factor": HOP_SECONDS * 1e6 / (invoke_us / k),
        "threads": 1,
    }


def separator_for_path(path: str):
    """``tinysep eval --method model:PATH``: a bundle folder runs on the host interpreter,
    a saved Keras model folder runs in float."""
    from tinysep.methods import keras_model_separator, model_folder

    folder = model_folder(path)  # bundle/model.tflite names the bundle
    if (folder / MANIFEST_FILE).is_file():
        runner = BundleRunner(folder)
        return lambda clip: runner.separate(clip.mixture)
    return keras_model_separator(path)
