"""Where the values of the time loops live: which arrays are made, which are reused in place.

The generated loops allocate as little as NumPy allows. Three rules decide the storage:

in place       A gate's pre-activation is added up in its all-steps slot, and an activation
               overwrites the pre-activation it reads when nothing else reads it later:

                   z = zx[t]                  (zx: the input projection of every step)
                   z += h @ U.T               (no new array for the sum)
                   _sigmoid(z, half, z)       (none for the activation either)

               Activations the backward reads then live in the all-steps array itself.
state slots    Each state has a [T+1] sequence (slot 0: the initial state, slot t+1: written by
               step t), so a step writes its new state in place and the backward reads every
               step's state from it; an output that is a state is a view of it, not a copy.
shared slots   A backward value kept for after the loop (an LSTM's gate gradients, [T, B, 4n])
               is written at step t into slot t+1 of a forward sequence of the same shape that
               nothing reads after the loop: the backward runs from t = T-1 down, so slot t+1
               was read for the last time one step before. Such sequences get one spare slot.
               The backward thereby consumes its tape.
               A value the loop computes that is a part of a kept concatenation (a peephole
               LSTM's gate gradients, also read alone after the loop) is computed into its
               slice of the concatenation's slot: no slot of its own, no copy; a kept slice
               of a kept value is a view of it. A concatenation the code after the loop
               makes of kept values only (an MGU's gate gradients for the input GEMMs) has
               its array made before the loop, and the loop fills it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..ir import Node, Op
from .lower import in_place_safe

#: Ops whose generated code makes a new array (so the array may be updated in place).
FRESH = (Op.SUM, Op.GATE, Op.MATMUL, Op.CONCAT)


@dataclass(eq=False)
class Sequence:
    """A [T, B, ...] array the forward sweep fills (and the tape keeps): a state's history, an
    all-steps array (the hoisted input projection), or a loop value stored for the backward."""

    root: Node                 # the node whose per-step value fills it
    kind: str                  # "state", "pre" (computed before the loop) or "loop"
    spare: bool = False        # one slot more: it hosts a backward value (shared slots)
    visible: bool = False      # the caller sees it (an output is a view of it)
    hosts: Node | None = None  # the backward value written into it


@dataclass(frozen=True)
class Location:
    """A stored value at step t: `seq[t + offset]`, then the slices in `path`."""
    seq: Sequence
    offset: int = 0
    path: tuple[Node, ...] = ()


@dataclass
class Layout:
    """The storage plan of one module (see the module docstring)."""

    over: dict[Node, Node] = field(default_factory=dict)           # value -> operand it overwrites
    seqs: list[Sequence] = field(default_factory=list)
    of_state: dict[Node, Sequence] = field(default_factory=dict)   # state leaf -> its sequence
    home: dict[Node, Sequence] = field(default_factory=dict)       # loop value -> sequence it fills
    location: dict[Node, Location] = field(default_factory=dict)   # stored value -> where it is
    shared: dict[Node, Sequence] = field(default_factory=dict)     # backward value -> host
    placed: dict[Node, tuple[Node, int]] = field(default_factory=dict)  # part -> (concat, index)
    containers: list[Node] = field(default_factory=list)  # concats after the loop, filled in it
    views: dict[Node, Node] = field(default_factory=dict)  # kept slice -> the kept value it views

    def whole(self, seq: Sequence) -> Node | None:
        """The stored value filling a sequence's slots (what to call it after), if one does."""
        for node, loc in self.location.items():
            if loc.seq is seq and not loc.path and loc.offset == 0 and seq.kind != "state":
                return node
        return None


