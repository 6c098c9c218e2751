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


LONG = "long1024"


def test_the_long_windows_overlap_add_to_one():
    from firmware_host.bundle.layout import FRAMINGS
    from tinysep.dsp import framing_windows

    framing = FRAMINGS[LONG]
    analysis, synthesis = framing_windows(LONG)
    assert analysis.shape == synthesis.shape == (1024,)
    rise = 1024 - 192
    assert analysis[rise] == 1.0 and 0.0 < analysis[1023] < 1e-3
    assert np.all(synthesis[:513] == 0.0) and np.all(synthesis[513:] > 0.0)
    product = analysis * synthesis
    summed = sum(product[k * framing.hop:(k + 1) * framing.hop] for k in range(1024 // 128))
    np.testing.assert_allclose(summed, 1.0, atol=1e-12)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, 16000 + 77).astype(np.float32)
    spec = stft(x, framing=LONG)
    assert spec.dtype == np.complex64
    assert spec.shape == (-(-x.size // 128) + 7, 513)
    assert np.max(np.abs(istft(spec, x.size, framing=LONG) - x)) < 1e-5


def test_long_framing_streams_as_offline_with_the_default_latency():
    from firmware_host.bundle.layout import FRAMINGS

    framing = FRAMINGS[LONG]
    rng = np.random.default_rng(4)
    n_hops = 40
    x = rng.uniform(-1, 1, n_hops * HOP_SAMPLES)
    offline = stft(x, framing=LONG)
    analyser = StreamAnalyzer(1024, 128, make_window(framing.analysis_window, 1024, 128, True))
    synthesiser = StreamSynthesizer(
        1024, 128, make_window(framing.synthesis_window, 1024, 128, False), 1)
    assert synthesiser.span == 512 and synthesiser.tail.shape == (1, 384)
    frames = np.concatenate([analyser.push(x[t * 128:(t + 1) * 128]) for t in range(n_hops)])
    np.testing.assert_allclose(frames, offline[:n_hops], atol=1e-5)
    # released 512 - 128 samples after arrival, as the default framing's synthesizer does
    d = framing.delay_samples(1)
    assert d == N_FFT - HOP_SAMPLES == 384
    masked = offline * rng.uniform(0, 1, offline.shape)
    streamed = synthesiser.push(masked[None])[0]
    inverse = istft(masked, framing=LONG)
    np.testing.assert_allclose(streamed[d:d + inverse.size], inverse, atol=1e-5)
    synthesiser.reset()
    unmasked = synthesiser.push(offline[None, :n_hops])[0]
    assert np.max(np.abs(unmasked[:d])) < 1e-6
    assert np.max(np.abs(unmasked[d:] - x[:-d])) < 1e-5
