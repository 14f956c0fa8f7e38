"""Reverse mode: a step `Function` -> its vector-Jacobian product, another `Function`
made of the same primitives.

The backward step takes the forward leaves plus one cotangent seed per forward result
(`d_h` for the output h, `d_c'` for the next step's state), and returns one gradient per
forward leaf (`grad_W_f`, `grad_x`, `grad_h`). It is an ordinary `Function`, so it can be
compiled, drawn, and differentiated again (second derivatives).
"""
from __future__ import annotations

import networkx as nx

from . import ops
from .ir import Function, Node, Op, toposort


def seed_name(result: str) -> str:
    return f"d_{result}"


def grad_name(leaf: str) -> str:
    return f"grad_{leaf}"


def vjp(fn: Function) -> Function:
    """The backward step of `fn`: reversed topological order, cotangents summed in a dict."""
    # a seed has a batch axis exactly when its result does (parameter gradients have none)
    seeds = {name: ops.leaf(Op.INPUT if node.batched else Op.PARAM, seed_name(name))
             for name, node in fn.results}
    shapes = dict(fn.shapes)
    for name, node in fn.results:
        shapes[seeds[name]] = fn.shapes[node]
    cotangents: dict[Node, list[Node]] = {}
    for name, node in fn.results:
        cotangents.setdefault(node, []).append(_match_batch(seeds[name], node))
    adjoint_of: dict[Node, Node] = {}
    totals: dict[Node, Node] = {}
    forward = set(fn.nodes())
    for node in reversed(toposort([n for _, n in fn.results])):
        if node not in cotangents:
            continue
        total = _accumulate(cotangents.pop(node))
        ops.infer_shapes([total], shapes)
        totals[node] = total
        adjoint_of.setdefault(total, node)
        if node.op.is_leaf:
            continue
        for operand, contribution in zip(node.src, _rule(node, total, shapes), strict=True):
            if contribution is not None:
                contribution = _match_batch(contribution, operand)
                ops.infer_shapes([contribution], shapes)
                _tag(contribution, node, adjoint_of, forward)
                cotangents.setdefault(operand, []).append(contribution)
    return _backward_function(fn, seeds, totals, shapes, adjoint_of)


def _accumulate(terms: list[Node]) -> Node:
    """The sum of a node's cotangent contributions. A contribution that is itself a sum is
    another node's total cotangent (passed on through a forward sum) and stays one term: it
    is computed once, and flattening it into this sum would add its terms again here."""
    return terms[0] if len(terms) == 1 else Node.make(Op.SUM, terms)


def _tag(contribution: Node, forward_node: Node, adjoint_of: dict, forward: set) -> None:
    """Record which forward node each new backward node differentiates (walking only
    the new nodes, so differentiation stays linear in the size of the step)."""
    stack = [contribution]
    while stack:
        n = stack.pop()
        if n in adjoint_of or n in forward:
            continue
        adjoint_of[n] = forward_node
        stack.extend(n.src)


def _rule(node: Node, cotangent: Node, shapes: dict) -> tuple:
    """Apply the primitive's VJP rule and check it returns one cotangent per operand."""
    rule = ops.VJP_RULES.get(node.op)
    if rule is None:
        raise NotImplementedError(f"no vector-Jacobian rule for the primitive '{node.op.value}'")
    out = tuple(rule(node, cotangent, shapes.__getitem__))
    if len(out) != len(node.src):
        raise AssertionError(f"the VJP rule of '{node.op.value}' returned {len(out)} cotangents "
                             f"for {len(node.src)} operands")
    return out


def _match_batch(contribution: Node, operand: Node) -> Node:
    """Broadcasting is the one implicit op: its adjoint sums over the batch, and back."""
    if operand.batched and not contribution.batched:
        return ops.bcast(contribution)
    if contribution.batched and not operand.batched:
        return ops.bsum(contribution)
    return contribution


def _backward_function(fn: Function, seeds: dict, totals: dict, shapes: dict,
                       adjoint_of: dict) -> Function:
    results = []
    for leaf in fn.leaves:
        total = totals.get(leaf)
        if total is None:
            total = ops.zeros(fn.shapes[leaf], leaf.batched)
            shapes[total] = fn.shapes[leaf]
        results.append((grad_name(leaf.arg), total))
    labels = dict(fn.labels)
    for new, forward in adjoint_of.items():
        if new not in labels:
            labels[new] = "d_" + fn.labels.get(forward, forward.arg if forward.op.is_leaf else "?")
    equations = tuple(fn.equations) + tuple(
        ("d_" + name, totals[node]) for name, node in reversed(fn.equations)
        if node in totals and not totals[node].op.is_leaf)
    return Function(
        name=f"{fn.name}_backward", leaves=fn.leaves + tuple(seeds.values()),
        results=tuple(results), shapes=shapes, labels=labels, equations=_unique(equations),
        sizes=fn.sizes, kind="backward",
        meta={"forward": fn, "adjoint_of": adjoint_of, "seeds": seeds,
              "custom": fn.meta.get("custom", ())})


def _unique(equations: tuple) -> tuple:
    seen_names, seen_nodes, out = set(), set(), []
    for name, node in equations:
        if name not in seen_names and node not in seen_nodes:
            out.append((name, node))
            seen_names.add(name)
            seen_nodes.add(node)
    return tuple(out)


def as_function(obj) -> Function:
    """A Function from a Cell, a Function or a graph made by graphlstm."""
    from .cell import Cell
    if isinstance(obj, Function):
        return obj
    if isinstance(obj, Cell):
        return obj.step
    if isinstance(obj, nx.DiGraph) and isinstance(obj.graph.get("function"), Function):
        return obj.graph["function"]
    raise TypeError(f"expected a Cell, or a graph from gl.grad / gl.unroll; got {type(obj).__name__}")


def grad(obj) -> nx.DiGraph:
    """The backward step of a cell (or of any graph from graphlstm) as a networkx DiGraph.

    The graph's `.graph["function"]` is the backward `Function`, so `grad(grad(cell))`
    gives second derivatives and `gl.compile` / `gl.render` accept the result.
    """
    from .cell import to_networkx
    return to_networkx(vjp(as_function(obj)))
