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


#: Longer chains of single-use values (a product of 1,000 factors) are cut into named
#: pieces, so that neither this emitter nor Python's parser recurses too deeply.
MAX_INLINE_DEPTH = 24


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
    _given: dict[Node, str] = field(default_factory=dict)
    _views: dict[str, tuple] = field(default_factory=dict)   # slice code -> (array, offset)
    constants: dict[str, tuple[str, str]] = field(default_factory=dict)  # number -> (name, literal)
    contiguous: set[Node] = field(default_factory=set)   # matrices to copy to contiguous memory
    scratch: list[tuple[str, str]] = field(default_factory=list)   # (name, shape) made before the loop

    def __post_init__(self) -> None:
        self.printer.constant = self.constant

    # -- constants -----------------------------------------------------------------------
    def constant(self, value: sympy.Number) -> str:
        """The name of a 0-d array holding a number in the run's dtype (see printer.py)."""
        key = str(value)
        if key not in self.constants:
            literal = Printer()._print(value)
            self.constants[key] = (self.namer.name(_constant_name(value, literal)), literal)
        return self.constants[key][0]

    def constant_lines(self, indent: str) -> list[str]:
        """The definitions of the constants the code used, for the top of the function."""
        return [f"{indent}{name} = np.array({literal}, dtype)" for name, literal in self.constants.values()]

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
        if node.op is Op.CONCAT and all(s.op is Op.OUTER for s in node.src):
            return f"{label}_outer"        # the weight gradients of several parts, side by side
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
        """The code of a value: its name, or (inlined) its expression built from operands."""
        if node in self.env:
            return self.env[node]
        args = [self.expr(s) for s in node.src]
        return ops.CODE[node.op](node, args, self)

    def block(self, nodes: Iterable[Node], indent: str, lead: int, keep: set[Node],
              names: dict[Node, str] | None = None,
              dests: dict[Node, str | Node] | None = None) -> list[str]:
        """Statements computing `nodes` (in order). Nodes in `keep` are always named
        (`names` may fix their identifiers); a node in `dests` is computed into the array
        given there: a slot of a preallocated buffer (code), or the storage of one of its
        operands (a Node: updated in place). The rest are inlined into a single user."""
        nodes = [n for n in nodes if n not in self.env]
        # forward equations always get their names; a backward cotangent used once is
        # written straight into its user (its buffer slot, when it has one)
        keep = set(keep) | {root for name, root in self.fn.equations if not name.startswith("d_")}
        names, dests = names or {}, dests or {}
        self._lead = lead
        members = set(nodes)
        uses = Counter(s for n in nodes for s in n.src if s in members)
        lines: list[str] = []
        self._label, self._quoted = None, set()
        depth: dict[Node, int] = {}                       # how deep an inline expression nests
        for node in nodes:
            depth[node] = 1 + max((depth.get(s, 0) for s in node.src if s not in self.env), default=0)
            inline = uses[node] == 1 and node not in keep and node not in dests
            if inline and node.op is not Op.ZEROS and depth[node] < MAX_INLINE_DEPTH:
                continue                                  # written inline where it is used
            depth[node] = 0
            lines += self._comment(node, indent, bool(lines))
            ident = names.get(node) or self.name(node)
            dest = dests.get(node)
            if isinstance(dest, Node):                    # in place, over an operand's array
                lines.append(f"{indent}{ident} = {self.expr(dest)[0]}")
                self.env[dest] = (ident, ATOM)
                lines += self.into(node, ident, indent)
            elif dest is not None:
                lines.append(f"{indent}{ident} = {dest}")
                lines += self.into(node, ident, indent)
            elif lead != 1 and self._built_in_parts(node):
                lines.append(f"{indent}{ident} = np.empty({self._full_shape(node)}, dtype)")
                lines += self._into_parts(node, ident, indent)
            elif lead == 2 and self._builds_on_first(node):
                lines.append(f"{indent}{ident} = {self.expr(node.src[0])[0]}")
                lines += [self._update(node, ident, s, indent) for s in node.src[1:]]
            elif node in self.contiguous:
                lines.append(f"{indent}{ident} = np.ascontiguousarray({self.expr(node)[0]})")
            else:
                lines.append(f"{indent}{ident} = {self.expr(node)[0]}")
            self.env[node] = (ident, ATOM)
        return lines

    def _built_in_parts(self, node: Node) -> bool:
        """A concat (outside the loop) of products computed for it alone: each part is
        written into its slice of a new array, with no temporaries and no copy."""
        return node.op is Op.CONCAT and all(
            p not in self.env and p.op in (Op.OUTER, Op.MATMUL) and not p.arg for p in node.src)

    def _full_shape(self, node: Node) -> str:
        dims = (self.lead_dims(node) if node.batched else []) + [self.dim(d) for d in self.shape(node)]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def _builds_on_first(self, node: Node) -> bool:
        """An all-steps sum or product whose first operand is a new array of the full shape
        (an input projection `_dot(x, W.T)`): add the rest to it in place, no second array."""
        if node.op not in (Op.SUM, Op.GATE):
            return False
        first = node.src[0]
        return first not in self.env and first.op in (Op.MATMUL, Op.SUM, Op.GATE) and \
            first.batched == node.batched and self.shape(first) == self.shape(node)

    def _comment(self, node: Node, indent: str, after_code: bool) -> list[str]:
        """The equation(s) a statement implements, quoted once per block."""
        label = self.fn.labels.get(node)
        if label is None or label == self._label:
            return []
        self._label = label
        note = [p for p in (self.comment(label) or "").split("\n") if p and p not in self._quoted]
        self._quoted.update(note)
        return ([""] if note and after_code else []) + [f"{indent}# {part}" for part in note]

    def into(self, node: Node, dest: str, indent: str) -> list[str]:
        """Statements computing `node` into the existing array `dest`, without temporaries
        where NumPy allows: `out=` for ufuncs and matmul, parts of a concat written into
        slices of `dest`, an operand already in `dest` (or a single-use first operand built
        there) updated in place."""
        op, src = node.op, node.src
        if op is Op.CONCAT:
            return self._into_parts(node, dest, indent)
        if op in (Op.GATE, Op.SUM):
            there = next((k for k, s in enumerate(src) if self.expr(s)[0] == dest), None)
            if there is not None:                           # `dest += rest`
                lines = []
                for k, s in enumerate(src):
                    if k != there:
                        lines += self._product_into_scratch(s, indent)
                        lines.append(self._update(node, dest, s, indent))
                return lines
        if op in (Op.GATE, Op.SUM) and self._buildable(src[0], node):
            lines = self.into(src[0], dest, indent)
            return lines + [self._update(node, dest, s, indent) for s in src[1:]]
        if op is Op.GATE:
            return [f"{indent}np.multiply({self.expr(src[0])[0]}, {self.expr(src[1])[0]}, out={dest})"]
        if op is Op.SUM:
            first = f"{indent}np.add({self.expr(src[0])[0]}, {self.expr(src[1])[0]}, out={dest})"
            return [first] + [self._update(node, dest, s, indent) for s in src[2:]]
        if op is Op.MATMUL and len(self.shape(src[0])) == 2:
            matrix = self.expr(src[0])[0] + ("" if node.arg else ".T")
            if self.lead(src[1]) > 1:
                self.helpers.add("_dot")
                return [f"{indent}_dot({self.expr(src[1])[0]}, {matrix}, out={dest})"]
            return [f"{indent}np.matmul({self.expr(src[1])[0]}, {matrix}, out={dest})"]
        if op is Op.OUTER and not node.arg:
            a, b = self.expr(src[0])[0], self.expr(src[1])[0]
            if not src[0].batched:
                return [f"{indent}np.outer({a}, {b}, out={dest})"]
            if self.lead(src[0]) == 2:
                self.helpers.add("_flat")
                a, b = f"_flat({a})", f"_flat({b})"
            return [f"{indent}np.matmul({a}.T, {b}, out={dest})"]
        if op is Op.NONLIN and node.arg.name == "tanh":
            return [f"{indent}np.tanh({self.expr(src[0])[0]}, out={dest})"]
        if op is Op.NONLIN and node.arg.name == "sigmoid":
            self.helpers.add("_sigmoid")
            half = self.printer.half_arg()
            return [f"{indent}_sigmoid({self.expr(src[0])[0]}{half}, out={dest})"]
        return [f"{indent}{dest}[...] = {self.expr(node)[0]}"]

    def _buildable(self, operand: Node, user: Node) -> bool:
        """An inlined, batched operand that can be computed straight into the user's array."""
        inlined = operand not in self.env
        return inlined and operand.batched and user.batched and \
            operand.op in (Op.CONCAT, Op.GATE, Op.SUM, Op.MATMUL) and \
            self.shape(operand) == self.shape(user)

    def _product_into_scratch(self, operand: Node, indent: str) -> list[str]:
        """A per-step matrix product added into an array is first written into an array
        made once before the loop (`self.scratch`), not into a new one every step: at large
        sizes a new array each step can cost page faults."""
        if not (self._lead == 1 and operand not in self.env and operand.op is Op.MATMUL
                and len(self.shape(operand.src[0])) == 2 and operand.batched):
            return []
        name = self.name(operand, "_buf")
        self.scratch.append((name, self._full_shape(operand)))
        matrix = self.expr(operand.src[0])[0] + ("" if operand.arg else ".T")
        line = f"{indent}np.dot({self.expr(operand.src[1])[0]}, {matrix}, out={name})"
        self.env[operand] = (name, ATOM)
        return [line]

    def _update(self, node: Node, dest: str, operand: Node, indent: str) -> str:
        """`dest *= b` for a gate, `dest += b` (or `-= b`) for a sum."""
        if node.op is Op.GATE:
            return f"{indent}{dest} *= {self.expr(operand)[0]}"
        negated = operand.op is Op.NONLIN and not operand.arg.name and str(operand.arg.expr) == "-u"
        if negated and operand not in self.env:     # `-b` written inline: subtract b
            return f"{indent}{dest} -= {self.expr(operand.src[0])[0]}"
        return f"{indent}{dest} += {self.expr(operand)[0]}"

    def _into_parts(self, node: Node, dest: str, indent: str) -> list[str]:
        """Each part of a concat computed into its slice of `dest` (a slice of a slice is
        written as one: `d[..., :n]`, not `d[..., :3*n][..., :n]`)."""
        axis, lines = node.arg, []
        rank = len(self.shape(node))
        composed = axis == rank - 1 and dest in self._views
        base, offset = self._views[dest] if composed else (dest, sympy.Integer(0))
        for part in node.src:
            width = self.shape(part)[axis]
            hi = sympy.expand(offset + width)
            index = ["...", f"{'' if offset == 0 else self.dim(offset)}:{self.dim(hi)}"]
            index += [":"] * (rank - 1 - axis)
            target = f"{base}[{', '.join(index)}]"
            if axis == rank - 1:
                self._views[target] = (base, offset)
            if part in self.env:
                lines.append(f"{indent}{target} = {self.env[part][0]}")
            else:
                lines += self.into(part, target, indent)
            offset = hi
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


_NAMED = {"1": "one", "2": "two", "3": "three", "1/2": "half", "0": "zero", "-1": "minus_one",
          "-1/2": "minus_half", "-2": "minus_two"}


def _constant_name(value: sympy.Number, literal: str) -> str:
    """`one`, `half`, `two`, ...; other numbers `k_0_25` (from the literal)."""
    return _NAMED.get(str(value)) or "k_" + literal.replace("-", "minus_")
