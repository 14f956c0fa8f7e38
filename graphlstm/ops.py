"""The primitives, one entry each: shape rule, reference NumPy evaluation, NumPy code
template and vector-Jacobian rule, side by side.

Arrays are laid out with the batch first when a value is batched (`[B, n]`) and without
it otherwise (`[n]`); a matrix parameter is `[out, in]` as in `nn.Linear`, so a batch
computes `v @ W.T`. Axes in node arguments count within one example, so code uses
negative axes, which mean the same with or without the batch axis.

Constructors (`concat`, `matmul`, `gate`, `add`, `nonlin`, ...) are the only way nodes
are built; they fold constants into affine maps and flatten sums, so that the graph is
canonical. VJP rules return one cotangent per operand (None: no dependence); `autodiff`
checks the count and fixes batch axes in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy

from .ir import Node, Op, Shape
from .nonlin import U, Nonlinearity, affine, derivative, numpy_function

# ---------------------------------------------------------------------------------------
# Constructors


def leaf(op: Op, name: str) -> Node:
    return Node.make(op, (), name)


def zeros(shape: Shape, batched: bool) -> Node:
    return Node.make(Op.ZEROS, (), (tuple(shape), batched))


def concat(parts: Sequence[Node], axis: int = 0) -> Node:
    """Stack along an axis; unbatched parts are broadcast when any part is batched."""
    if len(parts) == 1:
        return parts[0]
    if any(p.batched for p in parts):
        parts = [p if p.batched else bcast(p) for p in parts]
    return Node.make(Op.CONCAT, parts, axis)


def slice_(node: Node, axis: int, lo, hi) -> Node:
    """A range along an axis; a slice of a slice is one slice."""
    lo, hi = sympy.sympify(lo), sympy.sympify(hi)
    if node.op is Op.SLICE and node.arg[0] == axis:
        start = node.arg[1]
        return slice_(node.src[0], axis, sympy.expand(start + lo), sympy.expand(start + hi))
    return Node.make(Op.SLICE, (node,), (axis, lo, hi))


def matmul(matrix: Node, vector: Node, transpose: bool = False) -> Node:
    return Node.make(Op.MATMUL, (matrix, vector), transpose)


def outer(a: Node, b: Node, kernel: tuple | None = None) -> Node:
    """Σ over the batch of a ⊗ b (a plain outer product when neither is batched). With a
    `kernel` (kh, kw), a and b are feature maps and the result is the gradient of a
    convolution's weights: Σ over batch and space of a ⊗ (kh x kw windows of b)."""
    if a.batched != b.batched:
        a, b = (a if a.batched else bcast(a)), (b if b.batched else bcast(b))
    return Node.make(Op.OUTER, (a, b), tuple(kernel) if kernel else None)


def gate(a: Node, b: Node) -> Node:
    return Node.make(Op.GATE, (a, b))


def add(*terms: Node) -> Node:
    """Pointwise sum; nested sums are flattened so `a + b + c` is one node."""
    flat: list[Node] = []
    for term in terms:
        flat.extend(term.src if term.op is Op.SUM else (term,))
    return flat[0] if len(flat) == 1 else Node.make(Op.SUM, flat)


def nonlin(fn: Nonlinearity, x: Node) -> Node:
    """Apply an elementwise map; affine maps of affine maps fold into one."""
    if fn.is_identity and not fn.name:
        return x
    if not fn.name and x.op is Op.NONLIN and not x.arg.name:
        return nonlin(affine(fn(x.arg.expr)), x.src[0])
    return Node.make(Op.NONLIN, (x,), fn)


def is_map(node: Node, expr) -> bool:
    """Whether `node` applies the elementwise map a constant makes (`expr` in U) to its
    operand: `-v` is `is_map(node, -U)`, `1 - z` is `is_map(node, 1 - U)`."""
    return node.op is Op.NONLIN and not node.arg.name and node.arg.expr == expr


def scale(c, x: Node) -> Node:
    return nonlin(affine(sympy.sympify(c) * U), x)


def bsum(x: Node) -> Node:
    return Node.make(Op.BSUM, (x,))


def bcast(x: Node) -> Node:
    return Node.make(Op.BCAST, (x,))


# ---------------------------------------------------------------------------------------
# Shape rules (for typed graphs; the builder unifies shapes itself)


def _shape_concat(node, shapes):
    axis = node.arg
    total = sum((s[axis] for s in shapes), sympy.Integer(0))
    first = shapes[0]
    return first[:axis] + (total,) + first[axis + 1:]


def _shape_slice(node, shapes):
    axis, lo, hi = node.arg
    s = shapes[0]
    return s[:axis] + (sympy.expand(hi - lo),) + s[axis + 1:]


