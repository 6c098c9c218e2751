"""Separators (paper 1's dual-gate TCN, paper 2's U-Net-SE-SRU), their streaming forms,
size presets, MAC counting, save/load and whole-clip separation."""

from tinysep.models.losses import magnitude_l1, masked_magnitudes
from tinysep.models.macs import count_macs, macs_by_layer, macs_per_hop
from tinysep.models.registry import (
    DEFAULT_PRESET,
    MODELS,
    build_model,
    copy_matching_layers,
    count_params,
    load_model,
    make_config,
    mask_delay_frames,
    model_config,
    model_from_config,
    read_config,
    resolved_params,
    save_model,
)
from tinysep.models.separate import predict_masks, separate
from tinysep.models.streaming import (
    StreamingSpec,
    bin_masks,
    compress_magnitude,
    iterate_streaming,
    make_streaming_model,
    run_streaming,
    serving_function,
    stream_features,
    streaming_spec,
)

__all__ = [
    "DEFAULT_PRESET",
    "MODELS",
    "StreamingSpec",
    "bin_masks",
    "build_model",
    "compress_magnitude",
    "count_macs",
    "copy_matching_layers",
    "count_params",
    "iterate_streaming",
    "load_model",
    "macs_by_layer",
    "macs_per_hop",
    "magnitude_l1",
    "make_config",
    "make_streaming_model",
    "mask_delay_frames",
    "masked_magnitudes",
    "model_config",
    "model_from_config",
    "predict_masks",
    "read_config",
    "resolved_params",
    "run_streaming",
    "save_model",
    "separate",
    "serving_function",
    "stream_features",
    "streaming_spec",
]
