"""Typed messages of the wire protocol and their byte layouts (little-endian, struct-packed).

Each class has ``TYPE`` (its message type byte), ``encode() -> bytes`` (the payload) and
``decode(payload)``, which checks every length and raises ``MessageError`` naming the message
and the field. Audio and tensors are numpy arrays; text is UTF-8; the manifest is JSON text.
The layouts are specified byte by byte in docs/protocol.md.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

# The code tables are part of the messages' vocabulary: importers may take them from here.
from .codes import (  # noqa: F401
    LINK_TYPES,
    ErrorCode,
    MessageType,
    error_code_name,
    message_type_name,
)
from .errors import MessageError
from .framing import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT, MIN_MAX_PAYLOAD, PROTOCOL_VERSION

CAP_AUDIO = 0x0001  # INFO capability bits: AUDIO_CHUNK supported
CAP_TENSOR = 0x0002  # TENSOR_IN supported
CAP_UPLOAD = 0x0004  # UPLOAD_* supported

ROLE_HOST = 0
ROLE_BOARD = 1
ROLE_NAMES = {ROLE_HOST: "host", ROLE_BOARD: "board"}

MAX_WINDOW = 255  # largest receive window a HELLO may announce (u8)
MAX_TENSOR_NDIM = 8  # TENSOR_IN / TENSOR_OUT records carry at most this many dimensions

UPLOAD_TARGET_MODEL = 0

# Tensor dtype codes (TENSOR_IN / TENSOR_OUT) and their little-endian numpy dtypes.
DTYPE_CODES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<i4", 5: "<f4"}
_CODE_OF_DTYPE = dict((np.dtype(name).str, code) for code, name in DTYPE_CODES.items())


class _Reader:
    """Sequential payload reader whose errors name the message and the field."""

    def __init__(self, payload: bytes, name: str, msg_type: int) -> None:
        self.data = bytes(payload)
        self.pos = 0
        self.name = name
        self.msg_type = msg_type

    def fail(self, text: str) -> MessageError:
        return MessageError(f"{self.name}: {text}", self.msg_type)

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.fail(
                f"payload ends at byte {len(self.data)}, "
                f"{what} needs {size} bytes from byte {self.pos}"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str, what: str):
        spec = struct.Struct("<" + fmt)
        return spec.unpack(self.take(spec.size, what))

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def u16(self, what: str) -> int:
        return self.unpack("H", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def text(self, length_fmt: str, what: str) -> str:
        (length,) = self.unpack(length_fmt, what + " length")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8 ({exc})") from None

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected bytes after byte {self.pos}")


def _text(value: str, length_fmt: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    limit = (1 << (8 * struct.calcsize("<" + length_fmt))) - 1
    if len(raw) > limit:
        raise MessageError(f"{what} is {len(raw)} bytes of UTF-8, at most {limit} fit")
    return struct.pack("<" + length_fmt, len(raw)) + raw


def _pcm(samples, what: str) -> np.ndarray:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise MessageError(f"{what} must be int16 PCM, got {array.dtype}")
    return array


class Message:
    """Base class: a message type byte plus a payload layout."""

    TYPE = 0

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode(cls, payload: bytes) -> Message:
        raise NotImplementedError

    @classmethod
    def _reader(cls, payload: bytes) -> _Reader:
        return _Reader(payload, MessageType(cls.TYPE).name, int(cls.TYPE))


class _Empty(Message):
    """A message without payload."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes) -> Message:
        cls._reader(payload).done()
        return cls()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


