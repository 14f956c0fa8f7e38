"""The backward picture: the forward step in grey, its vector-Jacobian product in red.

The forward values flow upwards as in the cell diagram. Cotangents flow the other way, so
their wires are written reversed and rank downwards, from the seeds (∂h, ∂c′ at the top)
to the gradients (∂W_f, ∂x at the bottom). Each cotangent of an equation sits on the same
row as the value it differentiates (`rank=same` of f and ∂f), carries its name and says
in its tooltip which value it is the derivative of; a dotted grey wire shows each forward
value a backward operation reads.

    forward (grey)        backward (red, dashed)
      c' ─────────────────── ∂c′
      │                       ┆
      f ──── ⋯ reads ⋯ ───── ∂f
"""
from __future__ import annotations

import re

from ..ir import Function
from . import dot
from .cell import new_graph
from .dot import Html
from .highlight import Emphasis
from .style import EDGE, NODE, COTANGENT, FORWARD_GREY, NODE_STYLES, name_html, small_subscripts
from .view import Box, Picture, fold

FORWARD_BOX = {"color": FORWARD_GREY, "fontcolor": "#6f6f6f", "fillcolor": "#f0f0f0"}
BACKWARD_BOX = {"color": COTANGENT, "fontcolor": "#8e1b1b", "fillcolor": "#fde4e2"}
FORWARD_WIRE = {"color": FORWARD_GREY}
COTANGENT_WIRE = {"color": COTANGENT, "style": "dashed", "fontcolor": COTANGENT, "penwidth": 1.3}
READS_WIRE = {"color": "#b5b5b5", "style": "dotted", "arrowsize": 0.4, "constraint": False}
FORWARD_CLUSTER = {"style": "rounded,filled", "fillcolor": "#fafafa", "color": "#c8c8c8",
                   "label": "forward values", "fontcolor": "#8a8a8a", "fontsize": 11,
                   "labeljust": "l", "labelloc": "b"}


def pretty(name: str) -> Html:
    """Backward names as the literature writes adjoints: `d_f` -> ∂f, `grad_W_f` -> ∂W_f."""
    match = re.fullmatch(r"(?:d|grad)_(.+)", name)
    return Html("∂" + name_html(match.group(1))) if match else name_html(name)


class BackwardPicture:
    """The boxes of a backward Function, split into forward values and cotangents."""

    def __init__(self, fn: Function) -> None:
        self.fn = fn
        self.forward: Function = fn.meta["forward"]
        self.pic: Picture = fold(fn)
        forward_nodes = set(self.forward.nodes())
        self.is_forward = {box.id: box.members[0] in forward_nodes for box in self.pic.boxes.values()}
        self.names = {self.pic.box_of[node]: name for name, node in fn.equations
                      if node in self.pic.box_of}

    def adjoint_text(self, box: Box) -> str:
        """A tooltip naming the forward value a cotangent belongs to."""
        forward = self.fn.meta["adjoint_of"].get(box.members[0])
        target = self.forward.labels.get(forward) if forward is not None else None
        if forward is not None and forward.op.is_leaf:
            target = forward.arg
        name = self.names.get(box.id, box.eq or box.id)
        return f"{name}: cotangent flowing back from {target}" if target else name

    def ties(self) -> list[list[str]]:
        """Each equation's box with its cotangent's box (f with ∂f), and each seed with the
        result it seeds (h′ with ∂h′)."""
        backward = dict(self.fn.equations)
        rows = []
        for name, node in self.forward.equations:
            adjoint = backward.get("d_" + name)
            if adjoint is not None and node in self.pic.box_of and adjoint in self.pic.box_of:
                rows.append([self.pic.box_of[node], self.pic.box_of[adjoint]])
        for result, seed in self.fn.meta["seeds"].items():
            node = self.forward.result(result)
            if node in self.pic.box_of and seed in self.pic.box_of:
                row = [self.pic.box_of[node], self.pic.box_of[seed]]
                rows.append(row)
        return _merge(rows)


def _merge(rows: list[list[str]]) -> list[list[str]]:
    """Rows sharing a box become one row (a box can be on one rank only)."""
    merged: list[list[str]] = []
    for row in rows:
        joined = [m for m in merged if set(m) & set(row)]
        new = [b for m in joined for b in m] + row
        merged = [m for m in merged if m not in joined] + [list(dict.fromkeys(new))]
    return merged


def _box_attrs(bp: BackwardPicture, box: Box) -> dict:
    """Forward values grey; cotangents red, named ∂ and saying what they differentiate."""
    attrs = {**NODE_STYLES[box.kind], "id": box.id, "tooltip": box.tooltip}
    if box.kind != "junction":
        attrs["label"] = box.label
    colours = FORWARD_BOX if bp.is_forward[box.id] else BACKWARD_BOX
    filled = "filled" in str(attrs.get("style", ""))
    attrs.update({k: v for k, v in colours.items() if k != "fillcolor" or filled})
    if not bp.is_forward[box.id]:
        attrs["tooltip"] = bp.adjoint_text(box)
        if box.kind == "input":   # a seed: ∂h, ∂c′
            attrs["label"] = pretty(box.eq)
    return attrs


def _wire_attrs(bp: BackwardPicture, tail: str, head: str) -> tuple[str, dict]:
    """How a wire is drawn and ranked: forward values up, cotangents down, reads dotted."""
    if bp.is_forward[tail] and bp.is_forward[head]:
        return "up", dict(FORWARD_WIRE)
    if bp.is_forward[tail]:
        return "free", dict(READS_WIRE)
    attrs = dict(COTANGENT_WIRE)
    if tail in bp.names and bp.pic.boxes[tail].kind != "input":
        attrs["label"] = pretty(bp.names[tail])
    return "down", attrs


def _results(bp: BackwardPicture, block: dot.Block) -> None:
    """The gradients leave at the bottom: one terminal per forward leaf."""
    for name, node in bp.fn.results:
        source = bp.pic.box_of.get(node)
        if source is None:
            continue
        terminal = f"out:{name}"
        block.node(terminal, small_subscripts(
            {**NODE_STYLES["output"], "label": pretty(name), "id": terminal,
             "fontcolor": "#8e1b1b", "tooltip": f"{name}: the gradient"}, NODE["fontsize"]))
        block.edge(terminal, source, {**COTANGENT_WIRE, "dir": "back"})


def backward_dot(fn: Function, emphasis: Emphasis) -> str:
    """The DOT text of a backward step, from `gl.grad(...)`'s Function."""
    bp = BackwardPicture(fn)
    graph = new_graph(fn.name)
    forward = graph.subgraph("cluster_forward")
    for key, value in FORWARD_CLUSTER.items():
        forward.attr(key, value)
    lit, reached = emphasis.spread(bp.pic.boxes.values(), [(w.tail, w.head) for w in bp.pic.wires])
    for box in bp.pic.boxes.values():
        target = forward if bp.is_forward[box.id] else graph
        attrs = emphasis.node(box, _box_attrs(bp, box), reached=box.id in reached)
        target.node(box.id, small_subscripts(attrs, NODE["fontsize"]))
    for wire in bp.pic.wires:
        mode, attrs = _wire_attrs(bp, wire.tail, wire.head)
        attrs = small_subscripts(emphasis.edge(attrs, (wire.tail, wire.head) in lit), EDGE["fontsize"])
        if mode == "down":
            graph.edge(wire.head, wire.tail, {**attrs, "dir": "back"})
        else:
            graph.edge(wire.tail, wire.head, attrs)
    _results(bp, graph)
    for row in bp.ties():
        graph.rank("same", row)
    return dot.source(graph)

