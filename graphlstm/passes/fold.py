"""Folding on the backward graph: zero-padded slices that add up become one concat, and
concats of like slices become slices of one concat."""
from __future__ import annotations

import sympy

from .. import ops
from ..ir import Function, Node, Op
from .rebuild import joined, rewrite


def fold_pads(fn: Function) -> Function:
    """The adjoint of slicing pads with zeros; the pieces of one array add back up.

        before:  d_S = [d_f, 0, 0] + [0, d_i, 0] + [0, 0, d_o]
        after:   d_S = [d_f, d_i, d_o]
    Also drops zero terms from sums (`x + 0 -> x`), and sums a padded concat over the batch
    piece by piece, so no zeros are made for it:

        before:  d_b = Σ_batch [0, d_h~]          ([T, B, 3n] of which 2n zeros)
        after:   d_b = [0, Σ_batch d_h~]          (the zeros are [2n])
    """

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is Op.BSUM:
            return _sum_pieces(node.src[0], shapes)
        if node.op is not Op.SUM:
            return None
        terms = [t for t in node.src if t.op is not Op.ZEROS]
        if not terms:
            return node.src[0]
        merged = _merge_pads(shapes, terms)
        if merged is not None:
            return merged
        return ops.add(*terms) if len(terms) != len(node.src) else None

    return rewrite(fn, rule)


def _sum_pieces(padded: Node, shapes: dict) -> Node | None:
    """The batch sum of a concat with zero pieces as a concat of the pieces' sums."""
    if padded.op is not Op.CONCAT or not any(p.op is Op.ZEROS for p in padded.src):
        return None
    pieces = [ops.zeros(ops.infer_shapes([p], shapes)[p], batched=False) if p.op is Op.ZEROS
              else ops.bsum(p) for p in padded.src]
    return ops.concat(pieces, axis=padded.arg)


def _segments(shapes: dict, node: Node, axis: int):
    """[(lo, hi, piece or None for zeros)] of a concat along `axis`, or None."""
    if node.op is not Op.CONCAT or node.arg != axis:
        return None
    out, offset = [], sympy.Integer(0)
    for part in node.src:
        width = ops.infer_shapes([part], shapes)[part][axis]
        out.append((offset, sympy.expand(offset + width), None if part.op is Op.ZEROS else part))
        offset = sympy.expand(offset + width)
    return out


def _merge_pads(shapes: dict, terms: list[Node]) -> Node | None:
    """If every term is a zero-padded concat and their pieces do not overlap, one concat."""
    if len(terms) < 2 or terms[0].op is not Op.CONCAT:
        return None
    axis = terms[0].arg
    pieces = []
    for term in terms:
        segments = _segments(shapes, term, axis)
        if segments is None:
            return None
        pieces += [(lo, hi, p) for lo, hi, p in segments if p is not None]
    chain, position = [], sympy.Integer(0)
    while pieces:
        nxt = [p for p in pieces if sympy.expand(p[0] - position) == 0]
        if len(nxt) != 1:
            return None
        chain.append(nxt[0][2])
        position = nxt[0][1]
        pieces.remove(nxt[0])
    total = _segments(shapes, terms[0], axis)[-1][1]
    if sympy.expand(position - total) != 0:
        return None
    return ops.concat(chain, axis=axis)


def concat_slices(fn: Function) -> Function:
    """Concats of the same rows of several arrays become those rows of one concat, so every
    gate's weight gradient is a view of one array the weight GEMMs write straight into.

        before:  grad_W_f = [d_outer_x[:n], d_outer_h[:n]]     (and likewise for i, o, g)
                 grad_W_i = [d_outer_x[n:2n], d_outer_h[n:2n]]
        after:   d_W = [d_outer_x, d_outer_h]                  (one array)
                 grad_W_f = d_W[:n];  grad_W_i = d_W[n:2n]
    """

    def like_slices(node: Node, shapes: dict) -> list[Node] | None:
        """The arrays a concat takes the same rows of (weight gradients only), or None."""
        if node.op is not Op.CONCAT or any(p.op is not Op.SLICE for p in node.src):
            return None
        axis = node.src[0].arg[0]
        bases = [p.src[0] for p in node.src]
        if axis == node.arg or any(p.arg != node.src[0].arg for p in node.src) or \
                any(b.op is not Op.OUTER for b in bases):
            return None
        extent = shapes[bases[0]][axis]
        if any(sympy.expand(shapes[b][axis] - extent) != 0 for b in bases):
            return None
        return bases

    # the one concat is named after the gradients it holds (`d_f+i+o+g`), not after one gate
    names = {}
    for node in fn.nodes():
        bases = like_slices(node, fn.shapes)
        if bases is not None:
            names[ops.concat(bases, axis=node.arg)] = joined(fn.labels.get(b, "") for b in bases)

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        bases = like_slices(node, shapes)
        if bases is None:
            return None
        return ops.slice_(ops.concat(bases, axis=node.arg), *node.src[0].arg)

    return rewrite(fn, rule, names)