@dataclass
class Hello(Message):
    """HELLO (link control): opens or confirms a session and announces this end's limits."""

    TYPE = MessageType.HELLO
    _LAYOUT = struct.Struct("<BBHIIIBBH")

    session_id: int
    echo_session: int = 0
    role: int = ROLE_HOST
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_message: int = 1 << 20
    window: int = 8
    protocol_version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return self._LAYOUT.pack(
            self.protocol_version,
            self.role,
            self.max_payload,
            self.session_id,
            self.echo_session,
            self.max_message,
            self.window,
            0,
            0,
        )

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        """The fields of a HELLO payload, checking only its layout (20 bytes)."""
        reader = cls._reader(payload)
        version, role, max_payload, session, echo, max_message, window, _, _ = reader.unpack(
            "BBHIIIBBH", "HELLO fields"
        )
        reader.done()
        return cls(session, echo, role, max_payload, max_message, window, version)

    def problem(self):
        """``(ErrorCode, text)`` when a receiver must refuse this HELLO, else None."""
        if self.protocol_version != PROTOCOL_VERSION:
            return (
                ErrorCode.UNSUPPORTED_VERSION,
                f"HELLO: protocol_version {self.protocol_version} is not supported, "
                f"this end speaks {PROTOCOL_VERSION}",
            )
        if self.session_id == 0:
            text = "session_id must not be 0"
        elif self.role not in ROLE_NAMES:
            text = f"role must be 0 (host) or 1 (board), got {self.role}"
        elif not MIN_MAX_PAYLOAD <= self.max_payload <= MAX_PAYLOAD_LIMIT:
            text = (
                f"max_payload must be {MIN_MAX_PAYLOAD}..{MAX_PAYLOAD_LIMIT}, "
                f"got {self.max_payload}"
            )
        elif not 1 <= self.window <= MAX_WINDOW:
            text = f"window must be 1..{MAX_WINDOW}, got {self.window}"
        elif self.max_message < self.max_payload:
            text = f"max_message {self.max_message} is below max_payload {self.max_payload}"
        else:
            return None
        return ErrorCode.BAD_HELLO, "HELLO: " + text

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        hello = cls.parse(payload)
        problem = hello.problem()
        if problem is not None:
            raise MessageError(problem[1], int(cls.TYPE))
        return hello


class GetInfo(_Empty):
    """GET_INFO: asks the board for INFO."""

    TYPE = MessageType.GET_INFO


@dataclass
class Info(Message):
    """INFO: what runs on the board (agent, runtime, delegate), which model (sha256, manifest)."""

    TYPE = MessageType.INFO

    agent_version: str
    runtime: str
    delegate: str
    model_sha256: bytes = b"\x00" * 32
    model_size: int = 0
    manifest_json: str = ""
    capabilities: int = CAP_AUDIO | CAP_TENSOR | CAP_UPLOAD
    protocol_version: int = PROTOCOL_VERSION

    @property
    def has_model(self) -> bool:
        """False when the board has no model (sha256 all zero)."""
        return any(self.model_sha256)

    @property
    def manifest(self):
        """The manifest as parsed JSON (a dict), or None when the board sent none."""
        return json.loads(self.manifest_json) if self.manifest_json else None

    def encode(self) -> bytes:
        if len(self.model_sha256) != 32:
            raise MessageError(f"INFO: model_sha256 must be 32 bytes, got {len(self.model_sha256)}")
        return b"".join(
            (
                struct.pack("<BBH", self.protocol_version, 0, self.capabilities),
                bytes(self.model_sha256),
                struct.pack("<I", self.model_size),
                _text(self.agent_version, "B", "INFO agent_version"),
                _text(self.runtime, "B", "INFO runtime"),
                _text(self.delegate, "B", "INFO delegate"),
                _text(self.manifest_json, "I", "INFO manifest"),
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> Info:
        reader = cls._reader(payload)
        version, _, capabilities = reader.unpack("BBH", "protocol_version/capabilities")
        sha = reader.take(32, "model_sha256")
        size = reader.u32("model_size")
        agent = reader.text("B", "agent_version")
        runtime = reader.text("B", "runtime")
        delegate = reader.text("B", "delegate")
        manifest = reader.text("I", "manifest")
        reader.done()
        if manifest:
            try:
                parsed = json.loads(manifest)
            except (ValueError, RecursionError) as exc:
                raise reader.fail(f"manifest is not valid JSON ({exc})") from None
            if not isinstance(parsed, dict):
                raise reader.fail(f"manifest must be a JSON object, got {type(parsed).__name__}")
        return cls(agent, runtime, delegate, sha, size, manifest, capabilities, version)


class ResetState(_Empty):
    """RESET_STATE: zero the streaming state (STFT buffers, model state); stream position 0."""

    TYPE = MessageType.RESET_STATE


@dataclass
class Ok(Message):
    """OK: a request that has no other reply (RESET_STATE, UPLOAD_BEGIN) succeeded."""

    TYPE = MessageType.OK

    request_type: int

    def encode(self) -> bytes:
        return struct.pack("<B", self.request_type)

    @classmethod
    def decode(cls, payload: bytes) -> Ok:
        reader = cls._reader(payload)
        request_type = reader.u8("request_type")
        reader.done()
        return cls(request_type)


@dataclass
class Ping(Message):
    """PING: the board answers PONG with the same nonce and data (liveness, round-trip time)."""

    TYPE = MessageType.PING

    nonce: int
    data: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("<I", self.nonce) + bytes(self.data)

    @classmethod
    def decode(cls, payload: bytes) -> Ping:
        reader = cls._reader(payload)
        nonce = reader.u32("nonce")
        return cls(nonce, reader.rest())


@dataclass
class Pong(Ping):
    """PONG: the answer to PING."""

    TYPE = MessageType.PONG


@dataclass
class ErrorReply(Message):
    """ERROR: a request failed; ``code`` from ErrorCode, ``request_type`` the failed type."""

    TYPE = MessageType.ERROR

    code: int
    text: str
    request_type: int = 0

    def encode(self) -> bytes:
        return struct.pack("<HBB", self.code, self.request_type, 0) + _text(
            self.text, "H", "ERROR text"
        )

    @classmethod
    def decode(cls, payload: bytes) -> ErrorReply:
        reader = cls._reader(payload)
        code, request_type, _ = reader.unpack("HBB", "code/request_type")
        text = reader.text("H", "text")
        reader.done()
        return cls(code, text, request_type)


@dataclass
class AudioChunk(Message):
    """AUDIO_CHUNK: mono int16 PCM, whole hops, starting at stream sample ``position``."""

    TYPE = MessageType.AUDIO_CHUNK
    _HEAD = struct.Struct("<IHH")

    position: int
    samples: np.ndarray

    def encode(self) -> bytes:
        samples = _pcm(self.samples, "AUDIO_CHUNK samples")
        if samples.ndim != 1:
            raise MessageError(f"AUDIO_CHUNK samples must be 1-D, got shape {samples.shape}")
        if samples.size > 0xFFFF:
            raise MessageError(f"AUDIO_CHUNK holds at most 65535 samples, got {samples.size}")
        return self._HEAD.pack(self.position, samples.size, 0) + samples.astype("<i2").tobytes()

    @classmethod
    def decode(cls, payload: bytes) -> AudioChunk:
        reader = cls._reader(payload)
        position, count, _ = reader.unpack("IHH", "position/n_samples")
        data = reader.take(2 * count, f"{count} int16 samples")
        reader.done()
        return cls(position, np.frombuffer(data, dtype="<i2").astype(np.int16))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AudioChunk)
            and self.position == other.position
            and np.array_equal(self.samples, other.samples)
        )


