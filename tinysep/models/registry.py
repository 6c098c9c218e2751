"""Model registry: names x size presets x options -> whole-clip Keras models.

A model is fully described by a JSON-able config ``{"name", "preset", "options"}``;
:func:`model_from_config` rebuilds it and :func:`save_model` / :func:`load_model` store
``config.json`` plus the weights in a folder. The whole-clip model maps raw STFT
magnitudes ``(batch, frames, bins)`` to masks ``(batch, frames, bins, S)`` (257 bins, or 513
with the ``long1024`` framing), one per name of
its ``sources`` parameter, in that order (default ``tinysep.data.clip.SOURCES``; a config
saved before sources existed has no such key and means those two).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import tf_keras as keras

import tinysep
from firmware_host.bundle.manifest import check_source_names
from tinysep.data.clip import SOURCES
from tinysep.dsp import Framing
from tinysep.models import dualgate_tcn, unet_se_sru
from tinysep.models.blocks import anchor_logits, params_framing
from tinysep.models.causal import Graph
from tinysep.models.layers import LogCompression
from tinysep.models.reframing import feature_layout

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CONFIG_FORMAT = 1


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: its defaults, presets, validation and graph body."""

    name: str
    module: ModuleType

    @property
    def presets(self) -> dict:
        return self.module.PRESETS

    @property
    def summary(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]

    def params(self, preset: str, options: dict) -> dict:
        """Defaults, then the preset, then the options; unknown keys are errors."""
        if preset not in self.presets:
            raise ValueError(
                f"model {self.name!r} has no preset {preset!r}; choose from {sorted(self.presets)}"
            )
        params = copy.deepcopy(self.module.DEFAULTS)
        layers = ((f"preset {preset!r}", self.presets[preset]), ("options", options))
        for source, overrides in layers:
            unknown = sorted(set(overrides) - set(params))
            if unknown:
                raise ValueError(
                    f"model {self.name!r}: unknown {source} key(s) {unknown}; "
                    f"known: {sorted(params)}"
                )
            params.update(copy.deepcopy(overrides))
        for key in ("channels", "sources"):
            if isinstance(params.get(key), tuple):
                params[key] = list(params[key])
        self.module.validate(params)
        check_input_gain(params["input_gain"])
        # The names become a bundle's output file names: the bundle reader's rule applies.
        check_source_names(params["sources"], "sources")
        return params


def check_input_gain(gain) -> None:
    """Raise ValueError unless ``gain`` (the magnitude scale before ``log1p``) is a finite
    number > 0: any other value makes the masks, and so the stems, meaningless."""
    if (
        not isinstance(gain, (int, float))
        or isinstance(gain, bool)
        or not (math.isfinite(gain) and gain > 0)
    ):
        raise ValueError(f"input_gain must be a finite number > 0, got {gain!r}")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(dualgate_tcn.NAME, dualgate_tcn),
        ModelSpec(unet_se_sru.NAME, unet_se_sru),
    )
}
DEFAULT_PRESET = "tiny"


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


def make_config(name: str, preset: str = DEFAULT_PRESET, **options) -> dict:
    """The JSON-able config of a model (validated)."""
    get_spec(name).params(preset, options)
    return {"name": name, "preset": preset, "options": copy.deepcopy(options)}


def resolved_params(config: dict) -> dict:
    """All hyper-parameters of a config: its pinned ``params`` when it has them, else
    defaults + preset + options."""
    config = _check_config(config)
    spec = get_spec(config["name"])
    if "params" in config:
        return spec.params(config["preset"], config["params"])
    return spec.params(config["preset"], config["options"])


def graph_of(config: dict) -> dict:
    """What fixes a saved model's graph and weight shapes: its name and every
    hyper-parameter, those its config does not pin read at their defaults (a model saved
    before an option existed is the graph of that option's default)."""
    return {"name": _check_config(config)["name"], "params": resolved_params(config)}


def graph_differences(theirs: dict, ours: dict, shown: int = 3) -> str:
    """How two :func:`graph_of` results differ, in a few words: the model names, or the first
    ``shown`` hyper-parameters with both values (``blocks 8 / 5``) and how many more."""
    if theirs["name"] != ours["name"]:
        return f"model {theirs['name']} / {ours['name']}"
    keys = sorted(k for k in set(theirs["params"]) | set(ours["params"])
                  if theirs["params"].get(k) != ours["params"].get(k))
    parts = [f"{k} {theirs['params'].get(k)!r} / {ours['params'].get(k)!r}" for k in keys[:shown]]
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(parts) + more


