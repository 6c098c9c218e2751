"""Pruning: magnitude (unstructured) with tfmot, and structured channel pruning.

Magnitude pruning wraps every Conv2D / DepthwiseConv2D / Dense with at least
``min_weights`` weights in tfmot's ``prune_low_magnitude`` (polynomial schedule from 0 to
``sparsity`` over the first ``ramp`` of the fine-tuning steps), fine-tunes, strips the
wrappers and copies the weights back into a clean tinysep model. Zeros do not shrink a
dense TFLite file, so the report gives the gzip-compressed size (what a zipped download or
a compressing flash format would hold) next to the raw one.

Structured pruning really removes channels: the narrower model is built from the same
config with smaller widths (e.g. ``{"residual": 24, "hidden": 48}``), and every weight is
copied from the wide model keeping the most important channels. Channels form *spaces*:
all tensors that must index channels alike (a conv's outputs, the norm after it, the
residual sum it joins, the inputs of the convs that read it). Spaces are found by
union-find over the Keras graph; a space that passes through a layer which mixes channel
positions with other axes (a Reshape, a recurrence) is fixed and cannot be narrowed.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np

from tinysep.folder_writes import staged_folder
from tinysep.model_record import TRAINING_FILE
from tinysep.models.registry import CONFIG_FILE, WEIGHTS_FILE

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")
PRUNE_REPORT_FILE = "prune_report.json"
# every entry save_pruned writes into a pruned model folder: the saved model and its report
PRUNED_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, PRUNE_REPORT_FILE, TRAINING_FILE})


def _layers():
    import tf_keras as keras

    return keras.layers


def check_sparsity(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def _is_prunable(layer, min_weights: int) -> bool:
    L = _layers()
    if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
        return False
    kernel = layer.depthwise_kernel if isinstance(layer, L.DepthwiseConv2D) else layer.kernel
    return int(np.prod(kernel.shape)) >= min_weights


def _kernel_of(layer):
    L = _layers()
    return layer.depthwise_kernel if isinstance(layer, L.DepthwiseConv2D) else layer.kernel


def sparsity_report(model, min_weights: int = 0) -> dict:
    """Zero fraction of every prunable kernel and over all of them."""
    layers, zeros, total = [], 0, 0
    for layer in model.layers:
        if not _is_prunable(layer, min_weights):
            continue
        kernel = np.asarray(_kernel_of(layer).numpy())
        n_zero = int(np.sum(kernel == 0))
        layers.append({"layer": layer.name, "weights": int(kernel.size), "zeros": n_zero,
                       "sparsity": n_zero / kernel.size})
        zeros += n_zero
        total += kernel.size
    return {"layers": layers, "weights": int(total), "zeros": int(zeros),
            "sparsity": zeros / total if total else 0.0}


def gzip_size(content: bytes) -> int:
    """Bytes after gzip at the highest level."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(content)
    return len(buffer.getvalue())


def weights_bytes(model) -> bytes:
    """The float32 weights of ``model`` concatenated (what a float file stores)."""
    return b"".join(np.asarray(w, np.float32).tobytes() for w in model.get_weights())


def clean_copy(source, config: dict | None = None):
    """A fresh tinysep model of ``source``'s config with its weights (by layer name)."""
    from tinysep.models import model_config, model_from_config

    config = model_config(source) if config is None else config
    target = model_from_config(config)
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    return target


