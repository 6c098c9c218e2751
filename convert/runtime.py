"""Run a deploy bundle on the host with the LiteRT interpreter, exactly as a board does.

:class:`BundleRunner` follows docs/bundle.md to the letter: the spectral input is
transformed in float32 and quantized (round half away from zero), masks are dequantized,
and after every invoke each state output is copied (or affinely re-quantized) into its
state input. :func:`separate_with_bundle` wraps it with the offline STFT (frame-identical
to the streaming STFT) for evaluation. :func:`run_whole_clip` runs a whole-clip model
(all frames in one invoke, see :func:`convert.quantize.quantize_whole_clip`) for
comparison, and :func:`measure_latency` times one hop on one core.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from convert.manifest import MANIFEST_FILE, read_manifest

DTYPES = {"int8": np.int8, "int16": np.int16, "float32": np.float32}
HOP_SECONDS = 128 / 16000


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, halves away from zero (C's ``roundf``)."""
    x = np.asarray(x, np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize(x: np.ndarray, entry: dict) -> np.ndarray:
    """Float values -> the tensor's dtype by its manifest entry (identity for float32)."""
    dtype = DTYPES[entry["dtype"]]
    if entry["dtype"] == "float32":
        return np.asarray(x, np.float32)
    info = np.iinfo(dtype)
    q = round_half_away(np.asarray(x, np.float64) / entry["scale"]) + entry["zero_point"]
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, entry: dict) -> np.ndarray:
    if entry["dtype"] == "float32":
        return np.asarray(q, np.float32)
    return ((np.asarray(q, np.float64) - entry["zero_point"]) * entry["scale"]).astype(np.float32)


def requantize(q_out: np.ndarray, state: dict) -> np.ndarray:
    """A state output's values in its state input's quantization (manifest ``states[i]``)."""
    source, target = state["output"], state["input"]
    if state["requantize"] == "copy":
        return np.asarray(q_out, DTYPES[target["dtype"]])
    if target["dtype"] == "float32" or source["dtype"] == "float32":
        return quantize(dequantize(q_out, source), target)
    info = np.iinfo(DTYPES[target["dtype"]])
    scaled = (np.asarray(q_out, np.float64) - source["zero_point"]) * (
        source["scale"] / target["scale"]
    )
    q = round_half_away(scaled) + target["zero_point"]
    return np.clip(q, info.min, info.max).astype(DTYPES[target["dtype"]])


def initial_state(entry: dict) -> np.ndarray:
    """The quantized value of 0.0: the tensor filled with its zero point."""
    dtype = DTYPES[entry["dtype"]]
    return np.full(entry["shape"], entry.get("zero_point", 0), dtype)


def apply_transform(magnitude: np.ndarray, transform: dict) -> np.ndarray:
    """The manifest's input transform of ``|X|`` in float32."""
    mag = np.maximum(np.asarray(magnitude, np.float32), np.float32(0))
    if transform.get("kind") == "none":
        return mag
    if transform.get("kind") == "log1p":
        return np.log1p(np.float32(transform["gain"]) * mag).astype(np.float32)
    raise ValueError(f"unknown input transform {transform!r}")


