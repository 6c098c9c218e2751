"""Shared pieces of the board-agent and HIL tests (no tests here).

``ThreadAgent`` serves the real agent on the master end of a real pseudo-terminal pair in a
thread of the test process (fast to start); ``host_client`` opens the slave end like a serial
port. Subprocess boards (restart, freeze) use ``hil.emulator.EmulatedBoard``.
``offline_int8`` is an independent reference for the agent's pipeline: the offline STFT of
tinysep.dsp, the interpreter's signature runner, and the offline inverse STFT.
"""

from __future__ import annotations

import threading

import numpy as np
from test_link_support import fast_board_config, fast_host_config

from firmware_host.board.agent import BoardAgent
from firmware_host.board.runtime import load_runtime
from firmware_host.protocol.link import Link
from firmware_host.transport import open_port
from hil.client import BoardClient
from hil.emulator import PtyPair

FAST_AGENT_ARGS = ["--ack-timeout", "0.05", "--max-retries", "12"]


class ThreadAgent:
    """The board agent on a pseudo-terminal (or on ``stream``), served by a thread."""

    def __init__(self, bundle_dir, stream=None, limits=None, adapt=None,
                 **agent_options) -> None:
        """``limits``: HELLO limits the board announces (``fast_board_config`` keywords);
        ``adapt(agent)``: changes the agent before it serves (a firmware with other
        capabilities, a crafted reply)."""
        self.logs = []
        self.pair = PtyPair() if stream is None else None
        self.path = self.pair.slave_path if self.pair is not None else None
        self.agent = BoardAgent(str(bundle_dir), load_runtime(), log=self.logs.append,
                                **agent_options)
        if adapt is not None:
            adapt(self.agent)
        stream = self.pair.master_stream() if stream is None else stream
        self.link = Link(stream, fast_board_config(**(limits or {})), name="board")
        self.link.announce()
        self._stopping = False
        self._thread = threading.Thread(
            target=self.agent.serve, args=(self.link, lambda: self._stopping), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=5.0)
        self.link.close()
        if self.pair is not None:
            self.pair.close()

    def __enter__(self) -> ThreadAgent:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def host_client(path: str, **config) -> BoardClient:
    """A host Link + BoardClient on a device path (pyserial), connected."""
    link = Link(open_port(path), fast_host_config(**config), name="host")
    client = BoardClient(link, timeout=10.0)
    client.connect(timeout=10.0)
    return client


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """int16 music-like test audio: a few partials with vibrato plus noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000.0
    audio = np.zeros_like(t)
    for _ in range(6):
        f0 = rng.uniform(110, 1800)
        vibrato = 3 * np.sin(2 * np.pi * 5 * t)
        audio += rng.uniform(0.02, 0.12) * np.sin(2 * np.pi * f0 * t + vibrato)
    audio += 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.6)
    return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)


test_signal.__test__ = False  # a helper, not a pytest test


def offline_int8(bundle, pcm: np.ndarray) -> np.ndarray:
    """Separated int16 sources ``(S, n)`` computed offline, independently of the agent's code."""
    from ai_edge_litert.interpreter import Interpreter

    from tinysep.dsp import istft, stft

    audio = pcm.astype(np.float64) / 32768.0
    spectra = stft(audio)
    runner = Interpreter(model_path=bundle.model_path).get_signature_runner()
    k = bundle.frames_per_invoke
    frames = -(-spectra.shape[0] // k) * k
    padded = np.zeros((frames, spectra.shape[1]), np.complex64)
    padded[: spectra.shape[0]] = spectra
    gain = np.float32(bundle.transform_gain)
    states = {p.input.name: p.input.zero() for p in bundle.states}
    masks = []
    for start in range(0, frames, k):
        magnitude = np.abs(padded[start : start + k]).astype(np.float32)
        features = np.log1p(gain * magnitude)
        q = np.clip(
            np.round(features / bundle.input.scale) + bundle.input.zero_point, -128, 127
        ).astype(np.int8)
        result = runner(**{bundle.input.name: q[None]}, **states)
        out = result[bundle.output.name].astype(np.float32)
        masks.append((out[0] - bundle.output.zero_point) * bundle.output.scale)
        for pair in bundle.states:
            value = result[pair.output.name]
            real = (value.astype(np.float32) - pair.output.zero_point) * pair.output.scale
            states[pair.input.name] = np.clip(
                np.round(real / pair.input.scale) + pair.input.zero_point, -128, 127
            ).astype(np.int8)
    masks = np.concatenate(masks)[: spectra.shape[0]]
    sources = [istft(spectra * masks[..., s], length=pcm.size) for s in range(masks.shape[-1])]
    return np.clip(np.round(np.stack(sources) * 32768), -32768, 32767).astype(np.int16)