@dataclass
class SeparatedChunk(Message):
    """SEPARATED_CHUNK: per-source int16 PCM for the AUDIO_CHUNK at ``position``, invoke time.

    A reply larger than the negotiated max message goes as several parts (:meth:`parts`),
    each at the stream position of its first sample."""

    TYPE = MessageType.SEPARATED_CHUNK
    _HEAD = struct.Struct("<IIHHBB")

    position: int
    sources: np.ndarray  # int16, shape (n_sources, n_samples), sources in manifest order
    invoke_us: int = 0
    n_invokes: int = 0

    def encode(self) -> bytes:
        sources = _pcm(self.sources, "SEPARATED_CHUNK sources")
        if sources.ndim != 2 or not 1 <= sources.shape[0] <= 255 or sources.shape[1] > 0xFFFF:
            raise MessageError(
                f"SEPARATED_CHUNK sources must have shape (1..255, <=65535), got {sources.shape}"
            )
        head = self._HEAD.pack(
            self.position, self.invoke_us, sources.shape[1], self.n_invokes, sources.shape[0], 0
        )
        return head + np.ascontiguousarray(sources, dtype="<i2").tobytes()

    @classmethod
    def decode(cls, payload: bytes) -> SeparatedChunk:
        reader = cls._reader(payload)
        position, invoke_us, count, invokes, n_sources, _ = reader.unpack(
            "IIHHBB", "position/invoke_us/n_samples/n_invokes/n_sources"
        )
        if n_sources == 0:
            raise reader.fail("n_sources must be at least 1")
        data = reader.take(2 * count * n_sources, f"{n_sources} x {count} int16 samples")
        reader.done()
        sources = np.frombuffer(data, dtype="<i2").astype(np.int16).reshape(n_sources, count)
        return cls(position, sources, invoke_us, invokes)

    def parts(self, max_message: int) -> list:
        """This reply as SEPARATED_CHUNKs of at most ``max_message`` bytes each (itself alone
        when it fits): consecutive runs of samples, every source in each, as equal in length
        as whole samples allow; the first part carries the chunk's invoke time and count,
        the others 0. MessageError when not even one sample of every source fits."""
        n_sources, count = self.sources.shape
        if self._HEAD.size + 2 * n_sources * count <= max_message:
            return [self]
        most = (max_message - self._HEAD.size) // (2 * n_sources)
        if most < 1:
            raise MessageError(
                "one sample of %d sources needs %d bytes of SEPARATED_CHUNK, the peer holds %d"
                % (n_sources, self._HEAD.size + 2 * n_sources, max_message)
            )
        n_parts = -(-count // most)
        bounds = [count * i // n_parts for i in range(n_parts + 1)]
        return [
            SeparatedChunk(
                self.position + lo,
                self.sources[:, lo:hi],
                self.invoke_us if i == 0 else 0,
                self.n_invokes if i == 0 else 0,
            )
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SeparatedChunk)
            and self.position == other.position
            and self.invoke_us == other.invoke_us
            and self.n_invokes == other.n_invokes
            and np.array_equal(self.sources, other.sources)
        )


@dataclass
class Tensor:
    """A raw model tensor: ``index`` of the model input/output it belongs to and its values."""

    index: int
    array: np.ndarray

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tensor)
            and self.index == other.index
            and self.array.dtype == other.array.dtype
            and np.array_equal(self.array, other.array)
        )


