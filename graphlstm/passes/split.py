"""Concat splitting: a matmul over [inputs..., states...] becomes a sum of two matmuls."""
from __future__ import annotations

import sympy

from .. import ops
from ..ir import Function, Node, Op
from .rebuild import rewrite, state_free


def split_concat(fn: Function) -> Function:
    """Split `W @ [x, h]` where the concat mixes state-free and state parts.

        before:  f = sigmoid(W_f @ [x, h] + b_f)
        after:   f = sigmoid(W_f[:, :n_in] @ x + W_f[:, n_in:] @ h + b_f)

    The state-free term can then be hoisted out of the time loop (all T in one GEMM), and
    the column slices of W_f are taken once per call. Runs of parts of one kind stay
    together (`W @ [h, c]` is not split).
    """
    free = state_free(fn)

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.MATMUL or node.arg or node.src[1].op is not Op.CONCAT:
            return None
        matrix = node.src[0]
        old_parts, new_parts = old.src[1].src, node.src[1].src
        runs = _runs([p in free for p in old_parts])
        if len(runs) < 2 or matrix.batched:
            return None
        terms, offset = [], sympy.Integer(0)
        for run in runs:
            width = sympy.expand(sum((fn.shapes[old_parts[i]][0] for i in run), sympy.Integer(0)))
            block = ops.slice_(matrix, 1, offset, sympy.expand(offset + width))
            terms.append(ops.matmul(block, ops.concat([new_parts[i] for i in run])))
            offset = sympy.expand(offset + width)
        return Node.make(Op.SUM, terms)

    return rewrite(fn, rule)


def _runs(kinds: list[bool]) -> list[list[int]]:
    """Indices grouped into maximal runs of equal kind: [T, T, F] -> [[0, 1], [2]]."""
    runs: list[list[int]] = []
    for i, kind in enumerate(kinds):
        if runs and kinds[runs[-1][0]] == kind:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
