"""Read a deploy bundle (docs/bundle.md) and check that its manifest fits its model.

``read_bundle`` parses ``manifest.json`` with the JSON parser only, checks every field the
agent uses (naming the field and what was expected), and verifies the model file's size and
sha256. ``check_model`` compares the manifest's tensors with a loaded interpreter: index,
shape, dtype, and (unless told otherwise) scale and zero point. Quantization follows the
contract: ``q = clip(round_half_away(x / scale) + zero_point)``, ``x = (q - zero_point) * scale``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

FORMAT = "tinysep-bundle"
FORMAT_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
EDGETPU_REPORT = "edgetpu_report.json"
DTYPES = {
    "int8": (np.int8, -128, 127),
    "int16": (np.int16, -32768, 32767),
    "float32": (np.float32, None, None),
}
TRANSFORMS = ("log1p", "none")
REQUANTIZE = ("copy", "affine")
SCALE_RTOL = 1e-6
MAX_PROBLEMS_SHOWN = 4


class BundleError(ValueError):
    """A bundle that cannot be used: the text names the file and field and what was expected."""


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (float64 math, exact for |x| < 2**52)."""
    values = np.asarray(values, dtype=np.float64)
    return np.copysign(np.floor(np.abs(values) + 0.5), values)


def sha256_of(path: str) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


