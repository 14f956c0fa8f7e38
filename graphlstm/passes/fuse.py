"""Horizontal fusion: matmuls sharing an operand become one GEMM, and elementwise ops over
aligned slices of one array become one op over the whole range."""
from __future__ import annotations

import sympy

from .. import ops
from ..ir import Function, Node, Op, toposort
from .rebuild import joined, rewrite, users


def flatten_sums(fn: Function) -> Function:
    """Inline a sum used only inside another sum, so patterns see all the terms.

        before:  SUM(SUM(W_x @ x, W_h @ h), b)      after:  SUM(W_x @ x, W_h @ h, b)
    """
    table = users(fn)

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.SUM:
            return None
        terms: list[Node] = []
        for old_src, new_src in zip(old.src, node.src):
            inline = new_src.op is Op.SUM and table.get(old_src) == [old]
            terms.extend(new_src.src if inline else (new_src,))
        return Node.make(Op.SUM, terms) if len(terms) != len(node.src) else None

    return rewrite(fn, rule)


def fuse_matmuls(fn: Function) -> Function:
    """Matmuls that read the same vector become one GEMM on row-stacked weights.

        before:  f_h = W_f_h @ h;  i_h = W_i_h @ h;  o_h = W_o_h @ h;  g_h = W_g_h @ h
        after:   fiog_h = [W_f_h; W_i_h; W_o_h; W_g_h] @ h      (weights stacked once per call)
                 f_h = fiog_h[0:n];  i_h = fiog_h[n:2n];  ...
    Members are ordered so that those feeding the same kind of nonlinearity are adjacent
    (sigmoid gates before tanh), which lets `fuse_slices` merge them next.
    """
    table = users(fn)
    groups: dict[Node, list[Node]] = {}
    for node in fn.nodes():
        if node.op is Op.MATMUL and not node.arg and not node.src[0].batched and node.src[1].batched:
            groups.setdefault(node.src[1], []).append(node)
    fused: dict[Node, Node] = {}
    names: dict[Node, str] = {}
    for vector, members in groups.items():
        if len(members) < 2:
            continue
        order = {name: i for i, (name, _) in enumerate(fn.equations)}
        members = sorted(members, key=lambda m: _signature(m, table, order, fn.labels))
        stacked = ops.concat([m.src[0] for m in members], axis=0)
        product = ops.matmul(stacked, vector)
        names[stacked] = names[product] = joined(fn.labels.get(m, "") for m in members)
        offset = sympy.Integer(0)
        for m in members:
            rows = fn.shapes[m][0]
            fused[m] = ops.slice_(product, 0, offset, sympy.expand(offset + rows))
            offset = sympy.expand(offset + rows)
    return rewrite(fn, lambda old, node, shapes: fused.get(old), names)


def _signature(node: Node, table: dict[Node, list[Node]], order: dict[str, int],
               labels: dict[Node, str]) -> tuple[str, int]:
    """(the first nonlinearity the value flows into, its equation's position): sorting by it
    puts gates of one kind side by side, in the order the equations were written, the same
    way in every fused group (so the x and h GEMMs line up slice for slice)."""
    equation = order.get(labels.get(node, ""), len(order))
    current = node
    for _ in range(4):
        nxt = table.get(current, [])
        if len(nxt) != 1:
            break
        current = nxt[0]
        if current.op is Op.NONLIN and current.arg.name:
            return current.arg.name, equation
    return "~", equation


def fuse_slices(fn: Function) -> Function:
    """Elementwise ops over adjacent slices of one array become one op over the union.

        before:  f = sigmoid(P[0:n]);  i = sigmoid(P[n:2n]);  o = sigmoid(P[2n:3n])
        after:   S = sigmoid(P[0:3n]);  f = S[0:n];  i = S[n:2n];  o = S[2n:3n]
    Parameter operands are stacked (`P[0:n] + b_f`, `P[n:2n] + b_i` -> `P[0:2n] + [b_f; b_i]`),
    and so are operands computed for one member alone, which the code then computes into
    their slices of one array (a peephole LSTM's `p_f * c`, `p_i * c`):

        before:  f = sigmoid(P[0:n] + p_f * c);  i = sigmoid(P[n:2n] + p_i * c)
        after:   S = sigmoid(P[0:2n] + [p_f * c; p_i * c]);  f = S[0:n];  i = S[n:2n]
    Members that depend on one another stay apart (the output gate's `p_o * c'` needs f and
    i). Repeats until nothing changes, so fusion climbs from the GEMM up through sums and
    nonlinearities; a fusion reading a value that another fusion of the round replaces waits
    for the next round.
    """
    for _ in range(8):
        fn = _split_mixed_sums(fn)
        plan, names = _fusion_plan(fn)
        if not plan:
            return fn
        fn = rewrite(fn, lambda old, node, shapes: plan.get(old), names)
    return fn


def _operand_kind(node: Node, table: dict[Node, list[Node]] | None = None) -> tuple | None:
    """('slice', array, lo, hi) for a slice of a batched array, ('param',) for a value with no
    batch axis, ('own',) for a batched value computed for its one user (with `table`, the
    users of every node), None for anything else."""
    if node.op is Op.SLICE and node.arg[0] == 0 and node.src[0].batched:
        return ("slice", node.src[0], node.arg[1], node.arg[2])
    if not node.batched:
        return ("param",)
    if table is not None and not node.op.is_leaf and node.op is not Op.SLICE \
            and len(table.get(node, ())) == 1:
        return ("own",)
    return None


