"""A self-contained drawing of an ONNX graph: one SVG, made in Python, shapes on every edge.

This is the viewer where Netron cannot be served: VS Code's notebook view, any front end without
the workbench server extension, exported HTML, nbviewer. The output alone carries the picture, so
nothing has to be reachable. It draws what Netron draws first (not everything Netron can do):

- graph inputs and outputs as pills, one box per node with its op type and its parameters
  (initializers) listed inside (``B ⟨20⟩``: the ONNX schema's input name and the tensor's shape);
- an edge for every value passed between them, labelled with its shape (``B×20``);
- top to bottom, in layers, like Netron.

Written by hand because the layout libraries that exist need a system binary (graphviz) or a
JavaScript engine (dagre, ELK), neither of which a kernel in VS Code or on Colab is sure to have;
what is needed is a small layered (Sugiyama-style) layout: longest-path layers, virtual points
for edges that skip layers, barycentre ordering and a few alignment passes.

Everything from the model (names, op types) is escaped: ONNX files are untrusted.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field

import onnx

from workbench.onnx_io.describe import describe_tensor, describe_value

MAX_DRAWN_NODES = 600  # larger graphs get the node table only (the SVG would be slow and huge)

_FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
_CHAR_WIDTH = 6.6  # px per character at 11 px, a safe overestimate for proportional fonts
_LINE_HEIGHT = 15
_HEADER_HEIGHT = 22
_PADDING = 8
_NODE_GAP = 28
_LAYER_GAP = 40
_MARGIN = 16
_ORDERING_SWEEPS = 6
_ALIGNMENT_PASSES = 4

# Op categories and their header colours (the palette Netron uses, so the drawing reads the same).
_CATEGORY_COLOURS = {
    "layer": "#335588",
    "activation": "#70291f",
    "pool": "#335533",
    "normalization": "#335544",
    "dropout": "#454770",
    "shape": "#6c4f47",
    "tensor": "#59423b",
    "control": "#555555",
    "other": "#444444",
}
_CATEGORIES = {
    "layer": {"Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger", "Einsum", "LSTM", "GRU", "RNN", "Attention"},
    "activation": {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "Tanh", "Softmax",
        "LogSoftmax", "Softplus", "Softsign", "HardSwish", "Mish", "Swish", "ThresholdedRelu", "Erf",
    },
    "pool": {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "ReduceMean", "ReduceMax"},
    "normalization": {
        "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "RMSNormalization", "LRN", "SimplifiedLayerNormalization",
    },
    "dropout": {"Dropout"},
    "shape": {
        "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Shape", "Size", "Tile", "Pad",
        "Split", "Slice", "Concat", "Identity",
    },
    "tensor": {"Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Cast", "Constant", "Where"},
    "control": {"If", "Loop", "Scan"},
}  # fmt: skip
_COLOUR_OF_OP = {op: _CATEGORY_COLOURS[category] for category, ops in _CATEGORIES.items() for op in ops}


@dataclass
class _Vertex:
    """A box to draw (graph input, node, graph output) or a virtual point of a long edge."""

    key: int
    kind: str  # "input" | "node" | "output" | "virtual"
    title: str = ""
    lines: list[str] = field(default_factory=list)
    colour: str = ""
    layer: int = 0
    order: float = 0.0
    x: float = 0.0  # centre
    y: float = 0.0  # top
    width: float = 0.0
    height: float = 0.0


@dataclass(frozen=True)
class _Edge:
    source: int
    target: int
    label: str


def shape_label(type_text: str) -> str:
    """``float32[B×30]`` -> ``B×30``; a scalar -> ``scalar``; an unknown shape -> the element type."""
    if "[" not in type_text:
        return type_text
    dims = type_text[type_text.index("[") + 1 : -1]
    return dims or "scalar"


def _schema_input_names(node: onnx.NodeProto, opset: int) -> list[str]:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:  # a custom or unknown op: no formal names
        return []
    return [formal.name for formal in schema.inputs]


def _text_width(text: str, bold: bool = False) -> float:
    return len(text) * _CHAR_WIDTH * (1.1 if bold else 1.0)


def _build(model: onnx.ModelProto) -> tuple[dict[int, _Vertex], list[_Edge]]:
    graph = model.graph
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 21)
    types = {value.name: describe_value(value).text() for value in [*graph.input, *graph.value_info, *graph.output]}
    parameters = {init.name: shape_label(describe_tensor(init).text()) for init in graph.initializer}
    vertices: dict[int, _Vertex] = {}
    producer: dict[str, int] = {}
    edges: list[_Edge] = []

    def add(kind: str, title: str, lines: list[str], colour: str) -> _Vertex:
        vertex = _Vertex(key=len(vertices), kind=kind, title=title, lines=lines, colour=colour)
        vertices[vertex.key] = vertex
        return vertex

    for value in graph.input:
        if value.name in parameters:
            continue
        vertex = add("input", value.name, [], "")
        producer[value.name] = vertex.key
    for node in graph.node:
        formal = _schema_input_names(node, opset)
        lines = []
        for position, name in enumerate(node.input):
            if name in parameters:
                label = formal[position] if position < len(formal) else name
                lines.append(f"{label} ⟨{parameters[name]}⟩")
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        vertex = add("node", op, lines, _COLOUR_OF_OP.get(node.op_type, _CATEGORY_COLOURS["other"]))
        for name in node.input:
            if name and name in producer:
                edges.append(_Edge(producer[name], vertex.key, shape_label(types.get(name, "?"))))
        for name in node.output:
            if name:
                producer[name] = vertex.key
    for value in graph.output:
        vertex = add("output", value.name, [], "")
        if value.name in producer:
            edges.append(_Edge(producer[value.name], vertex.key, shape_label(types.get(value.name, "?"))))
    for vertex in vertices.values():
        widths = [_text_width(vertex.title, bold=True), *(_text_width(line) for line in vertex.lines)]
        vertex.width = max(widths) + 2 * _PADDING
        vertex.height = _HEADER_HEIGHT + (len(vertex.lines) * _LINE_HEIGHT + 6 if vertex.lines else 0)
    return vertices, edges


def _assign_layers(vertices: dict[int, _Vertex], edges: list[_Edge]) -> None:
    """Longest path from the inputs; a vertex without predecessors sits just above its first consumer."""
    predecessors: dict[int, list[int]] = defaultdict(list)
    successors: dict[int, list[int]] = defaultdict(list)
    for edge in edges:
        predecessors[edge.target].append(edge.source)
        successors[edge.source].append(edge.target)
    for key in sorted(vertices):  # vertices were created in topological order
        vertex = vertices[key]
        vertex.layer = 1 + max((vertices[p].layer for p in predecessors[key]), default=-1)
    for key in sorted(vertices, reverse=True):
        vertex = vertices[key]
        if not predecessors[key] and successors[key] and vertex.kind != "input":
            vertex.layer = min(vertices[s].layer for s in successors[key]) - 1


def _add_virtual_points(vertices: dict[int, _Vertex], edges: list[_Edge]) -> dict[tuple[int, int, int], list[int]]:
    """Split edges that skip layers into chains through virtual points; returns each edge's points."""
    routes: dict[tuple[int, int, int], list[int]] = {}
    for index, edge in enumerate(edges):
        points = []
        for layer in range(vertices[edge.source].layer + 1, vertices[edge.target].layer):
            virtual = _Vertex(key=len(vertices), kind="virtual", layer=layer, width=2)
            vertices[virtual.key] = virtual
            points.append(virtual.key)
        routes[(edge.source, edge.target, index)] = points
    return routes


