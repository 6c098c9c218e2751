"""Validation SDR: separate a few valid clips with the model and score them with BSS-eval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tf_keras as keras

from tinysep.data.clip import Clip
from tinysep.metrics import score_estimates
from tinysep.models import separate


class NonFiniteOutput(ValueError):
    """The model produced NaN or infinite values (its weights diverged)."""


def validation_sdr(model: keras.Model, clips: Sequence[Clip]) -> dict[str, float | None]:
    """Mean BSS-eval SDR (dB) per source of the model over ``clips``, and ``mean`` over
    the sources.

    Sources skipped by the scorer (silent reference or estimate) are left out of the
    means; a source with no scored clip reads None. Raises :class:`NonFiniteOutput` if
    the model's output is not finite.
    """
    from tinysep.models.registry import model_sources

    sources = model_sources(model)
    values: dict[str, list[float]] = {name: [] for name in sources}
    for clip in clips:
        estimates = separate(model, clip.mixture)
        for name, audio in estimates.items():
            if not np.all(np.isfinite(audio)):
                raise NonFiniteOutput(f"the model's {name} estimate for valid clip {clip.name} "
                                      f"holds NaN or infinite samples")
        scores = score_estimates({n: clip.source(n) for n in sources}, estimates)
        for name in sources:
            if scores[name]["sdr"] is not None:
                values[name].append(scores[name]["sdr"])
    result: dict[str, float | None] = {
        name: float(np.mean(v)) if v else None for name, v in values.items()
    }
    present = [v for v in result.values() if v is not None]
    result["mean"] = float(np.mean(present)) if present else None
    return result
