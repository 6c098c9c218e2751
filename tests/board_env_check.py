"""`make board-test`: the board agent in a board's environment (Python 3.7, numpy < 2,
tflite_runtime; no TensorFlow, no tinysep, no pyserial), driven over a real pseudo-terminal
by a minimal client built from the protocol package alone.

Checks: INFO names tflite_runtime and the bundle's model; streamed audio equals the agent's
pipeline run in this process (same runtime: bit-exact) and adds up to the delayed input;
with reference kernels tensor mode is within 1 LSB of the outputs the project's environment
(ai_edge_litert, numpy 2) computed (int8 FULLY_CONNECTED rounds some ties differently across
runtime versions) and the stream within 60 dB; bad requests get error codes; a corrupt upload
leaves the model in place. Usage: python tests/board_env_check.py DIR (from
tests/make_board_reference.py). Exit status 1 on the first failed check.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from firmware_host.board.model_check import check_model  # noqa: E402
from firmware_host.board.pipeline import StreamingSeparator  # noqa: E402
from firmware_host.board.runtime import load_runtime  # noqa: E402
from firmware_host.bundle import read_bundle  # noqa: E402
from firmware_host.protocol.errors import PeerError  # noqa: E402
from firmware_host.protocol.link import Link, LinkConfig  # noqa: E402
from firmware_host.protocol.messages import AudioChunk, ErrorCode, Tensor  # noqa: E402
from firmware_host.transport import open_port  # noqa: E402
from hil.client import BoardClient  # noqa: E402
from hil.emulator import EmulatedBoard  # noqa: E402

CHUNK = 1024
FAST = ["--ack-timeout", "0.1"]


class CheckFailed(Exception):
    pass


def check(condition, text: str) -> None:
    if not condition:
        raise CheckFailed(text)
    print("  ok  " + text)


def connect(path: str) -> BoardClient:
    client = BoardClient(Link(open_port(path), LinkConfig(ack_timeout=0.1), name="host"), 10.0)
    client.connect(timeout=20.0)
    return client


def stream(client: BoardClient, pcm: np.ndarray):
    client.reset_state()
    chunks = [AudioChunk(i, pcm[i : i + CHUNK]) for i in range(0, pcm.size, CHUNK)]
    replies = list(client.stream(chunks))
    positions = [r.position for r in replies]
    check(positions == list(range(0, pcm.size, CHUNK)), "every chunk answered once, in order")
    return np.concatenate([r.sources for r in replies], axis=1), replies


def main(folder: str) -> int:
    runtime = load_runtime()
    print(f"board environment: Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{runtime.label}")
    check(runtime.name == "tflite_runtime", "the agent's runtime here is tflite_runtime")
    check("serial" not in sys.modules and "tinysep" not in sys.modules, "no pyserial, no tinysep")
    bundle_dir = os.path.join(folder, "bundle")
    bundle = read_bundle(bundle_dir)
    reference = np.load(os.path.join(folder, "reference.npz"))
    pcm = reference["pcm"]

    interpreter = runtime.make_interpreter(bundle.model_path)
    check_model(bundle, interpreter)
    local = StreamingSeparator(bundle, interpreter)
    expected = np.concatenate(
        [local.process(pcm[i : i + CHUNK])[0] for i in range(0, pcm.size, CHUNK)], axis=1
    )
    with EmulatedBoard(bundle_dir, extra_args=FAST) as board:
        client = connect(board.path)
        info = client.info()
        check(info.runtime == runtime.label and info.delegate == "cpu",
              f"INFO: {info.agent_version}, {info.runtime} [{info.delegate}]")
        check(info.model_sha256.hex() == bundle.model_sha256, "INFO: the bundle's model sha256")
        check(client.ping(b"board") < 2.0, "PING answered")
        start = time.perf_counter()
        separated, replies = stream(client, pcm)
        seconds = time.perf_counter() - start
        check(np.array_equal(separated, expected), "streamed audio equals the local pipeline")
        total = separated.astype(np.int32).sum(axis=0)[bundle.delay_samples :]
        error = int(np.abs(total - pcm[: total.size]).max())
        check(error <= 2, f"sources add up to the input delayed by the latency ({error} LSB)")
        invoke = [r.invoke_us / max(1, r.n_invokes) for r in replies]
        print(f"      {pcm.size / 16000.0 / seconds:.1f}x real time, "
              f"invoke median {np.median(invoke):.0f} us")
        try:
            client.separate(AudioChunk(12345, pcm[:CHUNK]))
            code = None
        except PeerError as exc:
            code = exc.code
        check(code == ErrorCode.BAD_AUDIO, "a non-contiguous chunk gets BAD_AUDIO")
        try:
            client.upload(b"\x00garbage" * 300)
            code = None
        except PeerError as exc:
            code = exc.code
        check(code == ErrorCode.UPLOAD_INVALID_MODEL, "a corrupt upload gets UPLOAD_INVALID_MODEL")
        check(client.info().model_sha256.hex() == bundle.model_sha256, "the old model stayed")
        client.link.close(close_stream=True)

    with EmulatedBoard(bundle_dir, extra_args=FAST + ["--kernels", "reference"]) as board:
        client = connect(board.path)
        check(client.info().delegate == "cpu-reference", "reference kernels on request")
        separated, _ = stream(client, pcm)
        # Reference kernels of two runtime versions (tflite_runtime 2.11 here, ai_edge_litert
        # 2.3 there) agree on every op but int8 FULLY_CONNECTED, which can round a tie the
        # other way: 1 LSB, measured. The check allows that and says how far the audio moved.
        expected = reference["streamed_reference_kernels"].astype(np.int64)
        audio_lsb = int(np.abs(separated.astype(np.int64) - expected).max())
        error = float(np.sum((separated.astype(np.float64) - expected) ** 2))
        below_db = 10 * np.log10(float(np.sum(expected.astype(np.float64) ** 2)) / max(error, 1e-9))
        check(below_db >= 60.0,
              f"reference kernels: audio matches the project's environment (largest difference "
              f"{audio_lsb} LSB, the difference {below_db:.1f} dB below the signal)")
        inputs = [reference[f"tensor_in_{i}"] for i in range(len(interpreter.get_input_details()))]
        reply = client.run_tensors([Tensor(i, a) for i, a in enumerate(inputs)])
        tensor_lsb = max(
            int(np.abs(t.array.astype(np.int64)
                       - reference[f"tensor_out_{t.index}"].astype(np.int64)).max())
            for t in reply.tensors
        )
        check(tensor_lsb <= 1 and len(reply.tensors) == len(interpreter.get_output_details()),
              f"reference kernels: tensor-mode outputs within 1 LSB of the project's environment "
              f"(largest difference {tensor_lsb} LSB)")
        client.link.close(close_stream=True)
    print("board-test: all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/board_env_check.py DIR")
    try:
        sys.exit(main(sys.argv[1]))
    except CheckFailed as exc:
        print(f"board-test FAILED: {exc}")
        sys.exit(1)