def _split_mixed_sums(fn: Function) -> Function:
    """SUM(P[k], b, other) -> SUM(SUM(P[k], b), other): the first part can fuse."""

    def rule(old: Node, node: Node, shapes: dict) -> Node | None:
        if node.op is not Op.SUM:
            return None
        kinds = [_operand_kind(s) for s in node.src]
        good = [s for s, k in zip(node.src, kinds) if k is not None]
        rest = [s for s, k in zip(node.src, kinds) if k is None]
        if not rest or len(good) < 2 or not any(k and k[0] == "slice" for k in kinds):
            return None
        return Node.make(Op.SUM, [Node.make(Op.SUM, good)] + rest)

    return rewrite(fn, rule)


def _fusion_plan(fn: Function) -> tuple[dict[Node, Node], dict[Node, str]]:
    """Replacement for every node that joins a run of fusable neighbours, and the names
    (joined equation labels) of the new fused nodes."""
    groups: dict[tuple, list[tuple[Node, sympy.Expr, sympy.Expr]]] = {}
    table = users(fn)
    order = {node: k for k, node in enumerate(fn.nodes())}
    for node in order:
        key_range = _member_key(node, table)
        if key_range is not None:
            key, lo, hi = key_range
            groups.setdefault(key, []).append((node, lo, hi))
    plan: dict[Node, Node] = {}
    names: dict[Node, str] = {}
    read: set[Node] = set()
    for key, members in groups.items():
        runs = _contiguous_runs(members)
        if any(kind == ("own",) for kind in key[2]):
            runs = [part for run in runs for part in _independent(run, order)]
        for run in runs:
            replacements = _fuse_run(fn, key, run)
            # Fused nodes are built from this round's old nodes: a run that reads (through
            # any chain) a node another run replaces waits for the next round, or the old node
            # would come back beside its replacement (gru's z, r projection computed twice).
            operands = set(toposort(s for member in replacements for s in member.src))
            if operands & plan.keys() or read & replacements.keys():
                continue
            read |= operands
            label = joined(fn.labels.get(m, "") for m in replacements)
            for new in replacements.values():
                for node in (new.src[0], *new.src[0].src):
                    if node.op is not Op.PARAM and node not in names:
                        names[node] = label
            plan.update(replacements)
    return plan, names


def _member_key(node: Node, table: dict[Node, list[Node]]) -> tuple | None:
    """(fusion key, lo, hi) when node is an elementwise op over same-range slices (and
    parameters, and operands of its own)."""
    if node.op not in (Op.NONLIN, Op.GATE, Op.SUM) or not node.batched:
        return None
    kinds = [_operand_kind(s, table) for s in node.src]
    if any(k is None for k in kinds):
        return None
    ranges = {(k[2], k[3]) for k in kinds if k[0] == "slice"}
    if len(ranges) != 1:
        return None
    lo, hi = next(iter(ranges))
    pattern = tuple(("slice", k[1]) if k[0] == "slice" else k for k in kinds)
    return (node.op, node.arg, pattern), lo, hi


def _independent(run, order: dict[Node, int]) -> list:
    """A run (in range order) cut before a member that depends on one of the piece so far,
    or that one of them depends on (fusing them would make a cycle); pieces of length >= 2."""
    pieces, current = [], []
    for member in run:
        if any(_depends(member[0], other[0], order) or _depends(other[0], member[0], order)
               for other in current):
            pieces.append(current)
            current = []
        current.append(member)
    pieces.append(current)
    return [piece for piece in pieces if len(piece) >= 2]


def _depends(node: Node, on: Node, order: dict[Node, int]) -> bool:
    """Whether `node` reads `on` (through any chain of operands). Nodes before `on` in the
    stable order cannot, so the walk stops there."""
    stack, seen, limit = list(node.src), set(), order[on]
    while stack:
        n = stack.pop()
        if n is on:
            return True
        if n in seen or order.get(n, -1) < limit:
            continue
        seen.add(n)
        stack.extend(n.src)
    return False


def _contiguous_runs(members):
    """Chains of members whose ranges touch (hi of one == lo of the next), length >= 2."""
    by_lo = {}
    for m in members:
        by_lo.setdefault(m[1], m)
    his = {m[2] for m in members}
    runs = []
    for m in members:
        if m[1] in his and by_lo.get(m[1]) is not m:
            continue
        if any(sympy.expand(m[1] - other[2]) == 0 for other in members if other is not m):
            continue
        run = [m]
        while run[-1][2] in by_lo and by_lo[run[-1][2]] not in run:
            run.append(by_lo[run[-1][2]])
        if len(run) >= 2:
            runs.append(run)
    return runs


def _fuse_run(fn: Function, key: tuple, run) -> dict[Node, Node]:
    op, arg, pattern = key
    lo, hi = run[0][1], run[-1][2]
    operands = []
    for position, kind in enumerate(pattern):
        if kind[0] == "slice":
            array = kind[1]
            whole = lo == 0 and sympy.expand(hi - fn.shapes[array][0]) == 0
            operands.append(array if whole else ops.slice_(array, 0, lo, hi))
        else:                                 # parameters, or operands of each member's own
            parts = [member[0].src[position] for member in run]
            parts = [q for p in parts for q in (p.src if p.op is Op.CONCAT and p.arg == 0 else (p,))]
            operands.append(ops.concat(parts, axis=0))    # [[b_z; b_r]; b] is [b_z; b_r; b]
    fused = Node.make(op, operands, arg)
    return {member: ops.slice_(fused, 0, sympy.expand(m_lo - lo), sympy.expand(m_hi - lo))
            for member, m_lo, m_hi in run}
