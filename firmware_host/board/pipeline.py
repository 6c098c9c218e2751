"""The per-hop loop of docs/bundle.md: STFT -> input transform (and pooling) -> quantize ->
invoke every K frames -> masks (spread from pairs to bins) -> states carried -> per-source
inverse STFT -> int16.

``StreamingSeparator.process`` takes any whole number of hops and returns as many samples per
source; the output lags the input by ``bundle.delay_samples`` (the synthesis overlap plus K - 1
hops of invoke buffering, pre-filled with silence). The separator keeps the states itself and
sets every model input before each invoke, so tensor-mode calls in between do not disturb it.
"""

from __future__ import annotations

import time

import numpy as np

from firmware_host.bundle.features import input_features, magnitude, spread_pairs
from firmware_host.bundle.manifest import Bundle
from firmware_host.bundle.quantization import round_half_away

from .dsp import StreamAnalyzer, StreamSynthesizer, make_window

PCM_SCALE = 32768.0


def to_pcm(audio: np.ndarray) -> np.ndarray:
    """Float audio (full scale 1.0) -> int16: ``clip(round(y * 32768), -32768, 32767)``."""
    scaled = round_half_away(np.asarray(audio, dtype=np.float64) * PCM_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


class StreamingSeparator:
    """Streams int16 PCM through a bundle's model on one interpreter (see module docstring)."""

    def __init__(self, bundle: Bundle, interpreter):
        self.bundle = bundle
        self.interpreter = interpreter
        self.hop = bundle.hop
        self.frames_per_invoke = bundle.frames_per_invoke
        self.sources = len(bundle.sources)
        self.analyzer = StreamAnalyzer(
            bundle.n_fft,
            bundle.hop,
            make_window(bundle.analysis_window, bundle.n_fft, bundle.hop, analysis=True),
        )
        self.synthesizer = StreamSynthesizer(
            bundle.n_fft,
            bundle.hop,
            make_window(bundle.synthesis_window, bundle.n_fft, bundle.hop, analysis=False),
            self.sources,
        )
        self.invokes = 0
        self.reset()

    def reset(self) -> None:
        """Zero the STFT buffers and the model states; the next sample is stream position 0."""
        self.analyzer.reset()
        self.synthesizer.reset()
        self.pending = np.zeros((0, self.bundle.n_bins), dtype=np.complex64)
        self.states = [pair.input.zero() for pair in self.bundle.states]
        lead = (self.frames_per_invoke - 1) * self.hop
        self.backlog = np.zeros((self.sources, lead), dtype=np.float64)

    def features(self, spectra: np.ndarray) -> np.ndarray:
        """The model's float32 input ``(K, features)`` for spectra ``(K, bins)``: the manifest's
        transform of |X| (bins from ``pool_above`` up averaged in pairs)."""
        bundle = self.bundle
        return input_features(
            magnitude(spectra), bundle.transform_kind, bundle.transform_gain, bundle.pool_above
        )

    def bin_masks(self, masks: np.ndarray) -> np.ndarray:
        """Masks ``(..., features, S)`` of the model's positions -> ``(..., bins, S)``: each
        pooled pair's masks on both of its bins."""
        return spread_pairs(masks, self.bundle.pool_above)

    def run_model(self, quantized: np.ndarray):
        """One invoke on a quantized input ``(1, K, bins)``, carrying the states.

        Returns the raw (stored) mask tensor and the microseconds spent in ``invoke``.
        """
        bundle = self.bundle
        interpreter = self.interpreter
        set_tensor = interpreter.set_tensor
        get_tensor = interpreter.get_tensor
        set_tensor(bundle.input.index, quantized)
        states = self.states
        pairs = bundle.states
        for number in range(len(pairs)):
            set_tensor(pairs[number].input.index, states[number])
        start = time.perf_counter()
        interpreter.invoke()
        micros = (time.perf_counter() - start) * 1e6
        raw = get_tensor(bundle.output.index)
        self.states = [pair.carry(get_tensor(pair.output.index)) for pair in pairs]
        self.invokes += 1
        return raw, micros

    def invoke(self, spectra: np.ndarray):
        """One model run on K spectra; returns the model's masks ``(K, features, S)`` float32
        (one per input position: :meth:`bin_masks` spreads pooled pairs) and microseconds."""
        return self.invoke_features(self.features(spectra))

    def invoke_features(self, features: np.ndarray):
        """One model run on K frames of model input ``(K, features)`` float32: quantize, invoke
        (carrying the states), dequantize; returns masks ``(K, features, S)`` and
        microseconds."""
        quantized = self.bundle.input.quantize(np.asarray(features, dtype=np.float32)[None])
        raw, micros = self.run_model(quantized)
        return self.bundle.output.dequantize(raw)[0], micros

    def process(self, pcm: np.ndarray):
        """Separate ``h * hop`` int16 samples -> ``(int16 (S, h*hop), invoke_us, invokes)``.

        Element-wise steps (transform, quantize, dequantize, masking) run once per chunk on all
        its frames; only the invokes go frame block by frame block.
        """
        pcm = np.asarray(pcm)
        if pcm.ndim != 1 or pcm.size % self.hop:
            raise ValueError(
                f"expected a whole number of {self.hop}-sample hops, got shape {pcm.shape}"
            )
        spectra = self.analyzer.push(pcm.astype(np.float64) / PCM_SCALE)
        pending = np.concatenate((self.pending, spectra)) if self.pending.size else spectra
        step = self.frames_per_invoke
        ready = (pending.shape[0] // step) * step
        micros = 0.0
        invokes = ready // step
        if ready:
            frames = pending[:ready]
            quantized = self.bundle.input.quantize(self.features(frames))
            raw = np.empty((ready,) + self.bundle.output.shape[2:], self.bundle.output.np_dtype)
            for start in range(0, ready, step):
                block, spent = self.run_model(quantized[None, start : start + step])
                raw[start : start + step] = block[0]
                micros += spent
            masks = self.bin_masks(self.bundle.output.dequantize(raw))
            # source s of frame t: mask[t, :, s] * X[t] (mixture phase)
            separated = np.moveaxis(masks, -1, 0) * frames[None]
            audio = self.synthesizer.push(separated)
            self.backlog = np.concatenate((self.backlog, audio), axis=1)
        self.pending = pending[ready:]
        out = self.backlog[:, : pcm.size]
        self.backlog = self.backlog[:, pcm.size :]
        return to_pcm(out), int(round(micros)), invokes
