"""The one helper every pass uses: rebuild a Function after replacing nodes."""
from __future__ import annotations

from typing import Callable

from .. import ops
from ..ir import Function, Node, toposort


def rewrite(fn: Function, rule: Callable[[Node, Node, dict], Node | None],
            names: dict[Node, str] | None = None) -> Function:
    """Rebuild `fn` bottom-up. `rule(old, rebuilt, shapes)` may return a replacement for the
    rebuilt node (its operands already rewritten; `shapes` knows every node so far) or None. Shapes are inferred for new
    nodes, labels carried over, unreachable nodes dropped (dead-code elimination comes free,
    and hash-consing merges equal nodes: common-subexpression elimination)."""
    new: dict[Node, Node] = {leaf: leaf for leaf in fn.leaves}
    done: set[Node] = set(fn.leaves)
    shapes = {leaf: fn.shapes[leaf] for leaf in fn.leaves}
    labels: dict[Node, str] = dict(names or {})
    roots = [n for _, n in fn.equations] + [n for _, n in fn.results]
    for node in toposort(roots):
        if node in new:
            continue
        rebuilt = Node.make(node.op, [new[s] for s in node.src], node.arg)
        shapes.setdefault(rebuilt, fn.shapes[node])
        replacement = rule(node, rebuilt, shapes)
        out = rebuilt if replacement is None else replacement
        ops.infer_shapes([out], shapes)
        _label(out, fn.labels.get(node), labels, done)
        new[node] = out
        done.add(out)
    return _function(fn, new, shapes, labels)


def _label(node: Node, label: str | None, labels: dict[Node, str], done: set[Node]) -> None:
    """Label a replacement and any new nodes under it with the equation it came from
    (nodes that a pass named already, such as fused ones, keep their names). The walk stops
    at nodes already rebuilt (`done`), so labelling costs only the new nodes."""
    if label is None:
        return
    stack = [node]
    while stack:
        n = stack.pop()
        if n in done or n.op.is_leaf or (n in labels and n is not node):
            continue
        labels.setdefault(n, label)
        stack.extend(n.src)


def joined(labels) -> str:
    """The label of a value fused from several equations: `f+i+o+g`."""
    out: list[str] = []
    for label in labels:
        for part in label.split("+"):
            if part not in out:
                out.append(part)
    return "+".join(out)


def _function(fn: Function, new: dict[Node, Node], shapes: dict, labels: dict) -> Function:
    results = tuple((name, new[node]) for name, node in fn.results)
    equations = tuple((name, new[node]) for name, node in fn.equations)
    reachable = set(toposort([n for _, n in equations] + [n for _, n in results])) | set(fn.leaves)
    return Function(fn.name, fn.leaves, results,
                    {n: s for n, s in shapes.items() if n in reachable},
                    {n: l for n, l in labels.items() if n in reachable}, equations,
                    fn.sizes, fn.kind, fn.meta)


def users(fn: Function) -> dict[Node, list[Node]]:
    """Each node's users, in stable order."""
    table: dict[Node, list[Node]] = {}
    for node in fn.nodes():
        for s in node.src:
            table.setdefault(s, [])
            if node not in table[s]:
                table[s].append(node)
    return table


def state_free(fn: Function) -> set[Node]:
    """Nodes that do not read a state: computable for all steps at once."""
    from ..ir import Op
    out: set[Node] = set()
    for node in fn.nodes():
        if node.op is not Op.STATE and all(s in out for s in node.src):
            out.add(node)
    return out
