"""Optimisation passes: pure Function -> Function rewrites, run in one list."""
from __future__ import annotations

from ..ir import Function

PASSES: list = []


def optimize_step(step: Function) -> Function:
    """Run every pass in order."""
    for rewrite in PASSES:
        step = rewrite(step)
    return step
