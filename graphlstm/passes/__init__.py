"""Optimisation passes: pure Function -> Function rewrites, run in one readable list.

Each pass's docstring shows the code before and after. Hash-consing makes common
subexpressions one node and every rebuild drops unreachable nodes, so CSE and DCE come
with `rebuild.rewrite` itself.
"""
from __future__ import annotations

from ..ir import Function
from .algebra import add_parameters_first, factor_products, group_free_factors, interpolate
from .fold import concat_slices, fold_pads
from .fuse import flatten_sums, fuse_matmuls, fuse_slices
from .hoist import hoist_sums
from .rebuild import rewrite
from .split import split_concat

#: The forward step's passes, in order.
FORWARD_PASSES = [interpolate, split_concat, flatten_sums, fuse_matmuls, fuse_slices, hoist_sums,
                  add_parameters_first]
#: The backward step's passes (run on the derivative of the optimised forward step).
BACKWARD_PASSES = [fold_pads, factor_products, group_free_factors, concat_slices]


def cse_dce(fn: Function) -> Function:
    """Rebuild through the interning constructor: equal nodes merge, dead nodes vanish."""
    return rewrite(fn, lambda old, node, shapes: None)


def optimize_step(step: Function) -> Function:
    """Run every forward pass in order."""
    for rewrite_pass in FORWARD_PASSES + [cse_dce]:
        step = rewrite_pass(step)
    return step


def optimize_backward(step: Function) -> Function:
    """Run every backward pass in order."""
    for rewrite_pass in BACKWARD_PASSES + [cse_dce]:
        step = rewrite_pass(step)
    return step