def _shape_matmul(node, shapes):
    matrix, vector = shapes
    return ((matrix[1] if node.arg else matrix[0]),) + tuple(vector[1:])


def _shape_gate(node, shapes):
    return max(shapes, key=len)


SHAPE_RULES: dict[Op, Callable[[Node, list[Shape]], Shape]] = {
    Op.ZEROS: lambda node, shapes: node.arg[0],
    Op.CONCAT: _shape_concat,
    Op.SLICE: _shape_slice,
    Op.MATMUL: _shape_matmul,
    Op.OUTER: lambda node, shapes: (shapes[0][0], shapes[1][0]) + tuple(node.arg or ()),
    Op.NONLIN: lambda node, shapes: shapes[0],
    Op.GATE: _shape_gate,
    Op.SUM: _shape_gate,
    Op.BSUM: lambda node, shapes: shapes[0],
    Op.BCAST: lambda node, shapes: shapes[0],
}


def infer_shapes(roots: Sequence[Node], shapes: dict[Node, Shape]) -> dict[Node, Shape]:
    """Fill in the shape of every node reachable from `roots` (leaves must be known).

    The walk stops at nodes whose shapes are known, so adding a few new nodes on top of a
    large graph costs only the new nodes (compile time stays linear in the cell's size)."""
    stack = [(root, False) for root in roots if root not in shapes]
    while stack:
        node, expanded = stack.pop()
        if node in shapes:
            continue
        if expanded:
            shapes[node] = tuple(SHAPE_RULES[node.op](node, [shapes[s] for s in node.src]))
            continue
        stack.append((node, True))
        stack.extend((s, False) for s in node.src if s not in shapes)
    return shapes


# ---------------------------------------------------------------------------------------
# Reference evaluation: plain NumPy, written independently of the code templates


def _index(axis: int, rank: int, lo: int, hi: int) -> tuple:
    return (Ellipsis, slice(lo, hi)) + (slice(None),) * (rank - 1 - axis)


_FN_CACHE: dict[Nonlinearity, Callable] = {}


def _apply(fn: Nonlinearity, x: np.ndarray) -> np.ndarray:
    if fn not in _FN_CACHE:
        _FN_CACHE[fn] = numpy_function(fn)
    out = _FN_CACHE[fn](x)
    return np.broadcast_to(np.asarray(out, dtype=x.dtype), x.shape).copy()


def evaluate(node: Node, args: list[np.ndarray], ctx: "EvalContext") -> np.ndarray:
    """The value of one node from its operands' values (the reference interpreter)."""
    op = node.op
    if op is Op.ZEROS:
        shape = ctx.concrete(node.arg[0])
        return np.zeros(((ctx.batch,) if node.arg[1] else ()) + shape, ctx.dtype)
    if op is Op.CONCAT:
        return np.concatenate(args, axis=node.arg - len(ctx.shape(node)))
    if op is Op.SLICE:
        axis, lo, hi = node.arg
        rank = len(ctx.shape(node))
        return args[0][_index(axis, rank, ctx.size(lo), ctx.size(hi))]
    if op is Op.MATMUL:
        matrix, vector = args
        if matrix.ndim == 4:
            return _reference_conv(vector, matrix, node.arg)
        return np.einsum("oi,...i->...o" if not node.arg else "io,...i->...o", matrix, vector)
    if op is Op.OUTER:
        a, b = args
        if node.arg:
            kernel = tuple(int(k) for k in node.arg)       # (kh, kw) may be SymPy integers
            return _reference_conv_weights(a, b, kernel, node.src[0].batched)
        return np.einsum("za,zb->ab" if node.src[0].batched else "a,b->ab", a, b)
    if op is Op.NONLIN:
        return _apply(node.arg, args[0])
    if op is Op.GATE:
        return args[0] * args[1]
    if op is Op.SUM:
        total = args[0]
        for a in args[1:]:
            total = total + a
        return total
    if op is Op.BSUM:
        return args[0].sum(axis=0)
    if op is Op.BCAST:
        return np.broadcast_to(args[0], (ctx.batch,) + args[0].shape).copy()
    raise NotImplementedError(f"no evaluation rule for {op}")


def _reference_conv(x: np.ndarray, w: np.ndarray, transpose: bool) -> np.ndarray:
    """Same-padded 2-D convolution (cross-correlation, as PyTorch) by summing over kernel
    offsets: y[o, i, j] = Σ w[o, c, p, q] x[c, i + p - kh//2, j + q - kw//2]. The transpose
    (the adjoint in x) sums the other way: x'[c] += w[o, c, p, q] y[o] shifted back."""
    kh, kw = w.shape[2:]
    ph, pw = kh // 2, kw // 2
    height, width = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    if not transpose:
        xp = np.pad(x, pad)
        return sum(np.einsum("oc,...chw->...ohw", w[:, :, p, q], xp[..., p:p + height, q:q + width])
                   for p in range(kh) for q in range(kw))
    out = np.zeros(x.shape[:-3] + (w.shape[1], height + 2 * ph, width + 2 * pw), x.dtype)
    for p in range(kh):
        for q in range(kw):
            out[..., p:p + height, q:q + width] += np.einsum("oc,...ohw->...chw", w[:, :, p, q], x)
    return out[..., ph:ph + height, pw:pw + width]


