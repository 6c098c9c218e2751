"""Read (and minimally edit) a ``.tflite`` flatbuffer: tensors, operators, signature, buffers.

The exporter, the TFLite Micro and Edge TPU checks and the quantizer all need the same
facts about a converted model (which ops, which tensors are constants, their dtypes,
shapes and int8 parameters, which tensor a signature name refers to). This module parses
the flatbuffer once with TensorFlow's own schema bindings and exposes those facts.

Re-serialising (after stripping internal tensor names, or editing calibration ranges)
keeps every buffer 16-byte aligned, as the converter does: TFLite Micro reads int32
biases in place, and an unaligned buffer can fault on a Cortex-M.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

ALIGNMENT = 16
_DTYPE_NAMES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "FLOAT64": "float64",
    "INT32": "int32",
    "INT64": "int64",
    "INT16": "int16",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}
ITEM_BYTES = {"float32": 4, "float16": 2, "float64": 8, "int32": 4, "int64": 8, "int16": 2,
              "int8": 1, "uint8": 1, "bool": 1}


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the (only) subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    constant: bool = False  # has data in the file (weights, biases, shapes)
    data_bytes: int = 0

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.elements * ITEM_BYTES.get(self.dtype, 4)

    @property
    def per_tensor(self) -> tuple[float, int] | None:
        """``(scale, zero_point)`` of a per-tensor quantized tensor, else None."""
        if len(self.scale) == 1:
            return float(self.scale[0]), int(self.zero_point[0] if self.zero_point else 0)
        return None

    @property
    def layer(self) -> str:
        return layer_of(self.name)


@dataclass(frozen=True)
class OperatorInfo:
    """One operator: builtin name (or ``CUSTOM:code``), input and output tensor indices."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    custom: bool = False


@dataclass
class Signature:
    """Signature name -> tensor index, for inputs and outputs, in file order."""

    key: str
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)


def layer_of(tensor_name: str) -> str:
    """The Keras layer a converter tensor name comes from.

    Names look like ``model_name/layer/op`` (fused ops join several with ``;``, the last one
    is the op's output); signature inputs look like ``serving_default_name:0``.
    """
    name = tensor_name.split(";")[-1]
    if name.startswith("serving_default_"):
        return name[len("serving_default_") :].split(":")[0]
    parts = name.split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