def _check_config(config) -> dict:
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(
            f"a model config is a dict with 'name', 'preset', 'options'; got {config!r}"
        )
    for key in ("name", "preset"):
        if not isinstance(config.get(key, DEFAULT_PRESET), str):
            raise ValueError(f"model config {key!r} must be a string, got {config[key]!r}")
    options = config.get("options", {}) or {}
    if not isinstance(options, dict):
        raise ValueError(f"model config 'options' must be a dict, got {options!r}")
    checked = {
        "name": config["name"],
        "preset": config.get("preset", DEFAULT_PRESET),
        "options": options,
    }
    # "params", when present, is the complete resolved parameter set a model was built
    # with: it pins the architecture whatever the preset or the defaults mean today.
    params = config.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise ValueError(f"model config 'params' must be a dict, got {params!r}")
        checked["params"] = dict(params)
    return checked


def build_body(graph: Graph, config: dict, features, pooled: bool = False):
    """Masks tensor for ``features`` (compressed magnitudes) in ``graph``'s form. ``pooled``:
    a model with ``pool_above`` takes its features pooled and gives one mask per position
    (the bundle's form; the board pools and spreads)."""
    params = resolved_params(config)
    module = get_spec(config["name"]).module
    if pooled and params.get("pool_above"):
        return module.body(graph, features, params, pooled=True)
    return module.body(graph, features, params)


def model_from_config(config: dict) -> keras.Model:
    """Build the whole-clip model of ``config`` (fresh weights)."""
    config = _check_config(config)
    params = resolved_params(config)
    graph = Graph(streaming=False)
    magnitude = graph.input((params_framing(params).n_bins,), "magnitude")
    features = LogCompression(params["input_gain"], name="compress")(magnitude)
    masks = build_body(graph, config, features)
    model = keras.Model(magnitude, masks, name=config["name"].replace("-", "_"))
    model.tinysep_config = {**copy.deepcopy(config), "params": copy.deepcopy(params)}
    return model


def build_model(name: str, preset: str = DEFAULT_PRESET, **options) -> keras.Model:
    """Whole-clip model ``name`` at size ``preset`` with ``options`` overriding it."""
    return model_from_config(make_config(name, preset, **options))


def model_config(model: keras.Model) -> dict:
    """The config a model was built from (attached by :func:`model_from_config`)."""
    config = getattr(model, "tinysep_config", None)
    if config is None:
        raise ValueError(
            f"model {model.name!r} carries no tinysep config (was it cloned or wrapped?); "
            "pass config= explicitly"
        )
    return copy.deepcopy(config)


