"""Per-layer int8 error of a streaming model, from TFLite's quantization debugger.

``tf.lite.experimental.QuantizationDebugger`` quantizes the model with a NumericVerify op
after every quantized tensor: on each representative sample, each op runs in int8 from
the float values of its inputs and the difference to its float result is recorded. That
isolates each layer's own error (errors do not pile up along the graph). The report gives
per tensor the RMSE, the RMSE in quantization steps (RMSE / scale: ~0.29 is the floor of
rounding alone, much more means the range is too wide or clipped), the max error, and
names the worst layers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROUNDING_ONLY_STEPS = 1 / np.sqrt(12)  # RMSE of uniform rounding, in steps

# What write_layer_report writes: the report, its table and a plot of the worst tensors.
LAYER_ERROR_FILES = ("layer_errors.json", "layer_errors.csv", "layer_errors.png")


def _io_names(converter) -> tuple[list[str], dict[str, str]]:
    """Signature input names in the order of the converted model's inputs, and the
    signature name of each output tensor (the converter names them generically)."""
    import tensorflow as tf

    from convert.tflite_model import TfliteModel

    converter._experimental_calibrate_only = False
    converter.optimizations = []
    float_model = TfliteModel(tf.lite.TFLiteConverter.convert(converter))
    by_index = {index: name for name, index in float_model.signature.inputs.items()}
    outputs = {float_model.tensors[index].name: name
               for name, index in float_model.signature.outputs.items()}
    return [by_index[i] for i in float_model.inputs], outputs


def layer_error_report(
    stream,
    representative,
    *,
    samples: int = 64,
    keep_float: Sequence[str] = (),
) -> dict:
    """Per-tensor error statistics of ``stream`` quantized to int8 on ``representative``
    (the first ``samples`` invokes are used to measure; all of them calibrate)."""
    import tensorflow as tf

    from convert.quantize import nodes_of_layers
    from convert.tflite_model import TfliteModel, layer_of
    from tinysep.models.streaming import serving_function

    data = list(representative)
    if not data:
        raise ValueError("the representative dataset is empty")

    def make_converter():
        function, holder = serving_function(stream)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], holder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter

    from tinysep.quiet import quiet_runtime

    with quiet_runtime():  # the debugger's converter and interpreter, without their lines
        order, output_names = _io_names(make_converter())
        denylist = []
        if keep_float:
            probe = make_converter()
            probe._experimental_calibrate_only = True
            denylist = nodes_of_layers(TfliteModel(probe.convert()), keep_float)
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist or None)
        measured = data[: max(1, samples)]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=make_converter(),
            debug_dataset=lambda: ([sample[name] for name in order] for sample in measured),
            debug_options=options,
        )
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    rows = []
    for row in csv.DictReader(buffer):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rmse = float(np.sqrt(max(mse, 0.0)))
        rows.append({
            "tensor": row["tensor_name"],
            "layer": output_names.get(row["tensor_name"], layer_of(row["tensor_name"])),
            "op": row.get("op_name", ""),
            "elements": int(float(row["num_elements"])),
            "scale": scale,
            "zero_point": int(float(row["zero_point"])),
            "rmse": rmse,
            "rmse_steps": rmse / scale if scale > 0 else float("inf"),
            "max_abs_error": float(row["max_abs_error"]),
            "mean_error": float(row["mean_error"]),
        })
    rows.sort(key=lambda r: -r["rmse_steps"])
    worst = []
    for row in rows:
        if row["layer"] not in worst:
            worst.append(row["layer"])
    return {
        "samples": len(measured),
        "keep_float": list(keep_float),
        "tensors": rows,
        "worst_layers": worst[:5],
        "rounding_only_steps": float(ROUNDING_ONLY_STEPS),
    }


def write_layer_report(report: dict, folder: str | Path, top: int = 25) -> list[Path]:
    """``layer_errors.json``, ``.csv`` and a bar plot of the worst tensors in ``folder``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in LAYER_ERROR_FILES]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    fields = ["layer", "op", "tensor", "elements", "scale", "zero_point", "rmse", "rmse_steps",
              "max_abs_error", "mean_error"]
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in report["tensors"]:
            writer.writerow({k: row[k] for k in fields})
    rows = report["tensors"][:top]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    ax.barh([f"{r['layer']} ({r['op']})" for r in rows][::-1],
            [r["rmse_steps"] for r in rows][::-1], color="tab:red")
    ax.axvline(report["rounding_only_steps"], color="k", linestyle="--",
               label="rounding alone")
    ax.set_xlabel("RMSE of the int8 op / quantization step")
    ax.set_title("worst layers (int8 vs float, each op from float inputs)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths


def format_layer_report(report: dict, top: int = 10) -> str:
    lines = [f"{'layer':<28} {'op':<18} {'RMSE/step':>9} {'max err':>9}"]
    for row in report["tensors"][:top]:
        lines.append(f"{row['layer'][:28]:<28} {row['op'][:18]:<18} {row['rmse_steps']:9.2f} "
                     f"{row['max_abs_error']:9.4f}")
    lines.append(f"worst layers: {', '.join(report['worst_layers'])} "
                 f"(rounding alone: {report['rounding_only_steps']:.2f} steps)")
    return "\n".join(lines)
