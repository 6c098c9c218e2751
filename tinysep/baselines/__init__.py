"""Classic separation baselines, each ``separate(clip) -> {"vocals": a, "accompaniment": a}``.

``METHODS`` maps a method name to its function; every output has the clip's length.
Only ``irm`` (the oracle) reads the clip's references; the others read ``clip.mixture``.

Extension point: evaluation resolves a method name through
:func:`tinysep.evaluate.resolve_separator`, which consults this registry. Trained
models (``model:PATH``) are added there by the evaluation layer, not here, so this package
stays below the model layer and never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinysep.baselines.hpss import separate_hpss
from tinysep.baselines.repet import separate_repet, separate_repet_mfcc, separate_repet_sim
from tinysep.baselines.simple import separate_irm, separate_mix
from tinysep.data.clip import Clip

Separator = Callable[[Clip], dict[str, np.ndarray]]

METHODS: dict[str, Separator] = {
    "mix": separate_mix,
    "hpss": separate_hpss,
    "repet": separate_repet,
    "repet-sim": separate_repet_sim,
    "repet-mfcc": separate_repet_mfcc,
    "irm": separate_irm,
}
# Methods that read the references: upper bounds, not separators.
ORACLE_METHODS = frozenset({"irm"})


def get_method(name: str) -> Separator:
    """The baseline called ``name``; a clear error lists the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown separation method {name!r}; expected one of {', '.join(METHODS)}"
        ) from None


__all__ = ["METHODS", "ORACLE_METHODS", "Separator", "get_method"]