def _encode_tensors(tensors, name: str) -> bytes:
    if len(tensors) > 255:
        raise MessageError(f"{name} carries at most 255 tensors, got {len(tensors)}")
    for tensor in tensors:
        shape = np.shape(tensor.array)
        if len(shape) > MAX_TENSOR_NDIM or 0 in shape:
            raise MessageError(
                f"{name} tensor {tensor.index} has shape {shape}: at most {MAX_TENSOR_NDIM} "
                "dimensions, none of them 0"
            )
    parts = [struct.pack("<BBBB", len(tensors), 0, 0, 0)]
    for tensor in tensors:
        array = np.asarray(tensor.array)
        code = _CODE_OF_DTYPE.get(array.dtype.newbyteorder("<").str)
        if code is None:
            raise MessageError(
                f"{name} tensor {tensor.index} has dtype {array.dtype}; "
                "supported: int8, uint8, int16, int32, float32"
            )
        if not 0 <= tensor.index <= 255:
            raise MessageError(f"{name} tensor index must be 0..255, got {tensor.index}")
        parts.append(struct.pack("<BBBB", tensor.index, code, array.ndim, 0))
        parts.append(struct.pack(f"<{array.ndim}I", *array.shape))
        parts.append(np.ascontiguousarray(array, dtype=DTYPE_CODES[code]).tobytes())
    return b"".join(parts)


def _decode_tensors(reader: _Reader) -> list:
    """Tensor records, each bounded before anything is allocated: at most MAX_TENSOR_NDIM
    dimensions, every dimension at least 1, and exactly the value bytes the shape needs."""
    count = reader.unpack("BBBB", "n_tensors")[0]
    tensors = []
    for number in range(count):
        index, code, ndim, _ = reader.unpack("BBBB", f"tensor {number} header")
        if code not in DTYPE_CODES:
            raise reader.fail(f"tensor {number} has unknown dtype code {code}")
        if ndim > MAX_TENSOR_NDIM:
            raise reader.fail(
                f"tensor {number} has {ndim} dimensions, at most {MAX_TENSOR_NDIM} are allowed"
            )
        shape = reader.unpack(f"{ndim}I", f"tensor {number} shape")
        if 0 in shape:
            raise reader.fail(f"tensor {number} shape {shape} has a zero dimension")
        dtype = np.dtype(DTYPE_CODES[code])
        size = dtype.itemsize
        for dim in shape:  # at most MAX_TENSOR_NDIM Python-int products: never overflows
            size *= dim
        data = reader.take(size, f"tensor {number} data {shape}")
        array = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)
        tensors.append(Tensor(index, array))
    return tensors


@dataclass
class TensorIn(Message):
    """TENSOR_IN: raw model inputs (quantized values as stored), to run the network alone."""

    TYPE = MessageType.TENSOR_IN

    tensors: list = field(default_factory=list)

    def encode(self) -> bytes:
        return _encode_tensors(self.tensors, "TENSOR_IN")

    @classmethod
    def decode(cls, payload: bytes) -> TensorIn:
        reader = cls._reader(payload)
        tensors = _decode_tensors(reader)
        reader.done()
        return cls(tensors)


