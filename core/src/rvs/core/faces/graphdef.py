"""Read the constants of a frozen TensorFlow graph (a GraphDef protobuf) without TensorFlow.

Only the fields that hold constants are declared (GraphDef.node, NodeDef.name/op/input/attr,
AttrValue.s/f/tensor, TensorProto dtype/shape/content/float_val/int_val); the protobuf parser skips the rest.
Field numbers are TensorFlow's (tensorflow/core/framework/{graph,node_def,attr_value,tensor,
tensor_shape}.proto), which are stable: frozen graphs from TF 1.x and 2.x share them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "rvs.tensorflow"  # our own package name, so nothing clashes with a real TensorFlow in the process
_DT_FLOAT = 1
_DTYPES = {_DT_FLOAT: np.float32, 3: np.int32}

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, label: int = _F.LABEL_OPTIONAL, type_name: str = "") -> _F:
    field = _F(name=name, number=number, type=kind, label=label)  # type: ignore[arg-type]
    if type_name:  # set only on message fields: an empty name still counts as set
        field.type_name = type_name
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    m = descriptor_pb2.DescriptorProto
    repeated = _F.LABEL_REPEATED
    dim = m(name="Dim", field=[_field("size", 1, _F.TYPE_INT64)])
    shape = m(name="TensorShapeProto", field=[_field("dim", 2, _F.TYPE_MESSAGE, repeated, ".rvs.tensorflow.Dim")])
    tensor = m(
        name="TensorProto",
        field=[
            _field("dtype", 1, _F.TYPE_INT32),  # an enum in TensorFlow; the same varint on the wire
            _field("tensor_shape", 2, _F.TYPE_MESSAGE, type_name=".rvs.tensorflow.TensorShapeProto"),
            _field("tensor_content", 4, _F.TYPE_BYTES),
            _field("float_val", 5, _F.TYPE_FLOAT, repeated),
            _field("int_val", 7, _F.TYPE_INT32, repeated),
        ],
    )
    attr = m(
        name="AttrValue",
        field=[
            _field("s", 2, _F.TYPE_BYTES),
            _field("f", 4, _F.TYPE_FLOAT),
            _field("tensor", 8, _F.TYPE_MESSAGE, type_name=".rvs.tensorflow.TensorProto"),
        ],
    )
    entry = m(
        name="AttrEntry",
        field=[
            _field("key", 1, _F.TYPE_STRING),
            _field("value", 2, _F.TYPE_MESSAGE, type_name=".rvs.tensorflow.AttrValue"),
        ],
        options=descriptor_pb2.MessageOptions(map_entry=True),
    )
    node = m(
        name="NodeDef",
        field=[
            _field("name", 1, _F.TYPE_STRING),
            _field("op", 2, _F.TYPE_STRING),
            _field("input", 3, _F.TYPE_STRING, repeated),
            _field("attr", 5, _F.TYPE_MESSAGE, repeated, ".rvs.tensorflow.NodeDef.AttrEntry"),
        ],
        nested_type=[entry],
    )
    graph = m(name="GraphDef", field=[_field("node", 1, _F.TYPE_MESSAGE, repeated, ".rvs.tensorflow.NodeDef")])
    return descriptor_pb2.FileDescriptorProto(
        name="rvs/tensorflow/graph_subset.proto",
        package=_PACKAGE,
        syntax="proto3",
        message_type=[dim, shape, tensor, attr, node, graph],
    )


def _graph_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.GraphDef"))


def _array(tensor: Any) -> np.ndarray:
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype {tensor.dtype}")
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape).copy()
    values = np.asarray(tensor.float_val if tensor.dtype == _DT_FLOAT else tensor.int_val, dtype=dtype)
    # A constant of one repeated value is stored once.
    return np.full(shape, values[0], dtype) if values.size == 1 else values.reshape(shape)


class FrozenGraph:
    """The nodes of a frozen GraphDef: their ops, inputs, and the values of its Const nodes."""

    def __init__(self, data: bytes) -> None:
        graph = _graph_class()()
        try:
            graph.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError, whatever its implementation
            raise ValueError(f"not a TensorFlow GraphDef: {exc}") from exc
        if not graph.node:
            raise ValueError("not a TensorFlow GraphDef: no nodes")
        self.ops = {n.name: n.op for n in graph.node}
        self.inputs = {n.name: list(n.input) for n in graph.node}
        self._attrs = {n.name: n.attr for n in graph.node}
        self._tensors = {n.name: n.attr["value"].tensor for n in graph.node if n.op == "Const"}

    def constant(self, name: str) -> np.ndarray:
        """The value of Const node `name`; KeyError when the graph has no such constant."""
        return _array(self._tensors[name])

    def constant_names(self) -> list[str]:
        return list(self._tensors)

    def float_attr(self, node: str, key: str) -> float:
        """A float attribute of a node (e.g. a batch norm's epsilon); KeyError when it has none."""
        attrs = self._attrs[node]
        if key not in attrs:
            raise KeyError(f"{node} has no attribute {key}")
        return float(attrs[key].f)

    @classmethod
    def read(cls, path: Path) -> FrozenGraph:
        return cls(path.read_bytes())
