"""Edge TPU compatibility of a converted model, checked here; ``edgetpu_compiler`` when present.

The Edge TPU compiler is x86-64 Debian only, so the kit checks the published model
requirements itself: full int8 (int8 / int32-bias tensors only), static shapes, tensors
with at most 3 inner dimensions above 1, one subgraph, only ops the compiler maps (and
their documented limits that apply here: MEAN and PAD along the two spatial axes,
FULLY_CONNECTED with a 1-D output per row). Ops outside the list do not stop
compilation; they run on the CPU after the first unsupported op, which the report says.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from convert.tflite_model import TfliteModel

EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "EXPAND_DIMS", "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC",
    "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
COMPILER = "edgetpu_compiler"
COMPILER_TIMEOUT_S = 600


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail}


def check_edgetpu(model: TfliteModel) -> dict:
    """The compatibility checks and a verdict (``compatible``: every check passed)."""
    checks = []
    checks.append(_check("one subgraph", model.subgraph_count == 1,
                         f"{model.subgraph_count} subgraph(s)"))
    bad_types = sorted({
        f"{t.dtype} ({t.layer or t.index})"
        for t in model.tensors
        if t.dtype not in ("int8", "int32") and not (t.constant and t.dtype in ("int32", "int64"))
    })
    checks.append(_check("full int8", not bad_types,
                         "all tensors int8 (int32 biases)" if not bad_types else
                         "non-int8 tensors: " + ", ".join(bad_types[:8])))
    dynamic = [t.name or str(t.index) for t in model.tensors if -1 in t.shape_signature]
    checks.append(_check("static shapes", not dynamic, "all shapes fixed" if not dynamic
                         else "dynamic: " + ", ".join(dynamic[:8])))
    deep = [
        f"{t.layer or t.index} {list(t.shape)}"
        for t in model.tensors
        if not t.constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3])
    ]
    checks.append(_check("at most 3 inner dimensions above 1", not deep,
                         "ok" if not deep else "too deep: " + ", ".join(deep[:8])))
    unsupported = [op for op in model.op_names if op not in EDGETPU_OPS]
    checks.append(_check("supported ops", not unsupported,
                         "all ops map to the Edge TPU" if not unsupported else
                         "not supported: " + ", ".join(unsupported)))
    limits = _op_limits(model)
    checks.append(_check("op limits", not limits, "ok" if not limits else "; ".join(limits[:8])))
    custom = sorted({op.op for op in model.operators if op.custom})
    checks.append(_check("builtin ops only", not custom,
                         "ok" if not custom else "custom: " + ", ".join(custom)))
    first_cpu = next((op for op in model.operators if op.op not in EDGETPU_OPS), None)
    return {
        "compatible": all(c["ok"] for c in checks),
        "checks": checks,
        "ops": model.op_names,
        "first_cpu_op": None if first_cpu is None else {
            "index": first_cpu.index, "op": first_cpu.op,
            "note": "the compiler maps ops up to the first unsupported one; the rest run on "
                    "the CPU",
        },
    }


def _op_limits(model: TfliteModel) -> list[str]:
    """Documented per-op limits that a streaming separator can run into."""
    problems = []
    for op in model.operators:
        if op.op in ("MEAN", "PAD") and len(op.inputs) > 1:
            data = model.tensors[op.inputs[0]]
            axes_tensor = model.tensors[op.inputs[1]]
            if op.op == "MEAN" and axes_tensor.constant and len(data.shape) == 4:
                axes = _constant_ints(model, op.inputs[1])
                axes = {a % 4 for a in axes}
                if not axes <= {1, 2}:
                    problems.append(f"MEAN over axes {sorted(axes)} (only the 2 spatial axes)")
            if op.op == "PAD" and axes_tensor.constant and len(data.shape) == 4:
                pads = _constant_ints(model, op.inputs[1])
                if len(pads) == 8 and any(pads[i] for i in (0, 1, 6, 7)):
                    problems.append("PAD on batch or channel axis (only the 2 spatial axes)")
    return problems


def _constant_ints(model: TfliteModel, index: int) -> list[int]:
    import numpy as np

    tensor = model.obj.subgraphs[0].tensors[index]
    data = model.obj.buffers[tensor.buffer].data
    dtype = np.int64 if model.tensors[index].dtype == "int64" else np.int32
    return [int(v) for v in np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype)]


def run_compiler(model_path: str | Path, out_dir: str | Path) -> dict:
    """Run ``edgetpu_compiler`` on ``model_path`` when it is on PATH; its output is kept."""
    exe = shutil.which(COMPILER)
    if exe is None:
        return {"ran": False, "reason": f"{COMPILER} is not on PATH (it is x86-64 Debian only)"}
    command = [exe, "--show_operations", "--out_dir", str(out_dir), str(model_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=COMPILER_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ran": False, "command": command, "reason": f"{COMPILER} failed to run: {exc}"}
    out = done.stdout + done.stderr
    mapped = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", out)
    on_cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", out)
    compiled = Path(out_dir) / (Path(model_path).stem + "_edgetpu.tflite")
    return {
        "ran": True,
        "command": command,
        "returncode": done.returncode,
        "output": out[-20000:],
        "ops_on_edgetpu": int(mapped.group(1)) if mapped else None,
        "ops_on_cpu": int(on_cpu.group(1)) if on_cpu else None,
        "compiled_model": compiled.name if compiled.is_file() else None,
    }


def edgetpu_report(model: TfliteModel, model_path: str | Path | None = None,
                   compile: bool = True) -> dict:
    """Checks, plus the compiler's result when ``compile`` and it is on PATH."""
    report = check_edgetpu(model)
    if compile and model_path is not None:
        report["compiler"] = run_compiler(model_path, Path(model_path).parent)
    else:
        report["compiler"] = {"ran": False, "reason": "not requested"}
    return report