@dataclass
class TensorOut(Message):
    """TENSOR_OUT: every model output after one invoke, and how long the invoke took."""

    TYPE = MessageType.TENSOR_OUT

    tensors: list = field(default_factory=list)
    invoke_us: int = 0

    def encode(self) -> bytes:
        return struct.pack("<I", self.invoke_us) + _encode_tensors(self.tensors, "TENSOR_OUT")

    @classmethod
    def decode(cls, payload: bytes) -> TensorOut:
        reader = cls._reader(payload)
        invoke_us = reader.u32("invoke_us")
        tensors = _decode_tensors(reader)
        reader.done()
        return cls(tensors, invoke_us)


@dataclass
class UploadBegin(Message):
    """UPLOAD_BEGIN: a model of ``size`` bytes with this sha256 follows (drops a partial one)."""

    TYPE = MessageType.UPLOAD_BEGIN

    size: int
    sha256: bytes
    target: int = UPLOAD_TARGET_MODEL

    def encode(self) -> bytes:
        if len(self.sha256) != 32:
            raise MessageError(f"UPLOAD_BEGIN: sha256 must be 32 bytes, got {len(self.sha256)}")
        return (
            struct.pack("<I", self.size)
            + bytes(self.sha256)
            + struct.pack("<BBBB", self.target, 0, 0, 0)
        )

    @classmethod
    def decode(cls, payload: bytes) -> UploadBegin:
        reader = cls._reader(payload)
        size = reader.u32("size")
        sha = reader.take(32, "sha256")
        target = reader.unpack("BBBB", "target")[0]
        reader.done()
        return cls(size, sha, target)


@dataclass
class UploadChunk(Message):
    """UPLOAD_CHUNK: ``data`` for bytes ``offset`` .. offset+len-1 of the upload (in order)."""

    TYPE = MessageType.UPLOAD_CHUNK

    offset: int
    data: bytes

    def encode(self) -> bytes:
        return struct.pack("<I", self.offset) + bytes(self.data)

    @classmethod
    def decode(cls, payload: bytes) -> UploadChunk:
        reader = cls._reader(payload)
        offset = reader.u32("offset")
        return cls(offset, reader.rest())


class UploadEnd(_Empty):
    """UPLOAD_END: all chunks sent; verify, swap in atomically, answer UPLOAD_DONE or ERROR."""

    TYPE = MessageType.UPLOAD_END


@dataclass
class UploadDone(Message):
    """UPLOAD_DONE: the uploaded model was verified and is now the active one."""

    TYPE = MessageType.UPLOAD_DONE

    size: int
    sha256: bytes

    def encode(self) -> bytes:
        if len(self.sha256) != 32:
            raise MessageError(f"UPLOAD_DONE: sha256 must be 32 bytes, got {len(self.sha256)}")
        return struct.pack("<I", self.size) + bytes(self.sha256)

    @classmethod
    def decode(cls, payload: bytes) -> UploadDone:
        reader = cls._reader(payload)
        size = reader.u32("size")
        sha = reader.take(32, "sha256")
        reader.done()
        return cls(size, sha)


MESSAGE_CLASSES = dict(
    (int(cls.TYPE), cls)
    for cls in (
        Hello,
        GetInfo,
        Info,
        ResetState,
        Ok,
        Ping,
        Pong,
        ErrorReply,
        AudioChunk,
        SeparatedChunk,
        TensorIn,
        TensorOut,
        UploadBegin,
        UploadChunk,
        UploadEnd,
        UploadDone,
    )
)


def decode_message(msg_type: int, payload: bytes) -> Message:
    """Decode a payload by its type byte; raises MessageError for unknown types or bad layouts.

    Every decoder bounds what it reads; any other exception a crafted payload could still
    raise is turned into a MessageError too, so a caller handles exactly one error type.
    """
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise MessageError(
            f"unknown message type 0x{msg_type:02x} ({len(payload)} payload bytes)", msg_type
        )
    try:
        return cls.decode(payload)
    except MessageError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        raise MessageError(
            f"{message_type_name(msg_type)}: payload of {len(payload)} bytes cannot be decoded "
            f"({type(exc).__name__}: {exc})",
            msg_type,
        ) from None
