"""Model sizes as the kit reports them: the deploy form of a TFLite model, KiB everywhere.

Every command that names a model's size measures the same bytes, the ones a bundle ships
(``model.tflite`` with internal tensor names stripped, see :func:`deploy_form`), and
writes them the same way: KiB (1024 bytes) first, exact bytes after.
"""

from __future__ import annotations

KIB = 1024


def deploy_form(content: bytes) -> bytes:
    """``content`` as a bundle ships it: internal tensor names stripped (the input, output
    and state names the manifest uses stay). Quantizing alone keeps every name, which
    makes the same model some 20 KiB bigger."""
    from convert.tflite_model import TfliteModel

    model = TfliteModel(content)
    model.strip_internal_names()
    return model.to_bytes()


def kib(n_bytes: float) -> str:
    """``"253.4 KiB"``."""
    return f"{n_bytes / KIB:,.1f} KiB"


def size_text(n_bytes: int) -> str:
    """``"253.4 KiB (259,472 B)"``."""
    return f"{kib(n_bytes)} ({int(n_bytes):,} B)"


def budget_text(n_bytes: int, budget: int) -> str:
    """``"budget 256 KiB ok"`` (or ``OVER``)."""
    verdict = "ok" if n_bytes <= budget else "OVER"
    return f"budget {budget / KIB:g} KiB {verdict}"
