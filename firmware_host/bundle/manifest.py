"""Read and check a deploy bundle folder (docs/bundle.md): one parse for the board agent,
the host runner and the harness.

``read_bundle`` parses ``manifest.json`` with the JSON parser only, checks every field a
reader uses (naming the field and what was expected) and verifies the model file's size and
sha256; ``Bundle`` holds the result. numpy only, Python 3.7.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from .features import TRANSFORMS, pooled_count
from .layout import (
    DEFAULT_FRAMING,
    EDGETPU_REPORT,
    FORMAT,
    FORMAT_VERSIONS,
    FRAMINGS,
    FULL_INTEGER,
    LONG_FORMAT_VERSION,
    MANIFEST_FILE,
    QUANTIZATIONS,
    SAMPLE_RATE,
    Framing,
)
from .quantization import REQUANTIZE
from .tensors import BundleError, StatePair, TensorSpec, state_rule


def file_digest(path: str) -> bytes:
    """sha256 digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.digest()


def sha256_of(path: str) -> str:
    """Hex sha256 of a file (as a manifest records it)."""
    return file_digest(path).hex()


# A source name becomes an output file name (``<song>/<source>.wav``) wherever a bundle's
# stems are written, so it must be a plain name: no separator, no dot, no leading dash.
SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
SOURCE_NAME_RULE = "a letter, then letters, digits, _ or -, at most 32 characters"
MAX_SOURCES = 255


