"""Board side of the model upload: chunks go to a temporary file, swapped in only once verified.

UPLOAD_BEGIN opens ``.<name>.upload`` beside the model; UPLOAD_CHUNKs must arrive in order;
UPLOAD_END checks size and sha256, runs the optional ``validate(path)`` (the agent loads the
model), then ``os.replace``s it over the old model, an atomic swap. Until then, and after any
error, the old model stays in place. The file name is fixed by the board, never by the host, so
an upload writes only inside the bundle folder.
"""

from __future__ import annotations

import hashlib
import os

from firmware_host.bundle.layout import MODEL_FILE

from .errors import RequestRejected
from .messages import (
    UPLOAD_TARGET_MODEL,
    ErrorCode,
    MessageType,
    Ok,
    UploadBegin,
    UploadChunk,
    UploadDone,
    UploadEnd,
)

DEFAULT_MAX_UPLOAD = 64 << 20


class UploadReceiver:
    """Runs the upload state machine for one file in ``directory`` (see module docstring)."""

    def __init__(
        self,
        directory: str,
        filename: str = MODEL_FILE,
        max_size: int = DEFAULT_MAX_UPLOAD,
        validate=None,
    ) -> None:
        if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
            raise ValueError(f"upload filename must be a plain file name, got {filename!r}")
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"upload directory {directory} does not exist")
        self.directory = directory
        self.path = os.path.join(directory, filename)
        self.temp_path = os.path.join(directory, "." + filename + ".upload")
        self.max_size = max_size
        self.validate = validate
        self._fd = None
        self._size = 0
        self._sha = b""
        self._hash = None
        self._received = 0
        self._failure = ""  # why the current upload was aborted (chunks are then ignored)

    @property
    def active(self) -> bool:
        """True while an upload is between UPLOAD_BEGIN and UPLOAD_END."""
        return self._fd is not None

    def handle(self, message):
        """Process one upload message; returns the reply (Ok, UploadDone) or None for chunks.

        Raises RequestRejected(code, text) to be sent back as an ERROR.
        """
        if isinstance(message, UploadBegin):
            return self.begin(message)
        if isinstance(message, UploadChunk):
            self.chunk(message)
            return None
        if isinstance(message, UploadEnd):
            return self.end()
        raise TypeError(f"not an upload message: {message!r}")

    def begin(self, message: UploadBegin) -> Ok:
        """Start a new upload (discarding any partial one)."""
        self._discard("")
        if message.target != UPLOAD_TARGET_MODEL:
            raise RequestRejected(
                ErrorCode.UPLOAD_BAD_TARGET, f"unknown upload target {message.target}"
            )
        if message.size > self.max_size:
            raise RequestRejected(
                ErrorCode.UPLOAD_TOO_LARGE,
                f"upload of {message.size} bytes exceeds the board's limit of {self.max_size}",
            )
        try:
            self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise RequestRejected(
                ErrorCode.UPLOAD_IO, f"cannot create {self.temp_path}: {exc}"
            ) from None
        self._size = message.size
        self._sha = bytes(message.sha256)
        self._hash = hashlib.sha256()
        self._received = 0
        return Ok(MessageType.UPLOAD_BEGIN)

    def chunk(self, message: UploadChunk) -> None:
        """Append one chunk; a bad chunk aborts with one ERROR, later chunks are then ignored."""
        if self._fd is None:
            if self._failure:
                return
            raise RequestRejected(ErrorCode.UPLOAD_NOT_STARTED, "UPLOAD_CHUNK without UPLOAD_BEGIN")
        if message.offset != self._received:
            self._abort(
                ErrorCode.UPLOAD_OFFSET,
                f"chunk at offset {message.offset}, expected offset {self._received}",
            )
        if self._received + len(message.data) > self._size:
            self._abort(
                ErrorCode.UPLOAD_SIZE_MISMATCH,
                f"chunk at offset {message.offset} of {len(message.data)} bytes "
                f"overruns the announced {self._size}",
            )
        try:
            view = memoryview(bytes(message.data))
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._abort(ErrorCode.UPLOAD_IO, f"writing {self.temp_path} failed: {exc}")
        self._hash.update(message.data)
        self._received += len(message.data)

    def end(self) -> UploadDone:
        """Verify size and sha256, validate, and atomically replace the model."""
        if self._fd is None:
            if self._failure:
                reason = self._failure
                self._failure = ""
                raise RequestRejected(ErrorCode.UPLOAD_NOT_STARTED, "upload was aborted: " + reason)
            raise RequestRejected(ErrorCode.UPLOAD_NOT_STARTED, "UPLOAD_END without UPLOAD_BEGIN")
        if self._received != self._size:
            self._abort(
                ErrorCode.UPLOAD_SIZE_MISMATCH,
                f"received {self._received} bytes, announced {self._size}",
                keep_failure=False,
            )
        digest = self._hash.digest()
        if digest != self._sha:
            self._abort(
                ErrorCode.UPLOAD_SHA256_MISMATCH,
                f"sha256 of the received bytes is {digest.hex()}, announced {self._sha.hex()}",
                keep_failure=False,
            )
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._abort(
                ErrorCode.UPLOAD_IO,
                f"fsync of {self.temp_path} failed: {exc}",
                keep_failure=False,
            )
        os.close(self._fd)
        self._fd = None
        if self.validate is not None:
            try:
                self.validate(self.temp_path)
            except Exception as exc:
                self._discard("")
                raise RequestRejected(
                    ErrorCode.UPLOAD_INVALID_MODEL,
                    f"the runtime cannot load the uploaded model: {exc}",
                ) from None
        try:
            os.replace(self.temp_path, self.path)
            _fsync_directory(self.directory)
        except OSError as exc:
            self._discard("")
            raise RequestRejected(
                ErrorCode.UPLOAD_IO, f"cannot replace {self.path}: {exc}"
            ) from None
        return UploadDone(self._size, digest)

    def cancel(self) -> bool:
        """Forget any upload in progress or aborted (the session that sent it ended); True when
        there was one. Its temporary file is removed."""
        had = self._fd is not None or bool(self._failure) or os.path.exists(self.temp_path)
        try:
            self._discard("")
        except OSError:  # the file could not be removed; a later UPLOAD_BEGIN truncates it
            self._fd = None
            self._failure = ""
        return had

    def _abort(self, code: int, text: str, keep_failure: bool = True) -> None:
        self._discard(text if keep_failure else "")
        raise RequestRejected(code, text)

    def _discard(self, failure: str) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if os.path.exists(self.temp_path):
            os.remove(self.temp_path)
        self._failure = failure


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


