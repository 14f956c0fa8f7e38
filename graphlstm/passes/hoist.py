"""Input hoisting: group the state-free terms of a sum so they leave the time loop."""
from __future__ import annotations

from ..ir import Function, Node, Op
from .rebuild import rewrite, state_free


def hoist_sums(fn: Function) -> Function:
    """Regroup sums so every term that reads no state is added before the loop.

        before:  P = x_W[t] + b + h @ U.T           (three terms, all inside the loop)
        after:   x_Wb = x_W + b                      (all T steps at once, before the loop)
                 P = x_Wb[t] + h @ U.T
    """
    free = state_free(fn)

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.SUM or old in free:
            return None
        hoisted = [n for o, n in zip(old.src, node.src) if o in free]
        looped = [n for o, n in zip(old.src, node.src) if o not in free]
        if len(hoisted) < 2 or not looped:
            return None
        return Node.make(Op.SUM, [Node.make(Op.SUM, hoisted)] + looped)

    return rewrite(fn, rule)