def _shown(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile manifest can hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_source_names(sources, where: str) -> list[str]:
    """``sources`` as a list when it is 1 to ``MAX_SOURCES`` distinct plain names (they name
    output files); BundleError naming ``where`` and what was expected otherwise."""
    if not isinstance(sources, list) or not 1 <= len(sources) <= MAX_SOURCES:
        raise BundleError(
            f"{where} must be a list of 1 to {MAX_SOURCES} source names, got {_shown(sources)}"
        )
    bad = [s for s in sources if not isinstance(s, str) or not SOURCE_NAME.fullmatch(s)]
    if bad:
        raise BundleError(
            f"{where}: {_shown(bad[0])} is not a plain source name "
            f"({SOURCE_NAME_RULE}); the names become output file names"
        )
    folded = [s.lower() for s in sources]  # one file on a case-insensitive file system
    repeated = [s for i, s in enumerate(sources) if folded.index(folded[i]) != i]
    if repeated:
        raise BundleError(
            f"{where}: {_shown(repeated[0])} repeats an earlier name (names are "
            "compared ignoring case); each source needs its own output file"
        )
    return list(sources)


def _listed(values) -> str:
    """``'a', 'b' or 'c'``."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def check_framing(audio: dict, version: int, at: str) -> Framing:
    """The known framing ``audio`` names (its windows and ``n_fft``) that bundle format
    ``version`` may use; BundleError naming the field and what is known otherwise."""
    usable = [f for f in FRAMINGS.values() if f.format_version <= version]
    known = ", ".join(f"{f.name} (n_fft {f.n_fft}, {f.analysis_window} / {f.synthesis_window}"
                      f", format_version >= {f.format_version})" for f in FRAMINGS.values())
    chosen = []
    for key in ("analysis_window", "synthesis_window"):
        value = _get(audio, key, at)
        names = [getattr(f, key) for f in usable]
        if value not in names:
            later = [f for f in FRAMINGS.values() if getattr(f, key) == value]
            if later and isinstance(value, str):
                raise BundleError(
                    f"{at}.{key} {value!r} belongs to the {later[0].name} framing, which needs "
                    f"format_version {later[0].format_version}; this manifest is format_version "
                    f"{version} (known framings: {known})"
                )
            raise BundleError(
                f"{at}.{key} must be {_listed(names)} (known framings: {known}), "
                f"got {_shown(value)}"
            )
        chosen.append(usable[names.index(value)])
    framing = chosen[0]
    if chosen[1] is not framing:
        raise BundleError(
            f"{at}.synthesis_window {framing.synthesis_window!r} is the one that pairs with "
            f"analysis_window {framing.analysis_window!r} (the {framing.name} framing), got "
            f"{chosen[1].synthesis_window!r} (known framings: {known})"
        )
    n_fft = _positive_int(_get(audio, "n_fft", at), at + ".n_fft")
    # The Hann pair is defined at any n_fft that is a multiple of the hop (format 1 readers
    # always took it so); the other windows only at their own n_fft.
    if n_fft != framing.n_fft and framing.name != DEFAULT_FRAMING:
        raise BundleError(
            f"{at}.n_fft must be {framing.n_fft} for the {framing.name} framing's windows, "
            f"got {n_fft} (known framings: {known})"
        )
    return framing


def _get(section, key: str, where: str):
    if not isinstance(section, dict) or key not in section:
        raise BundleError(f"{where}.{key} is missing")
    return section[key]


def _positive_int(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BundleError(f"{where} must be a positive integer, got {value!r}")
    return value


def _pool_above(transform: dict, n_bins: int, version: int, where: str) -> int:
    """``input.transform.pool_above``: 0 when absent; else a bin index with an even number
    (at least 2) of bins from it to the last, in a manifest of format ``LONG_FORMAT_VERSION``
    or later."""
    if "pool_above" not in transform:
        return 0
    value = transform["pool_above"]
    field = f"{where}: input.transform.pool_above"
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"{field} must be a bin index (an integer >= 0), got {_shown(value)}")
    if value and version < LONG_FORMAT_VERSION:
        raise BundleError(
            f"{field} needs format_version {LONG_FORMAT_VERSION} (pooled inputs are read from "
            f"that version on); this manifest is format_version {version}"
        )
    upper = n_bins - value
    if value and (upper < 2 or upper % 2):
        raise BundleError(
            f"{field} must leave an even number of bins (at least 2) from it to the last of "
            f"the {n_bins} bins (bins from it up are averaged in pairs), got {value}"
        )
    return value


MAX_ARENA_BYTES = 1 << 30  # beyond any board's RAM: a larger arena is an edited manifest


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
    value = _positive_int(value, where + ": arena_tflite_micro.bytes")
    if value > MAX_ARENA_BYTES:
        raise BundleError(f"{where}: arena_tflite_micro.bytes must be at most {MAX_ARENA_BYTES} "
                          f"(1 GiB), got {value}")
    return value


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
                f"(it reads the JSON numbers {', '.join(str(v) for v in FORMAT_VERSIONS)})"
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
        self.quantization = _get(model, "quantization", where + ": model")
        if self.quantization not in QUANTIZATIONS:
            raise BundleError(
                f"{where}: model.quantization must be one of {', '.join(QUANTIZATIONS)}, "
                f"got {self.quantization!r}"
            )

        audio = _get(manifest, "audio", where)
        at = where + ": audio"
        self.sample_rate = _positive_int(_get(audio, "sample_rate", at), at + ".sample_rate")
        if self.sample_rate != SAMPLE_RATE:
            raise BundleError(
                f"{at}.sample_rate must be {SAMPLE_RATE} (the rate the model's STFT frames "
                f"are taken at), got {self.sample_rate!r}"
            )
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
        self.framing = check_framing(audio, version, at)
        self.analysis_window = self.framing.analysis_window
        self.synthesis_window = self.framing.synthesis_window
        if self.hop != self.framing.hop and self.framing.name != DEFAULT_FRAMING:
            raise BundleError(
                f"{at}.hop_samples must be {self.framing.hop} for the {self.framing.name} "
                f"framing, got {self.hop}"
            )
        # From a sample's arrival to its output: the synthesis span and the invoke's buffering.
        latency = _get(audio, "latency_samples", at)
        # the synthesis window's nonzero tail: all of a Hann frame, 512 of a long one
        self.synthesis_span = self.n_fft - (self.framing.n_fft - self.framing.synthesis_span)
        expected_latency = self.synthesis_span + (self.frames_per_invoke - 1) * self.hop
        if not isinstance(latency, int) or isinstance(latency, bool) or latency != expected_latency:
            raise BundleError(
                f"{at}.latency_samples must be the synthesis span ({self.synthesis_span} "
                f"samples for the {self.framing.name} framing) + (frames_per_invoke - 1) * "
                f"hop_samples = {expected_latency}, got {latency!r}"
            )
        self.latency_samples = latency
        self.n_bins = self.n_fft // 2 + 1

        self.sources = check_source_names(_get(manifest, "sources", where), where + ": sources")

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
        self.pool_above = _pool_above(transform, self.n_bins, version, where)
        self.n_features = pooled_count(self.n_bins, self.pool_above)
        expected_in = (1, self.frames_per_invoke, self.n_features)
        features_rule = "n_fft/2+1"
        if self.pool_above:
            features_rule = (f"pool_above + (n_fft/2+1 - pool_above)/2 = {self.pool_above} + "
                             f"{self.n_bins - self.pool_above}/2")
        if self.input.shape != expected_in:
            raise BundleError(
                f"{where}: input.shape must be {list(expected_in)} (frames_per_invoke, "
                f"{features_rule}), got {list(self.input.shape)}"
            )
        if FULL_INTEGER.get(self.quantization) and not self.input.quantized:
            raise BundleError(f"{where}: a {self.quantization} bundle must have an integer input")
        output = _get(manifest, "output", where)
        self.output = TensorSpec.from_json(output, where + ": output")
        output_pool = output.get("pool_above", 0)
        if (not isinstance(output_pool, int) or isinstance(output_pool, bool)
                or output_pool != self.pool_above):
            raise BundleError(
                f"{where}: output.pool_above must equal input.transform.pool_above "
                f"({self.pool_above}: the masks cover the model's input positions, each pair's "
                f"masks spread to both of its bins), got {_shown(output_pool)}"
            )
        expected_out = expected_in + (len(self.sources),)
        if self.output.shape != expected_out:
            raise BundleError(
                f"{where}: output.shape must be {list(expected_out)} (one mask per source "
                f"and input position), got {list(self.output.shape)}"
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
            rule = entry.get("requantize", state_rule(pair_in, pair_out))
            if rule not in REQUANTIZE:
                raise BundleError(f"{sw}.requantize must be one of {REQUANTIZE}, got {rule!r}")
            if rule == "copy" and state_rule(pair_in, pair_out) != "copy":
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
        provenance = manifest.get("provenance")
        if provenance is not None and not isinstance(provenance, dict):
            raise BundleError(f"{where}: provenance must be an object or null, got "
                              f"{type(provenance).__name__}")

    @property
    def delay_samples(self) -> int:
        """How far the separated stream lags the input: span - hop + (K - 1) * hop."""
        return self.synthesis_span - self.hop + (self.frames_per_invoke - 1) * self.hop

    def input_specs(self) -> list:
        """The manifest's model inputs: the spectral input, then the state inputs."""
        return [self.input] + [p.input for p in self.states]

    def output_specs(self) -> list:
        """The manifest's model outputs: the masks, then the state outputs."""
        return [self.output] + [p.output for p in self.states]

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
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise BundleError(f"bundle folder {folder} {what}")
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
    except RecursionError:
        raise BundleError(f"{path} nests JSON arrays or objects too deeply to be a "
                          "manifest") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    bundle = Bundle(folder, manifest, text)
    if verify_model:
        bundle.verify_model_file()
    return bundle
