"""The host's int8 runner is the board agent's pipeline: on a real exported bundle, the same
runtime and kernels, its output equals the agent's (a separate process on a pseudo-terminal)
bit for bit, and ``separate`` is that int16 stream as float."""

from __future__ import annotations

import numpy as np
from board_bundle import SMALL_TCN, copy_bundle, make_bundle
from board_support import FAST_AGENT_ARGS, test_signal
from test_link_support import fast_host_config

from convert.runtime import BundleRunner
from firmware_host.board.pipeline import PCM_SCALE
from firmware_host.bundle import read_bundle
from hil.emulator import EmulatedBoard
from hil.session import BoardSession

CHUNK_HOPS = 8


def _stream_on_board(folder, bundle, pcm):
    """The clip streamed through the board agent (a separate process on a pseudo-terminal)
    in chunks of CHUNK_HOPS hops, after the agent checked the bundle."""
    with EmulatedBoard(folder, extra_args=FAST_AGENT_ARGS) as board:
        with BoardSession(port=board.path, config=fast_host_config(max_retries=30),
                          reply_timeout=5.0, connect_timeout=10.0) as session:
            session.connect()
            session.check(bundle)
            return session.stream_clip(pcm, CHUNK_HOPS)


def test_host_int8_runner_equals_the_board_agent_bit_for_bit(tmp_path):
    folder = copy_bundle(make_bundle(frames_per_invoke=2), tmp_path / "bundle")
    bundle = read_bundle(str(folder))
    pcm = test_signal(1.5, seed=11)
    runner = BundleRunner(bundle)
    host = runner.stream(pcm, CHUNK_HOPS * bundle.hop)
    streamed = _stream_on_board(folder, bundle, pcm)
    assert host.shape == (len(bundle.sources), pcm.size) and host.dtype == np.int16
    assert np.count_nonzero(host) > 0.5 * host.size  # real audio, not silence
    np.testing.assert_array_equal(streamed.sources, host)
    # The float interface is the same stream (any chunking: one chunk here) as float audio.
    separated = runner.separate(pcm.astype(np.float32) / np.float32(PCM_SCALE))
    whole = runner.stream(pcm)
    for number, source in enumerate(bundle.sources):
        np.testing.assert_array_equal(separated[source] * PCM_SCALE, whole[number])
    assert np.max(np.abs(whole.astype(np.int32) - host)) <= 1  # chunking moves a rounding


LONG_POOLED = {**SMALL_TCN, "framing": "long1024", "pool_above": 257, "mask": "anchored"}


def test_a_trained_long_framing_bundle_streams_on_the_board_as_on_the_host(tmp_path):
    """The long framing end to end: a pooled model fitted for two steps exports to a format 2
    int8 bundle with the default latency whose model takes the pooled features and gives
    pair masks (the board pools and spreads), and the agent's output equals the host
    runner's."""
    from tinysep.dsp import stft
    from tinysep.models import load_model, make_streaming_model, run_streaming, separate

    source, model_dir = make_bundle(options=LONG_POOLED, frames_per_invoke=2, train_steps=2,
                                    float_model=True)
    folder = copy_bundle(source, tmp_path / "bundle")
    bundle = read_bundle(str(folder))
    assert bundle.manifest["format_version"] == 2
    assert (bundle.n_fft, bundle.hop, bundle.n_bins) == (1024, 128, 513)
    assert bundle.analysis_window == "hann_rise832_fall192"
    assert bundle.synthesis_window == "hann512_over_rise832_fall192"
    assert bundle.latency_samples == 512 + 128 and bundle.delay_samples == 512
    assert (bundle.pool_above, bundle.n_features) == (257, 385)
    assert bundle.input.shape == (1, 2, 385) and bundle.output.shape == (1, 2, 385, 2)
    assert bundle.manifest["output"]["pool_above"] == 257
    assert "AVERAGE_POOL_2D" not in bundle.manifest["micro_ops"]
    pcm = test_signal(1.5, seed=12)
    runner = BundleRunner(bundle)
    # the int8 model's pair masks track the float streaming model's on the board's features
    spectra = stft(pcm.astype(np.float32) / np.float32(PCM_SCALE), framing="long1024")
    features = runner.separator.features(spectra)
    assert features.shape == (len(spectra), 385)
    masks = runner.run(features)
    expected = run_streaming(make_streaming_model(load_model(model_dir), 2), features)
    assert masks.shape == expected.shape == (len(spectra), 385, 2)
    assert np.mean(np.abs(masks - expected)) < 0.03
    spread = runner.bin_masks(masks)
    assert spread.shape == (len(spectra), 513, 2)
    np.testing.assert_array_equal(spread[:, 258::2], spread[:, 257::2])
    host = runner.stream(pcm, CHUNK_HOPS * bundle.hop)
    streamed = _stream_on_board(folder, bundle, pcm)
    assert np.count_nonzero(host) > 0.5 * host.size
    np.testing.assert_array_equal(streamed.sources, host)
    # aligned with the float model's own long-framing separation
    mixture = pcm.astype(np.float32) / np.float32(PCM_SCALE)
    floats = separate(load_model(model_dir), mixture)
    for number, source_name in enumerate(bundle.sources):
        reference = floats[source_name]
        error = host[number] / PCM_SCALE - reference
        assert 10 * np.log10(np.sum(reference**2) / np.sum(error**2)) > 20.0
