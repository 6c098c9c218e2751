"""The STFT / inverse STFT of :mod:`tinysep.dsp` written in TensorFlow, and the losses.

Training computes spectrograms inside the graph so that a loss can also look at the
resynthesised waveform. Framing, windows and lengths are exactly those of
:func:`tinysep.dsp.stft` / :func:`tinysep.dsp.istft` at the model's framing (causal frames,
an analysis window and a synthesis window that overlap-add to one).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tinysep.dsp import DEFAULT_FRAMING, Framing, frame_count, framing_windows, get_framing
from tinysep.metrics.bss import FILTER_LENGTH
from tinysep.models.losses import chunk_magnitude_l1
from tinysep.models.registry import mask_delay_frames, model_framing
from tinysep.training.choices import LOSSES

# Keeps the SDR of a (near-)silent target chunk finite: 1e-3 of the mean chunk power
# of full-scale noise, i.e. -60 dB, far below any audible source.
SDR_EPSILON = 1e-6
# A source that is silent in a chunk (every sample zero: a chunk without a voice, or one
# without instruments) is scored against this share of the mixture's power instead: an
# estimate that leaks 30 dB below the mixture reads as -3 dB, true silence as 0 dB, at any
# level of the chunk.
SILENT_LEAK_FLOOR = 1e-3
SILENT_CHUNK_EPSILON = 1e-12  # -120 dB: a chunk silent throughout reads 0 dB
# Diagonal loading of the reference's autocorrelation in the BSS-eval loss, relative to its
# energy: keeps the normal equations of a band-limited reference solvable.
BSS_LOADING = 1e-8


def tf_stft(audio: tf.Tensor, framing: str | Framing = DEFAULT_FRAMING) -> tf.Tensor:
    """Complex STFT ``(B, frames, bins)`` of ``(B, samples)`` audio (as ``dsp.stft``)."""
    framing = get_framing(framing)
    n_fft, hop = framing.n_fft, framing.hop
    samples = int(audio.shape[-1])
    frames = frame_count(samples, framing=framing)
    front = n_fft - hop
    back = (frames - 1) * hop + n_fft - front - samples
    padded = tf.pad(audio, [[0, 0], [front, back]])
    window = tf.constant(framing_windows(framing)[0], tf.float32)
    framed = tf.signal.frame(padded, n_fft, hop)
    return tf.signal.rfft(framed * window, fft_length=[n_fft])


def tf_istft(spec: tf.Tensor, samples: int,
             framing: str | Framing = DEFAULT_FRAMING) -> tf.Tensor:
    """``(B, samples)`` audio from a complex STFT ``(B, frames, bins)`` (as ``dsp.istft``)."""
    framing = get_framing(framing)
    window = tf.constant(framing_windows(framing)[1], tf.float32)
    frames = tf.signal.irfft(spec, fft_length=[framing.n_fft]) * window
    audio = tf.signal.overlap_and_add(frames, framing.hop)
    front = framing.n_fft - framing.hop
    return audio[:, front : front + samples]


def sdr_db(reference: tf.Tensor, estimate: tf.Tensor,
           epsilon: tf.Tensor | float = SDR_EPSILON) -> tf.Tensor:
    """``(B,)`` plain SDR in dB, ``10 log10(|s|^2 / |s - s_hat|^2)``, of ``(B, samples)``
    references and estimates; ``epsilon`` (a mean power, or ``(B,)`` of them, see
    :func:`silence_epsilon`) keeps silent chunks finite: an estimate of a silent source
    reads as ``10 log10(epsilon / (|s_hat|^2 + epsilon))``, 0 dB when it is silent too."""
    signal = tf.reduce_mean(tf.square(reference), axis=-1) + epsilon
    error = tf.reduce_mean(tf.square(reference - estimate), axis=-1) + epsilon
    return 10.0 * tf.math.log(signal / error) / np.log(10.0)


def all_zero(waveforms: tf.Tensor) -> tf.Tensor:
    """Bools over all but the last axis of ``waveforms``: True where every sample is zero (a
    source left out of a chunk)."""
    return tf.equal(tf.reduce_max(tf.abs(waveforms), axis=-1), 0.0)


def silence_epsilon(reference: tf.Tensor, mixture_power: tf.Tensor) -> tf.Tensor:
    """``(B,)`` epsilons for :func:`sdr_db` / :func:`bss_sdr_db`: :data:`SDR_EPSILON` where
    the ``(B, samples)`` reference sounds, :data:`SILENT_LEAK_FLOOR` of the chunk's
    ``mixture_power`` (``(B,)`` mean powers) where it is all zeros, so a silent source's
    leak is weighed against the chunk's own level."""
    silent = all_zero(reference)
    relative = tf.maximum(SILENT_LEAK_FLOOR * mixture_power, SILENT_CHUNK_EPSILON)
    return tf.where(silent, relative, SDR_EPSILON)


