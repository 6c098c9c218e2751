"""Quantization-aware training (tfmot) of the whole-clip separator, and its pruning-preserving
variant.

QAT trains the graph the board runs: it starts at the features ``log1p(g |X|)`` (the
float compression runs before the int8 graph), so tfmot's input quantizer quantizes the
features exactly as the board does. tfmot's default 8-bit registry knows Conv2D,
DepthwiseConv2D, Dense, Add, Activation, Reshape, ZeroPadding2D and Softmax, and folds a
BatchNormalization into the convolution before it. Every other layer gets an
:class:`OutputQuantizeConfig` (no weights of its own are quantized; its output passes a
moving-average int8 fake quantizer, as the int8 TFLite graph requantizes that tensor):
``Multiply`` (the gates), ``ReduceMean``, ``FrameGroupNorm``, ``Recurrence`` and the input
``BatchNormalization``. :class:`NoOpQuantizeConfig` covers ``SliceAxis``, which only moves
values (same scale in and out).

The activation ranges start from the float model's ranges on training audio (tfmot's
moving averages start at [-6, 6] and would take thousands of steps to get there). After
training, the learned float weights are copied back into a clean tinysep model
(:func:`extract_model`); the streaming export calibrates and converts it as usual, so a
QAT model deploys through exactly the same path as a PTQ one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QAT_TARGETS = ("stems", "float")  # what quantization-aware training learns to give


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot


def _configs():
    """The two QuantizeConfig classes (defined lazily: tfmot imports TensorFlow)."""
    tfmot = _tfmot()
    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Quantize only the layer's output (8 bits, asymmetric, moving average range)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False,
                                                      symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    class NoOpQuantizeConfig(OutputQuantizeConfig):
        """Quantize nothing: the layer moves values, the int8 graph keeps their scale."""

        def get_output_quantizers(self, layer):
            return []

    return OutputQuantizeConfig, NoOpQuantizeConfig


def _scope():
    from tinysep.models.layers import CUSTOM_OBJECTS

    output_config, noop_config = _configs()
    return output_config, noop_config, {
        **CUSTOM_OBJECTS,
        "OutputQuantizeConfig": output_config,
        "NoOpQuantizeConfig": noop_config,
    }


def annotate(model):
    """``model`` cloned with every layer annotated for quantization (see module doc)."""
    import tf_keras as keras

    from tinysep.models.layers import SliceAxis

    tfmot = _tfmot()
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    output_config, noop_config, _ = _scope()
    annotate_layer = tfmot.quantization.keras.quantize_annotate_layer
    producers = {}
    for layer in model.layers:
        for node in layer._outbound_nodes:
            producers.setdefault(node.outbound_layer.name, []).append(layer)
    conv_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)

    def wrap(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        clone = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.BatchNormalization):
            before = producers.get(layer.name, [])
            if len(before) == 1 and isinstance(before[0], conv_types):
                return annotate_layer(clone)  # folded into the conv by quantize_apply
            return annotate_layer(clone, quantize_config=output_config())
        if registry.supports(layer):
            return annotate_layer(clone)
        if isinstance(layer, SliceAxis):
            return annotate_layer(clone, quantize_config=noop_config())
        return annotate_layer(clone, quantize_config=output_config())

    annotated = keras.models.clone_model(model, clone_function=wrap)
    annotated.set_weights(model.get_weights())
    return annotated


def features_model(model):
    """``model`` without its log compression: features ``(B, T, bins)`` -> masks, same
    weights (layer names are shared, so weights copy back by name)."""
    import tf_keras as keras

    from tinysep.models import model_config
    from tinysep.models.causal import Graph
    from tinysep.models.registry import build_body, model_framing

    config = model_config(model)
    graph = Graph(streaming=False)
    features = graph.input((model_framing(config).n_bins,), "features")
    body = keras.Model(features, build_body(graph, config, features),
                       name=f"{model.name}_features")
    by_name = {layer.name: layer for layer in model.layers}
    for layer in body.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    body.tinysep_config = config
    return body


def init_ranges(qat_model, float_model, features: np.ndarray) -> int:
    """Set every activation fake quantizer of ``qat_model`` to the range (0 included) its
    layer's output takes in ``float_model`` on ``features``; returns how many were set."""
    import tf_keras as keras

    layers = [layer for layer in float_model.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(float_model.inputs, [layer.output for layer in layers])
    values = dict(zip([layer.name for layer in layers], probe(features, training=False),
                      strict=True))
    values["__input__"] = features
    count = 0
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        key = inner.name if inner is not None else (
            "__input__" if wrapper.__class__.__name__ == "QuantizeLayer" else None)
        if key not in values:
            continue
        v = np.asarray(values[key])
        lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
        for w in wrapper.weights:
            name = w.name.split("/")[-1].split(":")[0]
            if name in ("output_min", "post_activation_min", "quantize_layer_min"):
                w.assign(lo)
                count += 1
            elif name in ("output_max", "post_activation_max", "quantize_layer_max"):
                w.assign(hi)
    return count


def quantize_aware(model, preserve_sparsity: bool = False, features: np.ndarray | None = None,
                   *, per_channel: bool = False):
    """The fake-quantized (QAT) version of ``model`` without its log compression (input:
    features); with ``preserve_sparsity`` tfmot's pruning-preserving scheme keeps zero
    weights at zero. ``features`` (a batch) initialises the activation ranges. Weights get
    one scale per tensor, as the export gives them, unless ``per_channel`` (tfmot's own
    default, and the export's ``--per-channel``): trained against finer weight steps than the
    bundle has, the model would not learn the rounding it meets on the board."""
    tfmot = _tfmot()
    _, _, scope = _scope()
    body = features_model(model)
    annotated = annotate(body)
    with tfmot.quantization.keras.quantize_scope(scope):
        if preserve_sparsity:
            scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(
                disable_per_axis=not per_channel)
        else:
            scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(
                disable_per_axis=not per_channel)
        qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    if features is not None:
        init_ranges(qat, body, features)
    return qat


def extract_model(qat_model, config: dict):
    """A clean tinysep model (of ``config``) with the QAT model's trained float weights."""
    from tinysep.models import model_from_config

    clean = model_from_config(config)
    # A QuantizeWrapper tracks the wrapped layer's kernel itself: search the wrapper's
    # weights, named "<layer>/<weight>:0" like the clean model's.
    wrappers = {getattr(layer, "layer", layer).name: layer for layer in qat_model.layers}
    for layer in clean.layers:
        if not layer.weights:
            continue
        source = wrappers.get(layer.name)
        if source is None:
            raise ValueError(f"layer {layer.name!r} is missing from the QAT model")
        by_name = {w.name: w for w in source.weights}
        values = []
        for w in layer.weights:
            key = f"{layer.name}/{w.name.split('/')[-1]}"
            if key not in by_name:
                raise ValueError(f"QAT layer {layer.name!r} has no weight {key!r}")
            values.append(np.asarray(by_name[key].numpy()))
        layer.set_weights(values)
    return clean


def qat_fine_tune(
    model,
    clips: Sequence,
    steps: int,
    *,
    preserve_sparsity: bool = False,
    loss: str = "l1",
    sdr_weight: float = 0.01,
    batch_size: int = 4,
    chunk_frames: int = 64,
    learning_rate: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
    target: str = "stems",
    per_channel: bool = False,
):
    """Quantization-aware fine-tuning for ``steps`` batches; returns ``(clean tinysep model
    with the trained weights, report)``. ``target`` (:data:`QAT_TARGETS`): ``stems`` trains
    toward the clips' true sources; ``float`` toward the float model's own separation of them,
    so the tuning answers the int8 rounding and keeps what the model does elsewhere.
    ``per_channel``: weight scales per output channel, for a model exported with them (see
    :func:`quantize_aware`)."""
    from convert.finetune import feature_batches, fine_tune
    from convert.prune import sparsity_report
    from tinysep.models import model_config, resolved_params
    from tinysep.models.registry import model_framing

    if target not in QAT_TARGETS:
        raise ValueError(f"target must be one of {QAT_TARGETS}, got {target!r}")
    config = model_config(model)
    # the QAT graph holds copies of the weights (features_model, annotate), so the model
    # itself stays as it is and gives the targets unchanged
    teacher = model if target == "float" else None
    gain = float(resolved_params(config)["input_gain"])
    ranges = feature_batches(clips, 4 * chunk_frames, 8, gain, seed + 1, model_framing(config))
    qat = quantize_aware(model, preserve_sparsity, ranges, per_channel=per_channel)
    losses = fine_tune(qat, clips, steps, loss=loss, sdr_weight=sdr_weight,
                       batch_size=batch_size, chunk_frames=chunk_frames,
                       learning_rate=learning_rate, seed=seed, progress=progress,
                       features_gain=gain, teacher=teacher)
    trained = extract_model(qat, config)
    report = {
        "steps": steps,
        "loss": loss,
        "target": target,
        "weight_scales": "per channel" if per_channel else "per tensor",
        "preserve_sparsity": preserve_sparsity,
        "batchnorm": "frozen (statistics of the full training run)",
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])),
        "sparsity_before": sparsity_report(model)["sparsity"],
        "sparsity_after": sparsity_report(trained)["sparsity"],
    }
    return trained, report
