"""The intermediate representation: one interned node type and pure step functions.

A `Node` is an op kind from a small closed set, a tuple of operand nodes and a hashable
argument. Nodes are hash-consed (`Node.make` returns the existing node for equal op,
operands and argument), so equal sub-expressions are one object and common-subexpression
elimination comes free. A `Function` is a pure step: named leaves in, named results out,
with a symbolic shape for every node. Cells, backward steps and unrolled sequences are all
`Function`s, so every stage (autodiff, passes, codegen, render) works on all of them.
"""
from __future__ import annotations

import enum
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import sympy

Shape = tuple  # of sympy expressions: (n,) for a vector, (out, in) for a matrix


class Op(enum.Enum):
    """The closed set of operations. Leaves first, then the four primitives and the sum,
    then the adjoints the derivative needs (each the transpose of a forward op)."""

    INPUT = "input"          # per-step input (batched); seeds of a backward step are inputs too
    STATE = "state"          # previous step's state (batched)
    PARAM = "param"          # parameter (not batched)
    ZEROS = "zeros"          # arg: (shape, batched)
    CONCAT = "concat"        # arg: axis
    MATMUL = "matmul"        # arg: transpose flag; src = (matrix, vector)
    NONLIN = "nonlinearity"  # arg: a `Nonlinearity`
    GATE = "gate"            # elementwise product
    SUM = "sum"              # pointwise sum of any number of operands
    SLICE = "slice"          # arg: (axis, lo, hi); adjoint of concat
    OUTER = "outer"          # sum over the batch of a[b]^T b[b]; adjoint of matmul in the matrix
    BSUM = "batch_sum"       # sum over the batch; adjoint of broadcasting
    BCAST = "broadcast"      # broadcast over the batch; adjoint of BSUM

    @property
    def is_leaf(self) -> bool:
        return self in LEAVES


LEAVES = frozenset({Op.INPUT, Op.STATE, Op.PARAM, Op.ZEROS})
ELEMENTWISE = frozenset({Op.NONLIN, Op.GATE, Op.SUM})

_interned: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()


@dataclass(frozen=True, eq=False)
class Node:
    """One operation. Identity is equality: build nodes with `Node.make` only."""

    op: Op
    src: tuple["Node", ...] = ()
    arg: Any = None
    batched: bool = False   # has a batch axis: depends on an input or a state
    __weakref__: Any = field(default=None, repr=False, compare=False)

    @staticmethod
    def make(op: Op, src: Iterable["Node"] = (), arg: Any = None) -> "Node":
        src = tuple(src)
        key = (op, tuple(id(s) for s in src), arg)
        node = _interned.get(key)
        if node is None:
            node = Node(op, src, arg, _batched(op, src, arg))
            _interned[key] = node
        return node

    @property
    def name(self) -> str:
        """The name of a leaf (inputs, states, params)."""
        assert self.op in (Op.INPUT, Op.STATE, Op.PARAM), self
        return self.arg

    def __repr__(self) -> str:
        if self.op in (Op.INPUT, Op.STATE, Op.PARAM):
            return f"{self.op.value}:{self.arg}"
        args = ", ".join(s.arg if s.op in (Op.INPUT, Op.STATE, Op.PARAM) else s.op.value
                         for s in self.src)
        return f"{self.op.value}({args})"


def toposort(roots: Iterable[Node]) -> list[Node]:
    """Operands before users, in a stable order (depth first, operands left to right).

    Iterative, so graphs of any depth (10,000 unrolled steps) never hit the recursion limit.
    """
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in seen:
                continue
            if expanded:
                seen.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((s, False) for s in reversed(node.src) if id(s) not in seen)
    return order


def _batched(op: Op, src: tuple[Node, ...], arg: Any) -> bool:
    """Whether a value has a batch axis: inputs and states do, parameters do not; the
    batch sums (OUTER, BSUM) remove it, BCAST adds it, everything else inherits it."""
    if op in (Op.INPUT, Op.STATE, Op.BCAST):
        return True
    if op in (Op.PARAM, Op.OUTER, Op.BSUM):
        return False
    if op is Op.ZEROS:
        return arg[1]
    return any(s.batched for s in src)


@dataclass(frozen=True, eq=False)
class Function:
    """A pure step: leaves (inputs, states, params) in, named results out.

    `shapes` gives every node's per-example shape (the batch axis is implicit);
    `labels` names the equation each node comes from (for diagrams, comments and names);
    `equations` lists (equation name, root node) in the order they were written.
    """

    name: str
    leaves: tuple[Node, ...]
    results: tuple[tuple[str, Node], ...]
    shapes: Mapping[Node, Shape]
    labels: Mapping[Node, str]
    equations: tuple[tuple[str, Node], ...] = ()
    sizes: tuple[str, ...] = ()
    kind: str = "cell"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def nodes(self) -> list[Node]:
        """Every node reachable from the results, plus unused leaves, in stable order."""
        order = toposort([node for _, node in self.equations] + [node for _, node in self.results])
        seen = set(order)
        return [leaf for leaf in self.leaves if leaf not in seen] + order

    def leaf(self, name: str) -> Node:
        for leaf in self.leaves:
            if leaf.arg == name:
                return leaf
        raise KeyError(name)

    def result(self, name: str) -> Node:
        return dict(self.results)[name]

    def leaves_of(self, op: Op) -> tuple[Node, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.op is op)

    def shape_of(self, node: Node) -> Shape:
        return self.shapes[node]


def concrete_shape(shape: Shape, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Substitute numbers for size symbols: (n, n_in + n) with n=5, n_in=3 -> (5, 8)."""
    subs = {sympy.Symbol(k, integer=True, positive=True): sympy.Integer(int(v)) for k, v in sizes.items()}
    out = []
    for dim in shape:
        value = sympy.sympify(dim).xreplace(subs)
        if not value.is_Integer:
            missing = sorted(str(s) for s in value.free_symbols)
            raise ValueError(f"size {', '.join(missing)} not given (sizes: {dict(sizes)})")
        out.append(int(value))
    return tuple(out)