def magnitude_prune(
    model,
    clips,
    sparsity: float,
    steps: int,
    *,
    min_weights: int = 1024,
    ramp: float = 0.7,
    frequency: int | None = None,
    loss: str = "l1",
    sdr_weight: float = 0.01,
    batch_size: int = 4,
    chunk_frames: int = 64,
    learning_rate: float = 3e-4,
    seed: int = 0,
    progress: bool = False,
):
    """Prune ``model`` to ``sparsity`` while fine-tuning ``steps`` batches; returns
    ``(pruned tinysep model, report)``. The report has the per-layer sparsity and losses."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from convert.finetune import fine_tune
    from tinysep.models import model_config

    sparsity = check_sparsity(sparsity)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pruning needs at least one fine-tuning step, got {steps!r}")
    config = model_config(model)
    end = max(1, int(round(ramp * steps)))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end,
        frequency=frequency or max(1, end // 10),
    )

    def wrap(layer):
        if _is_prunable(layer, min_weights):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # clone_model shares the layers it is given: wrap a copy, never the caller's model.
    wrapped = keras.models.clone_model(clean_copy(model, config), clone_function=wrap)
    losses = fine_tune(
        wrapped, clips, steps, loss=loss, sdr_weight=sdr_weight, batch_size=batch_size,
        chunk_frames=chunk_frames,
        learning_rate=learning_rate, seed=seed, progress=progress,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    pruned = clean_copy(stripped, config)
    report = {
        "target_sparsity": sparsity,
        "steps": steps,
        "loss": loss,
        "schedule": {"kind": "polynomial_decay", "begin_step": 0, "end_step": end,
                     "frequency": schedule.frequency},
        "min_weights": min_weights,
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])),
        **sparsity_report(pruned, min_weights),
    }
    return pruned, report


# --- structured (channel) pruning ------------------------------------------------------

class _Spaces:
    """Union-find over channel spaces; a space is keyed by a Keras tensor (its last axis)."""

    def __init__(self):
        self.parent: dict = {}
        self.fixed: set = set()
        self.size: dict = {}

    def key(self, tensor):
        k = id(tensor)
        if k not in self.parent:
            self.parent[k] = k
            self.size[k] = int(tensor.shape[-1])
        return k

    def find(self, k):
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, *tensors):
        keys = [self.find(self.key(t)) for t in tensors]
        root = keys[0]
        for k in keys[1:]:
            if k != root:
                self.parent[k] = root
                if k in self.fixed:
                    self.fixed.add(root)

    def fix(self, *tensors):
        for t in tensors:
            self.fixed.add(self.find(self.key(t)))

    def root(self, tensor):
        return self.find(self.key(tensor))

    def is_fixed(self, tensor) -> bool:
        return self.root(tensor) in self.fixed


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def channel_spaces(model):
    """``(spaces, roles)``: the union-find of channel spaces and, per layer, the tensors its
    weights index (``{layer name: (input tensor, output tensor)}``)."""
    from tinysep.models.layers import FrameGroupNorm, ReduceMean, SliceAxis

    L = _layers()
    spaces = _Spaces()
    roles = {}
    for layer in model.layers:
        if not layer._inbound_nodes:
            continue
        node = layer._inbound_nodes[0]
        ins = _as_list(node.input_tensors)
        outs = _as_list(node.output_tensors)
        if isinstance(layer, L.InputLayer):
            spaces.fix(*outs)
            continue
        rank = len(outs[0].shape)
        if isinstance(layer, (L.Conv2D, L.Dense)) and not isinstance(
            layer, (L.DepthwiseConv2D, L.Conv2DTranspose)
        ):
            if getattr(layer, "groups", 1) != 1:
                spaces.fix(*ins, *outs)
            roles[layer.name] = (ins[0], outs[0])
            continue
        if isinstance(layer, L.DepthwiseConv2D):
            if layer.depth_multiplier != 1:
                spaces.fix(*ins, *outs)
            spaces.union(ins[0], outs[0])
            roles[layer.name] = (ins[0], outs[0])
            continue
        if isinstance(layer, (L.BatchNormalization, FrameGroupNorm)):
            axis = getattr(layer, "axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) else axis
            if axis not in (-1, rank - 1):
                spaces.fix(*ins, *outs)
            spaces.union(ins[0], outs[0])
            roles[layer.name] = (ins[0], outs[0])
            if isinstance(layer, FrameGroupNorm):
                spaces.fix(*ins)  # groups tie channel positions: keep the width
            continue
        same_shape_ops = (L.Add, L.Multiply, L.Activation, L.ReLU, L.ZeroPadding2D)
        if isinstance(layer, same_shape_ops):
            spaces.union(*ins, *outs)
            continue
        if isinstance(layer, SliceAxis) and layer.axis not in (-1, rank - 1):
            spaces.union(*ins, *outs)
            continue
        if isinstance(layer, ReduceMean) and layer.axis not in (-1, rank - 1):
            spaces.union(*ins, *outs)
            continue
        if isinstance(layer, L.Concatenate) and layer.axis not in (-1, rank - 1):
            spaces.union(*ins, *outs)
            continue
        spaces.fix(*ins, *outs)  # reshapes, softmax, recurrences, channel concats, ...
    return spaces, roles


def _axis_spaces(layer, role, spaces):
    """For each weight of ``layer``: the space (root or None) of each of its axes."""
    L = _layers()
    t_in, t_out = role
    s_in, s_out = spaces.root(t_in), spaces.root(t_out)
    out = []
    for w in layer.weights:
        shape = w.shape
        name = w.name.split("/")[-1]
        if isinstance(layer, L.DepthwiseConv2D):
            axes = [None] * (len(shape) - 2) + [s_in, None] if "kernel" in name else [s_out]
        elif isinstance(layer, (L.Conv2D, L.Dense)):
            axes = [None] * (len(shape) - 2) + [s_in, s_out] if "kernel" in name else [s_out]
        else:  # norms: every weight is per channel
            axes = [s_out]
        out.append(axes)
    return out


def _no_wider(key: str, value, current) -> None:
    """Refuse a width ``value`` of option ``key`` that is not a narrowing of ``current``: a
    whole number (or a list of them, one per level) from 1 up to the model's own."""
    values, currents = (value, current) if isinstance(current, list) else ([value], [current])
    if (not isinstance(values, list) or len(values) != len(currents)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"width {key}={json.dumps(value)} is not the form of the model's "
                         f"{key}={json.dumps(current)}")
    for v, c in zip(values, currents, strict=True):
        if not isinstance(c, int) or not 1 <= v <= c:
            raise ValueError(f"width {key}={json.dumps(value)} must narrow the model's "
                             f"{key}={json.dumps(current)} (each value from 1 to the model's)")