class TfliteModel:
    """A parsed ``.tflite`` file (object API of the flatbuffer schema)."""

    def __init__(self, content: bytes):
        from tensorflow.lite.tools import flatbuffer_utils

        if not isinstance(content, (bytes, bytearray)) or len(content) < 8:
            raise ValueError("not a TFLite model: expected the bytes of a .tflite file")
        if bytes(content[4:8]) != b"TFL3":
            raise ValueError("not a TFLite model: the file identifier is not 'TFL3'")
        self.content = bytes(content)
        self.obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(self.content))

    # --- structure ----------------------------------------------------------------
    @property
    def subgraph_count(self) -> int:
        return len(self.obj.subgraphs)

    @property
    def _subgraph(self):
        return self.obj.subgraphs[0]

    @cached_property
    def op_code_names(self) -> list[str]:
        schema = _schema()
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        out = []
        for code in self.obj.operatorCodes:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            if names.get(builtin) == "CUSTOM":
                custom = code.customCode.decode() if code.customCode else "?"
                out.append(f"CUSTOM:{custom}")
            else:
                out.append(names.get(builtin, f"BUILTIN_{builtin}"))
        return out

    @cached_property
    def operators(self) -> list[OperatorInfo]:
        out = []
        for i, op in enumerate(self._subgraph.operators or []):
            name = self.op_code_names[op.opcodeIndex]
            inputs = tuple(int(t) for t in (op.inputs if op.inputs is not None else ()))
            outputs = tuple(int(t) for t in (op.outputs if op.outputs is not None else ()))
            out.append(OperatorInfo(i, name, inputs, outputs, name.startswith("CUSTOM:")))
        return out

    @cached_property
    def tensors(self) -> list[TensorInfo]:
        schema = _schema()
        type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        out = []
        for i, t in enumerate(self._subgraph.tensors):
            buffer = self.obj.buffers[t.buffer] if t.buffer < len(self.obj.buffers) else None
            data = 0 if buffer is None or buffer.data is None else len(buffer.data)
            q = t.quantization
            has_scale = q is not None and q.scale is not None
            scale = tuple(float(s) for s in q.scale) if has_scale else ()
            zero = (
                tuple(int(z) for z in q.zeroPoint)
                if q is not None and q.zeroPoint is not None
                else ()
            )
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            signature = (
                tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
            )
            tname = type_names.get(t.type, str(t.type))
            out.append(
                TensorInfo(
                    index=i,
                    name=t.name.decode() if t.name else "",
                    shape=shape,
                    shape_signature=signature,
                    dtype=_DTYPE_NAMES.get(tname, tname.lower()),
                    scale=scale,
                    zero_point=zero,
                    constant=data > 0,
                    data_bytes=data,
                )
            )
        return out

    @property
    def inputs(self) -> list[int]:
        return [int(i) for i in self._subgraph.inputs]

    @property
    def outputs(self) -> list[int]:
        return [int(i) for i in self._subgraph.outputs]

    @cached_property
    def signature(self) -> Signature | None:
        defs = self.obj.signatureDefs or []
        if not defs:
            return None
        sig = defs[0]
        return Signature(
            key=sig.signatureKey.decode() if sig.signatureKey else "",
            inputs={m.name.decode(): int(m.tensorIndex) for m in sig.inputs or []},
            outputs={m.name.decode(): int(m.tensorIndex) for m in sig.outputs or []},
        )

    @property
    def op_names(self) -> list[str]:
        """Distinct operator names, sorted."""
        return sorted({op.op for op in self.operators})

    @property
    def weight_bytes(self) -> int:
        """Bytes of constant data (weights, biases, shape vectors)."""
        return int(sum(t.data_bytes for t in self.tensors))

    def producers(self) -> dict[int, OperatorInfo]:
        return {t: op for op in self.operators for t in op.outputs}

    def consumers(self) -> dict[int, list[OperatorInfo]]:
        out: dict[int, list[OperatorInfo]] = {}
        for op in self.operators:
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(op)
        return out

    # --- edits ----------------------------------------------------------------------
    def strip_internal_names(self) -> None:
        """Drop the names of tensors that are not model inputs or outputs (~10% of a small
        model's bytes); the signature, which the runtimes use, is kept."""
        keep = set(self.inputs) | set(self.outputs)
        for i, tensor in enumerate(self._subgraph.tensors):
            if i not in keep:
                tensor.name = None
        self.obj.description = None
        self.__dict__.pop("tensors", None)

    def to_bytes(self) -> bytes:
        """Serialise with every buffer's data aligned to 16 bytes."""
        import flatbuffers

        buffers = self.obj.buffers
        self.obj.buffers = [_AlignedBuffer(b) for b in buffers]
        try:
            builder = flatbuffers.Builder(len(self.content) + 1024)
            builder.Finish(self.obj.Pack(builder), file_identifier=b"TFL3")
            content = bytes(builder.Output())
        finally:
            self.obj.buffers = buffers
        return content


class _AlignedBuffer:
    """Packs a ``BufferT`` with its data vector aligned to :data:`ALIGNMENT` bytes."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):  # noqa: N802 (flatbuffers' naming)
        schema = _schema()
        data = self.buffer.data
        offset = None
        if data is not None:
            raw = np.asarray(data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            offset = builder.EndVector()
        schema.BufferStart(builder)
        if offset is not None:
            schema.BufferAddData(builder, offset)
        if self.buffer.offset:
            schema.BufferAddOffset(builder, self.buffer.offset)
        if self.buffer.size:
            schema.BufferAddSize(builder, self.buffer.size)
        return schema.BufferEnd(builder)


def buffer_offsets(content: bytes) -> list[tuple[int, int]]:
    """``(offset in file, length)`` of every non-empty buffer's data."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    out = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        n = buffer.DataLength()
        if n:
            out.append((buffer._tab.Vector(buffer._tab.Offset(4)), n))
    return out


def misaligned_buffers(content: bytes, alignment: int = ALIGNMENT) -> list[int]:
    """Offsets of buffer data that do not start on an ``alignment``-byte boundary."""
    return [offset for offset, _ in buffer_offsets(content) if offset % alignment]
