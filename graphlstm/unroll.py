"""Unrolling: T copies of the step as one graph, each state feeding the next step.

Node names carry the step (`f@2`, `h'@2`); the initial states are leaves `h@0`, the inputs
`x@0 ... x@{T-1}`; parameters are shared. The result is an ordinary `Function`, so the
reference interpreter evaluates it and `vjp` differentiates it: tests use both to check
the compiled loop and its backprop through time against the plain, unrolled graph.
"""
from __future__ import annotations

import networkx as nx

from . import ops
from .ir import Function, Node, Op, toposort


def unroll_function(cell, T: int) -> Function:
    """The cell unrolled over T steps, as one Function."""
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    step = cell.step
    results = dict(step.results)
    params = step.leaves_of(Op.PARAM)
    leaves: list[Node] = []
    shapes = {p: step.shapes[p] for p in params}
    labels: dict[Node, str] = {}
    equations, out_results = [], []
    state = {}
    for s in step.leaves_of(Op.STATE):
        state[s] = ops.leaf(Op.STATE, f"{s.arg}@0")
        shapes[state[s]] = step.shapes[s]
        leaves.append(state[s])
    for t in range(T):
        subst: dict[Node, Node] = {p: p for p in params}
        subst.update(state)
        for x in step.leaves_of(Op.INPUT):
            subst[x] = ops.leaf(Op.INPUT, f"{x.arg}@{t}")
            shapes[subst[x]] = step.shapes[x]
            leaves.append(subst[x])
        for node in toposort([n for _, n in step.equations] + list(results.values())):
            if node not in subst:
                subst[node] = Node.make(node.op, [subst[s] for s in node.src], node.arg)
                shapes[subst[node]] = step.shapes[node]
            if node in step.labels and subst[node] not in labels and not subst[node].op.is_leaf:
                labels[subst[node]] = f"{step.labels[node]}@{t}"
        equations += [(f"{name}@{t}", subst[node]) for name, node in step.equations]
        out_results += [(f"{o}@{t}", subst[results[o]]) for o in cell.outputs]
        state = {s: subst[results[s.arg + "'"]] for s in step.leaves_of(Op.STATE)}
    out_results += [(f"{s.arg}@{T}", node) for s, node in state.items()]
    return Function(name=f"{cell.name}_unrolled_{T}", leaves=tuple(leaves) + params,
                    results=tuple(out_results), shapes=shapes, labels=labels,
                    equations=tuple(equations), sizes=step.sizes, kind="unrolled",
                    meta={"cell": cell, "T": T, "custom": step.meta.get("custom", ())})


def unroll(cell, T: int) -> nx.DiGraph:
    """The unrolled sequence as a networkx DiGraph: nodes carry `step`; edges that carry a
    state from step t to step t+1 have `state=True`."""
    from .cell import to_networkx
    graph = to_networkx(unroll_function(cell, T))
    for name, data in graph.nodes(data=True):
        data["step"] = _step_of(name)
    for u, v, data in graph.edges(data=True):
        su, sv = graph.nodes[u]["step"], graph.nodes[v]["step"]
        data["state"] = su is not None and sv is not None and sv == su + 1
    return graph


def _step_of(name: str) -> int | None:
    if "@" not in name:
        return None
    tail = name.rsplit("@", 1)[1].split(".")[0]
    return int(tail) if tail.isdigit() else None
