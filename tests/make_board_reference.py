"""Prepare `make board-test`: a bundle and the outputs the board environment must reproduce.

Run in the project's environment (TensorFlow, ai_edge_litert). Writes into OUT/:
``bundle/`` (exported by convert.export), ``reference.npz`` with a test signal, the int16
sources the agent's pipeline gives with the reference kernels, and tensor-mode inputs and
outputs (reference kernels: the same int8 results on every runtime version, but for int8
FULLY_CONNECTED, which can round a tie 1 LSB the other way).
Usage: python tests/make_board_reference.py OUT
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from board_bundle import make_bundle  # noqa: E402
from board_support import test_signal  # noqa: E402

from firmware_host.bundle import read_bundle  # noqa: E402
from hil.reference import HostPipeline  # noqa: E402

CHUNK = 1024


def main(out: Path) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(make_bundle(), out / "bundle")
    bundle = read_bundle(out / "bundle")
    pcm = test_signal(1.5, seed=9)
    pcm = pcm[: pcm.size // CHUNK * CHUNK]
    host = HostPipeline(bundle, kernels="reference")
    host.separator.reset()
    streamed = np.concatenate(
        [host.separator.process(pcm[i : i + CHUNK])[0] for i in range(0, pcm.size, CHUNK)], axis=1
    )
    inputs = host.tensor_check_inputs(pcm, 4)[3]
    outputs = host.run_tensors(inputs)
    arrays = {"pcm": pcm, "streamed_reference_kernels": streamed}
    arrays.update({f"tensor_in_{i}": a for i, a in enumerate(inputs)})
    arrays.update({f"tensor_out_{i}": a for i, a in enumerate(outputs)})
    np.savez(out / "reference.npz", **arrays)
    print(f"board-test reference: {out} ({host.runtime.label}, reference kernels, "
          f"{pcm.size} samples, {len(inputs)} model inputs)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(Path(sys.argv[1])))
