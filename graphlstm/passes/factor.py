"""The distributive law on the backward graph: products in a sum that share a factor share
one multiplication."""
from __future__ import annotations

from collections import Counter

from .. import ops
from ..ir import Function, Node, Op
from .rebuild import rewrite, users


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
    negated = term.op is Op.NONLIN and not term.arg.name and str(term.arg.expr) == "-u"
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
