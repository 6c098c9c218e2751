"""The TFLite runtime on the board: whichever of ai_edge_litert, tflite_runtime, tensorflow.lite
imports first, plus the Edge TPU delegate when asked.

Kernels: ``default`` lets the runtime pick its optimized kernels (XNNPACK or the optimized
builtins, which differ between runtime versions, so int8 outputs may differ by a few LSB);
``reference`` asks for the reference builtin kernels, which give the same int8 outputs on
every runtime version that offers them. Imports happen inside functions, so the agent starts
(and reports a clear error) on a board that has only one of the runtimes.
"""

from __future__ import annotations

import importlib

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
KERNELS = ("default", "reference")
EDGETPU_LIBRARY = "libedgetpu.so.1"


class RuntimeUnavailable(RuntimeError):
    """No TFLite runtime (or not the requested one, or no Edge TPU delegate) can be loaded."""


class Runtime:
    """One imported TFLite runtime: its name, version, Interpreter class and load_delegate."""

    def __init__(self, name, version, interpreter_class, load_delegate, resolver_types=None):
        self.name = name
        self.version = version
        self.interpreter_class = interpreter_class
        self.load_delegate = load_delegate
        self.resolver_types = resolver_types  # the runtime's OpResolverType enum, if it has one

    @property
    def label(self) -> str:
        """What INFO reports, e.g. ``ai_edge_litert 2.3.0``."""
        return f"{self.name} {self.version}"

    def make_interpreter(
        self, model_path: str, edgetpu: bool = False, num_threads: int = 1, kernels: str = "default"
    ):
        """An interpreter for ``model_path`` with tensors allocated (Edge TPU delegate if asked)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        options = {}
        if kernels == "reference":
            if self.resolver_types is None:
                raise RuntimeUnavailable(f"{self.label} cannot select reference kernels")
            options["experimental_op_resolver_type"] = self.resolver_types.BUILTIN_REF
        delegates = None
        if edgetpu:
            try:
                delegates = [self.load_delegate(EDGETPU_LIBRARY)]
            except (ValueError, OSError, RuntimeError) as exc:
                raise RuntimeUnavailable(
                    f"cannot load the Edge TPU delegate {EDGETPU_LIBRARY} with {self.label}: "
                    f"{exc} (is the Edge TPU runtime installed and the accelerator attached?)"
                ) from None
        interpreter = self.interpreter_class(
            model_path=model_path,
            experimental_delegates=delegates,
            num_threads=num_threads,
            **options,
        )
        interpreter.allocate_tensors()
        return interpreter


def _import(name: str) -> Runtime:
    if name == "ai_edge_litert":
        package = importlib.import_module("ai_edge_litert")
        module = importlib.import_module("ai_edge_litert.interpreter")
        return Runtime(
            name,
            getattr(package, "__version__", "?"),
            module.Interpreter,
            module.load_delegate,
            getattr(module, "OpResolverType", None),
        )
    if name == "tflite_runtime":
        package = importlib.import_module("tflite_runtime")
        module = importlib.import_module("tflite_runtime.interpreter")
        return Runtime(
            name,
            getattr(package, "__version__", "?"),
            module.Interpreter,
            module.load_delegate,
            getattr(module, "OpResolverType", None),
        )
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Runtime(
            "tensorflow.lite",
            tf.__version__,
            tf.lite.Interpreter,
            tf.lite.experimental.load_delegate,
            getattr(tf.lite.experimental, "OpResolverType", None),
        )
    raise RuntimeUnavailable(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")


def load_runtime(prefer: str = "auto") -> Runtime:
    """The first runtime that imports, in the order of RUNTIMES (or exactly ``prefer``)."""
    names = RUNTIMES if prefer in ("auto", "", None) else (prefer,)
    failures = []
    for name in names:
        try:
            return _import(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    raise RuntimeUnavailable(
        f"no TFLite runtime could be imported ({'; '.join(failures)}); "
        "install ai-edge-litert or tflite-runtime"
    )