def plan_layout(plan, results: dict[str, Node], outputs: list[str], states: list[Node],
                with_backward: bool) -> Layout:
    """The storage of a Plan's values (`plan` gives the regions, stored and taped sets).
    Plain code (not optimised) only keeps the states' sequences, filled by assignment."""
    out = Layout()
    updates = {s: results[s.arg + "'"] for s in states}
    outs = {results[o] for o in outputs}
    loop = set(plan.loop)
    for s in states:
        if with_backward or updates[s] in outs:
            seq = Sequence(s, "state", visible=updates[s] in outs)
            out.seqs.append(seq)
            out.of_state[s] = seq
            update = updates[s]
            if plan.optimize and update in loop and not update.op.is_leaf and update not in out.home:
                out.home[update] = seq
                if update in plan.stored:
                    out.location[update] = Location(seq, 1)
    if not plan.optimize:
        return out
    fixed = set(results.values())
    _plan_in_place(plan, out, loop, _pinned(plan, results) if with_backward else fixed, fixed)
    if not with_backward:
        return out
    order = {n: i for i, n in enumerate(plan.fwd.nodes())}
    for node in sorted(plan.stored, key=order.__getitem__):
        if node in out.location:
            continue
        root, path = _root(out, node)
        seq = _sequence_of(out, root, plan)
        if seq is None:
            seq = Sequence(node, "loop", visible=node in outs)
            out.seqs.append(seq)
            out.home[node] = seq
            root, path = node, ()
        out.location[node] = Location(seq, 0, path)
    _share_slots(plan, out)
    return out


def _pinned(plan, results: dict[str, Node]) -> set[Node]:
    """Forward values whose storage must stay intact once computed: the results and what the
    backward reads from the forward sweep (stored per step, or taped before the loop); what
    it recomputes, it computes afresh."""
    return set(results.values()) | set(plan.taped) | set(plan.stored)


def _plan_in_place(plan, out: Layout, loop: set[Node], pinned: set[Node], fixed: set[Node]
                   ) -> None:
    """Values computed over the storage of an operand nothing else reads afterwards."""
    users: dict[Node, list[Node]] = {}                 # forward reader of each value, per read
    for n in plan.fwd.nodes():
        for s in n.src:
            users.setdefault(s, []).append(n)

    def dead(n: Node) -> bool:                         # read once, by the forward, never again
        return len(users.get(n, ())) == 1 and n not in pinned

    pre = set(plan.pre)
    for node in plan.pre:                             # zx = (x @ W.T)[..., :2n]; zx += b
        if node.op in (Op.SUM, Op.GATE) and node not in fixed:
            target = next((s for s in node.src if s.op is Op.SLICE and s in pre and dead(s)
                           and _owned(s, out, users, pinned)
                           and plan.fwd.shapes[s] == plan.fwd.shapes[node]
                           and s.batched == node.batched), None)
            if target is not None:
                out.over[node] = target
    for node in plan.loop:
        if node in out.home or node in fixed:        # results are computed into their arrays
            continue
        if node.op in (Op.SUM, Op.GATE):
            target = next((s for s in node.src if s in pre and dead(s) and s.op in FRESH
                           and plan.fwd.shapes[s] == plan.fwd.shapes[node]
                           and s.batched == node.batched), None)
            if target is not None:
                out.over[node] = target
        elif node.op is Op.NONLIN and computes_array(node) and in_place_safe(node.arg.expr):
            operand = node.src[0]
            if operand in loop and dead(operand) and _owned(operand, out, users, pinned):
                out.over[node] = operand


def computes_array(node: Node) -> bool:
    """A nonlinearity whose code makes a new array from its operand (not `u` itself, not a
    constant)."""
    from ..nonlin import U
    expr = node.arg.expr
    return expr != U and U in expr.free_symbols


def _owned(node: Node, out: Layout, users: dict[Node, list[Node]], pinned: set[Node]) -> bool:
    """Storage the loop made itself (a fresh array, or a slice of one whose other readers are
    disjoint slices), so overwriting it touches nobody else's array."""
    if node in out.over or node.op in FRESH or (node.op is Op.NONLIN and computes_array(node)):
        return True
    if node.op is not Op.SLICE:
        return False
    base = node.src[0]
    if base in pinned or not _owned(base, out, users, pinned):
        return False
    return all(other is node or (other.op is Op.SLICE and other.arg[0] == node.arg[0]
                                 and _disjoint(other.arg, node.arg))
               for other in users.get(base, []))