def _reference_conv_weights(g: np.ndarray, x: np.ndarray, kernel, batched: bool) -> np.ndarray:
    """dW[o, c, p, q] = Σ over batch and space of g[o, i, j] x[c, i + p - kh//2, j + q - kw//2]."""
    kh, kw = kernel
    ph, pw = kh // 2, kw // 2
    height, width = x.shape[-2:]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)])
    spec = "zohw,zchw->oc" if batched else "ohw,chw->oc"
    out = np.empty((g.shape[-3], x.shape[-3], kh, kw), g.dtype)
    for p in range(kh):
        for q in range(kw):
            out[:, :, p, q] = np.einsum(spec, g, xp[..., p:p + height, q:q + width])
    return out


@dataclass
class EvalContext:
    """What evaluation needs besides operand values: sizes, batch, dtype, shapes."""

    sizes: dict[str, int]
    batch: int
    dtype: np.dtype
    shapes: dict

    def shape(self, node: Node) -> Shape:
        return self.shapes[node]

    def size(self, dim) -> int:
        from .ir import concrete_shape
        return concrete_shape((dim,), self.sizes)[0]

    def concrete(self, shape: Shape) -> tuple[int, ...]:
        from .ir import concrete_shape
        return concrete_shape(shape, self.sizes)


# ---------------------------------------------------------------------------------------
# NumPy code templates: operands arrive as (text, precedence); each returns the same.
# `ctx.lead` is the number of leading axes (0: a parameter, 1: [B, ...] in the time loop,
# 2: [T, B, ...] when a pass computes all steps at once).

from .codegen.printer import ADD, ATOM, MUL, UNARY, print_nonlinearity  # noqa: E402


def _p(operand: tuple[str, int], min_prec: int) -> str:
    text, prec = operand
    return text if prec >= min_prec else f"({text})"


def _axis(node: Node, ctx, axis: int) -> int:
    return axis - len(ctx.shape(node))


def _code_concat(node, args, ctx):
    parts = ", ".join(text for text, _ in args)
    return f"np.concatenate(({parts}), axis={_axis(node, ctx, node.arg)})", ATOM


def _code_slice(node, args, ctx):
    axis, lo, hi = node.arg
    rank = len(ctx.shape(node))
    lo_text = "" if lo == 0 else ctx.dim(lo)
    index = ["...", f"{lo_text}:{ctx.dim(hi)}"] + [":"] * (rank - 1 - axis)
    return f"{_p(args[0], ATOM)}[{', '.join(index)}]", ATOM


def _code_matmul(node, args, ctx):
    matrix, vector = args
    if len(ctx.shape(node.src[0])) == 4:
        helper = "_conv_transpose" if node.arg else "_conv"
        ctx.helpers.update({helper, "_conv", "_windows"})
        return f"{helper}({vector[0]}, {matrix[0]})", ATOM
    right = _p(matrix, ATOM) if node.arg else f"{_p(matrix, ATOM)}.T"
    if ctx.lead(node.src[1]) > 1:     # [T, B, n]: one GEMM over all T*B rows
        ctx.helpers.add("_dot")
        return f"_dot({vector[0]}, {right})", ATOM
    return f"np.dot({vector[0]}, {right})", ATOM    # on 2-D arrays as `@`, with less overhead


def _code_outer(node, args, ctx):
    a, b = args
    if node.arg:
        ctx.helpers.update({"_conv_weights", "_windows"})
        kh, kw = node.arg
        return f"_conv_weights({a[0]}, {b[0]}, {kh}, {kw})", ATOM
    if not node.src[0].batched:
        return f"np.outer({a[0]}, {b[0]})", ATOM
    if ctx.lead(node.src[0]) == 1:
        return f"{_p(a, ATOM)}.T @ {_p(b, ATOM)}", MUL
    ctx.helpers.add("_flat")
    return f"_flat({a[0]}).T @ _flat({b[0]})", MUL


def _code_nonlin(node, args, ctx):
    return print_nonlinearity(ctx.printer, node.arg, *args[0])


def _code_sum(node, args, ctx):
    out = _p(args[0], ADD)
    for operand, (text, prec) in zip(node.src[1:], args[1:]):
        if is_map(operand, -U) and text.startswith("-") and prec == UNARY:
            out += f" - {text[1:]}"
        else:
            out += f" + {_p((text, prec), ADD + 1)}"
    return out, ADD