class TensorSpec:
    """One tensor entry of the manifest: interpreter index, shape, dtype, quantization."""

    def __init__(self, name, index, shape, dtype, scale=None, zero_point=None, position=None):
        self.name = name
        self.index = index
        self.position = position  # place among the model's inputs or outputs, when known
        self.shape = tuple(shape)
        self.dtype = dtype
        self.scale = scale
        self.zero_point = zero_point
        self.np_dtype, self.low, self.high = DTYPES[dtype]

    @property
    def quantized(self) -> bool:
        return self.dtype != "float32"

    @classmethod
    def from_json(cls, entry, where: str) -> TensorSpec:
        """Parse a manifest tensor entry; ``where`` names it in errors (e.g. ``input``)."""
        if not isinstance(entry, dict):
            raise BundleError(f"{where} must be a tensor entry (a JSON object), got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise BundleError(f"{where}.name must be a non-empty string, got {name!r}")
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BundleError(f"{where}.index must be a tensor index >= 0, got {index!r}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise BundleError(f"{where}.shape must be a list of positive integers, got {shape!r}")
        dtype = entry.get("dtype")
        if dtype not in DTYPES:
            raise BundleError(f"{where}.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        scale = zero_point = None
        if dtype != "float32":
            scale = entry.get("scale")
            if (
                not isinstance(scale, (int, float))
                or isinstance(scale, bool)
                or not (math.isfinite(scale) and scale > 0)
            ):
                raise BundleError(f"{where}.scale must be a positive number, got {scale!r}")
            zero_point = entry.get("zero_point")
            low, high = DTYPES[dtype][1:]
            if not isinstance(zero_point, int) or not low <= zero_point <= high:
                raise BundleError(
                    f"{where}.zero_point must be an integer in {low}..{high}, got {zero_point!r}"
                )
            scale = float(scale)
        position = entry.get("position")
        if position is not None and (not isinstance(position, int) or position < 0):
            raise BundleError(f"{where}.position must be an integer >= 0, got {position!r}")
        return cls(name, index, shape, dtype, scale, zero_point, position)

    def to_json(self) -> dict:
        entry = {"name": self.name, "index": self.index, "shape": list(self.shape)}
        if self.position is not None:
            entry["position"] = self.position
        entry["dtype"] = self.dtype
        if self.quantized:
            entry["scale"] = self.scale
            entry["zero_point"] = self.zero_point
        return entry

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values -> stored tensor values (identity for float32 tensors)."""
        if not self.quantized:
            return np.asarray(values, dtype=np.float32)
        scaled = np.asarray(values, dtype=np.float32).astype(np.float64) / self.scale
        q = round_half_away(scaled) + self.zero_point
        return np.clip(q, self.low, self.high).astype(self.np_dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Stored tensor values -> float32."""
        if not self.quantized:
            return np.asarray(values, dtype=np.float32)
        shifted = np.asarray(values).astype(np.float32) - np.float32(self.zero_point)
        return shifted * np.float32(self.scale)

    def zero(self) -> np.ndarray:
        """The stored value of 0.0 everywhere (a state before the first invoke)."""
        fill = self.zero_point if self.quantized else 0.0
        return np.full(self.shape, fill, dtype=self.np_dtype)

    def describe(self) -> str:
        text = f"{self.name} (index {self.index}) {self.dtype} {list(self.shape)}"
        if self.quantized:
            text += f" scale {self.scale:.9g} zero_point {self.zero_point}"
        return text


class StatePair:
    """A state input fed with a state output of the previous invoke (``copy`` or ``affine``)."""

    def __init__(self, input_spec: TensorSpec, output_spec: TensorSpec, requantize: str):
        self.input = input_spec
        self.output = output_spec
        self.requantize = requantize

    def carry(self, stored_output: np.ndarray) -> np.ndarray:
        """The next value of the state input, from the state output just produced.

        ``affine``: ``q_in = clip(round((q_out - zp_out) * s_out / s_in) + zp_in)``.
        """
        if self.requantize == "copy":  # interpreters hand out copies: no second copy needed
            return np.asarray(stored_output, dtype=self.input.np_dtype)
        if not (self.input.quantized and self.output.quantized):
            return self.input.quantize(self.output.dequantize(stored_output))
        value = (stored_output.astype(np.float64) - self.output.zero_point) * self.output.scale
        q = round_half_away(value / self.input.scale) + self.input.zero_point
        return np.clip(q, self.input.low, self.input.high).astype(self.input.np_dtype)


def _requantize_rule(pair_in: TensorSpec, pair_out: TensorSpec) -> str:
    same = (
        pair_in.dtype == pair_out.dtype
        and pair_in.zero_point == pair_out.zero_point
        and (pair_in.scale == pair_out.scale or not pair_in.quantized)
    )
    return "copy" if same else "affine"


def _get(section, key: str, where: str):
    if not isinstance(section, dict) or key not in section:
        raise BundleError(f"{where}.{key} is missing")
    return section[key]


def _positive_int(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BundleError(f"{where} must be a positive integer, got {value!r}")
    return value


def _measured_arena(entry, where: str):
    """``arena_tflite_micro.bytes`` (the arena TFLite Micro allocated the model in at export),
    or None when the export could not measure it (null entry, or ``bytes`` null)."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise BundleError(
            f"{where}: arena_tflite_micro must be an object or null, got {type(entry).__name__}"
        )
    value = entry.get("bytes")
    if value is None:
        return None
    return _positive_int(value, where + ": arena_tflite_micro.bytes")


class Bundle:
    """A parsed, checked bundle folder (see ``read_bundle``)."""

    def __init__(self, folder: str, manifest: dict, text: str):
        where = os.path.join(folder, MANIFEST_FILE)
        self.folder = folder
        self.manifest = manifest
        self.manifest_text = text
        self.manifest_path = where
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{where}: format must be {FORMAT!r}, got {manifest.get('format')!r}")
        version = manifest.get("format_version")
        if version not in FORMAT_VERSIONS:
            raise BundleError(
                f"{where}: format_version {version!r} is not supported by this agent "
                f"(it reads {', '.join(str(v) for v in FORMAT_VERSIONS)})"
            )
        model = _get(manifest, "model", where)
        self.model_file = _get(model, "file", where + ": model")
        if (
            not isinstance(self.model_file, str)
            or os.path.basename(self.model_file) != self.model_file
            or self.model_file in ("", ".", "..")
        ):
            raise BundleError(
                f"{where}: model.file must be a plain file name inside the bundle, "
                f"got {self.model_file!r}"
            )
        self.model_path = os.path.join(folder, self.model_file)
        self.model_sha256 = str(_get(model, "sha256", where + ": model")).lower()
        if len(self.model_sha256) != 64 or any(
            c not in "0123456789abcdef" for c in self.model_sha256
        ):
            raise BundleError(f"{where}: model.sha256 must be 64 hex digits")
        self.model_bytes = _positive_int(
            _get(model, "bytes", where + ": model"), where + ": model.bytes"
        )

        audio = _get(manifest, "audio", where)
        at = where + ": audio"
        self.sample_rate = _positive_int(_get(audio, "sample_rate", at), at + ".sample_rate")
        self.n_fft = _positive_int(_get(audio, "n_fft", at), at + ".n_fft")
        self.hop = _positive_int(_get(audio, "hop_samples", at), at + ".hop_samples")
        if self.n_fft % self.hop or self.n_fft % 2:
            raise BundleError(
                f"{at}: n_fft ({self.n_fft}) must be even and a multiple of "
                f"hop_samples ({self.hop})"
            )
        self.frames_per_invoke = _positive_int(
            _get(audio, "frames_per_invoke", at), at + ".frames_per_invoke"
        )
        self.analysis_window = _get(audio, "analysis_window", at)
        self.synthesis_window = _get(audio, "synthesis_window", at)
        self.n_bins = self.n_fft // 2 + 1

        sources = _get(manifest, "sources", where)
        if (
            not isinstance(sources, list)
            or not sources
            or not all(isinstance(s, str) and s for s in sources)
        ):
            raise BundleError(
                f"{where}: sources must be a non-empty list of names, got {sources!r}"
            )
        self.sources = list(sources)

        self.input = TensorSpec.from_json(_get(manifest, "input", where), where + ": input")
        transform = manifest["input"].get("transform", {"kind": "none"})
        kind = transform.get("kind") if isinstance(transform, dict) else None
        if kind not in TRANSFORMS:
            raise BundleError(
                f"{where}: input.transform.kind must be one of {TRANSFORMS}, got {kind!r}"
            )
        self.transform_kind = kind
        self.transform_gain = 1.0
        if kind == "log1p":
            gain = transform.get("gain")
            if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not gain > 0:
                raise BundleError(
                    f"{where}: input.transform.gain must be a positive number, got {gain!r}"
                )
            self.transform_gain = float(gain)
        expected_in = (1, self.frames_per_invoke, self.n_bins)
        if self.input.shape != expected_in:
            raise BundleError(
                f"{where}: input.shape must be {list(expected_in)} (frames_per_invoke, n_fft/2+1), "
                f"got {list(self.input.shape)}"
            )
        self.output = TensorSpec.from_json(_get(manifest, "output", where), where + ": output")
        expected_out = expected_in + (len(self.sources),)
        if self.output.shape != expected_out:
            raise BundleError(
                f"{where}: output.shape must be {list(expected_out)} (one mask per source), "
                f"got {list(self.output.shape)}"
            )

        states = manifest.get("states", [])
        if not isinstance(states, list):
            raise BundleError(f"{where}: states must be a list, got {type(states).__name__}")
        self.states = []
        for number, entry in enumerate(states):
            sw = f"{where}: states[{number}]"
            pair_in = TensorSpec.from_json(_get(entry, "input", sw), sw + ".input")
            pair_out = TensorSpec.from_json(_get(entry, "output", sw), sw + ".output")
            if pair_in.shape != pair_out.shape:
                raise BundleError(
                    f"{sw}: input shape {list(pair_in.shape)} differs from output shape "
                    f"{list(pair_out.shape)}"
                )
            rule = entry.get("requantize", _requantize_rule(pair_in, pair_out))
            if rule not in REQUANTIZE:
                raise BundleError(f"{sw}.requantize must be one of {REQUANTIZE}, got {rule!r}")
            if rule == "copy" and _requantize_rule(pair_in, pair_out) != "copy":
                raise BundleError(
                    f"{sw}: requantize 'copy' needs the same dtype, scale and zero point on "
                    f"both sides ({pair_in.describe()} vs {pair_out.describe()})"
                )
            self.states.append(StatePair(pair_in, pair_out, rule))
        indices = [self.input.index, self.output.index]
        indices += [p.input.index for p in self.states] + [p.output.index for p in self.states]
        if len(set(indices)) != len(indices):
            raise BundleError(f"{where}: two tensor entries share one interpreter index")
        self.arena_tflite_micro = _measured_arena(manifest.get("arena_tflite_micro"), where)

    @property
    def delay_samples(self) -> int:
        """How far the separated stream lags the input: n_fft - hop + (K - 1) * hop."""
        return self.n_fft - self.hop + (self.frames_per_invoke - 1) * self.hop

    def input_specs(self) -> list:
        """The manifest's model inputs: the spectral input, then the state inputs."""
        return [self.input] + [p.input for p in self.states]

    def output_specs(self) -> list:
        """The manifest's model outputs: the masks, then the state outputs."""
        return [self.output] + [p.output for p in self.states]

    def bind_by_position(self, interpreter) -> None:
        """Point every tensor entry at the interpreter tensor in the same input/output place.

        For another build of the same model whose tensor indices differ (the Edge TPU
        compiler's output keeps the order of inputs and outputs, not the indices).
        """
        inputs = list(interpreter.get_input_details())
        outputs = list(interpreter.get_output_details())
        for specs, details, kind in (
            (self.input_specs(), inputs, "input"),
            (self.output_specs(), outputs, "output"),
        ):
            for spec in specs:
                if spec.position is None or spec.position >= len(details):
                    raise BundleError(
                        f"{self.manifest_path}: {spec.name} has no usable position "
                        f"({spec.position!r}) among the model's {len(details)} {kind}s"
                    )
                spec.index = int(details[spec.position]["index"])

    def compiled_edgetpu_model(self) -> str | None:
        """Path of the Edge TPU compiler's output in the bundle, if the exporter ran it."""
        report_path = os.path.join(self.folder, EDGETPU_REPORT)
        try:
            with open(report_path, "rb") as handle:
                report = json.loads(handle.read().decode("utf-8"))
            name = report["compiler"]["compiled_model"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(name, str) or os.path.basename(name) != name or not name:
            return None
        path = os.path.join(self.folder, name)
        return path if os.path.isfile(path) else None

    def verify_model_file(self, path: str | None = None) -> str:
        """Check size and sha256 of the model file against the manifest; returns the sha256."""
        path = path or self.model_path
        if not os.path.isfile(path):
            raise BundleError(
                f"{path} is missing (the manifest names model.file {self.model_file!r})"
            )
        size = os.path.getsize(path)
        if size != self.model_bytes:
            raise BundleError(
                f"{path} has {size} bytes, {self.manifest_path} says model.bytes {self.model_bytes}"
            )
        digest = sha256_of(path)
        if digest != self.model_sha256:
            raise BundleError(
                f"{path} has sha256 {digest}, {self.manifest_path} says model.sha256 "
                f"{self.model_sha256}: the manifest does not belong to this model"
            )
        return digest


def read_bundle(folder: str, verify_model: bool = True) -> Bundle:
    """Parse and check ``folder/manifest.json`` (and the model's size and sha256 if asked)."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise BundleError(f"bundle folder {folder} does not exist")
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise BundleError(f"{path} is missing: not a complete tinysep bundle")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
        manifest = json.loads(text)
    except ValueError as exc:
        raise BundleError(f"{path} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    bundle = Bundle(folder, manifest, text)
    if verify_model:
        bundle.verify_model_file()
    return bundle


def _detail_quantization(detail: dict):
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def check_model(bundle: Bundle, interpreter, check_quantization: bool = True) -> None:
    """Raise BundleError listing every way the interpreter's tensors differ from the manifest."""
    inputs = dict((d["index"], d) for d in interpreter.get_input_details())
    outputs = dict((d["index"], d) for d in interpreter.get_output_details())
    problems = []
    for specs, details, kind in (
        (bundle.input_specs(), inputs, "input"),
        (bundle.output_specs(), outputs, "output"),
    ):
        for spec in specs:
            detail = details.get(spec.index)
            if detail is None:
                problems.append(
                    f"{spec.name}: the model has no {kind} tensor with index {spec.index}"
                )
                continue
            shape = tuple(int(d) for d in detail["shape"])
            dtype = np.dtype(detail["dtype"]).name
            if shape != spec.shape or dtype != spec.dtype:
                problems.append(
                    f"{spec.name}: manifest says {spec.dtype} {list(spec.shape)}, "
                    f"the model has {dtype} {list(shape)}"
                )
                continue
            if check_quantization and spec.quantized:
                scale, zero_point = _detail_quantization(detail)
                if zero_point != spec.zero_point or not math.isclose(
                    scale, spec.scale, rel_tol=SCALE_RTOL
                ):
                    problems.append(
                        f"{spec.name}: manifest says scale {spec.scale:.9g} zero_point "
                        f"{spec.zero_point}, the model has scale {scale:.9g} "
                        f"zero_point {zero_point}"
                    )
        covered = set(spec.index for spec in specs)
        extra = sorted(set(details) - covered)
        if extra:
            names = [details[i].get("name", "?") for i in extra[:3]]
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            problems.append(
                f"the model has {len(extra)} {kind}s the manifest does not list ({names}{more})"
            )
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"{len(problems) - MAX_PROBLEMS_SHOWN} more differences")
        raise BundleError(f"{bundle.manifest_path} does not match the model: " + "; ".join(shown))


def manifest_for_model(bundle: Bundle, interpreter, sha256: str, size: int) -> dict:
    """The bundle's manifest rewritten for another model with the same tensor layout.

    Used after an upload: sha256, size and every scale / zero point come from the new model;
    each state's requantize rule is recomputed. Raises BundleError if the layout differs.
    """
    check_model(bundle, interpreter, check_quantization=False)
    details = dict(
        (d["index"], d)
        for d in list(interpreter.get_input_details()) + list(interpreter.get_output_details())
    )
    manifest = json.loads(bundle.manifest_text)

    def update(entry):
        if entry.get("dtype") != "float32":
            scale, zero_point = _detail_quantization(details[entry["index"]])
            entry["scale"] = scale
            entry["zero_point"] = zero_point

    update(manifest["input"])
    update(manifest["output"])
    for entry in manifest.get("states", []):
        update(entry["input"])
        update(entry["output"])
        pair_in = TensorSpec.from_json(entry["input"], "state input")
        pair_out = TensorSpec.from_json(entry["output"], "state output")
        entry["requantize"] = _requantize_rule(pair_in, pair_out)
    manifest["model"]["sha256"] = sha256
    manifest["model"]["bytes"] = int(size)
    return manifest
