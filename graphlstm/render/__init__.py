"""Pictures and equations: `render` draws cells, unrolled sequences and backward steps with
Graphviz; `latex` writes a cell's equations.

    gl.render(cell)                           # SVG text
    gl.render(cell, "lstm.png")               # written by extension: svg, png, pdf, dot
    gl.render(gl.unroll(cell, 3), "u.svg")    # T steps side by side
    gl.render(gl.grad(cell), format="dot")    # the backward step, as DOT text
    gl.render(cell, highlight="f")            # one gate's path, the rest greyed
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx

from ..cell import Cell
from ..ir import Function, Op
from .backward import backward_dot
from .cell import cell_dot
from .highlight import Emphasis, Highlight, resolve
from .latex import latex
from .output import FORMATS, GraphvizNotFound, deliver
from .unrolled import unrolled_dot


def render(obj, path: str | Path | None = None, *, format: str | None = None,
           highlight: Highlight = None):
    """Draw a Cell, or a graph from `gl.grad` / `gl.unroll`.

    Returns SVG (or DOT) text when `path` is None (bytes for png and pdf), else writes the
    file in the format of its extension or `format=` and returns its Path. `highlight=`
    takes equation names (`"f"`, `["i", "g"]`, `"c'"`) and greys everything else.
    """
    return deliver(to_dot(obj, highlight), path, format)


def to_dot(obj, highlight: Highlight = None) -> str:
    """The DOT text of a picture (what `render(..., format="dot")` returns)."""
    fn, kind = _function_and_kind(obj)
    emphasis = Emphasis(_names(fn, kind, highlight))
    if kind == "unrolled":
        return unrolled_dot(fn, emphasis)
    if kind == "backward":
        return backward_dot(fn, emphasis)
    return cell_dot(fn, emphasis)


def _function_and_kind(obj) -> tuple[Function, str]:
    """Dispatch on what was given: a Cell, a Function, or a graph's `graph["kind"]`."""
    if isinstance(obj, Cell):
        return obj.step, "cell"
    if isinstance(obj, Function):
        return obj, obj.kind
    if isinstance(obj, nx.DiGraph) and isinstance(obj.graph.get("function"), Function):
        return obj.graph["function"], obj.graph.get("kind", obj.graph["function"].kind)
    raise TypeError(f"render() draws a Cell or a graph from gl.grad / gl.unroll; "
                    f"got {type(obj).__name__}")


def _names(fn: Function, kind: str, highlight: Highlight) -> frozenset[str]:
    """Highlight names checked against the picture's equations and leaves."""
    if highlight is None:
        return frozenset()
    if kind == "unrolled":   # the picture is drawn from the cell's own step
        fn = fn.meta["cell"].step
    equations = [name for name, _ in fn.equations]
    leaves = [leaf.arg for leaf in fn.leaves]
    states = [leaf.arg for leaf in fn.leaves_of(Op.STATE)]
    return resolve(highlight, equations, leaves, states)


__all__ = ["render", "latex", "to_dot", "FORMATS", "GraphvizNotFound"]