def check_widths(config: dict, widths: dict) -> dict:
    """The narrow model config of ``widths`` for the model of ``config``; ValueError for an
    option the model does not have, a value it refuses, or a width above its own. Cheap (no
    model is built): a command calls it before any work."""
    from tinysep.models import DEFAULT_PRESET, make_config, resolved_params

    if not widths:
        raise ValueError("no width given; expected KEY=VALUE, e.g. hidden=24")
    options = {**config.get("options", {}), **widths}
    narrow_config = make_config(config["name"], config.get("preset", DEFAULT_PRESET), **options)
    params = resolved_params(config)
    for key, value in widths.items():
        _no_wider(key, value, params[key])
    return narrow_config


def narrow_model(model, **widths):
    """A narrower tinysep model (config options ``widths``) holding ``model``'s most
    important channels; returns ``(narrow model, report)``."""
    from tinysep.models import count_params, macs_per_hop, model_config
    from tinysep.models import model_from_config as build

    config = model_config(model)
    narrow_config = check_widths(config, widths)
    narrow = build(narrow_config)
    wide_spaces, wide_roles = channel_spaces(model)
    wide_layers = {layer.name: layer for layer in model.layers}

    # Which narrow size each wide space must take, and the importance of its channels.
    wanted: dict = {}
    importance: dict = {}
    plan = []
    for layer in narrow.layers:
        if not layer.weights:
            continue
        wide = wide_layers.get(layer.name)
        if wide is None or len(wide.weights) != len(layer.weights):
            raise ValueError(f"layer {layer.name!r} has no counterpart in the wide model")
        role = wide_roles.get(layer.name)
        axes_list = _axis_spaces(wide, role, wide_spaces) if role else [
            [None] * len(w.shape) for w in wide.weights
        ]
        for w_wide, w_narrow, axes in zip(wide.weights, layer.weights, axes_list, strict=True):
            values = np.asarray(w_wide.numpy())
            for axis, (n_wide, n_narrow) in enumerate(zip(values.shape, w_narrow.shape,
                                                          strict=True)):
                space = axes[axis] if axis < len(axes) else None
                if n_wide == n_narrow and space is None:
                    continue
                if space is None or (n_wide != n_narrow and space in wide_spaces.fixed):
                    raise ValueError(
                        f"cannot narrow {layer.name!r} ({w_wide.name} axis {axis}: {n_wide} -> "
                        f"{n_narrow}): its channels pass through a layer that fixes them"
                    )
                if wanted.setdefault(space, int(n_narrow)) != int(n_narrow):
                    raise ValueError(f"channel space of {layer.name!r} would need two widths "
                                     f"({wanted[space]} and {n_narrow})")
                moved = np.moveaxis(np.abs(values), axis, -1).reshape(-1, n_wide)
                score = moved.mean(axis=0)
                importance[space] = importance.get(space, 0) + score / (score.mean() + 1e-12)
            plan.append((layer, w_narrow, values, axes))
    keep = {
        space: np.sort(np.argsort(-importance[space], kind="stable")[:n])
        for space, n in wanted.items()
    }
    for layer, w_narrow, values, axes in plan:
        for axis in range(values.ndim):
            space = axes[axis] if axis < len(axes) else None
            if space is not None and space in keep:
                values = np.take(values, keep[space], axis=axis)
        if values.shape != tuple(w_narrow.shape):
            raise ValueError(f"layer {layer.name!r}: kept {values.shape}, need {w_narrow.shape}")
        w_narrow.assign(values)
    report = {
        "widths": widths,
        "config": narrow_config,
        "params_before": count_params(model),
        "params_after": count_params(narrow),
        "macs_per_hop_before": macs_per_hop(model),
        "macs_per_hop_after": macs_per_hop(narrow),
        "spaces_narrowed": sum(1 for s, n in wanted.items() if n < wide_spaces.size[s]),
    }
    return narrow, report


