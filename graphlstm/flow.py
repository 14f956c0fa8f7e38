"""How far back a cell carries gradient: seed 001's vanishing-gradient argument, measured.

`gradient_flow` returns, for every state, the norm of the gradient of a loss on the last
step with respect to the state `k` steps earlier. A plain tanh RNN multiplies by one
Jacobian per step, so the norm falls geometrically with the lag; a gated cell whose
state is updated additively can keep it level. Any cell works: the measurement uses
only the cell's compiled forward and backward.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]
Loss = Callable[[Arrays], tuple[float, dict]]


def gradient_flow(cell, params: Arrays, xs, state0: Arrays | None = None,
                  loss: Loss | None = None) -> dict[str, np.ndarray]:
    """`{state: norms}` where `norms[k]` is the L2 norm of dL/d(state entering step
    T-1-k) over the whole [B, size] array: lag 0 is the state the last step reads,
    lag T-1 the initial state.

    `loss(ys) -> (loss, dys)` defaults to the sum of every output at the last step; the
    losses in `graphlstm.train` fit (`loss=lambda ys: gl.mse_loss(ys, target)`). Cost:
    one forward and one backward step per time step.
    """
    from .codegen import compile as compile_cell
    prog = compile_cell(cell)
    xs = {cell.inputs[0]: xs} if isinstance(xs, np.ndarray) else dict(xs)
    states = state_sequence(prog, params, xs, state0)
    ys, _ = prog.forward(params, xs, states[0])
    _, dys = (loss or last_step_sum)(ys)
    T = len(states)
    norms = {s: np.empty(T) for s in cell.states}
    dstate = None
    for t in range(T - 1, -1, -1):
        step = lambda arrays: {k: v[t:t + 1] for k, v in arrays.items()}  # noqa: E731
        grads = prog.backward(params, step(xs), states[t], step(dys), dstate)
        dstate = {s: grads[s] for s in cell.states}
        for s in cell.states:
            norms[s][T - 1 - t] = np.linalg.norm(grads[s])
    return norms


def state_sequence(prog, params: Arrays, xs: Arrays, state0: Arrays | None) -> list[dict]:
    """The state entering each step (state0 first), one forward step at a time."""
    state = state0
    T = next(iter(xs.values())).shape[0]
    entering = []
    for t in range(T):
        _, state_next = prog.forward(params, {k: v[t:t + 1] for k, v in xs.items()}, state)
        if state is None:  # the zeros the program chose, in its dtype and shapes
            state = {k: np.zeros_like(v) for k, v in state_next.items()}
        entering.append(state)
        state = state_next
    return entering


def last_step_sum(ys: Arrays) -> tuple[float, dict]:
    """L = the sum of every output at the last step; dL/dy is one there, zero before."""
    dys = {k: np.zeros_like(v) for k, v in ys.items()}
    for d in dys.values():
        d[-1] = 1
    return float(sum(np.sum(y[-1]) for y in ys.values())), dys