def negative_sdr(reference: tf.Tensor, estimate: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of minus :func:`sdr_db`."""
    return -tf.reduce_mean(sdr_db(reference, estimate))


def bss_sdr_db(reference: tf.Tensor, estimate: tf.Tensor, taps: int = FILTER_LENGTH,
               epsilon: tf.Tensor | float = SDR_EPSILON) -> tf.Tensor:
    """``(B,)`` BSS-eval v3's SDR (dB): the estimate against the best ``taps``-tap filtering
    of the reference, the quantity ``tinysep eval`` reports.

    The filter solves the normal equations ``R h = b`` (``R`` the reference's Toeplitz
    autocorrelation, ``b`` its cross-correlation with the estimate); the target is then
    ``h^T b`` of the estimate's energy and the rest is error. Silent chunks read as in
    :func:`sdr_db`, with its ``epsilon``.
    """
    samples = int(reference.shape[-1])
    size = 1 << int(np.ceil(np.log2(samples + taps)))
    # in float64: a band-limited reference (a bass line) makes R ill-conditioned, and float32
    # round-off in its autocorrelation would leave it indefinite
    reference = tf.cast(reference, tf.float64)
    estimate = tf.cast(estimate, tf.float64)
    ref_f = tf.signal.rfft(reference, fft_length=[size])
    est_f = tf.signal.rfft(estimate, fft_length=[size])
    auto = tf.signal.irfft(ref_f * tf.math.conj(ref_f), fft_length=[size])[:, :taps]
    cross = tf.signal.irfft(est_f * tf.math.conj(ref_f), fft_length=[size])[:, :taps]
    lags = np.abs(np.arange(taps)[:, None] - np.arange(taps)[None, :])
    toeplitz = tf.gather(auto, lags, axis=1)  # (B, taps, taps)
    loading = (auto[:, :1] * BSS_LOADING + SDR_EPSILON)[:, :, None] * tf.eye(taps, dtype=auto.dtype)
    filt = tf.linalg.cholesky_solve(tf.linalg.cholesky(toeplitz + loading), cross[..., None])
    target = tf.reduce_sum(filt[..., 0] * cross, axis=-1) / samples
    energy = tf.reduce_mean(tf.square(estimate), axis=-1)
    error = tf.maximum(energy - target, 0.0)
    epsilon = tf.cast(epsilon, tf.float64)
    ratio = (target + epsilon) / (error + epsilon)
    return tf.cast(10.0 * tf.math.log(ratio) / np.log(10.0), tf.float32)


def negative_bss_sdr(reference: tf.Tensor, estimate: tf.Tensor,
                     taps: int = FILTER_LENGTH) -> tf.Tensor:
    """Mean over the batch of minus :func:`bss_sdr_db`."""
    return -tf.reduce_mean(bss_sdr_db(reference, estimate, taps))


def _as_complex(real: tf.Tensor) -> tf.Tensor:
    """``real + 0j`` as complex64. Built with ``tf.complex`` rather than ``tf.cast``: the
    gradient of a cast to complex casts the complex gradient back to float32, which drops
    its imaginary part with a TensorFlow warning; ``tf.complex`` takes the real part
    explicitly (the same values, silently)."""
    return tf.complex(real, tf.zeros_like(real))


def separation_loss(
    kind: str,
    mixture_spec: tf.Tensor,
    masks: tf.Tensor,
    target_magnitudes: tf.Tensor,
    targets: tf.Tensor,
    sdr_weight: float,
    weights: tf.Tensor | None = None,
    framing: str | Framing = DEFAULT_FRAMING,
) -> tf.Tensor:
    """The training loss ``kind`` (one of :data:`LOSSES`).

    - ``l1``: mean absolute error of the masked mixture magnitudes (paper 2's L1 loss in
      its spectral form, :func:`tinysep.models.magnitude_l1`);
    - ``sdr``: the negative plain SDR (dB) of the waveforms resynthesised with the mixture
      phase, averaged over both sources;
    - ``l1+sdr``: ``l1 + sdr_weight * sdr``;
    - ``bss-sdr``: as ``sdr``, but BSS-eval v3's SDR (:func:`bss_sdr_db`), which
      forgives a 512-tap filtering of each source as evaluation does.

    Shapes: ``mixture_spec`` complex ``(B, T, F)``, ``masks`` and ``target_magnitudes``
    ``(B, T, F, S)``, ``targets`` waveforms ``(B, S, samples)``. ``weights`` ``(B,)``
    scales each chunk's loss before the mean over the batch (None: all ones). The SDR of a
    target that is silent in a chunk is taken against a share of the chunk's power (the
    sum of its targets), see :func:`silence_epsilon`. ``framing`` is the STFT's (the
    resynthesis of the ``sdr`` losses).
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    per_chunk = tf.zeros(tf.shape(masks)[:1])
    if kind in ("l1", "l1+sdr"):
        per_chunk += chunk_magnitude_l1(tf.abs(mixture_spec), target_magnitudes, masks)
    if kind in ("sdr", "l1+sdr", "bss-sdr"):
        weight = sdr_weight if kind == "l1+sdr" else 1.0
        score = bss_sdr_db if kind == "bss-sdr" else sdr_db
        samples = int(targets.shape[-1])
        count = int(masks.shape[-1])
        mixture_power = tf.reduce_mean(tf.square(tf.reduce_sum(targets, axis=1)), axis=-1)
        scores = [score(targets[:, i],
                        tf_istft(mixture_spec * _as_complex(masks[..., i]), samples, framing),
                        epsilon=silence_epsilon(targets[:, i], mixture_power))
                  for i in range(count)]
        per_chunk -= weight * tf.add_n(scores) / count
    return tf.reduce_mean(per_chunk if weights is None else weights * per_chunk)


