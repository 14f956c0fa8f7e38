"""The reference interpreter: evaluates any `Function` node by node with plain NumPy.

It shares nothing with code generation but the graph, so tests use it as the oracle for
"the unoptimised graph": compiled code must agree with it, forward and backward.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import ops
from .ir import Function, Op, concrete_shape
from .shapes import read_sizes


def infer_sizes(fn: Function, values: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Read the size symbols off leaf arrays (see `shapes.read_sizes`)."""
    dims = []
    for leaf in fn.leaves:
        if leaf.arg in values:
            arr = np.asarray(values[leaf.arg])
            dims += zip(fn.shapes[leaf], arr.shape[1:] if leaf.batched else arr.shape)
    return read_sizes(dims, fn.shapes.values())


def run(fn: Function, values: Mapping[str, np.ndarray], sizes: Mapping[str, int] | None = None,
        ) -> dict[str, np.ndarray]:
    """Evaluate a Function on leaf values (batched leaves are `[B, ...]`); returns results."""
    batch = next((np.asarray(values[l.arg]).shape[0] for l in fn.leaves
                  if l.batched and l.arg in values), 1)
    dtype = np.result_type(*[np.asarray(v).dtype for v in values.values()])
    ctx = ops.EvalContext(dict(sizes or infer_sizes(fn, values)), batch, dtype, dict(fn.shapes))
    env = {}
    for node in fn.nodes():
        if node.op in (Op.INPUT, Op.STATE, Op.PARAM):
            env[node] = np.asarray(values[node.arg])
        else:
            env[node] = ops.evaluate(node, [env[s] for s in node.src], ctx)
    return {name: env[node] for name, node in fn.results}


def run_sequence(cell, params, xs, state0=None):
    """Run a cell over time with the interpreter: `(ys, state_T)` as `prog.forward` gives."""
    step = cell.step
    xs = xs if isinstance(xs, Mapping) else {cell.inputs[0]: xs}
    T, B = next(iter(xs.values())).shape[:2]
    dtype = np.asarray(next(iter(xs.values()))).dtype
    sizes = infer_sizes(step, {**params, **{k: v[0] for k, v in xs.items()}})
    state = {s: (np.zeros((B,) + concrete_shape(cell.shape(s), sizes), dtype)
                 if state0 is None else state0[s]) for s in cell.states}
    ys = {o: [] for o in cell.outputs}
    for t in range(T):
        out = run(step, {**params, **{k: v[t] for k, v in xs.items()}, **state}, sizes)
        for o in cell.outputs:
            ys[o].append(out[o])
        state = {s: out[s + "'"] for s in cell.states}
    ys = {o: (np.stack(v) if v else np.zeros((0, B) + concrete_shape(cell.shape(o), sizes), dtype))
          for o, v in ys.items()}
    return ys, state
