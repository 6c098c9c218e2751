"""One model, one size, one unit, one sign, one option name, and no TensorFlow Lite noise:
``export``, ``quantize`` and ``prune`` on the same tiny model and corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from train_helpers import TINY

from cli.main import main

NOISE = ("XNNPACK", "fully_quantize", "tf.lite.Interpreter is deprecated", "cuda")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    import tf_keras as keras

    from tinysep.data.synth import write_corpus
    from tinysep.models import build_model, save_model

    root = tmp_path_factory.mktemp("consistency")
    # Some random tiny int8 models make XNNPACK refuse to prepare a node; seed 0 does not.
    keras.utils.set_random_seed(0)
    write_corpus(root / "corpus", songs=4, seconds=3.0, seed=3, progress=False)
    model = save_model(build_model("dualgate-tcn", **TINY), root / "model")
    return model, root / "corpus"


def _sizes(text: str) -> list[int]:
    """Every ``N.N KiB (N,NNN B)`` in ``text``, as bytes (the KiB figure checked too)."""
    found = []
    for kib, exact in re.findall(r"([\d,]+\.\d) KiB \(([\d,]+) B\)", text):
        n = int(exact.replace(",", ""))
        assert float(kib.replace(",", "")) == pytest.approx(n / 1024, abs=0.05)
        found.append(n)
    return found


def test_export_quantize_and_prune_report_the_same_int8_size(inputs, tmp_path, capfd):
    model, corpus = inputs
    bundle, quantized = tmp_path / "bundle", tmp_path / "quantized"
    assert main(["export", str(model), "--out", str(bundle), "--calibration", str(corpus),
                 "--calibration-frames", "64", "--no-progress", "--no-edgetpu-compiler"]) == 0
    export_out, export_err = capfd.readouterr()
    shipped = (bundle / "model.tflite").stat().st_size
    assert _sizes(export_out)[0] == shipped
    assert "budget 256 KiB ok" in export_out and " KB" not in export_out

    # --mode is the old spelling of --quant: still accepted, not shown in the help.
    assert main(["quantize", str(model), "--data", str(corpus), "--out", str(quantized),
                 "--mode", "int8", "--calibration-frames", "64", "--eval-clips", "1",
                 "--no-progress"]) == 0
    quant_out, quant_err = capfd.readouterr()
    assert (quantized / "model.tflite").stat().st_size == shipped
    assert _sizes(quant_out) == [shipped]
    report = json.loads((quantized / "quantize.json").read_text())
    assert report["bytes"] == shipped
    vocals = report["sdr"]["vocals"]
    assert vocals["drop_db"] == pytest.approx(vocals["sdr_reference"] - vocals["sdr"])
    assert f"drop {vocals['drop_db']:+.3f} dB (float - int8" in quant_out
    assert "delta" not in quant_out

    assert main(["prune", str(model), "--data", str(corpus), "--out", str(tmp_path / "p"),
                 "--narrow", "hidden=4", "--steps", "0", "--no-progress"]) == 0
    prune_out, prune_err = capfd.readouterr()
    before = json.loads((tmp_path / "p" / "prune_report.json").read_text())["sizes_before"]
    assert before["int8_tflite_bytes"] == shipped
    assert f"int8_tflite {shipped / 1024:,.1f} KiB ({shipped:,} B)" in prune_out

    for text in (export_out, export_err, quant_out, quant_err, prune_out, prune_err):
        for word in NOISE:
            assert word not in text, (word, text)


def test_quant_is_the_option_name_everywhere():
    from cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("quantize", "export", "sweep", "demo"):
        help_text = sub.choices[name].format_help()
        assert not re.search(r"--mode\b", help_text), name
    for name in ("quantize", "export", "demo"):
        assert "--quant " in sub.choices[name].format_help(), name
    assert sub.choices["quantize"].parse_args(["m", "--data", "d", "--out", "o",
                                               "--mode", "float16"]).quant == "float16"
