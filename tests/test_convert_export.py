"""`tinysep export` / export_bundle: the bundle's files agree with docs/bundle.md and with
each other, the folder appears only when complete, and bad input fails clearly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from convert_helpers import clips, corpus, fitted_model_folder, workdir

from cli.main import main
from convert.export import export_bundle
from convert.manifest import sha256_of
from convert.micro import plan_activations
from convert.tflite_model import TfliteModel, misaligned_buffers
from firmware_host.bundle import read_bundle
from firmware_host.bundle.quantization import dequantize


@pytest.fixture(scope="module")
def bundle() -> tuple[Path, dict]:
    out = workdir() / "bundle-k2"
    summary = export_bundle(fitted_model_folder("dualgate-tcn"), out, quant="int8",
                            frames_per_invoke=2, calibration=list(clips("train")),
                            calibration_frames=256, per_channel=True, micro_compact=True,
                            force=True, progress=False)
    return out, summary


def _c_array(folder: Path) -> bytes:
    source = (folder / "model_data.cc").read_text()
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", source))


def test_bundle_files_and_manifest_follow_the_contract(bundle):
    out, summary = bundle
    names = {p.name for p in out.iterdir()}
    assert names == {"model.tflite", "manifest.json", "model_data.cc", "model_data.h",
                     "micro_ops.txt", "edgetpu_report.json", "calibration.json"}
    m = read_bundle(out).manifest
    content = (out / "model.tflite").read_bytes()
    assert m["model"]["sha256"] == sha256_of(content) and m["model"]["bytes"] == len(content)
    assert m["model"]["quantization"] == "int8" and m["model"]["name"] == "dualgate-tcn"
    assert m["audio"] == {"sample_rate": 16000, "n_fft": 512, "hop_samples": 128,
                          "analysis_window": "hann_periodic",
                          "synthesis_window": "hann_periodic_ola", "frames_per_invoke": 2,
                          "latency_samples": 512 + 128}
    assert m["sources"] == ["vocals", "accompaniment"]
    assert m["input"]["shape"] == [1, 2, 257] and m["input"]["dtype"] == "int8"
    assert m["input"]["transform"] == {"kind": "log1p", "gain": 100.0}
    assert m["output"]["shape"] == [1, 2, 257, 2]
    # Tensor indices, positions, shapes and int8 params are the interpreter's own.
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    inputs = [d["index"] for d in interpreter.get_input_details()]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    entries = [(m["input"], inputs), (m["output"], outputs)]
    entries += [(s["input"], inputs) for s in m["states"]]
    entries += [(s["output"], outputs) for s in m["states"]]
    for entry, order in entries:
        d = details[entry["index"]]
        assert list(d["shape"]) == entry["shape"]
        assert d["quantization"] == (pytest.approx(entry["scale"]), entry["zero_point"])
        assert order[entry["position"]] == entry["index"]
    assert len(m["states"]) == summary["states"] == 4 * 2  # depthwise + SE window per block
    assert all(s["requantize"] == "copy" for s in m["states"])
    assert m["state_bytes"] == sum(int(np.prod(s["shape"])) for s in m["states"])
    # The C array is the same model for TFLite Micro, its all-zero per-channel zero-point
    # vectors cut to one value (--micro-compact), 16-byte aligned.
    source = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_tinysep_model_data[]" in source
    c_array = _c_array(out)
    assert len(c_array) == m["files"]["c_array_bytes"] < len(content)
    assert sha256_of(c_array) == m["files"]["c_array_sha256"]
    assert f"g_tinysep_model_data_len = {len(c_array)};" in source
    assert "extern const unsigned char g_tinysep_model_data[];" in (
        out / "model_data.h").read_text()
    assert misaligned_buffers(content) == misaligned_buffers(c_array) == []
    full, compact = TfliteModel(content), TfliteModel(c_array)
    shortened = 0
    for a, b in zip(full.tensors, compact.tensors, strict=True):
        assert (a.shape, a.dtype, a.scale, a.data_bytes) == (b.shape, b.dtype, b.scale,
                                                             b.data_bytes)
        if len(a.zero_point) > 1:
            assert b.zero_point == (0,) and not any(a.zero_point)
            shortened += 1
        else:
            assert a.zero_point == b.zero_point
    assert shortened > 10
    # The resolver registers exactly the ops in the file.
    model = TfliteModel(content)
    resolver = (out / "micro_ops.txt").read_text()
    assert f"MicroMutableOpResolver<{len(model.op_names)}>" in resolver
    assert re.findall(r"// (\w+)\n", resolver) == model.op_names == m["micro_ops"]
    # Internal tensor names are stripped; the signature still names the I/O.
    assert sum(bool(t.name) for t in model.tensors) == len(inputs) + len(outputs)


def test_arena_estimate_covers_the_live_tensors(bundle):
    out, summary = bundle
    model = TfliteModel((out / "model.tflite").read_bytes())
    peak, placed = plan_activations(model)
    arena = summary["arena_estimate"]
    assert arena["bytes"] == arena["activations"] + arena["persistent"] + arena["scratch"]
    assert arena["activations"] == peak
    # No two buffers that are live at once overlap.
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["size"] <= b["offset"] or \
                    b["offset"] + b["size"] <= a["offset"]
    # As in TFLite Micro's planner, all inputs are live at the start of an invoke and all
    # outputs at its end; an input's memory is reused once its last reader has run.
    def size(tensors):
        return sum(-(-model.tensors[t].nbytes // 16) * 16 for t in tensors)

    assert max(size(model.inputs), size(model.outputs)) <= peak < size(p["tensor"]
                                                                        for p in placed)


def test_edgetpu_report_checks_the_rules(bundle):
    out, _ = bundle
    report = json.loads((out / "edgetpu_report.json").read_text())
    assert report["compatible"] is True
    checks = {c["check"]: c["ok"] for c in report["checks"]}
    assert checks == {"one subgraph": True, "full int8": True, "static shapes": True,
                      "at most 3 inner dimensions above 1": True, "supported ops": True,
                      "op limits": True, "builtin ops only": True}
    import shutil

    if shutil.which("edgetpu_compiler") is None:
        assert report["compiler"]["ran"] is False
        assert "not on PATH" in report["compiler"]["reason"]


@pytest.mark.parametrize("sources", [["vocals", "accompaniment"],
                                     ["vocals", "drums", "bass", "other"]])
def test_anchored_masks_export_without_a_channel_pad(sources, tmp_path):
    """The anchored mask's fixed logit is built from ops the Edge TPU takes on the channel
    axis, and the int8 masks still sum to about one."""
    from test_models_support import randomize

    from tinysep.models import build_model, save_model

    model = randomize(build_model("dualgate-tcn", sources=sources, mask="anchored",
                                  residual=16, hidden=16, blocks=2, repeats=1), seed=3, scale=0.2)
    out = tmp_path / "b"
    export_bundle(save_model(model, tmp_path / "m"), out, quant="int8",
                  calibration=list(clips("train")), calibration_frames=64, progress=False)
    report = json.loads((out / "edgetpu_report.json").read_text())
    assert report["compatible"] is True, [c for c in report["checks"] if not c["ok"]]
    assert "PAD" not in TfliteModel((out / "model.tflite").read_bytes()).op_names
    m = read_bundle(out).manifest
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():  # features and states: any int8 values
        interpreter.set_tensor(d["index"], rng.integers(-128, 128, d["shape"], dtype=np.int8))
    interpreter.invoke()
    entry = m["output"]
    masks = dequantize(interpreter.get_tensor(entry["index"]), entry["scale"], entry["zero_point"])
    assert masks.shape[-1] == len(sources)
    np.testing.assert_allclose(masks.sum(axis=-1), 1.0, atol=0.02)
    assert masks.std() > 0.01  # not one constant split


def test_existing_bundle_needs_force_and_nothing_half_written_remains(bundle, tmp_path):
    out = tmp_path / "b"
    folder = fitted_model_folder("dualgate-tcn")
    export_bundle(folder, out, quant="float32", progress=False)
    first = read_bundle(out).manifest
    with pytest.raises(ValueError, match="already exists; pass --force"):
        export_bundle(folder, out, quant="float32", progress=False)
    export_bundle(folder, out, quant="dynamic", force=True, progress=False)
    assert read_bundle(out).manifest["model"]["quantization"] == "dynamic" != first["model"][
        "quantization"]
    # An export killed between its two renames: the user's bundle waits beside the folder.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.rename(tmp_path / f".b.old-{dead.pid}")
    (tmp_path / f".b.partial-{dead.pid}").mkdir()
    with pytest.raises(ValueError, match="already exists; pass --force"):  # put back, kept
        export_bundle(folder, out, quant="float32", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert read_bundle(out).manifest["model"]["quantization"] == "dynamic"
    # A failure during export leaves neither the bundle nor a temporary folder.
    bad = tmp_path / "bad"
    wrong_rate = [type(c)(c.name, c.mixture, c.vocals, c.accompaniment, 8000)
                  for c in clips("train")]
    with pytest.raises(ValueError, match="8000 Hz"):
        export_bundle(folder, bad, calibration=wrong_rate, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    # --force never deletes a folder that is not a bundle.
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a tinysep bundle"):
        export_bundle(folder, other, quant="float32", force=True, progress=False)
    assert (other / "keep.txt").read_text() == "mine"


def test_cli_export_and_its_errors(tmp_path, capsys):
    folder = fitted_model_folder("dualgate-tcn")
    out = tmp_path / "cli-bundle"
    args = ["export", str(folder), "--out", str(out), "--calibration", str(corpus()),
            "--calibration-frames", "128", "--no-progress", "--json", str(tmp_path / "s.json")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "copied byte for byte" in printed and "us per hop" in printed
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["model_bytes"] == (out / "model.tflite").stat().st_size
    assert _c_array(out) == (out / "model.tflite").read_bytes()  # no --micro-compact
    assert summary["host_latency"]["invoke_us_per_hop"] > 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x"), "--quant",
                 "float32"]) == 2
    assert "config.json is missing: not a saved tinysep model" in capsys.readouterr().err
    assert main(["export", str(folder), "--out", str(tmp_path / "y")]) == 2
    assert "needs --calibration" in capsys.readouterr().err
    empty = tmp_path / "empty-data"
    (empty / "Wavfile").mkdir(parents=True)
    assert main(["export", str(folder), "--out", str(tmp_path / "z"), "--calibration",
                 str(empty)]) == 2
    assert "no .wav files" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
