"""Board-side upload state machine on real files: atomic swap, old model kept on every failure."""

from __future__ import annotations

import hashlib
import os

import pytest

from firmware_host.bundle.manifest import file_digest
from firmware_host.protocol.errors import RequestRejected
from firmware_host.protocol.messages import (
    ErrorCode,
    Ok,
    UploadBegin,
    UploadChunk,
    UploadDone,
    UploadEnd,
)
from firmware_host.protocol.upload import UploadReceiver


def send_all(
    receiver: UploadReceiver, data: bytes, size: int = 1000, announced: bytes | None = None
):
    digest = announced or hashlib.sha256(data).digest()
    assert receiver.handle(UploadBegin(len(data), digest)) == Ok(0x30)
    for offset in range(0, len(data), size):
        assert receiver.handle(UploadChunk(offset, data[offset : offset + size])) is None
    return receiver.handle(UploadEnd())


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"old model")
    return tmp_path


def test_verified_upload_replaces_the_model_atomically(bundle):
    data = os.urandom(4500)
    validated = []
    receiver = UploadReceiver(
        str(bundle), validate=lambda path: validated.append(open(path, "rb").read())
    )
    done = send_all(receiver, data)
    assert done == UploadDone(len(data), hashlib.sha256(data).digest())
    assert validated == [data]  # validated before the swap, from the temporary file
    assert (bundle / "model.tflite").read_bytes() == data
    assert file_digest(str(bundle / "model.tflite")) == done.sha256
    assert sorted(os.listdir(bundle)) == ["model.tflite"]


@pytest.mark.parametrize(
    "case,code",
    [
        ("sha256", ErrorCode.UPLOAD_SHA256_MISMATCH),
        ("short", ErrorCode.UPLOAD_SIZE_MISMATCH),
        ("invalid", ErrorCode.UPLOAD_INVALID_MODEL),
    ],
)
def test_failed_verification_keeps_the_old_model(bundle, case, code):
    data = os.urandom(3000)

    def reject(path):
        raise ValueError("not a flatbuffer")

    receiver = UploadReceiver(str(bundle), validate=reject if case == "invalid" else None)
    receiver.handle(
        UploadBegin(
            len(data) + (10 if case == "short" else 0),
            hashlib.sha256(b"other" if case == "sha256" else data).digest(),
        )
    )
    receiver.handle(UploadChunk(0, data))
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadEnd())
    assert error.value.code == code
    assert (bundle / "model.tflite").read_bytes() == b"old model"
    assert sorted(os.listdir(bundle)) == ["model.tflite"]
    assert not receiver.active


def test_a_bad_chunk_aborts_once_and_later_chunks_are_ignored(bundle):
    data = os.urandom(3000)
    receiver = UploadReceiver(str(bundle))
    receiver.handle(UploadBegin(len(data), hashlib.sha256(data).digest()))
    receiver.handle(UploadChunk(0, data[:1000]))
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadChunk(1500, data[1500:2000]))
    assert (
        error.value.code == ErrorCode.UPLOAD_OFFSET and "expected offset 1000" in error.value.text
    )
    assert receiver.handle(UploadChunk(2000, data[2000:])) is None  # silently ignored
    with pytest.raises(RequestRejected) as end:
        receiver.handle(UploadEnd())
    assert end.value.code == ErrorCode.UPLOAD_NOT_STARTED and "aborted" in end.value.text
    assert sorted(os.listdir(bundle)) == ["model.tflite"]
    assert send_all(receiver, data).size == len(data)  # a fresh BEGIN starts over


def test_limits_and_state_errors(bundle):
    receiver = UploadReceiver(str(bundle), max_size=100)
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadBegin(101, b"\x00" * 32))
    assert error.value.code == ErrorCode.UPLOAD_TOO_LARGE
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadBegin(10, b"\x00" * 32, target=9))
    assert error.value.code == ErrorCode.UPLOAD_BAD_TARGET
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadChunk(0, b"x"))
    assert error.value.code == ErrorCode.UPLOAD_NOT_STARTED
    receiver.handle(UploadBegin(4, hashlib.sha256(b"abcd").digest()))
    with pytest.raises(RequestRejected) as error:
        receiver.handle(UploadChunk(0, b"abcde"))
    assert error.value.code == ErrorCode.UPLOAD_SIZE_MISMATCH


@pytest.mark.parametrize("name", ["../model.tflite", "sub/model.tflite", "", ".."])
def test_the_target_file_must_be_a_plain_name_inside_the_directory(bundle, name):
    with pytest.raises(ValueError, match="plain file name"):
        UploadReceiver(str(bundle), filename=name)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        UploadReceiver(str(tmp_path / "nowhere"))
