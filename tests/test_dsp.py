import numpy as np
import pytest

from firmware_host.board.dsp import StreamAnalyzer, StreamSynthesizer, make_window
from tinysep.dsp import HOP_SAMPLES, N_BINS, N_FFT, istft, stft


def board_stft():
    """The board agent's hop-by-hop analysis and synthesis at the default framing."""
    analysis = make_window("hann_periodic", N_FFT, HOP_SAMPLES, analysis=True)
    synthesis = make_window("hann_periodic_ola", N_FFT, HOP_SAMPLES, analysis=False)
    return (StreamAnalyzer(N_FFT, HOP_SAMPLES, analysis),
            StreamSynthesizer(N_FFT, HOP_SAMPLES, synthesis, 1))


def test_perfect_reconstruction_on_random_audio():
    rng = np.random.default_rng(0)
    for n in (16000, 16000 + 77, 513):
        x = rng.uniform(-1, 1, n).astype(np.float32)
        spec = stft(x)
        assert spec.shape == (-(-n // HOP_SAMPLES) + 3, N_BINS)
        y = istft(spec, length=n)
        assert np.max(np.abs(y - x)) < 1e-6


def test_stft_frame_is_causal_window_of_last_samples():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(4000)
    spec = stft(x)
    t = 10
    segment = x[t * HOP_SAMPLES - (N_FFT - HOP_SAMPLES) : t * HOP_SAMPLES + HOP_SAMPLES]
    expected = np.fft.rfft(segment * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)))
    np.testing.assert_allclose(spec[t], expected, rtol=1e-4, atol=1e-4)
    # A tone lands in its bin.
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.argmax(np.abs(stft(tone)[50])) == round(1000 * N_FFT / 16000)


def test_streaming_matches_offline():
    rng = np.random.default_rng(2)
    n_hops = 60
    x = rng.uniform(-1, 1, n_hops * HOP_SAMPLES)
    offline = stft(x)
    analyser, synthesiser = board_stft()
    frames, out = [], []
    for t in range(n_hops):
        frame = analyser.push(x[t * HOP_SAMPLES : (t + 1) * HOP_SAMPLES])
        frames.append(frame[0])
        out.append(synthesiser.push(frame[None])[0])
    np.testing.assert_allclose(np.array(frames), offline[:n_hops], atol=1e-5)
    streamed = np.concatenate(out)
    # Output is the input delayed by n_fft - hop samples.
    d = N_FFT - HOP_SAMPLES
    assert d == 384
    assert np.max(np.abs(streamed[d:] - x[:-d])) < 1e-6
    assert np.max(np.abs(streamed[:d])) < 1e-6
    # The same holds for a modified spectrum: streaming inverse == offline inverse, delayed.
    masked = offline * rng.uniform(0, 1, offline.shape)
    synthesiser.reset()
    streamed = synthesiser.push(masked[None])[0]
    np.testing.assert_allclose(streamed[d:], istft(masked), atol=1e-5)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="mono"):
        stft(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="257"):
        istft(np.zeros((4, 100), dtype=np.complex64))