def _disjoint(a, b) -> bool:
    """Two slices [lo, hi) that provably do not overlap (sizes are positive symbols)."""
    (_, lo1, hi1), (_, lo2, hi2) = a, b
    return bool((sympy.sympify(hi1) - lo2).is_nonpositive) or \
        bool((sympy.sympify(hi2) - lo1).is_nonpositive)


def _root(out: Layout, node: Node) -> tuple[Node, tuple[Node, ...]]:
    """The value whose storage `node` ends up in, and the slices from it to `node`."""
    path: list[Node] = []
    while node in out.over:
        node = out.over[node]
        while node.op is Op.SLICE:            # a slice's storage is its base's
            path.append(node)
            node = node.src[0]
    return node, tuple(reversed(path))


def _storage(out: Layout, node: Node) -> Node:
    """The value whose array holds `node`: through values computed in place and slices (a
    slice of an input projection is read where the projection is stored)."""
    while True:
        if node in out.over:
            node = out.over[node]
        elif node.op is Op.SLICE:
            node = node.src[0]
        else:
            return node


def _sequence_of(out: Layout, root: Node, plan) -> Sequence | None:
    """The sequence holding `root` per step (made when root is an all-steps array or a loop
    value others overwrite); None when `root` is the stored value itself."""
    for seq in out.seqs:
        if seq.root is root:
            return seq
    if root in set(plan.pre):
        seq = Sequence(root, "pre")
    elif root not in plan.stored:
        seq = Sequence(root, "loop")
        out.home[root] = seq
    else:
        return None
    out.seqs.append(seq)
    return seq


def _share_slots(plan, out: Layout) -> None:
    """Give each backward value kept for after the loop a forward sequence to live in."""
    after = {s for n in plan.post_b + plan.recompute_post for s in n.src}
    after |= set(plan.recompute_post)
    busy = {loc.seq for node, loc in out.location.items() if node in after}
    read_after = {_storage(out, node) for node in after}
    busy |= {seq for seq in out.seqs if seq.root in read_after}
    kept, computed = set(plan.post_store), set(plan.loop_b)
    results = dict(plan.bwd.results)
    carried = {results[f"grad_{s.arg}"] for s in plan.fwd.leaves_of(Op.STATE)}
    for node in plan.post_store:     # parts computed in the loop go straight into their slice
        if node.op is Op.CONCAT and node.batched:
            for k, part in enumerate(node.src):
                if part in computed and part.batched and part not in carried \
                        and part.op is not Op.SLICE and part not in out.placed \
                        and part not in node.src[:k]:
                    out.placed[part] = (node, k)
    for node in plan.post_b:     # a concat of kept parts only: its array is made before the loop
        if node.op is Op.CONCAT and node.batched and len(set(node.src)) == len(node.src) and all(
                p in kept and p in computed and p.batched and p not in out.placed for p in node.src):
            out.containers.append(node)
            out.placed.update({part: (node, k) for k, part in enumerate(node.src)})
    for node in plan.post_store:     # a slice of a kept value is a view of where that is kept
        if node.op is Op.SLICE and node.batched and (node.src[0] in kept or node.src[0] in out.placed):
            out.views[node] = node.src[0]
    for node in [*plan.post_store, *out.containers]:
        if node in out.placed or node in out.views:
            continue
        shape = plan.bwd.shapes[node]
        for seq in out.seqs:
            if seq.kind == "state" or seq.visible or seq.hosts is not None or seq in busy:
                continue
            if plan.fwd.shapes[seq.root] == shape and seq.root.batched and node.batched:
                seq.spare, seq.hosts = True, node
                out.shared[node] = seq
                break