def separations(spec: tf.Tensor, masks: tf.Tensor, samples: int,
                framing: str | Framing = DEFAULT_FRAMING) -> tuple[tf.Tensor, tf.Tensor]:
    """What ``masks`` ``(B, T, F, S)`` separate from the mixture ``spec`` ``(B, T, F)``: the
    magnitudes ``(B, T, F, S)`` and the waveforms ``(B, S, samples)`` with the mixture phase
    (a teacher's separations, as targets)."""
    magnitudes = tf.abs(spec)[..., None] * masks
    waveforms = tf.stack([tf_istft(spec * _as_complex(masks[..., i]), samples, framing)
                          for i in range(int(masks.shape[-1]))], axis=1)
    return magnitudes, waveforms


def batch_loss(model, mixture: tf.Tensor, sources: tf.Tensor, kind: str, sdr_weight: float,
               training: bool, teacher=None, teacher_weight: float = 0.0,
               taught: tf.Tensor | None = None) -> tf.Tensor:
    """The loss ``kind`` of ``model`` on a batch: mixtures ``(B, samples)``, sources
    ``(B, 2, samples)`` (STFT, masks from the mixture magnitudes, loss). With a ``teacher``
    model, ``teacher_weight`` of it is the same loss against the teacher's separations
    (its masks on the mixture, resynthesised alike) instead of the true sources; ``taught``
    ``(B,)`` (None: all ones) scales the teacher's share chunk by chunk, so a chunk at 0
    learns from the true sources alone. A chunk in which a true source is silent learns
    from the true sources alone too: its answer is known exactly.

    A model with a look ahead (``mask_delay`` frames) sees the whole chunk, and the loss is
    taken on the part its masks reach: the chunk less that many hops at its end."""
    batch, count, samples = (int(d) for d in sources.shape)
    framing = model_framing(model)
    if teacher is not None and model_framing(teacher) != framing:
        raise ValueError(f"the teacher's framing {model_framing(teacher).name!r} is not the "
                         f"model's {framing.name!r}: its masks belong to other spectra")
    hop = framing.hop
    whole = tf_stft(mixture, framing)
    magnitudes = tf.abs(whole)
    nets = [model] if teacher is None else [model, teacher]
    lag = max(mask_delay_frames(net) for net in nets)
    kept = samples - lag * hop
    if kept < hop:
        raise ValueError(f"chunks of {samples} samples are too short for a look ahead of "
                         f"{lag} frames")
    spec = tf_stft(mixture[:, :kept], framing) if lag else whole
    sources = sources[..., :kept]
    frames = int(spec.shape[1])

    def aligned_masks(net, net_training: bool) -> tf.Tensor:
        delay = mask_delay_frames(net)
        return net(magnitudes, training=net_training)[:, delay : delay + frames]

    target = tf.abs(tf_stft(tf.reshape(sources, (batch * count, kept)), framing))
    target = tf.transpose(tf.reshape(target, (batch, count, *target.shape[1:])), (0, 2, 3, 1))
    masks = aligned_masks(model, training)
    if teacher is None:
        return separation_loss(kind, spec, masks, target, sources, sdr_weight,
                               framing=framing)
    taught_magnitudes, taught_sources = separations(
        spec, tf.stop_gradient(aligned_masks(teacher, False)), kept, framing)
    share = teacher_weight * (tf.ones((batch,)) if taught is None
                              else tf.cast(taught, tf.float32))
    share = tf.where(tf.reduce_any(all_zero(sources), axis=1), 0.0, share)
    return (separation_loss(kind, spec, masks, target, sources, sdr_weight, 1.0 - share,
                            framing)
            + separation_loss(kind, spec, masks, taught_magnitudes, taught_sources,
                              sdr_weight, share, framing))


__all__ = ["LOSSES", "batch_loss", "bss_sdr_db", "negative_bss_sdr", "negative_sdr", "sdr_db",
           "separation_loss", "separations", "silence_epsilon", "tf_istft", "tf_stft"]
