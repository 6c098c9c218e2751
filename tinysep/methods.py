"""Separation methods by name: what ``tinysep eval --method NAME`` runs.

A name is a classic baseline of :data:`tinysep.baselines.METHODS`, or ``prefix:ARG`` for a
prefix in :data:`SEPARATOR_FACTORIES` (``model:PATH`` loads a saved model once per process).
Separators are built once per process and cached; the evaluation runner
(:mod:`tinysep.evaluate`) hands the factory table to its worker processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from firmware_host.bundle.layout import MANIFEST_FILE
from firmware_host.bundle.manifest import file_digest
from tinysep.baselines import Separator, get_method

_separators: dict[str, Separator] = {}

# Method names ``prefix:ARGUMENT`` are built by a factory ``function(ARGUMENT) -> Separator``.
# Factories are module-level functions, so that spawned evaluation workers (which receive a
# pickled copy of this table: references to the functions) can import them. tinysep knows
# ``model:`` for saved Keras model folders; a higher layer may register a factory that knows
# more (the ``tinysep eval`` command registers the convert layer's, which also runs deploy
# bundles). Filled in below :func:`keras_model_separator`.
SEPARATOR_FACTORIES: dict[str, Callable[[str], Separator]] = {}


def register_separator_factory(prefix: str, factory: Callable[[str], Separator]) -> None:
    """Interpret method names ``prefix:ARG`` with ``factory(ARG) -> Separator`` (a
    module-level function); separators already resolved are forgotten."""
    if not prefix.isidentifier() or not callable(factory) or "<" in getattr(
            factory, "__qualname__", "<"):
        raise ValueError(f"bad separator factory {prefix!r} -> {factory!r}; expected an "
                         "identifier and a module-level function")
    SEPARATOR_FACTORIES[prefix] = factory
    _separators.clear()


def model_folder(path: str | Path) -> Path:
    """The folder a ``model:PATH`` names: PATH itself, or the bundle / model folder of a
    file inside it (``bundle/model.tflite``, ``run/config.json``). Raises with what was
    expected when PATH is neither."""
    path = Path(path)
    expected = "a saved model folder (config.json + weights) or a deploy bundle folder " \
               "(manifest.json)"
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file() or (path / "config.json").is_file():
            return path
        raise ValueError(f"model:{path}: a folder with neither manifest.json nor config.json; "
                         f"expected {expected}")
    if path.is_file():
        folder = path.parent
        if (folder / MANIFEST_FILE).is_file() or (folder / "config.json").is_file():
            return folder
        raise ValueError(f"model:{path}: a file with neither manifest.json nor config.json "
                         f"beside it; expected {expected}")
    raise FileNotFoundError(f"model:{path}: no such file or folder")


# The files a model folder is loaded from: a saved Keras model's, a deploy bundle's.
MODEL_FILE_PATTERNS = ("config.json", "*.h5", MANIFEST_FILE, "*.tflite")


def method_fingerprint(name: str) -> str | None:
    """A digest of the files a ``prefix:PATH`` method runs (None for a classic method), so a
    saved score can be told apart from the scores of other weights at the same PATH."""
    prefix, sep, argument = name.partition(":")
    if not sep or prefix not in SEPARATOR_FACTORIES:
        return None
    folder = model_folder(argument)
    files = sorted({f for pattern in MODEL_FILE_PATTERNS for f in folder.glob(pattern)
                    if f.is_file()})
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file_digest(str(file)))
    return digest.hexdigest()[:16]


def keras_model_separator(path: str) -> Separator:
    """Float separation with the model saved in folder ``path`` (loaded once)."""
    from tinysep.quiet import import_tensorflow

    import_tensorflow()  # in a worker process too: without the CUDA / absl start-up lines

    from tinysep.models import load_model, separate

    folder = model_folder(path)
    if (folder / MANIFEST_FILE).is_file():
        raise ValueError(f"{folder} is a deploy bundle, not a saved Keras model: bundles run "
                         "on the TFLite interpreter, which `tinysep eval` provides")
    model = load_model(folder)
    return lambda clip: separate(model, clip.mixture)


SEPARATOR_FACTORIES["model"] = keras_model_separator


def _build_separator(name: str) -> Separator:
    prefix, sep, argument = name.partition(":")
    if not sep or prefix not in SEPARATOR_FACTORIES:
        from tinysep.metrics.references import reference_method

        return reference_method(name) or get_method(name)
    if not argument:
        raise ValueError(f"method {name!r}: {prefix}: needs a path, e.g. {prefix}:runs/best")
    return SEPARATOR_FACTORIES[prefix](argument)


def resolve_separator(name: str) -> Separator:
    """The ``separate(clip)`` function for a method name, cached per process.

    Extension point: this is where method names are interpreted. A baseline name from
    :data:`tinysep.baselines.METHODS`, or ``prefix:ARG`` for a prefix in
    :data:`SEPARATOR_FACTORIES` (``model:PATH`` loads a saved model once per process).
    """
    if name not in _separators:
        _separators[name] = _build_separator(name)
    return _separators[name]


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names -> list, each checked to resolve; duplicates rejected."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--method needs at least one method name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"method listed twice: {', '.join(duplicates)}")
    for name in names:
        resolve_separator(name)
    return names