def _interpreter(model, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    from tinysep.quiet import quiet_runtime

    with quiet_runtime():  # without the "Created TensorFlow Lite XNNPACK delegate" line
        if isinstance(model, (bytes, bytearray)):
            interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
        else:
            interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


class BundleRunner:
    """One bundle loaded into an interpreter, with its states (one stream at a time)."""

    def __init__(self, bundle: str | Path, num_threads: int = 1):
        self.folder = Path(bundle)
        manifest = read_manifest(self.folder)
        self._load(self.folder / manifest["model"]["file"], manifest, num_threads)

    @classmethod
    def from_content(cls, content: bytes, manifest: dict, num_threads: int = 1) -> BundleRunner:
        """A runner over model bytes and their manifest (no bundle folder needed)."""
        runner = cls.__new__(cls)
        runner.folder = Path("<memory>")
        runner._load(content, manifest, num_threads)
        return runner

    def _load(self, model, manifest: dict, num_threads: int) -> None:
        self.manifest = manifest
        self.interpreter = _interpreter(model, num_threads)
        self.frames_per_invoke = int(manifest["audio"]["frames_per_invoke"])
        self.sources = list(manifest["sources"])
        self._check_tensors()
        self.reset()

    def _check_tensors(self) -> None:
        details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        m = self.manifest
        entries = [m["input"], m["output"]]
        for state in m["states"]:
            entries += [state["input"], state["output"]]
        for entry in entries:
            d = details.get(entry["index"])
            if d is None or list(d["shape"]) != list(entry["shape"]) or (
                np.dtype(d["dtype"]) != np.dtype(DTYPES[entry["dtype"]])
            ):
                raise ValueError(
                    f"{self.folder / MANIFEST_FILE}: tensor {entry['name']!r} (index "
                    f"{entry['index']}) does not match model.tflite"
                )

    def reset(self) -> None:
        """States back to the quantized zero (stream start / RESET_STATE)."""
        self.states = [initial_state(s["input"]) for s in self.manifest["states"]]

    def invoke(self, features: np.ndarray) -> np.ndarray:
        """One invoke: ``(K, 257)`` transformed features -> ``(K, 257, S)`` float masks."""
        m, interpreter = self.manifest, self.interpreter
        x = np.asarray(features, np.float32).reshape(m["input"]["shape"])
        interpreter.set_tensor(m["input"]["index"], quantize(x, m["input"]))
        for state, value in zip(m["states"], self.states, strict=True):
            interpreter.set_tensor(state["input"]["index"], value)
        interpreter.invoke()
        masks = dequantize(interpreter.get_tensor(m["output"]["index"]), m["output"])
        self.states = [
            requantize(interpreter.get_tensor(state["output"]["index"]), state)
            for state in m["states"]
        ]
        return masks[0]

    def run(self, features: np.ndarray) -> np.ndarray:
        """Masks ``(T, 257, S)`` for features ``(T, 257)`` from a fresh state; the tail is
        zero-padded to a whole invoke."""
        features = np.asarray(features, np.float32)
        k = self.frames_per_invoke
        n = features.shape[0]
        padded = np.zeros((-(-n // k) * k, features.shape[1]), np.float32)
        padded[:n] = features
        self.reset()
        masks = [self.invoke(padded[i : i + k]) for i in range(0, padded.shape[0], k)]
        return np.concatenate(masks, axis=0)[:n]

    def features(self, magnitude: np.ndarray) -> np.ndarray:
        return apply_transform(magnitude, self.manifest["input"]["transform"])

    def separate(self, mixture: np.ndarray) -> dict[str, np.ndarray]:
        """``{source: audio}`` for a mono 16 kHz mixture, aligned with it (offline framing)."""
        from tinysep.dsp import istft, magnitude, stft

        audio = np.asarray(mixture, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"mixture must be non-empty mono audio, got shape {audio.shape}")
        spec = stft(audio)
        masks = self.run(self.features(magnitude(spec)))
        return {
            source: istft(spec * masks[..., i], length=len(audio))
            for i, source in enumerate(self.sources)
        }


def separate_with_bundle(bundle: str | Path | BundleRunner, mixture: np.ndarray) -> dict:
    """Separate a mono 16 kHz ``mixture`` with a bundle (folder or loaded runner)."""
    runner = bundle if isinstance(bundle, BundleRunner) else BundleRunner(bundle)
    return runner.separate(mixture)


def run_whole_clip(content: bytes, features: np.ndarray) -> np.ndarray:
    """Masks from a whole-clip model (all frames in one invoke, zero states); ``features``
    are zero-padded or cut to the model's frame count."""
    interpreter = _interpreter(content, 1)
    runner = interpreter.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    feats = next(n for n in ins if n in ("features", "magnitude"))
    frames = int(ins[feats]["shape"][1])
    x = np.zeros((1, frames, features.shape[1]), np.float32)
    n = min(frames, len(features))
    x[0, :n] = features[:n]

    def entry(detail):
        scale, zero = detail["quantization"]
        dtype = {np.int8: "int8", np.int16: "int16"}.get(detail["dtype"], "float32")
        return {"dtype": dtype, "scale": scale, "zero_point": zero, "shape": detail["shape"]}

    inputs = {feats: quantize(x, entry(ins[feats]))}
    for name, detail in ins.items():
        if name != feats:
            inputs[name] = initial_state(entry(detail))
    out = runner(**inputs)
    return dequantize(out["masks"], entry(outs["masks"]))[0][: len(features)]


def measure_latency(bundle: str | Path | BundleRunner, invokes: int = 400,
                    warmup: int = 40) -> dict:
    """Host time per hop on one thread: ``invoke`` alone (what a C runtime pays) and the
    whole Python step (quantize, invoke, dequantize, state feedback); medians in us."""
    runner = bundle if isinstance(bundle, BundleRunner) else BundleRunner(bundle)
    k = runner.frames_per_invoke
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 3, (invokes + warmup, k, runner.manifest["input"]["shape"][-1]))
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
    from tinysep.evaluate import model_folder

    folder = model_folder(path)  # bundle/model.tflite names the bundle
    if (folder / MANIFEST_FILE).is_file():
        runner = BundleRunner(folder)
        return lambda clip: runner.separate(clip.mixture)
    from tinysep.evaluate import keras_model_separator

    return keras_model_separator(path)
