"""Algebra that saves elementwise work: a gated interpolation written with one product (the
forward step), the distributive law and grouping the factors no gradient flows into (the
backward step)."""
from __future__ import annotations

import dataclasses
from collections import Counter

from .. import ops
from ..ir import Function, Node, Op
from ..nonlin import U
from .rebuild import rewrite, users


def interpolate(fn: Function) -> Function:
    """A gated interpolation `(1 - z) * a + z * b` becomes `a + z * (b - a)`: one product,
    not two, and no `1 - z`.

        before:  h' = (1 - z) * h + z * h~          (subtract, multiply, multiply, add)
        after:   h' = h + z * (h~ - h)              (subtract, multiply, add)
    The derivative of the second form is cheaper too: h gets `d_h' - d_h' * z`, with the
    product shared with h~'s. It is the update of GRUs, MGUs and coupled-gate LSTMs. Both
    products must be read by this sum alone (otherwise they are made anyway).
    """
    table = users(fn)

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.SUM:
            return None
        terms = list(zip(node.src, old.src))
        for k, (first, first_old) in enumerate(terms):
            for m, (second, second_old) in enumerate(terms):
                if k == m or any(len(table.get(o, [])) > 1 for o in (first_old, second_old)):
                    continue
                found = _interpolation(first, second)
                if found is not None:
                    z, a, b = found
                    rest = [t for j, (t, _) in enumerate(terms) if j not in (k, m)]
                    difference = Node.make(Op.SUM, [b, ops.scale(-1, a)])   # a, b: one term each
                    return Node.make(Op.SUM, [a, ops.gate(z, difference), *rest])
        return None

    return rewrite(fn, rule)


def add_parameters_first(fn: Function) -> Function:
    """Parameters a sum adds to batched values are added to each other first, once per call.

        before:  r_z = x @ W.T + [b_ir; b_iz] + [b_hr; b_hz]     (two passes over [T, B, 2n])
        after:   r_z = x @ W.T + ([b_ir; b_iz] + [b_hr; b_hz])   (one; the biases' sum: [2n])
    """

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.SUM or not node.batched:
            return None
        constant = [s for s in node.src if not s.batched]
        if len(constant) < 2:
            return None
        return Node.make(Op.SUM, [s for s in node.src if s.batched]
                         + [Node.make(Op.SUM, constant)])

    return rewrite(fn, rule)


def _interpolation(weighted: Node, gated: Node) -> tuple[Node, Node, Node] | None:
    """(z, a, b) when `weighted` is `(1 - z) * a` and `gated` is `z * b` (either order of
    the factors), else None."""
    if weighted.op is not Op.GATE or gated.op is not Op.GATE or \
            len(weighted.src) != 2 or len(gated.src) != 2:
        return None
    for one_minus, a in (weighted.src, weighted.src[::-1]):
        if ops.is_map(one_minus, 1 - U):
            z = one_minus.src[0]
            if z in gated.src:
                b = gated.src[1] if gated.src[0] is z else gated.src[0]
                return z, a, b
    return None


def factor_products(fn: Function) -> Function:
    """`a*b + a*c` becomes `a*(b + c)`: one multiplication fewer, per step of the loop.

        before:  d_f = d_h * h~ + d_mm * h - d_h * h         (three products, two sums)
        after:   d_f = d_h * (h~ - h) + d_mm * h              (two products, two sums)

    Reverse mode makes such sums wherever one value feeds several products: an MGU's or a
    GRU's update `(1 - f) * h + f * h~` gives f the cotangent `d_h * h~ - d_h * h`. A product
    is factored only when this sum is its one user (a product needed elsewhere is made
    anyway), and `-(a*c)` counts as a product with the sign kept inside: `a*(b - c)`.
    """
    table = users(fn)
    changed = True

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        nonlocal changed
        if node.op is not Op.SUM:
            return None
        terms = [(_product(t, o, table), t) for t, o in zip(node.src, old.src)]
        products = [(p, t) for p, t in terms if p is not None]
        factor = _shared_factor([p for p, _ in products])
        if factor is None:
            return None
        inner, rest = [], [t for p, t in terms if p is None]
        for (negated, a, b), term in products:
            if factor not in (a, b):
                rest.append(term)
                continue
            other = b if a is factor else a
            inner.append(ops.scale(-1, other) if negated else other)
        changed = True
        return ops.add(ops.gate(factor, ops.add(*inner)), *rest)

    while changed:                        # a sum may share more than one factor
        changed = False
        fn = rewrite(fn, rule)
        table = users(fn)
    return fn


def _product(term: Node, old: Node, table: dict[Node, list[Node]]) -> tuple | None:
    """(negated, a, b) for a term `a*b` or `-(a*b)` that only this sum reads, else None."""
    if len(table.get(old, [])) > 1:
        return None
    negated = ops.is_map(term, -U)
    if negated:
        term, old = term.src[0], old.src[0]
    if term.op is not Op.GATE or len(term.src) != 2 or len(table.get(old, [])) > 1:
        return None
    return negated, term.src[0], term.src[1]


def _shared_factor(products: list[tuple]) -> Node | None:
    """The factor most products share (at least two; the first seen among equals)."""
    counts = Counter(f for _, a, b in products for f in {a: None, b: None})
    if not counts:
        return None
    factor, count = counts.most_common(1)[0]
    return factor if count >= 2 else None


def group_free_factors(fn: Function) -> Function:
    """A gradient times two factors no gradient flows into multiplies the factors first:
    their product depends on the forward sweep only, so the backward computes it for a chunk
    of steps before the loop reaches them (codegen/program.py), and the loop makes one
    multiplication a step instead of two.

        before:  d_g = (d_c' * i) * (1 - g**2)        (both products in the loop)
        after:   d_g = d_c' * (i * (1 - g**2))        (i * (1 - g**2): per chunk of steps)
    Only when the product with the gradient has no other user (else it is made anyway); a
    cotangent it named (`d_g = d_c' * i`) is then no equation of the backward step any more.
    """
    seeds = set(fn.meta.get("seeds", {}).values())
    table = users(fn)
    free_old: set[Node] = set()
    for node in fn.nodes():
        if node not in seeds and all(s in free_old for s in node.src):
            free_old.add(node)
    free: dict[Node, bool] = {leaf: leaf not in seeds for leaf in fn.leaves}   # rebuilt nodes

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        free[node] = old in free_old
        if node.op is not Op.GATE or len(node.src) != 2:
            return None
        for k in (0, 1):
            inner, outer = node.src[k], node.src[1 - k]
            if inner.op is not Op.GATE or len(inner.src) != 2 or not free[outer] \
                    or len(table.get(old.src[k], [])) > 1:
                continue
            for m in (0, 1):
                if free[inner.src[m]] and not free[inner.src[1 - m]]:
                    factor = ops.gate(inner.src[m], outer)
                    grouped = ops.gate(inner.src[1 - m], factor)
                    free.update({factor: True, grouped: False})
                    absorbed.add(inner)
                    return grouped
        return None

    absorbed: set[Node] = set()
    out = rewrite(fn, rule)
    if not absorbed:
        return out
    # a product the grouping took apart may still name a cotangent (`d_g`): no longer computed
    named = tuple((name, n) for name, n in out.equations if n not in absorbed)
    return rewrite(dataclasses.replace(out, equations=named), lambda old, node, shapes: None)
