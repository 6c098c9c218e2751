"""Reference methods for any source set, the four stems included: what a separator is
compared with, per source.

- ``mix``: the mixture as the estimate of every source (SDR gain over it is NSDR);
- ``irm``: the oracle ideal ratio mask per source, ``|S_i|^2 / sum_j |S_j|^2`` on the
  mixture STFT (it reads the references: an upper bound for a real-valued mask);
- ``hpss-drums``: drums = the percussive part of a harmonic/percussive split of the
  mixture (soft median-filtering mask); it estimates the drums only;
- ``lowpass-bass``: bass = the mixture below ``LOWPASS_HZ`` (an STFT brick-wall
  low-pass); it estimates the bass only.

On a clip of the two default sources ``mix`` and ``irm`` are exactly the classic
baselines of :mod:`tinysep.baselines`. A method that estimates some sources only is
marked ``partial``: evaluation scores those and counts the others as not estimated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinysep.baselines.hpss import KERNEL_SIZE as HPSS_KERNEL
from tinysep.baselines.masking import MAGNITUDE_FLOOR
from tinysep.baselines.simple import IRM_POWER
from tinysep.baselines.simple import separate_irm as classic_irm
from tinysep.baselines.simple import separate_mix as classic_mix
from tinysep.data.clip import SOURCES, Clip
from tinysep.dsp import N_FFT, SAMPLE_RATE, istft, stft

# Bass: bins below this frequency. Bass lines sit in 40-250 Hz with harmonics above; the
# kick drum shares the band, which is what makes this a reference, not a separator.
LOWPASS_HZ = 250.0

Separator = Callable[[Clip], dict[str, np.ndarray]]


def _default_pair(clip: Clip) -> bool:
    return tuple(getattr(clip, "sources", SOURCES)) == SOURCES


def separate_mix(clip: Clip) -> dict[str, np.ndarray]:
    """The mixture as the estimate of every source of the clip."""
    if _default_pair(clip):
        return classic_mix(clip)
    mixture = np.asarray(clip.mixture, np.float32)
    return {name: mixture.copy() for name in clip.sources}


def separate_irm(clip: Clip) -> dict[str, np.ndarray]:
    """Oracle ideal ratio mask of every source of the clip, applied to the mixture STFT."""
    if _default_pair(clip):
        return classic_irm(clip)
    spec = stft(np.asarray(clip.mixture, np.float32))
    powers = [np.abs(stft(np.asarray(clip.source(n), np.float32))) ** IRM_POWER
              for n in clip.sources]
    total = np.maximum(sum(powers), MAGNITUDE_FLOOR)
    return {name: istft(spec * (power / total), len(clip.mixture))
            for name, power in zip(clip.sources, powers, strict=True)}


def _needs(clip: Clip, source: str, method: str) -> None:
    if source not in getattr(clip, "sources", SOURCES):
        raise ValueError(f"{method} estimates {source}, which clip {clip.name} is not scored on "
                         f"(its sources: {', '.join(clip.sources)}); evaluate with --sources "
                         "vocals,drums,bass,other")


def separate_hpss_drums(clip: Clip) -> dict[str, np.ndarray]:
    """Drums = the soft percussive mask of a median-filtering HPSS of the mixture."""
    import librosa

    _needs(clip, "drums", "hpss-drums")
    spec = stft(np.asarray(clip.mixture, np.float32))
    # the vocals HPSS baseline's median filters, with no margin: every bin goes one way
    _, percussive = librosa.decompose.hpss(np.abs(spec).T, kernel_size=HPSS_KERNEL, power=2.0,
                                           mask=True)
    mask = np.clip(np.nan_to_num(percussive.T, nan=0.0), 0.0, 1.0)
    return {"drums": istft(spec * mask, len(clip.mixture))}


def lowpass_bins(cutoff_hz: float = LOWPASS_HZ) -> int:
    """STFT bins whose centre frequency is below ``cutoff_hz``."""
    return int(np.ceil(cutoff_hz * N_FFT / SAMPLE_RATE))


def separate_lowpass_bass(clip: Clip) -> dict[str, np.ndarray]:
    """Bass = the mixture's STFT bins below LOWPASS_HZ."""
    _needs(clip, "bass", "lowpass-bass")
    spec = stft(np.asarray(clip.mixture, np.float32))
    mask = np.zeros(spec.shape[1], np.float32)
    mask[:lowpass_bins()] = 1.0
    return {"bass": istft(spec * mask, len(clip.mixture))}


separate_hpss_drums.partial = True
separate_lowpass_bass.partial = True

REFERENCE_METHODS: dict[str, Separator] = {
    "mix": separate_mix,
    "irm": separate_irm,
    "hpss-drums": separate_hpss_drums,
    "lowpass-bass": separate_lowpass_bass,
}


def reference_method(name: str) -> Separator | None:
    """The reference method called ``name``, or None when it is not one of them."""
    return REFERENCE_METHODS.get(name)


def is_partial(separator) -> bool:
    """True for a method that estimates only some of a clip's sources."""
    return bool(getattr(separator, "partial", False))
