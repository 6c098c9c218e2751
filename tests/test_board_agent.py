"""The board agent: bundle checks, the streaming pipeline against an offline reference, and every
request served over a real pseudo-terminal (info, audio, tensors, errors, model upload).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from board_bundle import copy_bundle, make_bundle
from board_support import ThreadAgent, host_client, offline_int8, test_signal

from firmware_host.board.agent import PENDING_MANIFEST, BoardAgent
from firmware_host.board.model_check import bind_by_position, check_model
from firmware_host.board.pipeline import StreamingSeparator
from firmware_host.board.runtime import load_runtime
from firmware_host.bundle import BundleError, read_bundle
from firmware_host.protocol.errors import PeerError
from firmware_host.protocol.messages import (
    AudioChunk,
    ErrorCode,
    Info,
    MessageType,
    Tensor,
    UploadBegin,
    UploadChunk,
    UploadEnd,
)
from hil.reference import HostPipeline


def _pipeline(bundle_dir):
    bundle = read_bundle(bundle_dir)
    interpreter = load_runtime().make_interpreter(bundle.model_path)
    check_model(bundle, interpreter)
    return bundle, StreamingSeparator(bundle, interpreter)


def _stream(separator, pcm, chunk):
    pieces = [separator.process(pcm[i : i + chunk])[0] for i in range(0, pcm.size, chunk)]
    return np.concatenate(pieces, axis=1)


def _edit_manifest(folder, edit):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


# ------------------------------------------------------------------ bundle contract


def test_bundle_errors_name_the_file_and_the_field(tmp_path):
    bundle = copy_bundle(make_bundle(), tmp_path / "b")
    read_bundle(bundle)  # the good one loads
    with pytest.raises(BundleError, match="manifest.json is missing"):
        read_bundle(tmp_path)
    _edit_manifest(bundle, lambda m: m.update(format_version=3))
    with pytest.raises(BundleError, match="format_version 3 is not supported"):
        read_bundle(bundle)
    _edit_manifest(bundle, lambda m: m.update(format_version=1))
    _edit_manifest(bundle, lambda m: m["audio"].update(frames_per_invoke=0))
    with pytest.raises(BundleError, match="audio.frames_per_invoke must be a positive integer"):
        read_bundle(bundle)
    _edit_manifest(bundle, lambda m: m["audio"].update(frames_per_invoke=1))
    _edit_manifest(bundle, lambda m: m["model"].update(file="../model.tflite"))
    with pytest.raises(BundleError, match="plain file name inside the bundle"):
        read_bundle(bundle)


def test_a_manifest_that_does_not_belong_to_the_model_is_refused(tmp_path):
    bundle = copy_bundle(make_bundle(), tmp_path / "b")
    other = make_bundle(seed=8)  # same layout, other weights
    (bundle / "model.tflite").write_bytes((other / "model.tflite").read_bytes())
    with pytest.raises(BundleError, match="the manifest does not belong to this model"):
        read_bundle(bundle)
    # sha256 fixed up but the scales still those of the first model
    data = (other / "model.tflite").read_bytes()
    _edit_manifest(bundle, lambda m: m["model"].update(sha256=hashlib.sha256(data).hexdigest()))
    checked = read_bundle(bundle)
    interpreter = load_runtime().make_interpreter(checked.model_path)
    with pytest.raises(BundleError, match="does not match the model: .*scale"):
        check_model(checked, interpreter)


# ------------------------------------------------------------------ pipeline


def test_pipeline_matches_an_offline_int8_reference_and_ignores_chunking():
    bundle, separator = _pipeline(make_bundle())
    pcm = test_signal(1.5)
    delay = bundle.delay_samples
    padded = np.concatenate([pcm, np.zeros(1024 * 2 - (pcm.size % 1024) + delay, np.int16)])
    padded = padded[: padded.size // 1024 * 1024]
    streamed = _stream(separator, padded, 1024)[:, delay : delay + pcm.size]
    reference = offline_int8(bundle, pcm)
    diff = np.abs(streamed.astype(np.int32) - reference)
    assert diff.max() <= 2, f"agent pipeline vs offline reference: {diff.max()} LSB"
    assert np.abs(reference).max() > 1000  # the comparison is not between two silences
    separator.reset()
    other = _stream(separator, padded, 384)[:, delay : delay + pcm.size]
    assert np.abs(other.astype(np.int32) - streamed).max() <= 1


def test_frames_per_invoke_delays_the_output_by_the_manifest_latency():
    bundle, separator = _pipeline(make_bundle(frames_per_invoke=3))
    assert bundle.delay_samples == 512 - 128 + 2 * 128
    pcm = test_signal(0.6, seed=1)
    padded = np.concatenate([pcm, np.zeros(2048, np.int16)])[: (pcm.size // 640 + 3) * 640]
    out = _stream(separator, padded, 640)
    assert out.shape == (2, padded.size)
    # softmax masks sum to one: the sources add up to the input, delayed by the latency
    total = out.astype(np.int32).sum(axis=0)[bundle.delay_samples :][: pcm.size]
    assert np.abs(total - pcm[: total.size]).max() <= 2
    lead = (bundle.frames_per_invoke - 1) * bundle.hop
    assert not out[:, :lead].any()  # K - 1 hops of silence while the first invoke fills up
    reference = offline_int8(bundle, pcm)
    aligned = out[:, bundle.delay_samples : bundle.delay_samples + pcm.size]
    assert np.abs(aligned.astype(np.int32) - reference).max() <= 2


# ------------------------------------------------------------------ serving over a pty


def test_agent_serves_info_ping_audio_and_tensors_over_a_pty():
    bundle_dir = make_bundle()
    bundle = read_bundle(bundle_dir)
    host = HostPipeline(bundle)
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        info = client.info()
        assert info.has_model and info.model_sha256.hex() == bundle.model_sha256
        assert info.runtime.startswith("ai_edge_litert") and info.delegate == "cpu"
        assert info.manifest == bundle.manifest and info.model_size == bundle.model_bytes
        assert client.ping(b"abc") < 1.0

        pcm = test_signal(1.0, seed=2)[:8192]
        client.reset_state()
        chunks = [AudioChunk(i, pcm[i : i + 1024]) for i in range(0, pcm.size, 1024)]
        replies = list(client.stream(chunks))
        assert [r.position for r in replies] == list(range(0, pcm.size, 1024))
        assert all(r.n_invokes == 8 and r.invoke_us > 0 for r in replies)
        board_out = np.concatenate([r.sources for r in replies], axis=1)
        host.separator.reset()
        expected_audio = _stream(host.separator, np.concatenate([pcm, pcm[:1024]]), 1024)
        assert np.array_equal(board_out, expected_audio[:, : pcm.size])

        inputs = host.tensor_check_inputs(pcm, 3)[2]
        reply = client.run_tensors([Tensor(i, a) for i, a in enumerate(inputs)])
        expected = host.run_tensors(inputs)
        assert len(reply.tensors) == len(expected)
        for tensor, want in zip(reply.tensors, expected, strict=True):
            assert tensor.array.dtype == want.dtype and np.array_equal(tensor.array, want)
        # tensor mode left the stream state alone: audio continues where it stopped
        more = client.separate(AudioChunk(pcm.size, pcm[:1024]))
        assert np.array_equal(more.sources, expected_audio[:, pcm.size :])
        client.link.close()


def test_agent_answers_bad_requests_with_error_codes_and_keeps_going():
    bundle_dir = make_bundle()
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        client.reset_state()
        pcm = test_signal(0.2)[:1024]
        with pytest.raises(PeerError) as err:
            client.separate(AudioChunk(0, pcm[:1000]))
        assert err.value.code == ErrorCode.BAD_AUDIO and "whole number" in err.value.text
        client.separate(AudioChunk(0, pcm))
        with pytest.raises(PeerError) as err:
            client.separate(AudioChunk(4096, pcm))  # a gap: a lost chunk must not go unnoticed
        assert err.value.code == ErrorCode.BAD_AUDIO and "expected 1024" in err.value.text
        with pytest.raises(PeerError) as err:
            client.separate(AudioChunk(0, pcm))  # a repeat
        assert err.value.code == ErrorCode.BAD_AUDIO
        client.separate(AudioChunk(1024, pcm))  # the state was kept

        details = board.agent.model.input_details
        with pytest.raises(PeerError) as err:
            client.run_tensors([Tensor(0, np.zeros(details[0]["shape"], np.int8))])
        assert err.value.code == ErrorCode.BAD_TENSOR and "inputs once" in err.value.text
        wrong = [Tensor(i, np.zeros(d["shape"], np.int16)) for i, d in enumerate(details)]
        with pytest.raises(PeerError) as err:
            client.run_tensors(wrong)
        assert err.value.code == ErrorCode.BAD_TENSOR and "int16" in err.value.text

        with pytest.raises(PeerError) as err:
            client.request(Info("x", "y", "z"), Info)  # a board-to-host message
        assert err.value.code == ErrorCode.UNEXPECTED
        client.link.close()
    assert board.agent.handle(0x7F, b"").code == ErrorCode.UNKNOWN_TYPE
    assert board.agent.handle(MessageType.AUDIO_CHUNK, b"\x01").code == ErrorCode.BAD_MESSAGE


def test_an_error_mid_stream_is_settled_before_the_next_clip_starts():
    bundle_dir = make_bundle()
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        pcm = test_signal(0.6, seed=3)[:8192]
        client.reset_state()
        # the second chunk leaves a gap: it and the 3 chunks in flight behind it get BAD_AUDIO
        positions = [0, 2048, 3072, 4096, 5120, 6144]
        chunks = [AudioChunk(p, pcm[i * 1024 : (i + 1) * 1024]) for i, p in enumerate(positions)]
        with pytest.raises(PeerError) as err:
            list(client.stream(chunks, max_outstanding=4))
        assert err.value.code == ErrorCode.BAD_AUDIO and "expected 1024" in err.value.text
        assert client.discarded == 3 and client.owed == 0
        client.reset_state()  # its own OK, not the ERROR for position 4096
        replies = list(client.stream([AudioChunk(i, pcm[i : i + 1024]) for i in (0, 1024)]))
        assert [r.position for r in replies] == [0, 1024]
        client.link.close()
    assert not any("dropped" in line for line in board.logs), board.logs


# ------------------------------------------------------------------ model upload


def _listing(folder):
    return sorted(os.listdir(folder))


def test_upload_of_a_retrained_model_swaps_it_in_and_rewrites_the_manifest(tmp_path):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    new_model = (make_bundle(seed=8) / "model.tflite").read_bytes()
    new_sha = hashlib.sha256(new_model).hexdigest()
    outside = _listing(tmp_path)
    inside = _listing(bundle_dir)
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        done = client.upload(new_model, chunk_size=3000)
        assert done.sha256.hex() == new_sha
        info = client.info()
        assert info.model_sha256.hex() == new_sha and info.manifest["model"]["sha256"] == new_sha
        client.reset_state()
        pcm = test_signal(0.2)[:2048]
        reply = client.separate(AudioChunk(0, pcm))
        client.link.close()
    assert _listing(tmp_path) == outside  # nothing written outside the bundle folder
    assert _listing(bundle_dir) == inside  # no temporary files left
    rebooted = read_bundle(bundle_dir)  # the bundle on disk is consistent: a restart loads it
    assert rebooted.model_sha256 == new_sha
    exported = read_bundle(make_bundle(seed=8)).manifest
    for key in ("input", "output", "states"):  # scales and zero points of the new model
        assert rebooted.manifest[key] == exported[key], key
    assert rebooted.manifest["states"] != read_bundle(make_bundle()).manifest["states"]
    _, separator = _pipeline(bundle_dir)
    assert np.array_equal(reply.sources, separator.process(pcm)[0])
    # the C array and the provenance still describe the earlier model: not vouched for
    files = rebooted.manifest["files"]
    assert files["c_array_sha256"] is None and files["c_array_bytes"] is None
    assert files["c_array_form"].startswith("stale")
    assert rebooted.manifest["provenance"] is None
    assert read_bundle(make_bundle()).manifest["files"]["c_array_sha256"]


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"\x00not a flatbuffer" * 64, ErrorCode.UPLOAD_INVALID_MODEL),
        ("other-architecture", ErrorCode.UPLOAD_INVALID_MODEL),
    ],
    ids=["garbage", "other-architecture"],
)
def test_a_bad_upload_leaves_the_old_model_active(tmp_path, payload, code):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    if payload == "other-architecture":
        other = make_bundle(options={"residual": 8, "hidden": 8, "blocks": 1, "repeats": 1})
        payload = (other / "model.tflite").read_bytes()
    before = read_bundle(bundle_dir).model_sha256
    inside = _listing(bundle_dir)
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        with pytest.raises(PeerError) as err:
            client.upload(payload)
        assert err.value.code == code
        info = client.info()
        assert info.model_sha256.hex() == before
        client.reset_state()
        client.separate(AudioChunk(0, test_signal(0.1)[:1024]))
        client.link.close()
    assert _listing(bundle_dir) == inside
    assert read_bundle(bundle_dir).model_sha256 == before


def test_upload_with_a_wrong_sha256_or_size_is_rejected(tmp_path):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    data = (make_bundle(seed=8) / "model.tflite").read_bytes()
    inside = _listing(bundle_dir)
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        link = client.link
        for size, digest, code in (
            (len(data), hashlib.sha256(b"other").digest(), ErrorCode.UPLOAD_SHA256_MISMATCH),
            (len(data) + 10, hashlib.sha256(data).digest(), ErrorCode.UPLOAD_SIZE_MISMATCH),
        ):
            link.send(UploadBegin(size, digest))
            assert link.receive(5.0).request_type == MessageType.UPLOAD_BEGIN
            link.send(UploadChunk(0, data))
            link.send(UploadEnd())
            reply = link.receive(5.0)
            assert reply.code == code, reply
        assert client.info().model_sha256.hex() == read_bundle(bundle_dir).model_sha256
        link.close()
    assert _listing(bundle_dir) == inside


def test_agent_without_a_usable_bundle_says_why_and_an_interrupted_swap_is_finished(tmp_path):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    inside = _listing(bundle_dir)
    good_manifest = (bundle_dir / "manifest.json").read_text()
    _edit_manifest(bundle_dir, lambda m: m["model"].update(sha256="0" * 64))
    with ThreadAgent(bundle_dir) as board:
        client = host_client(board.path)
        info = client.info()
        assert not info.has_model
        with pytest.raises(PeerError) as err:
            client.reset_state()
        assert err.value.code == ErrorCode.NO_MODEL
        assert "does not belong to this model" in err.value.text
        client.link.close()
    # a crash between the model rename and the manifest rename: the next start finishes it
    (bundle_dir / PENDING_MANIFEST).write_text(good_manifest)
    (bundle_dir / ".model.tflite.upload").write_bytes(b"partial")
    agent = BoardAgent(str(bundle_dir), load_runtime(), log=lambda text: None)
    assert agent.model is not None
    assert _listing(bundle_dir) == inside


# ai_edge_litert's Delegate.__del__ trips over the delegate it failed to load
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_edge_tpu_model_is_found_and_bound_by_position_and_a_missing_delegate_is_explained(
    tmp_path,
):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    compiled = bundle_dir / "model_edgetpu.tflite"
    compiled.write_bytes((bundle_dir / "model.tflite").read_bytes())  # stands in for its output
    report = json.loads((bundle_dir / "edgetpu_report.json").read_text())
    report["compiler"] = {"ran": True, "compiled_model": compiled.name}
    (bundle_dir / "edgetpu_report.json").write_text(json.dumps(report))
    bundle = read_bundle(bundle_dir)
    assert bundle.compiled_edgetpu_model() == str(compiled)
    truth = [spec.index for spec in bundle.input_specs() + bundle.output_specs()]
    for spec in bundle.input_specs() + bundle.output_specs():
        spec.index = 10_000  # indices of another build
    interpreter = load_runtime().make_interpreter(str(compiled))
    bind_by_position(bundle, interpreter)
    assert [s.index for s in bundle.input_specs() + bundle.output_specs()] == truth
    check_model(bundle, interpreter)

    logs = []
    agent = BoardAgent(str(bundle_dir), load_runtime(), edgetpu=True, log=logs.append)
    assert agent.model is None and agent.info().delegate == "edgetpu"
    assert "cannot load the Edge TPU delegate libedgetpu.so.1" in agent.load_error


@pytest.mark.parametrize(
    "options, message",
    [
        (["--max-payload", "63"], "max_payload must be 64..65535, got 63"),
        (["--max-payload", "1024", "--max-message", "100"], "max_message must be at least"),
        (["--window", "0"], "window must be 1..255, got 0"),
    ],
)
def test_agent_refuses_to_announce_limits_a_hello_may_not_carry(tmp_path, options, message):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware_host.board",
            "--bundle",
            str(tmp_path),
            "--fd",
            "0",
            "--quiet",
            *options,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
