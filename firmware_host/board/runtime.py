"""The TFLite runtime on the board: whichever of ai_edge_litert, tflite_runtime, tensorflow.lite
imports first, plus the Edge TPU delegate when asked; or, only when asked by name,
``tflite_micro``: TensorFlow Lite Micro's interpreter and kernels (see ``micro``).

Kernels: ``default`` lets the runtime pick its optimized kernels (XNNPACK or the optimized
builtins, which differ between runtime versions, so int8 outputs may differ by a few LSB);
``reference`` asks for the reference builtin kernels, which give the same int8 outputs on
every runtime version that offers them. Imports happen inside functions, so the agent starts
(and reports a clear error) on a board that has only one of the runtimes.
"""

from __future__ import annotations

import importlib
import os

from .micro import MicroInterpreter, arena_size, import_micro

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")  # what "auto" tries, in order
MICRO_RUNTIME = "tflite_micro"  # never chosen by "auto": only when asked for
ALL_RUNTIMES = RUNTIMES + (MICRO_RUNTIME,)
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
        self,
        model_path: str,
        edgetpu: bool = False,
        num_threads: int = 1,
        kernels: str = "default",
        measured_arena=None,
    ):
        """An interpreter for ``model_path`` with tensors allocated (Edge TPU delegate if asked).

        ``measured_arena`` (the manifest's TFLite Micro arena) matters to TFLite Micro only.
        """
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
        try:
            interpreter = self.interpreter_class(
                model_path=model_path,
                experimental_delegates=delegates,
                num_threads=num_threads,
                **options,
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # not a flatbuffer, an op it lacks, ...
            kind = ValueError if isinstance(exc, ValueError) else RuntimeError
            raise kind(f"{model_path}: {self.label} cannot load it ({exc})") from None
        return interpreter


class MicroRuntime(Runtime):
    """TensorFlow Lite Micro (the ``tflite-micro`` package): its own kernels, one thread, an
    arena of the size the manifest measured, no delegates."""

    def __init__(self, module, version):
        Runtime.__init__(self, MICRO_RUNTIME, version, None, None)
        self.module = module

    def make_interpreter(
        self,
        model_path: str,
        edgetpu: bool = False,
        num_threads: int = 1,
        kernels: str = "default",
        measured_arena=None,
    ):
        """A ``MicroInterpreter`` for ``model_path`` in an arena from ``measured_arena``.

        Raises ``micro.MicroAllocationFailed`` when TFLite Micro cannot allocate the model.
        """
        if edgetpu:
            raise RuntimeUnavailable(
                f"{self.label} runs on the CPU only: the Edge TPU needs a LiteRT runtime "
                "(ai_edge_litert or tflite_runtime)"
            )
        if kernels != "default":
            raise RuntimeUnavailable(
                f"{self.label} has only TFLite Micro's own kernels: --kernels {kernels} applies "
                "to the LiteRT runtimes"
            )
        with open(model_path, "rb") as handle:
            model = handle.read()
        size, origin = arena_size(measured_arena, os.path.getsize(model_path))
        return MicroInterpreter(self.module, model, size, origin, model_path)


def _import(name: str) -> Runtime:
    if name == MICRO_RUNTIME:
        module, version = import_micro()
        return MicroRuntime(module, version)
    if name in ("ai_edge_litert", "tflite_runtime"):  # one layout: PACKAGE.interpreter
        package = importlib.import_module(name)
        module = importlib.import_module(f"{name}.interpreter")
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
    raise RuntimeUnavailable(
        f"unknown runtime {name!r}; choose from {', '.join(ALL_RUNTIMES)}"
    )


def load_runtime(prefer: str = "auto") -> Runtime:
    """The first runtime that imports, in the order of RUNTIMES (or exactly ``prefer``, which
    may also be ``tflite_micro``)."""
    names = RUNTIMES if prefer in ("auto", "", None) else (prefer,)
    failures = []
    for name in names:
        try:
            return _import(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    hint = "install tflite-micro" if names == (MICRO_RUNTIME,) else (
        "install ai-edge-litert or tflite-runtime"
    )
    raise RuntimeUnavailable(
        f"no TFLite runtime could be imported ({'; '.join(failures)}); {hint}"
    )