def _segments(edges: list[_Edge], routes: dict[tuple[int, int, int], list[int]]) -> list[tuple[int, int]]:
    pairs = []
    for index, edge in enumerate(edges):
        chain = [edge.source, *routes[(edge.source, edge.target, index)], edge.target]
        pairs.extend(zip(chain, chain[1:], strict=False))
    return pairs


def _neighbours(segments: list[tuple[int, int]]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(the vertices above each vertex, the vertices below it) along the drawn segments."""
    up: dict[int, list[int]] = defaultdict(list)
    down: dict[int, list[int]] = defaultdict(list)
    for source, target in segments:
        down[source].append(target)
        up[target].append(source)
    return up, down


def _order_layers(vertices: dict[int, _Vertex], segments: list[tuple[int, int]]) -> list[list[int]]:
    """Barycentre heuristic: sweep down and up, ordering each layer by its neighbours' mean position."""
    layers: dict[int, list[int]] = defaultdict(list)
    for key in sorted(vertices):
        layers[vertices[key].layer].append(key)
    ordered = [layers[layer] for layer in sorted(layers)]
    up, down = _neighbours(segments)
    for row in ordered:
        for position, key in enumerate(row):
            vertices[key].order = position
    for sweep in range(_ORDERING_SWEEPS):
        rows = ordered[1:] if sweep % 2 == 0 else list(reversed(ordered[:-1]))
        neighbours = up if sweep % 2 == 0 else down
        for row in rows:
            def barycentre(key: int) -> float:
                around = neighbours[key]
                return sum(vertices[n].order for n in around) / len(around) if around else vertices[key].order

            row.sort(key=barycentre)
            for position, key in enumerate(row):
                vertices[key].order = position
    return ordered


def _pack(row: list[int], vertices: dict[int, _Vertex], wanted: dict[int, float]) -> None:
    """Place a layer's vertices as close to their wanted centres as their order and sizes allow."""
    left_to_right = []
    edge = float("-inf")
    for key in row:
        vertex = vertices[key]
        centre = max(wanted[key], edge + vertex.width / 2)
        left_to_right.append(centre)
        edge = centre + vertex.width / 2 + _NODE_GAP
    right_to_left = []
    edge = float("inf")
    for key in reversed(row):
        vertex = vertices[key]
        centre = min(wanted[key], edge - vertex.width / 2)
        right_to_left.append(centre)
        edge = centre - vertex.width / 2 - _NODE_GAP
    right_to_left.reverse()
    edge = float("-inf")
    for key, a, b in zip(row, left_to_right, right_to_left, strict=True):
        vertex = vertices[key]
        vertex.x = max((a + b) / 2, edge + vertex.width / 2)
        edge = vertex.x + vertex.width / 2 + _NODE_GAP


def _place(vertices: dict[int, _Vertex], ordered: list[list[int]], segments: list[tuple[int, int]]) -> tuple[float, float]:
    """x: start packed, then pull each layer towards its neighbours' centres (down, up, ...); y: by layer."""
    up, down = _neighbours(segments)
    for row in ordered:
        _pack(row, vertices, {key: 0.0 for key in row})
    for alignment in range(_ALIGNMENT_PASSES):
        rows = ordered if alignment % 2 == 0 else list(reversed(ordered))
        neighbours = up if alignment % 2 == 0 else down
        for row in rows:
            wanted = {
                key: (sum(vertices[n].x for n in neighbours[key]) / len(neighbours[key]) if neighbours[key] else vertices[key].x)
                for key in row
            }
            _pack(row, vertices, wanted)
    left = min(v.x - v.width / 2 for v in vertices.values())
    y = _MARGIN
    for row in ordered:
        height = max(vertices[key].height for key in row)
        for key in row:
            vertices[key].x += _MARGIN - left
            vertices[key].y = y
        y += height + _LAYER_GAP
    right = max(v.x + v.width / 2 for v in vertices.values())
    return right + _MARGIN, y - _LAYER_GAP + _MARGIN


def _vertex_svg(vertex: _Vertex) -> str:
    left = vertex.x - vertex.width / 2
    title = html.escape(vertex.title)
    if vertex.kind in ("input", "output"):
        return (
            f'<g class="wb-{vertex.kind}"><rect x="{left:.1f}" y="{vertex.y:.1f}" width="{vertex.width:.1f}" '
            f'height="{vertex.height:.1f}" rx="11" fill="#eeeeee" stroke="#888"/>'
            f'<text x="{vertex.x:.1f}" y="{vertex.y + 15:.1f}" text-anchor="middle" font-size="11">{title}</text></g>'
        )
    parts = [
        f'<g class="wb-node"><rect x="{left:.1f}" y="{vertex.y:.1f}" width="{vertex.width:.1f}" '
        f'height="{vertex.height:.1f}" rx="5" fill="#fcfcfc" stroke="#555"/>',
        f'<path d="M{left:.1f},{vertex.y + _HEADER_HEIGHT:.1f} v-{_HEADER_HEIGHT - 5} a5,5 0 0 1 5,-5 '
        f'h{vertex.width - 10:.1f} a5,5 0 0 1 5,5 v{_HEADER_HEIGHT - 5} z" fill="{vertex.colour}"/>',
        f'<text x="{vertex.x:.1f}" y="{vertex.y + 15:.1f}" text-anchor="middle" font-size="11" font-weight="bold" '
        f'fill="#ffffff">{title}</text>',
    ]
    for index, line in enumerate(vertex.lines):
        y = vertex.y + _HEADER_HEIGHT + 14 + index * _LINE_HEIGHT
        parts.append(f'<text x="{left + _PADDING:.1f}" y="{y:.1f}" font-size="11" fill="#222">{html.escape(line)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _edge_svg(points: list[_Vertex], label: str) -> str:
    first, last = points[0], points[-1]
    coordinates = [(first.x, first.y + first.height)]
    coordinates += [(p.x, p.y + p.height / 2) for p in points[1:-1]]
    coordinates.append((last.x, last.y - 1))
    path = [f"M{coordinates[0][0]:.1f},{coordinates[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in zip(coordinates, coordinates[1:], strict=False):
        middle = (y0 + y1) / 2
        path.append(f"C{x0:.1f},{middle:.1f} {x1:.1f},{middle:.1f} {x1:.1f},{y1:.1f}")
    (x0, y0), (x1, y1) = coordinates[0], coordinates[1]
    label_x, label_y = (x0 + x1) / 2 + 5, y0 + min(24.0, (y1 - y0) / 2 + 4)
    return (
        f'<path d="{" ".join(path)}" fill="none" stroke="#666" stroke-width="1.2" marker-end="url(#wb-arrow)"/>'
        f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="10" fill="#333" stroke="#ffffff" stroke-width="3" '
        f'paint-order="stroke">{html.escape(label)}</text>'
    )


def draw_svg(model: onnx.ModelProto) -> str | None:
    """The graph as one ``<svg>`` element (call ``with_shapes`` first), or None above MAX_DRAWN_NODES nodes."""
    if len(model.graph.node) > MAX_DRAWN_NODES:
        return None
    vertices, edges = _build(model)
    if not vertices:
        return None
    _assign_layers(vertices, edges)
    routes = _add_virtual_points(vertices, edges)
    segments = _segments(edges, routes)
    ordered = _order_layers(vertices, segments)
    width, height = _place(vertices, ordered, segments)
    body = [_vertex_svg(v) for v in vertices.values() if v.kind != "virtual"]
    for index, edge in enumerate(edges):
        chain = [edge.source, *routes[(edge.source, edge.target, index)], edge.target]
        body.append(_edge_svg([vertices[key] for key in chain], edge.label))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="workbench-graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" style="{_FONT};background:#ffffff" role="img" '
        f'aria-label="ONNX graph {html.escape(model.graph.name, quote=True)}">'
        '<defs><marker id="wb-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>'
        + "".join(body)
        + "</svg>"
    )


__all__ = ["MAX_DRAWN_NODES", "draw_svg", "shape_label"]
