"""The board agent: serves the wire protocol (docs/protocol.md) with a bundle's model.

Requests are handled one at a time, in order, each with exactly one reply (none for a good
UPLOAD_CHUNK). A bundle that cannot be loaded leaves the agent running without a model: INFO
says so, audio and tensor requests answer NO_MODEL with the reason, and an upload can fix it.
The exception is a model TFLite Micro cannot allocate: that stops the agent with the reason
(a failed TFLite Micro allocation can leave the process unstable).

Uploads go through ``UploadReceiver`` into a temporary file in the bundle folder. Before the
swap the new model is loaded and checked against the manifest's tensor layout, and the
manifest rewritten for it (sha256, size, scales) is staged as ``.manifest.json.pending``;
after the model's atomic rename the staged manifest is renamed too, then the model reloaded.
A crash between the two renames is finished at the next start (the staged manifest is kept
only if it names the model file's sha256). Nothing from the host is unpickled or evaluated,
and no host-given path is ever used.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from firmware_host.bundle.layout import MANIFEST_FILE, MODEL_FILE
from firmware_host.bundle.manifest import read_bundle, sha256_of
from firmware_host.bundle.tensors import BundleError
from firmware_host.protocol.errors import (
    LinkClosed,
    LinkError,
    MessageError,
    PeerRestarted,
    RequestRejected,
)
from firmware_host.protocol.messages import (
    CAP_AUDIO,
    CAP_TENSOR,
    CAP_UPLOAD,
    MESSAGE_CLASSES,
    AudioChunk,
    ErrorCode,
    ErrorReply,
    GetInfo,
    Info,
    MessageType,
    Ok,
    Ping,
    Pong,
    ResetState,
    SeparatedChunk,
    Tensor,
    TensorIn,
    TensorOut,
    UploadBegin,
    UploadChunk,
    UploadDone,
    UploadEnd,
    decode_message,
    message_type_name,
)
from firmware_host.protocol.upload import DEFAULT_MAX_UPLOAD, UploadReceiver

from .micro import MicroAllocationFailed
from .model_check import bind_by_position, check_model, manifest_for_model
from .pipeline import StreamingSeparator

AGENT_VERSION = "tinysep-agent 0.1.0"
PENDING_MANIFEST = "." + MANIFEST_FILE + ".pending"
SEND_TIMEOUT = 30.0  # longest a reply waits for the host's credit before it is dropped


class LoadedModel:
    """The active model: bundle, interpreter, streaming separator and identity."""

    def __init__(self, bundle, interpreter, sha256_hex: str, size: int):
        self.bundle = bundle
        self.interpreter = interpreter
        self.separator = StreamingSeparator(bundle, interpreter)
        self.sha256 = bytes.fromhex(sha256_hex)
        self.size = size
        self.input_details = list(interpreter.get_input_details())
        self.output_details = list(interpreter.get_output_details())


class BoardAgent:
    """Protocol handlers over a bundle folder and a TFLite runtime (see module docstring)."""

    def __init__(
        self,
        bundle_dir: str,
        runtime,
        edgetpu: bool = False,
        num_threads: int = 1,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        log=None,
        kernels: str = "default",
    ):
        if not os.path.isdir(bundle_dir):
            raise FileNotFoundError(f"bundle folder {bundle_dir} does not exist")
        self.bundle_dir = os.path.abspath(bundle_dir)
        self.runtime = runtime
        self.edgetpu = edgetpu
        self.num_threads = num_threads
        self.kernels = kernels
        self.log = log if log is not None else _stderr_log
        self.model = None
        self.load_error = "not loaded yet"
        self.position = 0  # next expected stream position; None after a failed invoke
        self.model_file = self._model_file_name()
        self._finish_interrupted_swap()
        self.uploads = UploadReceiver(
            self.bundle_dir, self.model_file, max_size=max_upload, validate=self._validate_upload
        )
        self._staged_manifest = None
        self.load()

    # ------------------------------------------------------------------ model

    @property
    def delegate(self) -> str:
        """What INFO reports: ``edgetpu``, ``cpu`` or ``cpu-reference`` (reference kernels)."""
        if self.edgetpu:
            return "edgetpu"
        return "cpu-reference" if self.kernels == "reference" else "cpu"

    def _interpreter(self, path: str, bundle):
        return self.runtime.make_interpreter(
            path,
            edgetpu=self.edgetpu,
            num_threads=self.num_threads,
            kernels=self.kernels,
            measured_arena=bundle.arena_tflite_micro,
        )

    def _model_file_name(self) -> str:
        try:
            return read_bundle(self.bundle_dir, verify_model=False).model_file
        except BundleError:
            return MODEL_FILE

    def _finish_interrupted_swap(self) -> None:
        """Complete or undo a swap that a crash interrupted; remove stale partial uploads."""
        staged = os.path.join(self.bundle_dir, PENDING_MANIFEST)
        if os.path.exists(staged):
            model_path = os.path.join(self.bundle_dir, self.model_file)
            try:
                with open(staged, "rb") as handle:
                    wanted = json.loads(handle.read().decode("utf-8"))["model"]["sha256"]
                current = sha256_of(model_path) if os.path.isfile(model_path) else ""
            except (OSError, ValueError, KeyError, TypeError):
                wanted, current = "?", ""
            if wanted == current:
                os.replace(staged, os.path.join(self.bundle_dir, MANIFEST_FILE))
                self.log("finished an interrupted model swap (manifest updated)")
            else:
                os.remove(staged)
        partial = os.path.join(self.bundle_dir, "." + self.model_file + ".upload")
        if os.path.exists(partial):
            os.remove(partial)
            self.log("removed a partial upload left by an earlier run")

    def load(self) -> bool:
        """(Re)load the bundle; on failure run without a model and remember why.

        A failed TFLite Micro allocation (``MicroAllocationFailed``) is raised instead.
        """
        self.model = None
        try:
            bundle = read_bundle(self.bundle_dir)
            compiled = bundle.compiled_edgetpu_model() if self.edgetpu else None
            interpreter = self._interpreter(compiled or bundle.model_path, bundle)
            if compiled:  # the compiler keeps the order of inputs and outputs, not the indices
                bind_by_position(bundle, interpreter)
                self.log(f"Edge TPU model {os.path.basename(compiled)}")
            check_model(bundle, interpreter)
            self.model = LoadedModel(bundle, interpreter, bundle.model_sha256, bundle.model_bytes)
        except MicroAllocationFailed:  # TFLite Micro may be unstable after it: stop, say why
            raise
        except Exception as exc:  # a bad bundle must not stop the agent: an upload can fix it
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.log("no model loaded: " + self.load_error)
            return False
        self.load_error = ""
        self.position = 0
        bundle = self.model.bundle
        self.log(
            f"model {bundle.model_sha256[:12]} ({bundle.model_bytes} bytes, "
            f"K={bundle.frames_per_invoke}, {len(bundle.states)} states) on "
            f"{self.runtime.label} [{self.delegate}]"
        )
        return True

    def _validate_upload(self, path: str) -> None:
        """Load the uploaded file and stage the manifest that describes it (before the swap)."""
        try:
            bundle = read_bundle(self.bundle_dir, verify_model=False)
        except BundleError as exc:
            raise ValueError(
                f"the bundle folder has no usable manifest to check it against: {exc}"
            ) from None
        interpreter = self._interpreter(path, bundle)
        try:
            manifest = manifest_for_model(
                bundle, interpreter, sha256_of(path), os.path.getsize(path)
            )
        except BundleError as exc:
            raise ValueError(
                "it does not fit this board's bundle (an upload replaces the model of the same "
                "architecture and frames per invoke; copy the whole bundle folder for another "
                f"one): {exc}"
            ) from None
        staged = os.path.join(self.bundle_dir, PENDING_MANIFEST)
        data = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._staged_manifest = staged

    def _drop_staged_manifest(self) -> None:
        staged = os.path.join(self.bundle_dir, PENDING_MANIFEST)
        if os.path.exists(staged):
            os.remove(staged)
        self._staged_manifest = None

    # ------------------------------------------------------------------ requests

    def info(self) -> Info:
        model = self.model
        if model is None:
            manifest = ""
            try:
                manifest = read_bundle(self.bundle_dir, verify_model=False).manifest_text
            except BundleError:
                pass
            return Info(
                AGENT_VERSION,
                self.runtime.label,
                self.delegate,
                b"\x00" * 32,
                0,
                manifest,
                # without a manifest an upload cannot be checked (docs/protocol.md, section 5)
                CAP_AUDIO | CAP_TENSOR | (CAP_UPLOAD if manifest else 0),
            )
        return Info(
            AGENT_VERSION,
            self.runtime.label,
            self.delegate,
            model.sha256,
            model.size,
            model.bundle.manifest_text,
            CAP_AUDIO | CAP_TENSOR | CAP_UPLOAD,
        )

    def _require_model(self) -> LoadedModel:
        if self.model is None:
            raise RequestRejected(ErrorCode.NO_MODEL, "no model loaded: " + self.load_error)
        return self.model

    def handle(self, msg_type: int, payload: bytes):
        """The reply to one request (a Message), or None when it has none."""
        cls = MESSAGE_CLASSES.get(msg_type)
        if cls is None:
            return ErrorReply(
                ErrorCode.UNKNOWN_TYPE,
                f"message type 0x{msg_type:02x} is not implemented by {AGENT_VERSION}",
                msg_type,
            )
        try:
            message = decode_message(msg_type, payload)
        except MessageError as exc:
            return ErrorReply(ErrorCode.BAD_MESSAGE, str(exc), msg_type)
        try:
            return self._dispatch(message)
        except RequestRejected as exc:
            return ErrorReply(exc.code, exc.text, msg_type)
        except Exception as exc:  # never let one request kill the agent
            return ErrorReply(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", msg_type)

    def _dispatch(self, message):
        if isinstance(message, GetInfo):
            return self.info()
        if isinstance(message, Ping):
            if isinstance(message, Pong):
                raise RequestRejected(ErrorCode.UNEXPECTED, "PONG without a PING from the board")
            return Pong(message.nonce, message.data)
        if isinstance(message, ResetState):
            model = self._require_model()
            model.separator.reset()
            self.position = 0
            return Ok(MessageType.RESET_STATE)
        if isinstance(message, AudioChunk):
            return self.separate(message)
        if isinstance(message, TensorIn):
            return self.run_tensors(message)
        if isinstance(message, (UploadBegin, UploadChunk, UploadEnd)):
            return self.upload(message)
        raise RequestRejected(
            ErrorCode.UNEXPECTED,
            f"{message_type_name(int(message.TYPE))} is a board-to-host message",
        )

    def separate(self, chunk: AudioChunk) -> SeparatedChunk:
        model = self._require_model()
        hop = model.bundle.hop
        count = int(chunk.samples.size)
        if count == 0 or count % hop:
            raise RequestRejected(
                ErrorCode.BAD_AUDIO,
                f"chunk of {count} samples is not a whole number of {hop}-sample hops",
            )
        if self.position is None:
            raise RequestRejected(
                ErrorCode.BAD_AUDIO, "the stream state was lost after a failed invoke: RESET_STATE"
            )
        if chunk.position != self.position:
            raise RequestRejected(
                ErrorCode.BAD_AUDIO,
                f"chunk at position {chunk.position}, expected {self.position} "
                "(chunks must be contiguous from 0 after RESET_STATE)",
            )
        try:
            sources, micros, invokes = model.separator.process(chunk.samples)
        except (RuntimeError, ValueError) as exc:
            self.position = None
            raise RequestRejected(ErrorCode.INVOKE_FAILED, f"{type(exc).__name__}: {exc}") from None
        self.position += count
        return SeparatedChunk(chunk.position, sources, min(micros, 0xFFFFFFFF), invokes)

    def run_tensors(self, request: TensorIn) -> TensorOut:
        """Tensor mode: set every model input from the request, invoke once, return all outputs."""
        model = self._require_model()
        details = model.input_details
        given = [t.index for t in request.tensors]
        if sorted(given) != list(range(len(details))):
            raise RequestRejected(
                ErrorCode.BAD_TENSOR,
                f"TENSOR_IN must carry each of the model's {len(details)} inputs once "
                f"(indices 0..{len(details) - 1}), got indices {given}",
            )
        for tensor in request.tensors:
            detail = details[tensor.index]
            shape = [int(d) for d in detail["shape"]]
            dtype = np.dtype(detail["dtype"])
            if list(tensor.array.shape) != shape or tensor.array.dtype != dtype:
                raise RequestRejected(
                    ErrorCode.BAD_TENSOR,
                    f"input {tensor.index} ({detail['name']}) is {dtype.name} {shape}, "
                    f"got {tensor.array.dtype.name} {list(tensor.array.shape)}",
                )
        interpreter = model.interpreter
        for tensor in request.tensors:
            interpreter.set_tensor(details[tensor.index]["index"], tensor.array)
        start = time.perf_counter()
        try:
            interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise RequestRejected(ErrorCode.INVOKE_FAILED, f"{type(exc).__name__}: {exc}") from None
        micros = int(round((time.perf_counter() - start) * 1e6))
        outputs = [
            Tensor(number, np.array(interpreter.get_tensor(detail["index"])))
            for number, detail in enumerate(model.output_details)
        ]
        return TensorOut(outputs, min(micros, 0xFFFFFFFF))

    def upload(self, message):
        if isinstance(message, UploadBegin):
            self._drop_staged_manifest()
        if not isinstance(message, UploadEnd):
            return self.uploads.handle(message)
        try:
            done = self.uploads.handle(message)
        except RequestRejected:
            self._drop_staged_manifest()
            raise
        staged = self._staged_manifest
        if staged is not None and os.path.exists(staged):
            os.replace(staged, os.path.join(self.bundle_dir, MANIFEST_FILE))
        self._staged_manifest = None
        stale = read_bundle(self.bundle_dir, verify_model=False).compiled_edgetpu_model()
        if stale is not None:  # compiled for the previous model: it must not be loaded again
            os.remove(stale)
            self.log(f"removed {os.path.basename(stale)}, compiled for the previous model")
        self.log(f"upload of {done.size} bytes swapped in (sha256 {done.sha256.hex()[:12]})")
        if not self.load():
            raise RequestRejected(
                ErrorCode.UPLOAD_INVALID_MODEL,
                "the model was swapped in but does not load: " + self.load_error,
            )
        return UploadDone(done.size, done.sha256)

    def on_session_reset(self) -> None:
        """The host reconnected or the link restarted: the stream starts over, and an upload
        left half-finished is discarded (its temporary file removed), so an UPLOAD_END of a
        later session can never apply to it."""
        if self.model is not None:
            self.model.separator.reset()
        self.position = 0
        if self.uploads.cancel():
            self.log("discarded an unfinished upload of the previous session")
        self._drop_staged_manifest()

    # ------------------------------------------------------------------ serving

    def serve(self, link, should_stop=None) -> None:
        """Answer requests on a board-side Link until the stream closes or ``should_stop()``.

        Nothing a peer sends ends this loop: a request that fails in an unforeseen way is
        answered with ERROR INTERNAL, a reply that cannot be sent is logged and dropped.
        """
        epoch = link.session_epoch
        try:
            while should_stop is None or not should_stop():
                try:
                    msg_type, payload = link.receive_raw(timeout=0.2)
                except PeerRestarted:
                    epoch = link.session_epoch
                    self.on_session_reset()
                    continue
                except MessageError as exc:  # a message beyond our max_message was dropped
                    too_large = ErrorReply(ErrorCode.MESSAGE_TOO_LARGE, str(exc), exc.msg_type)
                    if not self._reply(link, too_large):
                        return
                    continue
                except LinkClosed:
                    return
                except LinkError:  # timeout waiting, or a session that failed: keep serving
                    continue
                current = link.session_epoch
                if current != epoch:  # a session opened since the last request (no restart
                    epoch = current  # is reported after our own link gave up): start over
                    self.on_session_reset()
                try:
                    reply = self.handle(msg_type, payload)
                except Exception as exc:  # handle() catches request errors; this is a last resort
                    reply = ErrorReply(
                        ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", msg_type & 0xFF
                    )
                if reply is not None and not self._reply(link, reply, msg_type & 0xFF):
                    return
        finally:
            self.uploads.cancel()
            self._drop_staged_manifest()

    def _reply(self, link, reply, request_type: int = 0) -> bool:
        """Send one reply; False when the stream is closed (serving ends).

        A SEPARATED_CHUNK larger than the negotiated max message (the smaller of the host's
        and this board's) goes in parts (docs/protocol.md, SEPARATED_CHUNK); any other reply
        larger than the host's max_message becomes ERROR MESSAGE_TOO_LARGE (its text cut to
        fit), so the request still gets exactly one answer.
        """
        try:
            try:
                if isinstance(reply, SeparatedChunk):
                    for part in reply.parts(_reply_limit(link)):
                        link.send(part, timeout=SEND_TIMEOUT)
                else:
                    link.send(reply, timeout=SEND_TIMEOUT)
            except MessageError as exc:
                peer = link.peer
                if peer is None:
                    raise
                text = f"the {message_type_name(int(reply.TYPE))} reply does not fit: {exc}"
                room = max(0, peer.max_message - 6)  # ERROR header: code, type, reserved, length
                short = text.encode("utf-8")[:room].decode("utf-8", "ignore")
                link.send(
                    ErrorReply(ErrorCode.MESSAGE_TOO_LARGE, short, request_type),
                    timeout=SEND_TIMEOUT,
                )
        except PeerRestarted:
            self.on_session_reset()
        except LinkClosed:
            return False
        except Exception as exc:  # no session, a timeout: the reply is dropped, serving goes on
            self.log(f"reply {message_type_name(int(reply.TYPE))} dropped: {exc}")
        return True


def _reply_limit(link) -> int:
    """Largest reply message: this board's max message, and the host's when known."""
    peer = link.peer
    own = int(link.config.max_message)
    return own if peer is None else min(own, int(peer.max_message))


def _stderr_log(text: str) -> None:
    sys.stderr.write(f"[{AGENT_VERSION}] {text}\n")
    sys.stderr.flush()
