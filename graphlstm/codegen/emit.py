"""Statements from nodes: one assignment per named value, single-use values inlined.

`Emitter.block` turns a list of nodes (a region: once per call, all steps at once, or the
body of the time loop) into Python statements, using the op -> template table in
`ops.CODE`. A value gets a name when it is an equation, is used twice, or is needed
outside its block; otherwise it is written inline, so `f = _sigmoid(x_h @ W_f.T + b_f)`
reads like the equation it implements, which the comment above it quotes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import sympy

from .. import ops
from ..ir import Function, Node, Op
from .naming import Namer
from .printer import ATOM, Printer


@dataclass
class Emitter:
    """Holds the names and expressions of values as code is generated for a Function."""

    fn: Function
    namer: Namer
    dims: dict[str, str]                       # size symbol -> variable name
    comment: Callable[[str], str | None]       # equation label -> comment text
    printer: Printer = field(default_factory=Printer)
    helpers: set[str] = field(default_factory=set)
    env: dict[Node, tuple[str, int]] = field(default_factory=dict)
    _lead: int = 1
    _pending: dict[Node, tuple[str, int]] = field(default_factory=dict)
    _given: dict[Node, str] = field(default_factory=dict)

    # -- names ---------------------------------------------------------------------------
    def base_name(self, node: Node) -> str:
        """The name a value is called after: its equation, or its equation and role."""
        for name, root in self.fn.equations:
            if root is node:
                return name
        if node.op.is_leaf and node.op is not Op.ZEROS:
            return node.arg
        vector = self._matrix_of().get(node)
        if vector is not None and node.op is not Op.PARAM:
            label = self.fn.labels.get(node, "v")
            vec = vector.arg if vector.op.is_leaf else self.fn.labels.get(vector, "v")
            return f"W_{label}_{vec}"
        if node.op is Op.CONCAT and all(s in self.env for s in node.src):
            names = [self.env[s][0] for s in node.src]
            if all(n.isidentifier() and len(n) <= 12 for n in names):
                return "_".join(names)
        label = self.fn.labels.get(node, "v")
        return f"{label}_{_ROLE[node.op]}"

    def _matrix_of(self) -> dict[Node, Node]:
        """Matrix operand -> the vector it multiplies (to name packed weights `W_f_i_h`)."""
        if not hasattr(self, "_matrices"):
            self._matrices = {n.src[0]: n.src[1] for n in self.fn.nodes()
                              if n.op is Op.MATMUL and not n.arg}
        return self._matrices

    def name(self, node: Node, suffix: str = "") -> str:
        """A fresh identifier for a node (remembered, so one node gets one name)."""
        if (node, suffix) not in self._given:
            self._given[(node, suffix)] = self.namer.name(self.base_name(node) + suffix)
        return self._given[(node, suffix)]

    # -- the template context ------------------------------------------------------------
    def shape(self, node: Node):
        return self.fn.shapes[node]

    def dim(self, expr) -> str:
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return str(int(expr))
        named = {s: sympy.Symbol(self.dims[str(s)]) for s in expr.free_symbols}
        return str(expr.xreplace(named))

    def lead(self, node: Node) -> int:
        return self._lead if node.batched else 0

    def lead_dims(self, node: Node) -> list[str]:
        return ["T", "B"][2 - self._lead:]

    def lead_shape(self, node: Node) -> str:
        return "(" + ", ".join(self.lead_dims(node)) + ",)"

    # -- expressions and blocks ----------------------------------------------------------
    def expr(self, node: Node) -> tuple[str, int]:
        if node in self.env:
            return self.env[node]
        if node in self._pending:
            return self._pending.pop(node)
        args = [self.expr(s) for s in node.src]
        return ops.CODE[node.op](node, args, self)

    def block(self, nodes: Iterable[Node], indent: str, lead: int, keep: set[Node],
              names: dict[Node, str] | None = None) -> list[str]:
        """Statements computing `nodes` (in order). Nodes in `keep` are always named
        (`names` may fix their identifiers); the rest are inlined into a single user."""
        nodes = [n for n in nodes if n not in self.env]
        keep = set(keep) | {root for _, root in self.fn.equations}
        self._lead = lead
        members = set(nodes)
        uses = Counter(s for n in nodes for s in n.src if s in members)
        lines: list[str] = []
        label = None
        quoted: set[str] = set()
        for node in nodes:
            text = self.expr(node)
            if uses[node] == 1 and node not in keep and node.op is not Op.ZEROS:
                self._pending[node] = text
                continue
            new_label = self.fn.labels.get(node)
            if new_label != label and new_label is not None:
                note = [p for p in (self.comment(new_label) or "").split("\n")
                        if p and p not in quoted]
                if note:
                    if lines:
                        lines.append("")
                    lines += [f"{indent}# {part}" for part in note]
                    quoted.update(note)
                label = new_label
            ident = (names or {}).get(node) or self.name(node)
            lines.append(f"{indent}{ident} = {text[0]}")
            self.env[node] = (ident, ATOM)
        return lines

    def bind(self, node: Node, text: str, prec: int = ATOM) -> None:
        self.env[node] = (text, prec)

    def forget(self, nodes: Iterable[Node]) -> None:
        for node in nodes:
            self.env.pop(node, None)


_ROLE = {
    Op.CONCAT: "cat", Op.MATMUL: "mm", Op.NONLIN: "act", Op.GATE: "gated", Op.SUM: "sum",
    Op.SLICE: "part", Op.OUTER: "outer", Op.BSUM: "bsum", Op.BCAST: "bcast", Op.ZEROS: "zeros",
    Op.INPUT: "in", Op.STATE: "state", Op.PARAM: "param",
}
