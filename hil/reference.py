"""The host-side references a board is compared with: float Keras and int8 TFLite on the host.

``HostPipeline`` is the host's int8 runner (:class:`convert.runtime.BundleRunner`, the board
agent's own streaming pipeline) on the runtime and kernels the board reports, chunked like the
board run, so on the same runtime and kernels its int16 output must equal the board's bit for
bit (``exactness_expected`` says when that applies): any difference comes from the board's
runtime, hardware or the link. It also gives the int8-on-host scores.
``tensor_check_inputs`` collects real quantized model inputs (states included) for the
tensor-mode comparison.
"""

from __future__ import annotations

import numpy as np

from convert.runtime import BundleRunner
from firmware_host.board.pipeline import PCM_SCALE
from firmware_host.board.runtime import load_runtime
from firmware_host.bundle import Bundle


class HostPipeline:
    """The board's streaming pipeline on this host (ai_edge_litert by default)."""

    def __init__(self, bundle: Bundle, runtime: str = "auto", kernels: str = "default") -> None:
        self.bundle = bundle
        self.runtime = load_runtime(runtime)
        self.kernels = kernels
        self.interpreter = self.runtime.make_interpreter(bundle.model_path, kernels=kernels)
        self.runner = BundleRunner(bundle, interpreter=self.interpreter)
        self.separator = self.runner.separator

    def stream(self, pcm: np.ndarray, chunk_samples: int) -> np.ndarray:
        """int16 sources ``(S, len(pcm))`` aligned to the input, chunked like the board run."""
        return self.runner.stream(pcm, chunk_samples)

    def run_tensors(self, inputs: list) -> list:
        """Raw outputs (in output order) for raw inputs given in input order."""
        details = self.interpreter.get_input_details()
        for detail, array in zip(details, inputs, strict=True):
            self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.invoke()
        return [
            np.array(self.interpreter.get_tensor(d["index"]))
            for d in self.interpreter.get_output_details()
        ]

    def tensor_check_inputs(self, pcm: np.ndarray, invokes: int) -> list:
        """Quantized model inputs (input order) of the first ``invokes`` invokes on ``pcm``."""
        bundle = self.bundle
        separator = self.separator
        separator.reset()
        frames = invokes * bundle.frames_per_invoke
        audio = np.zeros(frames * bundle.hop)
        usable = min(audio.size, np.asarray(pcm).size)
        audio[:usable] = np.asarray(pcm[:usable], dtype=np.float64) / PCM_SCALE
        spectra = separator.analyzer.push(audio)
        by_index = {}
        records = []
        for start in range(0, frames, bundle.frames_per_invoke):
            block = spectra[start : start + bundle.frames_per_invoke]
            by_index[bundle.input.index] = bundle.input.quantize(separator.features(block)[None])
            for number, pair in enumerate(bundle.states):
                by_index[pair.input.index] = np.array(separator.states[number])
            records.append([by_index[d["index"]] for d in self.interpreter.get_input_details()])
            separator.invoke(block)
        separator.reset()
        return records


def float_runner(model_or_dir):
    """``mixture -> {source: float audio}`` with the float Keras model (whole clip); takes a
    loaded model or its folder."""
    from tinysep.models import load_model, separate

    model = model_or_dir
    if isinstance(model_or_dir, (str, bytes)) or hasattr(model_or_dir, "__fspath__"):
        model = load_model(model_or_dir)

    def run(mixture: np.ndarray) -> dict:
        return separate(model, mixture)

    return run


MICRO_RUNTIMES = ("tflite_micro", "tflm")  # INFO runtime names of TFLite Micro boards


def runs_tflite_micro(board_runtime: str) -> bool:
    """True when the board's INFO runtime is TFLite Micro (the Python agent or a C port)."""
    return (board_runtime or "").split(" ")[0] in MICRO_RUNTIMES


def exactness_expected(
    board_runtime: str, board_delegate: str, host: HostPipeline, board_arch: str | None = None
) -> tuple:
    """(bool, why): must the board equal the host pipeline bit for bit?

    Yes with the same runtime version on a CPU (default or reference kernels). Reference
    kernels of different versions agree on every op but int8 FULLY_CONNECTED, which rounds
    some ties the other way (1 LSB between tflite_runtime 2.11 and ai_edge_litert 2.3).
    Optimized kernels of different runtimes (e.g. XNNPACK in ai_edge_litert vs
    tflite_runtime's builtins) differ by a few LSB.
    Never on TFLite Micro: its int8 kernels round differently from LiteRT's (by a few LSB per
    op, more after LOGISTIC and SOFTMAX), so only the SDR tells how close the board is.
    An emulated ARM board (``board_arch``) is exact only for the runtime pairs measured so
    (``hil.emulated_arm.MEASURED_LSB``).
    """
    from hil.emulated_arm import measured_exactness

    measured = measured_exactness(board_arch, board_runtime, board_delegate, host.runtime.label)
    if measured is not None and not runs_tflite_micro(board_runtime):
        return measured
    if runs_tflite_micro(board_runtime):
        return False, (
            f"the board runs TFLite Micro's kernels ({board_runtime}), the host "
            f"{host.runtime.label}: their int8 kernels round differently (a few LSB per op, "
            "more after LOGISTIC and SOFTMAX), so the difference is reported and the SDR "
            "checks decide"
        )
    if board_delegate == "cpu-reference":
        if board_runtime == host.runtime.label:
            return True, "reference kernels of the same runtime on board and host"
        return False, (
            f"reference kernels of two runtimes ({board_runtime} on the board, "
            f"{host.runtime.label} on the host): int8 FULLY_CONNECTED rounds some ties "
            "differently across versions (1 LSB), so the difference is reported and the SDR "
            "checks decide"
        )
    if board_delegate != "cpu":
        return False, f"the board runs the {board_delegate} delegate"
    if board_runtime != host.runtime.label:
        return False, (
            f"the board runs {board_runtime}, the host {host.runtime.label}: their optimized "
            "kernels differ (run the agent with --kernels reference for a bit-exact check)"
        )
    return True, f"the same runtime ({board_runtime}) on a CPU"
