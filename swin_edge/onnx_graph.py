"""ONNX graph helpers shared by the Q/DQ passes and the ONNX Runtime lowering."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import onnx


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as ``{name: python value}``."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def remove_dead_nodes(graph: onnx.GraphProto, op_types: Collection[str] | None = None) -> None:
    """Drop nodes (only of ``op_types``, if given) whose outputs neither a node nor the graph
    reads, repeating until none is left."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        alive = [
            n
            for n in graph.node
            if any(o in used for o in n.output)
            or (op_types is not None and n.op_type not in op_types)
        ]
        if len(alive) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(alive)


def remove_unused_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers that neither a node nor the graph outputs read."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