def save_pruned(model, folder: str | Path, report: dict, record: dict | None = None) -> Path:
    """Save the model folder plus ``prune_report.json`` (and the ``record`` of
    :func:`convert.finetune.fine_tuned_record` as ``training.json``) beside its config;
    written to a hidden temporary folder first and renamed, so a crash leaves no half-written
    model. An existing ``folder`` is replaced only when it holds nothing but
    :data:`PRUNED_FILES`."""
    from tinysep.models import save_model

    folder = Path(folder)
    with staged_folder(folder, PRUNED_FILES) as tmp:
        save_model(model, tmp)
        (tmp / PRUNE_REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
        if record is not None:
            (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return folder


# --- what a pruned model is measured by -------------------------------------------------

def compressed_sizes(model, representative=None) -> dict:
    """Raw and gzip sizes of the float32 weights and, with a representative set, of the
    int8 streaming TFLite model."""
    raw = weights_bytes(model)
    sizes = {"float32_bytes": len(raw), "float32_gzip_bytes": gzip_size(raw)}
    if representative is not None:
        from convert.quantize import quantize_stream
        from convert.sizes import deploy_form
        from tinysep.models import make_streaming_model

        stream = make_streaming_model(model, representative.frames_per_invoke)
        # the bytes a bundle ships (names stripped), as export and quantize report them
        content = deploy_form(quantize_stream(stream, "int8", representative).content)
        sizes.update({"int8_tflite_bytes": len(content), "int8_tflite_gzip_bytes":
                      gzip_size(content)})
    return sizes
