"""The board side (agent, wire protocol, byte streams, bundle contract) imports and runs with
nothing of the host: in a fresh interpreter where TensorFlow, tinysep, convert, calibration
and the harness cannot be imported, every board-side module loads and the agent's pipeline
separates audio with a real exported bundle on the TFLite runtime."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from board_bundle import make_bundle

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tinysep", "convert",
           "calibration", "scipy", "librosa", "matplotlib", "hil", "cli")

SCRIPT = r"""
import importlib, pkgutil, sys

BLOCKED = {blocked!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(name + " is not on a board")
        return None

sys.meta_path.insert(0, Blocker())
import firmware_host
names = ["firmware_host"]
names += [m.name for m in pkgutil.walk_packages(firmware_host.__path__, "firmware_host.")]
for name in names:
    importlib.import_module(name)

import numpy as np
from firmware_host.board.model_check import check_model
from firmware_host.board.pipeline import StreamingSeparator
from firmware_host.board.runtime import load_runtime
from firmware_host.bundle import read_bundle

bundle = read_bundle(sys.argv[1])
interpreter = load_runtime().make_interpreter(bundle.model_path)
check_model(bundle, interpreter)
separator = StreamingSeparator(bundle, interpreter)
rng = np.random.default_rng(0)
pcm = (rng.standard_normal(bundle.hop * 40) * 3000).astype(np.int16)
out, _, invokes = separator.process(pcm)
assert out.shape == (len(bundle.sources), pcm.size) and invokes == 40 // bundle.frames_per_invoke
assert np.any(out)
loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
assert not loaded, loaded
print(len(names), "modules")
"""


def test_board_side_runs_without_tensorflow_tinysep_and_the_harness():
    bundle = make_bundle()
    script = SCRIPT.format(blocked=BLOCKED)
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + script,
         str(bundle)],
        capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted((ROOT / "firmware_host").rglob("*.py"))
    assert int(result.stdout.split()[0]) == len(files)  # every module of the folder was imported
