"""TensorFlow's start-up, without the CUDA and absl lines it writes on a machine with no GPU.

TensorFlow's native code writes "Could not find cuda drivers" and "failed call to cuInit"
straight to the process's stderr (file descriptor 2), before any Python logging setting
applies. ``import_tensorflow`` runs the import and the device set-up with descriptor 2
pointed at a temporary file, and prints what was captured only when the import fails.
The same capture keeps two other native notes off the terminal: an audio decoder's on a
broken file (the error that names the file says it all) and TensorFlow's wav encoder's in
training's audio logs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[tempfile.TemporaryFile]:
    """Point file descriptor 2 at a temporary file for the block (yields the file)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow() -> None:
    """Import TensorFlow and set up its CPU device quietly (once per process)."""
    if "tensorflow" in sys.modules:
        return
    with native_stderr_captured() as captured:
        try:
            import tensorflow as tf

            tf.config.list_logical_devices("CPU")
        except KeyboardInterrupt:
            raise  # Ctrl-C stops the command: not an import failure to show again
        except BaseException:
            failed = True
        else:
            failed = False
        if failed:
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
    if failed:
        sys.stderr.write(text)
        import tensorflow  # noqa: F401  (raise the import error again, now visible)


# TensorFlow's converter calibrates through its own (deprecated) tf.lite.Interpreter and
# warns about it; the kit itself runs models on ai_edge_litert only.
_CONVERTER_WARNING = r"\s*Warning: tf\.lite\.Interpreter is deprecated"


@contextlib.contextmanager
def quiet_runtime() -> Iterator[None]:
    """Run a TFLite conversion or interpreter set-up without the lines TensorFlow Lite
    writes from native code ("Created TensorFlow Lite XNNPACK delegate", "fully_quantize:
    ...") and without the converter's interpreter deprecation warning. Python's own
    ``sys.stderr`` (progress, messages) still reaches the terminal; the captured native
    text is printed if the block raises, so a failure keeps its explanation."""
    import warnings

    try:
        real_stderr = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real_stderr = False  # sys.stderr is captured in Python (tests): leave it be
    previous = sys.stderr
    kept = os.fdopen(os.dup(2), "w", buffering=1, errors="replace") if real_stderr else None
    failure = ""
    try:
        with native_stderr_captured() as captured:
            if kept is not None:
                sys.stderr = kept
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_CONVERTER_WARNING)
                    yield
            except BaseException:
                captured.seek(0)
                failure = captured.read().decode("utf-8", "replace")
                raise
            finally:
                sys.stderr = previous
                if kept is not None:
                    kept.close()
    except BaseException:
        sys.stderr.write(failure)
        raise
