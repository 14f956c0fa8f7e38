"""The unrolled picture: T copies of the cell side by side, the states flowing from one
step into the next (the picture of seed 000).

Each step is the cell diagram of `cell.py` in a cluster of its own, subscripted with its
time (x_1, h_0 -> h_1, ...). Between steps the next-state terminal of step t is dropped and
its wire runs into the state terminal of step t+1, which sits on the same row, so the
cell state is one straight line through all steps. Parameters are labels of the boxes,
shared by every step.
"""
from __future__ import annotations

from ..ir import Function
from . import dot
from .cell import CellLayout, Copy, emit_cell, emit_rows, new_graph
from .highlight import Emphasis


def step_copy(layout: CellLayout, t: int, T: int) -> Copy:
    """Step t (0-based) of T: ids `t1/...`, subscripts t and t+1, and, except for the
    last step, its next states handed to step t+1."""
    nxt = {f"next:{state}": f"{_prefix(t + 1)}{layout.pic.box_of[layout.fn.leaf(state)]}"
           for state in layout.updates}
    last = t == T - 1
    return Copy(prefix=_prefix(t), before=str(t), after=str(t + 1), title=f"step {t + 1}",
                drop=frozenset() if last else frozenset(nxt), retarget={} if last else nxt)


def _prefix(t: int) -> str:
    return f"t{t + 1}/"


def unrolled_dot(fn: Function, emphasis: Emphasis) -> str:
    """The DOT text of T steps of a cell, from `gl.unroll(cell, T)`'s Function."""
    cell, T = fn.meta["cell"], fn.meta["T"]
    layout = CellLayout(cell.step, outputs_above=True)
    graph = new_graph(fn.name)
    rows = [(kind, []) for kind, _ in layout.rank_rows()]
    inputs: list[str] = []
    for t in range(T):
        copy = step_copy(layout, t, T)
        emit_cell(graph, layout, copy, emphasis)
        for (_, ids), (_, step_ids) in zip(rows, layout.rank_rows()):
            ids.extend(copy.id(i) for i in step_ids if i not in copy.drop)
        inputs.extend(copy.id(i) for i in layout.input_row())
    emit_rows(graph, rows + [("min", inputs)])
    return dot.source(graph)