def save_model(model: keras.Model, folder: str | Path, config: dict | None = None) -> Path:
    """Write ``config.json`` and the weights into ``folder`` (created if needed)."""
    folder = Path(folder)
    config = _check_config(config) if config is not None else model_config(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(folder / WEIGHTS_FILE))
    # Every resolved hyper-parameter is stored too, so that a later change of a preset or
    # a default cannot silently change what a saved folder rebuilds.
    record = {
        **config,
        "params": resolved_params(config),  # pins the architecture (see _check_config)
        "format": CONFIG_FORMAT,
        "tinysep_version": tinysep.__version__,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> dict:
    """The model config stored in ``folder`` (clear errors for missing or bad files)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"model folder {folder} {what}")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a saved tinysep model")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or "name" not in record:
        raise ValueError(f"{path}: expected an object with 'name', 'preset', 'options'")
    # A config written before the field existed has no format: it is format 1.
    version = record.get("format", CONFIG_FORMAT)
    if type(version) is not int or version != CONFIG_FORMAT:  # a bool is no format
        raise ValueError(
            f"{path}: format {version!r} is not supported (this tinysep reads format "
            f"{CONFIG_FORMAT})"
        )
    try:
        return _check_config(record)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_model(folder: str | Path) -> keras.Model:
    """Rebuild the model saved in ``folder`` and load its weights."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        model = model_from_config(config)
    except ValueError as exc:
        raise ValueError(f"{folder / CONFIG_FILE}: {exc}") from exc
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing")
    try:
        model.load_weights(str(weights))
    except OSError as exc:  # h5py: empty, truncated or not HDF5 at all
        raise OSError(f"{weights} is not a readable Keras weights file ({exc})") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # HDF5, not Keras'
        raise OSError(
            f"{weights} is not a readable Keras weights file ({type(exc).__name__}: {exc})"
        ) from None
    except ValueError as exc:  # another architecture's weights, or other sizes
        raise ValueError(
            f"{folder}: the weights in {WEIGHTS_FILE} do not match {CONFIG_FILE} ({exc})"
        ) from None
    return model


def _anchored_projection(source: keras.Model, target: keras.Model) -> tuple[str, int] | None:
    """``(layer name, sources)`` when ``target`` is ``source`` with ``anchored`` masks in
    place of ``softmax``: that layer's weights convert exactly (same masks)."""
    configs = [getattr(m, "tinysep_config", None) for m in (source, target)]
    if None in configs or configs[0]["name"] != configs[1]["name"]:
        return None
    theirs, ours = configs[0]["params"], configs[1]["params"]
    layer = getattr(get_spec(configs[1]["name"]).module, "MASK_PROJECTION", None)
    if layer is None or (theirs["mask"], ours["mask"]) != ("softmax", "anchored"):
        return None
    if list(theirs["sources"]) != list(ours["sources"]):
        return None
    return layer, len(ours["sources"])


def copy_matching_layers(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy into ``target`` the weights of every layer of ``source`` with the same name and
    weight shapes (a model grown from a smaller one), a softmax mask projection into an
    anchored one (:func:`tinysep.models.blocks.anchor_logits`), and the weights of a layer
    that ``target`` has wider (:func:`widened_weights`), and of the layers that run over
    the features resampled when ``target`` sees other ones (another framing or pooling,
    :func:`feature_layouts_differ`); returns the names of ``target``'s
    weighted layers not copied. Of those, the ones its architecture starts at zero when
    grown (a new block's output projection) are zeroed; the others keep their
    initialization."""
    by_name = {layer.name: layer for layer in source.layers}
    anchored = _anchored_projection(source, target)
    module = _architecture(target)
    zero_when_grown = getattr(module, "zero_when_grown", lambda name: False)
    reframed = None
    if hasattr(module, "reframed_weights") and feature_layouts_differ(source, target):
        reframed = (_params_of(source), _params_of(target))
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        weights = None if other is None else other.get_weights()
        if weights is not None and anchored and layer.name == anchored[0]:
            weights = list(anchor_logits(*weights, anchored[1]))
        if weights is not None and reframed:
            weights = module.reframed_weights(layer.name, weights, *reframed) or weights
        if weights is not None and [w.shape for w in weights] != shapes:
            weights = widened_weights(layer, weights)
        if weights is not None:
            layer.set_weights(weights)
            continue
        if other is None and zero_when_grown(layer.name):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
        fresh.append(layer.name)
    return fresh


def feature_layouts_differ(source: keras.Model, target: keras.Model) -> bool:
    """Whether two models of one architecture see their frames on other features (another
    framing, or other bins pooled), so :func:`copy_matching_layers` resamples the layers
    that run over them (:mod:`tinysep.models.reframing`)."""
    params = [_params_of(model) for model in (source, target)]
    if None in params or _architecture(source) is not _architecture(target):
        return False
    return feature_layout(params[0]) != feature_layout(params[1])


def _architecture(model: keras.Model) -> ModuleType | None:
    """The module that builds ``model`` (None for a model the registry did not build)."""
    config = getattr(model, "tinysep_config", None)
    if not config or config.get("name") not in MODELS:
        return None
    return MODELS[config["name"]].module


def widened_weights(layer: keras.layers.Layer, smaller: list[np.ndarray]) -> list | None:
    """``layer``'s weights with ``smaller`` (the same layer of a narrower model) in their
    leading entries, or None if a shape does not fit. The new channels keep ``layer``'s own
    initialization, except that a new input channel of a dense or pointwise kernel does
    not feed an existing output (those entries are zero): so the wider model computes
    exactly what the narrower one did, and its new channels learn from there."""
    current = layer.get_weights()
    if [w.ndim for w in smaller] != [w.ndim for w in current]:
        return None
    pairs = list(zip(smaller, current, strict=True))
    if any(a > b for s, c in pairs for a, b in zip(s.shape, c.shape, strict=True)):
        return None
    mixes_channels = not isinstance(layer, keras.layers.DepthwiseConv2D)
    grown = []
    for small, big in pairs:
        big = big.copy()
        if mixes_channels and big.ndim >= 2:
            big[..., small.shape[-2]:, :small.shape[-1]] = 0.0
        big[tuple(slice(0, n) for n in small.shape)] = small
        grown.append(big)
    return grown


def _params_of(model_or_config: keras.Model | dict) -> dict | None:
    """The resolved hyper-parameters of a model or model config (None: a model without a
    tinysep config)."""
    config = model_or_config
    if isinstance(model_or_config, keras.Model):
        config = getattr(model_or_config, "tinysep_config", None)
        if config is None:
            return None
    return resolved_params(config)


def model_sources(model_or_config: keras.Model | dict) -> tuple[str, ...]:
    """The source names a model (or a model config) separates, in mask order."""
    params = _params_of(model_or_config)
    return SOURCES if params is None else tuple(params["sources"])


def mask_delay_frames(model_or_config: keras.Model | dict) -> int:
    """Frames a model's masks lag the mixture frame they belong to (its look ahead; 0 for a
    model without the ``mask_delay`` option)."""
    params = _params_of(model_or_config)
    return 0 if params is None else int(params.get("mask_delay", 0))


def model_framing(model_or_config: keras.Model | dict) -> Framing:
    """The STFT framing a model (or a model config) sees (the default for a model without
    the ``framing`` option)."""
    params = _params_of(model_or_config)
    return params_framing({} if params is None else params)


def count_params(model: keras.Model) -> int:
    """All weights, trainable or not (BatchNorm statistics included)."""
    return int(sum(np.prod(w.shape) for w in model.weights))