def _code_bsum(node, args, ctx):
    lead = ctx.lead(node.src[0])
    product = _inlined_product(node.src[0], ctx)
    if product is not None and lead == 2:
        # sum over steps and batch of a * b (a peephole weight's gradient): einsum reads both
        # in one pass, where `(a * b).sum(...)` makes a [T, B, ...] array first
        lead_axes, feature_axes = "tb", "ijkl"[:len(ctx.shape(node))]
        spec = f"{lead_axes}{feature_axes},{lead_axes}{feature_axes}->{feature_axes}"
        a, b = (ctx.expr(s)[0] for s in product.src)
        return f'np.einsum("{spec}", {a}, {b})', ATOM
    axes = "0" if lead == 1 else "(" + ", ".join(map(str, range(lead))) + ")"
    return f"{_p(args[0], ATOM)}.sum(axis={axes})", ATOM


def _inlined_product(node, ctx):
    """`node` when it is a product of two operands of its own shape written inline (not
    named), so its batch sum can be computed without it; else None."""
    if node.op is not Op.GATE or node in ctx.env or len(node.src) != 2:
        return None
    shape = ctx.shape(node)
    if any(ctx.shape(s) != shape or not s.batched for s in node.src):
        return None
    return node


def _code_bcast(node, args, ctx):
    return f"np.broadcast_to({args[0][0]}, {ctx.lead_shape(node)} + {_p(args[0], ATOM)}.shape)", ATOM


def _code_zeros(node, args, ctx):
    shape, batched = node.arg
    dims = ([*ctx.lead_dims(node)] if batched else []) + [ctx.dim(d) for d in shape]
    return f"np.zeros(({', '.join(dims)}{',' if len(dims) == 1 else ''}), dtype)", ATOM


CODE: dict[Op, Callable] = {
    Op.ZEROS: _code_zeros,
    Op.CONCAT: _code_concat,
    Op.SLICE: _code_slice,
    Op.MATMUL: _code_matmul,
    Op.OUTER: _code_outer,
    Op.NONLIN: _code_nonlin,
    Op.GATE: lambda node, args, ctx: (f"{_p(args[0], MUL)} * {_p(args[1], MUL + 1)}", MUL),
    Op.SUM: _code_sum,
    Op.BSUM: _code_bsum,
    Op.BCAST: _code_bcast,
}


# ---------------------------------------------------------------------------------------
# Vector-Jacobian rules: one per primitive; each returns one cotangent per operand


def _vjp_concat(node, g, shape):
    axis, offset, out = node.arg, sympy.Integer(0), []
    for part in node.src:
        width = shape(part)[axis]
        out.append(slice_(g, axis, offset, sympy.expand(offset + width)))
        offset = sympy.expand(offset + width)
    return tuple(out)


def _vjp_slice(node, g, shape):
    axis, lo, hi = node.arg
    full = shape(node.src[0])
    pieces = []
    for width in (lo, None, sympy.expand(full[axis] - hi)):
        if width is None:
            pieces.append(g)
        elif width != 0:
            pieces.append(zeros(full[:axis] + (width,) + full[axis + 1:], g.batched))
    return (concat(pieces, axis),)


def _vjp_matmul(node, g, shape):
    matrix, vector = node.src
    kernel = tuple(shape(matrix)[2:]) or None      # a convolution's (kh, kw)
    if node.arg:   # y = Wᵀ v
        return outer(vector, g, kernel), matmul(matrix, g)
    return outer(g, vector, kernel), matmul(matrix, g, transpose=True)


def _vjp_outer(node, g, shape):
    a, b = node.src
    return matmul(g, b), matmul(g, a, transpose=True)


def _vjp_nonlin(node, g, shape):
    grad, reads_output = derivative(node.arg)
    if grad.expr == 0:
        return (None,)
    if not grad.expr.free_symbols:
        return (scale(grad.expr, g),)
    local = nonlin(grad, node if reads_output else node.src[0])
    return (gate(g, local),)


def _vjp_gate(node, g, shape):
    a, b = node.src
    return gate(g, b), gate(g, a)


VJP_RULES: dict[Op, Callable[[Node, Node, Callable[[Node], Shape]], tuple]] = {
    Op.CONCAT: _vjp_concat,
    Op.SLICE: _vjp_slice,
    Op.MATMUL: _vjp_matmul,
    Op.OUTER: _vjp_outer,
    Op.NONLIN: _vjp_nonlin,
    Op.GATE: _vjp_gate,
    Op.SUM: lambda node, g, shape: (g,) * len(node.src),
    Op.BSUM: lambda node, g, shape: (bcast(g),),
    Op.BCAST: lambda node, g, shape: (bsum(g),),
}
