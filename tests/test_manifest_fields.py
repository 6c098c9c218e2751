"""manifest.json fields a reader relies on: source names (they become output file names),
the sample rate and the latency. Bundles here are real folders with a manifest in the
exporter's layout and a model file whose size and sha256 it records (no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from firmware_host.bundle import BundleError, read_bundle
from firmware_host.bundle.manifest import MAX_SOURCES, check_source_names

MODEL_BYTES = b"TFL3" + bytes(range(256)) * 4


def _tensor(name: str, index: int, shape: list) -> dict:
    return {"name": name, "index": index, "shape": shape, "dtype": "int8",
            "scale": 0.05, "zero_point": -128}


def _manifest(frames_per_invoke: int = 1, sources=("vocals", "accompaniment")) -> dict:
    k = frames_per_invoke
    return {
        "format": "tinysep-bundle",
        "format_version": 1,
        "model": {"file": "model.tflite", "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
                  "bytes": len(MODEL_BYTES), "quantization": "int8"},
        "audio": {"sample_rate": 16000, "n_fft": 512, "hop_samples": 128,
                  "analysis_window": "hann_periodic", "synthesis_window": "hann_periodic_ola",
                  "frames_per_invoke": k, "latency_samples": 512 + (k - 1) * 128},
        "sources": list(sources),
        "input": {**_tensor("spectrum", 0, [1, k, 257]),
                  "transform": {"kind": "log1p", "gain": 100.0}},
        "output": _tensor("masks", 1, [1, k, 257, len(sources)]),
        "states": [],
    }


def _write(folder: Path, manifest: dict) -> Path:
    folder.mkdir()
    (folder / "model.tflite").write_bytes(MODEL_BYTES)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("k", [1, 3])
def test_a_manifest_in_the_exporter_layout_loads(tmp_path, k):
    bundle = read_bundle(_write(tmp_path / "b", _manifest(k)))
    assert bundle.sources == ["vocals", "accompaniment"]
    assert bundle.sample_rate == 16000
    assert bundle.latency_samples == 512 + (k - 1) * 128 == bundle.delay_samples + bundle.hop


@pytest.mark.parametrize(
    "sources, message",
    [
        (["/tmp/victim", "accompaniment"], r"'/tmp/victim' is not a plain source name"),
        (["../../../victim2", "vocals"], r"'\.\./\.\./\.\./victim2' is not a plain source name"),
        (["a/b", "vocals"], r"'a/b' is not a plain source name"),
        (["vocals", "a\\b"], r"'a\\\\b' is not a plain source name"),
        (["vocals", ".."], r"'\.\.' is not a plain source name"),
        (["vocals", "-rf"], r"'-rf' is not a plain source name"),
        (["vocals", "x" * 33], r"'x{33}' is not a plain source name"),
        (["vocals", ""], r"'' is not a plain source name"),
        (["vocals", 7], r"7 is not a plain source name"),
        (["vocals", "vocals"], r"'vocals' repeats an earlier name"),
        (["vocals", "Vocals"], r"'Vocals' repeats an earlier name \(names are compared ignoring"),
        ([], r"sources must be a list of 1 to 255 source names, got \[\]"),
        ("vocals", r"sources must be a list of 1 to 255 source names, got 'vocals'"),
    ],
)
def test_source_names_that_are_not_plain_unique_file_names_are_refused(
    tmp_path, sources, message
):
    manifest = _manifest()
    manifest["sources"] = sources
    folder = _write(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match=message) as caught:
        read_bundle(folder)
    assert str(caught.value).startswith(f"{folder / 'manifest.json'}: sources")


def test_the_source_name_rule_keeps_error_lines_short_and_bounds_the_count():
    with pytest.raises(BundleError) as caught:
        check_source_names(["v" * 1_000_000], "sources")
    assert len(str(caught.value)) < 300
    names = [f"s{i}" for i in range(MAX_SOURCES)]
    assert check_source_names(names, "sources") == names
    with pytest.raises(BundleError, match="1 to 255 source names"):
        check_source_names(names + ["extra"], "sources")
    assert check_source_names(["Lead_vocals-2", "b"], "sources") == ["Lead_vocals-2", "b"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("latency_samples", -5, r"audio.latency_samples must be .* = 512, got -5$"),
        ("latency_samples", 1e15, r"audio.latency_samples must be .* got 1000000000000000\.0$"),
        ("latency_samples", 511, r"audio.latency_samples must be .* = 512, got 511$"),
        ("latency_samples", True, r"audio.latency_samples must be .* = 512, got True$"),
        ("latency_samples", "512", r"audio.latency_samples must be .* = 512, got '512'$"),
        ("sample_rate", 44100, r"audio.sample_rate must be 16000 .*, got 44100$"),
        ("sample_rate", 16000.0, r"audio.sample_rate must be a positive integer, got 16000.0$"),
        ("sample_rate", -16000, r"audio.sample_rate must be a positive integer, got -16000$"),
    ],
)
def test_audio_fields_out_of_range_are_refused(tmp_path, field, value, message):
    manifest = _manifest()
    manifest["audio"][field] = value
    folder = _write(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match=message) as caught:
        read_bundle(folder)
    assert str(caught.value).startswith(str(folder / "manifest.json"))


def test_latency_follows_the_frames_per_invoke(tmp_path):
    manifest = _manifest(frames_per_invoke=3)
    manifest["audio"]["latency_samples"] = 512  # the one-frame value
    with pytest.raises(BundleError, match=r"= 768, got 512$"):
        read_bundle(_write(tmp_path / "b", manifest))
    del manifest["audio"]["latency_samples"]
    with pytest.raises(BundleError, match=r"manifest.json: audio.latency_samples is missing"):
        read_bundle(_write(tmp_path / "c", manifest))


def test_separate_refuses_a_bundle_whose_sources_point_outside_the_output(tmp_path, capsys):
    import numpy as np
    import soundfile

    from cli.main import main

    manifest = _manifest(sources=("vocals", "../../victim"))
    folder = _write(tmp_path / "bundle", manifest)
    song = tmp_path / "song.wav"
    soundfile.write(str(song), np.zeros(16000, np.float32), 16000)
    out = tmp_path / "a" / "b"
    status = main(["separate", str(song), "--out", str(out), "--model", str(folder),
                   "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err
    assert "manifest.json: sources: '../../victim' is not a plain source name" in err
    assert "Traceback" not in err
    assert not (tmp_path / "victim.wav").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.wav")) == ["song.wav"]


@pytest.mark.parametrize("key, value", [("analysis_window", "boxcar"),
                                        ("synthesis_window", "hann_periodic"),
                                        ("analysis_window", ["hann_periodic"])])
def test_a_window_this_reader_does_not_compute_is_refused_naming_the_manifest(tmp_path, key,
                                                                              value):
    manifest = _manifest()
    manifest["audio"][key] = value
    folder = _write(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match=rf"manifest.json: audio.{key} must be '"):
        read_bundle(folder)


def test_a_format_version_written_as_a_string_is_told_apart_from_the_number(tmp_path):
    manifest = _manifest()
    manifest["format_version"] = "1"
    with pytest.raises(BundleError, match="format_version '1' is not supported by this agent "
                       r"\(it reads the JSON numbers 1, 2\)"):
        read_bundle(_write(tmp_path / "b", manifest))


def _long_manifest(frames_per_invoke: int = 1, version: int = 2) -> dict:
    k = frames_per_invoke
    manifest = _manifest(k)
    manifest["format_version"] = version
    manifest["audio"].update(n_fft=1024, analysis_window="hann_rise832_fall192",
                             synthesis_window="hann512_over_rise832_fall192",
                             latency_samples=512 + (k - 1) * 128)
    manifest["input"]["shape"] = [1, k, 513]
    manifest["output"]["shape"] = [1, k, 513, 2]
    return manifest


@pytest.mark.parametrize("k", [1, 3])
def test_a_long_framing_manifest_is_format_2_with_the_default_latency(tmp_path, k):
    bundle = read_bundle(_write(tmp_path / "b", _long_manifest(k)))
    assert bundle.framing.name == "long1024" and bundle.n_bins == 513
    assert bundle.latency_samples == 512 + (k - 1) * 128 == bundle.delay_samples + bundle.hop
    manifest = _long_manifest(k)
    manifest["audio"]["latency_samples"] = 1024 + (k - 1) * 128  # n_fft is not the span
    with pytest.raises(BundleError, match=rf"audio.latency_samples must be the synthesis span "
                       rf"\(512 samples for the long1024 framing\) .* = {512 + (k - 1) * 128}"):
        read_bundle(_write(tmp_path / "c", manifest))


def test_format_1_reads_only_the_default_framing(tmp_path):
    folder = _write(tmp_path / "b", _long_manifest(version=1))
    with pytest.raises(BundleError, match=r"audio.analysis_window 'hann_rise832_fall192' belongs "
                       r"to the long1024 framing, which needs format_version 2; this manifest "
                       r"is format_version 1 \(known framings: hann512 .*long1024"):
        read_bundle(folder)
    # the default framing is still read under format 2
    manifest = _manifest()
    manifest["format_version"] = 2
    assert read_bundle(_write(tmp_path / "c", manifest)).framing.name == "hann512"


@pytest.mark.parametrize("key, value, message", [
    ("analysis_window", "hann_rise800_fall224",
     r"audio.analysis_window must be 'hann_periodic' or 'hann_rise832_fall192' \(known "
     r"framings: hann512 \(n_fft 512, hann_periodic / hann_periodic_ola, format_version >= 1\), "
     r"long1024 \(n_fft 1024, .*\), got 'hann_rise800_fall224'$"),
    ("synthesis_window", "hann_periodic_ola",
     r"audio.synthesis_window 'hann512_over_rise832_fall192' is the one that pairs with "
     r"analysis_window 'hann_rise832_fall192' \(the long1024 framing\), got "
     r"'hann_periodic_ola'"),
    ("n_fft", 512, r"audio.n_fft must be 1024 for the long1024 framing's windows, got 512"),
    ("hop_samples", 256, r"audio.hop_samples must be 128 for the long1024 framing, got 256"),
])
def test_long_framing_fields_that_do_not_belong_together_are_refused(tmp_path, key, value,
                                                                       message):
    manifest = _long_manifest()
    manifest["audio"][key] = value
    with pytest.raises(BundleError, match=message) as caught:
        read_bundle(_write(tmp_path / "b", manifest))
    assert str(caught.value).startswith(str(tmp_path / "b" / "manifest.json"))


def _pooled_manifest(frames_per_invoke: int = 1, pool_above: int = 257) -> dict:
    k = frames_per_invoke
    manifest = _long_manifest(k)
    features = pool_above + (513 - pool_above) // 2
    manifest["input"]["shape"] = [1, k, features]
    manifest["input"]["transform"]["pool_above"] = pool_above
    manifest["output"]["shape"] = [1, k, features, 2]
    manifest["output"]["pool_above"] = pool_above
    return manifest


@pytest.mark.parametrize("k", [1, 2])
def test_a_pooled_manifest_takes_pooled_features_and_gives_pair_masks(tmp_path, k):
    bundle = read_bundle(_write(tmp_path / "b", _pooled_manifest(k)))
    assert (bundle.pool_above, bundle.n_bins, bundle.n_features) == (257, 513, 385)
    assert bundle.input.shape == (1, k, 385) and bundle.output.shape == (1, k, 385, 2)
    plain = read_bundle(_write(tmp_path / "c", _long_manifest(k)))
    assert (plain.pool_above, plain.n_features) == (0, 513)
    manifest = _long_manifest(k)
    manifest["input"]["transform"]["pool_above"] = 0  # 0: no pooling
    assert read_bundle(_write(tmp_path / "d", manifest)).n_features == 513


@pytest.mark.parametrize("change, message", [
    (lambda m: m["input"]["transform"].update(pool_above=256),
     r"input.transform.pool_above must leave an even number of bins \(at least 2\) from it "
     r"to the last of the 513 bins .*got 256$"),
    (lambda m: m["input"]["transform"].update(pool_above=512),
     r"input.transform.pool_above must leave an even number of bins \(at least 2\) .*got 512$"),
    (lambda m: m["input"]["transform"].update(pool_above=600),
     r"input.transform.pool_above must leave an even number .*got 600$"),
    (lambda m: m["input"]["transform"].update(pool_above=-1),
     r"input.transform.pool_above must be a bin index \(an integer >= 0\), got -1$"),
    (lambda m: m["input"]["transform"].update(pool_above=257.0),
     r"input.transform.pool_above must be a bin index \(an integer >= 0\), got 257.0$"),
    (lambda m: m["input"]["transform"].update(pool_above=True),
     r"input.transform.pool_above must be a bin index \(an integer >= 0\), got True$"),
    (lambda m: m["input"]["transform"].update(pool_above="257"),
     r"input.transform.pool_above must be a bin index \(an integer >= 0\), got '257'$"),
    (lambda m: m["output"].pop("pool_above"),
     r"output.pool_above must equal input.transform.pool_above \(257: .*\), got 0$"),
    (lambda m: m["output"].update(pool_above=255),
     r"output.pool_above must equal input.transform.pool_above \(257: .*\), got 255$"),
    (lambda m: m["input"].update(shape=[1, 1, 513]),
     r"input.shape must be \[1, 1, 385\] \(frames_per_invoke, pool_above \+ \(n_fft/2\+1 - "
     r"pool_above\)/2 = 257 \+ 256/2\), got \[1, 1, 513\]$"),
    (lambda m: m["output"].update(shape=[1, 1, 513, 2]),
     r"output.shape must be \[1, 1, 385, 2\] \(one mask per source and input position\), got "
     r"\[1, 1, 513, 2\]$"),
])
def test_bad_pooling_fields_are_refused_naming_the_field(tmp_path, change, message):
    manifest = _pooled_manifest()
    change(manifest)
    with pytest.raises(BundleError, match=message) as caught:
        read_bundle(_write(tmp_path / "b", manifest))
    assert str(caught.value).startswith(str(tmp_path / "b" / "manifest.json"))


def test_a_pooled_manifest_needs_format_2_even_at_the_default_framing(tmp_path):
    manifest = _manifest()
    manifest["input"]["transform"]["pool_above"] = 129
    manifest["input"]["shape"] = [1, 1, 193]
    manifest["output"].update(shape=[1, 1, 193, 2], pool_above=129)
    with pytest.raises(BundleError, match=r"input.transform.pool_above needs format_version 2"):
        read_bundle(_write(tmp_path / "b", manifest))
    manifest["format_version"] = 2
    assert read_bundle(_write(tmp_path / "c", manifest)).n_features == 193


@pytest.mark.parametrize(("change", "message"), [
    ({"provenance": "x"}, "provenance must be an object or null, got str"),
    ({"arena_tflite_micro": {"bytes": 10**20}},
     "arena_tflite_micro.bytes must be at most 1073741824 (1 GiB)"),
])
def test_edited_provenance_and_arena_fields_are_refused_naming_them(tmp_path, change, message):
    folder = _write(tmp_path / "b", {**_manifest(), **change})
    with pytest.raises(BundleError, match=f"manifest.json: {message}".replace("(", r"\(")
                       .replace(")", r"\)")):
        read_bundle(str(folder), verify_model=False)
    fine = _write(tmp_path / "ok", {**_manifest(), "provenance": None,
                                    "arena_tflite_micro": {"bytes": 62_912}})
    assert read_bundle(str(fine), verify_model=False).arena_tflite_micro == 62_912


def test_a_manifest_nested_too_deep_is_one_error_not_a_recursion(tmp_path):
    folder = _write(tmp_path / "b", _manifest())
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nests JSON arrays or objects too deeply"):
        read_bundle(str(folder))
