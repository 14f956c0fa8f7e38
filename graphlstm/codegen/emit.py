"""Statements from nodes: one assignment per named value, single-use values inlined.

`Emitter.block` turns a list of nodes (a region: once per call, all steps at once, or the
body of the time loop) into Python statements, using the op -> template table in
`ops.CODE`. A value gets a name when it is an equation, is used twice, or is needed
outside its block; otherwise it is written inline, so `f = _sigmoid(x_h @ W_f.T + b_f)`
reads like the equation it implements, which the comment above it quotes.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import sympy

from .. import ops
from ..ir import Function, Node, Op
from ..nonlin import U
from .layout import computes_array
from .lower import call_into, formula_into, in_place_safe, lowerable, update
from .naming import Namer
from .printer import ATOM, Printer


#: A slot of a sequence the writers made (`c_seq[t + 1]`): a whole, contiguous array, unless
#: the sequence is a view of some columns of another (`Emitter.strided`).
_SLOT = re.compile(r"^(\w+)\[t( \+ 1)?\]$")

#: Longer chains of single-use values (a product of 1,000 factors) are cut into named
#: pieces, so that neither this emitter nor Python's parser recurses too deeply.
MAX_INLINE_DEPTH = 24


@dataclass
class Emitter:
    """Holds the names and expressions of values as code is generated for a Function."""

    fn: Function
    namer: Namer
    dims: dict[str, str]                       # size symbol -> variable name
    comment: Callable[[str], str | None]       # equation label -> comment text
    printer: Printer = field(default_factory=Printer)
    helpers: set[str] = field(default_factory=set)
    env: dict[Node, tuple[str, int]] = field(default_factory=dict)
    _lead: int = 1
    _given: dict[Node, str] = field(default_factory=dict)
    _views: dict[str, tuple] = field(default_factory=dict)   # slice code -> (array, offset)
    constants: dict[str, tuple[str, str]] = field(default_factory=dict)  # number -> (name, literal)
    contiguous: set[Node] = field(default_factory=set)   # matrices to copy to contiguous memory
    scratch: list[tuple[str, str]] = field(default_factory=list)   # (name, shape) made before the loop
    transposed: dict[str, str] = field(default_factory=dict)   # matrix -> its `.T` made before the loop
    zeroed: set[str] = field(default_factory=set)    # scratch names made as zeros (never written)
    buffered: bool = False          # loop values get arrays made before the loop (optimised code)
    carried: list[tuple[Node, Node]] = field(default_factory=list)  # (next step's value, input it becomes)
    buffers: dict[Node, str] = field(default_factory=dict)   # loop value -> its array
    _free: dict[str, list[str]] = field(default_factory=dict)   # shape -> scratch not in use
    _tmp_count: dict[str, int] = field(default_factory=dict)    # shape -> scratch arrays made
    _escaping: set[Node] = field(default_factory=set)
    _passed_on: set[Node] = field(default_factory=set)
    _widened: dict[Node, tuple[str, int]] = field(default_factory=dict)   # node -> its own code
    placed: dict[Node, tuple[Node, int]] = field(default_factory=dict)  # part -> (concat, k)
    _whole_slots: set[str] = field(default_factory=set)   # names of `seq[t]`-like slots
    strided: set[str] = field(default_factory=set)   # sequences that view columns of another
    steps: str = "T"                # the leading axis of all-steps code: T, or a chunk's `steps`
    window: str = ""                # a chunk's rows of a scratch array made for `steps` steps
    windows: list[tuple[str, str]] = field(default_factory=list)   # (view, code) of those rows
    columns: dict[str, str] = field(default_factory=dict)   # code of a sequence's columns -> name
    _rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # slot name -> (array, index)
    _named_columns: set[str] = field(default_factory=set)   # columns named after an equation
    renames: dict[str, str] = field(default_factory=dict)   # column view -> its final name
    _written: bool = False          # scratch_lines has written the arrays made before the loop

    def __post_init__(self) -> None:
        self.printer.constant = self.constant

    # -- constants -----------------------------------------------------------------------
    def constant(self, value: sympy.Number) -> str:
        """The name of a 0-d array holding a number in the run's dtype (see printer.py)."""
        key = str(value)
        if key not in self.constants:
            literal = Printer()._print(value)
            self.constants[key] = (self.namer.name(_constant_name(value, literal)), literal)
        return self.constants[key][0]

    def constant_lines(self, indent: str) -> list[str]:
        """The definitions of the constants the code used, for the top of the function."""
        return [f"{indent}{name} = np.array({literal}, dtype)" for name, literal in self.constants.values()]

    # -- names ---------------------------------------------------------------------------
    def base_name(self, node: Node) -> str:
        """The name a value is called after: its equation, or its equation and role."""
        for name, root in self.fn.equations:
            if root is node:
                return name
        if node.op.is_leaf and node.op is not Op.ZEROS:
            return node.arg
        vector = self._matrix_of().get(node)
        if vector is not None and node.op is not Op.PARAM:
            label = self.fn.labels.get(node, "v")
            vec = vector.arg if vector.op.is_leaf else \
                _one_leaf(vector) or self.fn.labels.get(vector, "v")
            return f"W_{label}_{vec}"            # W_h_tilde_h multiplies f * h (an MGU)
        if node.op is Op.CONCAT and all(s in self.env for s in node.src):
            names = [self.env[s][0] for s in node.src]
            if all(n.isidentifier() for n in names) and len("_".join(names)) <= 16:
                return "_".join(names)                        # [x, h] -> x_h
        label = self.fn.labels.get(node, "v")
        if node.op is Op.CONCAT and all(s.op is Op.OUTER for s in node.src):
            return f"{label}_outer"        # the weight gradients of several parts, side by side
        if node.op is Op.SUM and not node.batched:
            return f"{label}_bias"         # parameters added up once, then to every example
        vector = _multiplied_leaf(node) if node.op is Op.SUM else None
        if vector is not None:
            return f"{label}_{vector}_sum"   # W_hn @ h + b_hn -> n_h_sum, beside n_x_sum
        return f"{label}_{_ROLE[node.op]}"

    def _matrix_of(self) -> dict[Node, Node]:
        """Matrix operand -> the vector it multiplies (to name packed weights `W_f_i_h`)."""
        if not hasattr(self, "_matrices"):
            self._matrices = {n.src[0]: n.src[1] for n in self.fn.nodes()
                              if n.op is Op.MATMUL and not n.arg}
        return self._matrices

    def name(self, node: Node, suffix: str = "") -> str:
        """A fresh identifier for a node (remembered, so one node gets one name)."""
        if (node, suffix) not in self._given:
            self._given[(node, suffix)] = self.namer.name(self.base_name(node) + suffix)
        return self._given[(node, suffix)]

    # -- the template context ------------------------------------------------------------
    def shape(self, node: Node):
        return self.fn.shapes[node]

    def dim(self, expr) -> str:
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return str(int(expr))
        named = {s: sympy.Symbol(self.dims[str(s)]) for s in expr.free_symbols}
        return str(expr.xreplace(named))

    def lead(self, node: Node) -> int:
        return self._lead if node.batched else 0

    def lead_dims(self, node: Node) -> list[str]:
        return [self.steps, "B"][2 - self._lead:]

    def lead_shape(self, node: Node) -> str:
        return "(" + ", ".join(self.lead_dims(node)) + ",)"

    # -- expressions and blocks ----------------------------------------------------------
    def expr(self, node: Node) -> tuple[str, int]:
        """The code of a value: its name, or (inlined) its expression built from operands."""
        if node in self.env:
            return self.env[node]
        args = [self.expr(s) for s in node.src]
        code = ops.CODE[node.op](node, args, self)
        base = args[0][0] if args else ""
        if node.op is Op.SLICE and self._in_loop() and code[0].startswith(base):
            row = self.column_row(base, code[0][len(base):], node)
            if row is not None:
                return row, ATOM
        return code

    def _in_loop(self) -> bool:
        """In the body of a time loop of optimised code (whose arrays are not yet written)."""
        return self.buffered and self._lead == 1 and not self._written

    def column_row(self, base: str, index: str, node: Node) -> str | None:
        """`base[..., :n]` for a slot `base = seq[t]` of the time loop (optimised code) as
        the row of a view of the whole sequence made once before the loop: `f = f_seq[t]`
        with `f_seq = seq[..., :n]`. NumPy makes a view at every slicing; an `[..., :n]` with
        an Ellipsis costs ~180 ns a step, a row ~70 ns, and a step of an LSTM at B=1 slices
        ten times. None when `base` is no such slot. `node`: the value read or written
        there, which the view is named after (see `_name_columns`)."""
        if not index.startswith("[..."):
            return None
        if base in self._fixed_arrays():                   # the loop's own array: one view
            return self._name_columns(f"{base}{index}", node, "")
        slot = _SLOT.match(base)
        seq, step = (slot.group(1), "t" + (slot.group(2) or "")) if slot else \
            self._rows.get(base, (None, None))
        if seq is None:
            return None
        return f"{self._name_columns(f'{seq}{index}', node, '_seq')}[{step}]"

    def _name_columns(self, columns: str, node: Node, suffix: str) -> str:
        """The view of these columns, named after the first value there; a value of an
        equation found there later gives the view its name (`rename`): in a peephole LSTM
        the columns first hold `p_f * c`, then `f`, and `f = f_seq[t]` reads better than
        `f = f_gated_seq[t]`. Renamed in the finished text only, so the names the writers
        compare stay the same."""
        named = any(root is node for _, root in self.fn.equations)
        if columns not in self.columns:
            self.columns[columns] = self.namer.name(self.base_name(node) + suffix)
            if named:
                self._named_columns.add(columns)
        elif named and columns not in self._named_columns:
            self.renames[self.columns[columns]] = self.namer.name(self.base_name(node) + suffix)
            self._named_columns.add(columns)
        return self.columns[columns]

    def renamed(self, line: str) -> str:
        """A finished line with the column views' final names (`_name_columns`)."""
        for old, new in self.renames.items():
            line = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, line)
        return line

    def _fixed_arrays(self) -> set[str]:
        """Arrays made before the loop that stay the same array at every step (the scratch
        and buffers, but not a buffer the carry swaps with its variable)."""
        swapped = {self.buffers[n] for n, _ in self.carried if n in self.buffers}
        return {name for name, _ in self.scratch} - swapped - self.zeroed

    def note_row(self, name: str, code: str) -> None:
        """Remember that `name = code` is a row `seq[t]` (its slices become column views)."""
        slot = _SLOT.match(code)
        if slot:
            self._rows[name] = (slot.group(1), "t" + (slot.group(2) or ""))
        elif code in self._rows:                           # another name for the same row
            self._rows[name] = self._rows[code]

    def block(self, nodes: Iterable[Node], indent: str, lead: int, keep: set[Node],
              names: dict[Node, str] | None = None,
              dests: dict[Node, str | Node] | None = None) -> list[str]:
        """Statements computing `nodes` (in order). Nodes in `keep` are always named
        (`names` may fix their identifiers); a node in `dests` is computed into the array
        given there: a slot of a preallocated buffer (code), or the storage of one of its
        operands (a Node: updated in place). The rest are inlined into a single user."""
        nodes = [n for n in nodes if n not in self.env]
        # forward equations always get their names; a backward cotangent used once is
        # written straight into its user (its buffer slot, when it has one)
        keep = set(keep) | {root for name, root in self.fn.equations if not name.startswith("d_")}
        names, dests = names or {}, dests or {}
        self._lead = lead
        self._escaping = self._views_of_carried(dests)
        self._passed_on = {_base(value) for value, _ in self.carried}   # inputs carried on as they are
        members = set(nodes)
        uses = Counter(s for n in nodes for s in n.src if s in members)
        lines: list[str] = []
        self._label, self._quoted = None, set()
        depth: dict[Node, int] = {}                       # how deep an inline expression nests
        for node in nodes:
            depth[node] = 1 + max((depth.get(s, 0) for s in node.src if s not in self.env), default=0)
            inline = uses[node] == 1 and node not in keep and node not in dests
            if inline and node.op is not Op.ZEROS and depth[node] < MAX_INLINE_DEPTH:
                continue                                  # written inline where it is used
            depth[node] = 0
            lines += self._comment(node, indent, bool(lines))
            ident = names.get(node) or self.name(node)
            dest = dests.get(node)
            if isinstance(dest, Node):                    # in place, over an operand's array
                lines.append(f"{indent}{ident} = {self.expr(dest)[0]}")
                self.note_row(ident, self.expr(dest)[0])
                self.env[dest] = (ident, ATOM)
                lines += self.into(node, ident, indent)
            elif dest is not None:
                slot = _SLOT.match(dest)
                if slot and slot.group(1) not in self.strided:
                    self._whole_slots.add(ident)
                lines.append(f"{indent}{ident} = {dest}")
                self.note_row(ident, dest)
                lines += self.into(node, ident, indent)
            elif lead != 1 and self._built_in_parts(node):
                lines.append(f"{indent}{ident} = np.empty({self._full_shape(node)}, dtype)")
                lines += self._into_parts(node, ident, indent)
            elif lead == 2 and self._builds_on_first(node):
                lines.append(f"{indent}{ident} = {self.expr(node.src[0])[0]}")
                for operand in node.src[1:]:
                    lines += self._update(node, ident, operand, indent)
            elif node.op is Op.ZEROS and self.buffered and lead == 1:   # made once, never written
                self.scratch.append((ident, self._full_shape(node)))
                self.zeroed.add(ident)
            elif self._gets_buffer(node):                # an array made once, before the loop
                self.scratch.append((ident, self._full_shape(node)))
                self.buffers[node] = ident
                lines += self.into(node, ident, indent)
            elif node in self.contiguous:
                lines.append(f"{indent}{ident} = np.ascontiguousarray({self.expr(node)[0]})")
            else:
                lines.append(f"{indent}{ident} = {self.expr(node)[0]}")
                self.note_row(ident, self.expr(node)[0])
            self.env[node] = (ident, ATOM)
        return lines

    def enter_loop(self, region: list[Node], carried: list[tuple[Node, Node]], optimize: bool,
                   indent: str) -> list[str]:
        """Before a time loop's block: whether its values get arrays made before the loop,
        which values the next step reads, and (optimised) the widened per-call vectors."""
        self.buffered, self.carried = optimize, carried
        return self.widen(region, indent) if optimize else []

    def widen(self, region: list[Node], indent: str) -> list[str]:
        """Per-call values the loop combines elementwise with [B, ...] ones (a peephole
        weight, a bias inside a gate), made [B, ...] arrays once per call: NumPy's loop over a
        broadcast operand is much slower than over two arrays of one shape (0.8 against
        0.3 us at B=1, n=32; 4.5 against 2.5 us at B=64, n=512). `narrow` undoes it."""
        inside, users = set(region), {}
        for node in region:
            for operand in node.src:
                users.setdefault(operand, []).append(node)
        lines = []
        for node, readers in users.items():
            if node in inside or node.batched or node not in self.env or node in self._widened:
                continue
            if all(r.op in (Op.GATE, Op.SUM) and r.batched and self.shape(r) == self.shape(node)
                   for r in readers):
                code = self.env[node][0]
                name = self.namer.name(f"{code}_rows" if code.isidentifier() else "rows")
                dims = ", ".join(["B"] + [self.dim(d) for d in self.shape(node)])
                lines.append(f"{indent}{name} = np.ascontiguousarray(np.broadcast_to({code}, ({dims})))")
                self._widened[node] = self.env[node]
                self.env[node] = (name, ATOM)
        return lines

    def narrow(self) -> None:
        """The per-call values as themselves again (after the loop)."""
        self.env.update(self._widened)
        self._widened.clear()

    def _gets_buffer(self, node: Node) -> bool:
        """A named value of the loop (optimised code) computed into an array made before
        the loop instead of a new one each step. Not a value the next step reads through a
        view (a carried value is computed into its own array, see `carry`)."""
        if not (self.buffered and self._lead == 1 and node.batched) or node in self._escaping:
            return False
        inputs = [given for value, given in self.carried if value is node]
        if len(inputs) > 1 or any(given in self._passed_on for given in inputs):
            return False                  # its variable's array is carried on: no array to swap
        return self._fills_array(node)

    def _fills_array(self, node: Node) -> bool:
        """A value whose code can write into a given array (`into` without a temporary)."""
        if node.op is Op.NONLIN:
            return lowerable(node.arg.expr) and computes_array(node)
        return node.op in (Op.GATE, Op.SUM, Op.CONCAT) or \
            (node.op is Op.MATMUL and len(self.shape(node.src[0])) == 2)

    def _views_of_carried(self, dests: dict) -> set[Node]:
        """Values whose array a carried value is a view of, through slices and in-place
        updates (so they need a new array each step)."""
        bases = set()
        for node, _ in self.carried:
            while node.op is Op.SLICE or isinstance(dests.get(node), Node):
                node = node.src[0] if node.op is Op.SLICE else dests[node]
                bases.add(node)
        return bases

    def carry(self, targets: list[str], nodes: list[Node], indent: str) -> list[str]:
        """`h, c = h_new, c_new` at the end of a step; a carried value that has its own array
        swaps arrays with its variable: the array the step just read is the next one's buffer
        (never the array the next step reads)."""
        values = [self.expr(n)[0] for n in nodes]
        swapped = [n for k, n in enumerate(nodes) if n in self.buffers and n not in nodes[:k]]
        lhs = targets + [self.buffers[n] for n in swapped]
        rhs = values + [targets[nodes.index(n)] for n in swapped]
        note = [f"{indent}# the arrays just read are the next step's to write"] if swapped else []
        return note + [f"{indent}{', '.join(lhs)} = {', '.join(rhs)}"]

    def _built_in_parts(self, node: Node) -> bool:
        """A concat (outside the loop) of products computed for it alone: each part is
        written into its slice of a new array, with no temporaries and no copy."""
        return node.op is Op.CONCAT and all(
            p not in self.env and p.op in (Op.OUTER, Op.MATMUL) and not p.arg for p in node.src)

    def _full_shape(self, node: Node) -> str:
        dims = (self.lead_dims(node) if node.batched else []) + [self.dim(d) for d in self.shape(node)]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def _builds_on_first(self, node: Node) -> bool:
        """An all-steps sum or product whose first operand is a new array of the full shape
        (an input projection `_dot(x, W.T)`): add the rest to it in place, no second array."""
        if node.op not in (Op.SUM, Op.GATE):
            return False
        first = node.src[0]
        return first not in self.env and first.op in (Op.MATMUL, Op.SUM, Op.GATE) and \
            first.batched == node.batched and self.shape(first) == self.shape(node)

    def _comment(self, node: Node, indent: str, after_code: bool) -> list[str]:
        """The equation(s) a statement implements, quoted once per block."""
        label = self.fn.labels.get(node)
        if label is None or label == self._label:
            return []
        self._label = label
        note = [p for p in (self.comment(label) or "").split("\n") if p and p not in self._quoted]
        self._quoted.update(note)
        return ([""] if note and after_code else []) + [f"{indent}# {part}" for part in note]

    def into(self, node: Node, dest: str, indent: str) -> list[str]:
        """Statements computing `node` into the existing array `dest`, without temporaries
        where NumPy allows: an output array for ufuncs and matmul (see lower.py), parts of a
        concat written into slices of `dest`, an operand already in `dest` (or a single-use operand built there)
        updated in place, formulas lowered to ufunc calls (lower.py); in the loop, other
        compound operands go through scratch arrays made before it."""
        op, src = node.op, node.src
        if op is Op.CONCAT:
            return self._into_parts(node, dest, indent)
        if op in (Op.GATE, Op.SUM):
            return self._combine_into(node, dest, indent)
        if op is Op.MATMUL and len(self.shape(src[0])) == 2:
            matrix = self.expr(src[0])[0] if node.arg else self._transposed(src[0])
            vector, lines, lent = self._operand(src[1], indent)
            if self.lead(src[1]) > 1:
                self.helpers.add("_dot")
                lines.append(indent + call_into("_dot", dest, vector, matrix))
            else:
                call = "dot" if self._contiguous(dest) else "matmul"   # dot: less overhead
                lines.append(indent + call_into(call, dest, vector, matrix))
            return lines + self._give(lent)
        if op is Op.OUTER and not node.arg:
            a, b = self.expr(src[0])[0], self.expr(src[1])[0]
            if not src[0].batched:
                return [indent + call_into("outer", dest, a, b)]
            if self.lead(src[0]) == 2:
                self.helpers.add("_flat")
                a, b = f"_flat({a})", f"_flat({b})"
            return [indent + call_into("matmul", dest, f"{a}.T", b)]
        if op is Op.NONLIN:
            lines = self._formula_into(node, dest, indent)
            if lines is not None:
                return lines
        return [f"{indent}{dest}[...] = {self.expr(node)[0]}"]

    def _combine_into(self, node: Node, dest: str, indent: str) -> list[str]:
        """A sum or product into `dest`: starting from the operand already there, or from
        one built there (an inlined value of the full shape), then `dest += b` / `*= b`."""
        src = list(node.src)
        there = next((k for k, s in enumerate(src) if self.expr(s)[0] == dest), None)
        if there is None:
            there = next((k for k, s in enumerate(src) if self._buildable(s, node)), None)
            lines = [] if there is None else self.into(src[there], dest, indent)
        else:
            lines = []
        if there is None:                                  # `add(a, b, dest)`
            first, second = src[:2]
            call = "multiply" if node.op is Op.GATE else "add"
            if node.op is Op.SUM and self._inline_negation(first) and \
                    not self._inline_negation(second):
                first, second = second, first              # -a + b = b - a
            if node.op is Op.SUM and self._inline_negation(second):
                call, second = "subtract", second.src[0]   # a - b: `subtract(a, b, dest)`
            (a, more_a, lent_a), (b, more_b, lent_b) = (self._operand(s, indent)
                                                        for s in (first, second))
            lines += more_a + more_b + [indent + call_into(call, dest, a, b)]
            lines += self._give(lent_a) + self._give(lent_b)
            rest = src[2:]
        else:
            rest = src[:there] + src[there + 1:]
        for operand in rest:
            lines += self._update(node, dest, operand, indent)
        return lines

    def _buildable(self, operand: Node, user: Node) -> bool:
        """An inlined operand that can be computed straight into the user's array."""
        if operand in self.env or not (operand.batched and user.batched) or _negated(operand):
            return False
        if self.shape(operand) != self.shape(user):
            return False
        if operand.op is Op.NONLIN:
            return self._with_scratch() and lowerable(operand.arg.expr)
        return operand.op in (Op.CONCAT, Op.GATE, Op.SUM, Op.MATMUL)

    def _operand(self, operand: Node, indent: str) -> tuple[str, list[str], tuple | None]:
        """The code of an operand, and the statements that compute it first: in the loop of
        optimised code a compound operand is computed into a scratch array made before the
        loop (lent: give it back once read); elsewhere it is written inline."""
        if not self._needs_scratch(operand):
            return self.expr(operand)[0], [], None
        shape = self._full_shape(operand)
        name = self.take(shape)
        return name, self.into(operand, name, indent), (shape, name)

    def _needs_scratch(self, operand: Node) -> bool:
        if not self._with_scratch() or operand in self.env or not operand.batched:
            return False
        return self._fills_array(operand)

    def _with_scratch(self) -> bool:
        """Compound operands go through scratch arrays made before the loop: in the time
        loop of optimised code, and in a chunk of the backward's (`window`)."""
        return (self.buffered and self._lead == 1) or bool(self.window)

    def take(self, shape: str) -> str:
        """A scratch array of this shape, made before the loop, not in use."""
        free = self._free.setdefault(shape, [])
        if free:
            return free.pop()
        last = shape.strip("(,)").split(",")[-1].replace("*", "").replace(" ", "")
        count = self._tmp_count[shape] = self._tmp_count.get(shape, 0) + 1
        base = f"tmp_{last}" + (f"_{count}" if count > 1 else "")
        name = self.namer.name(base + ("_steps" if self.window else ""))
        self.scratch.append((name, shape))
        if not self.window:
            return name
        view = self.namer.name(f"{base}_chunk")       # its rows for this chunk, named once
        self.windows.append((view, name + self.window))
        return view

    def _contiguous(self, dest: str) -> bool:
        """An array np.dot may write into: made before the loop, or a whole slot of a
        sequence (every [T, ...] array the writers make is a new, C-contiguous one)."""
        return dest in self._whole_slots or any(name == dest for name, _ in self.scratch)

    def scratch_lines(self, indent: str) -> list[str]:
        """The arrays the loop writes into (or reads as zeros), C-ordered transposed copies
        of the matrices it multiplies by, and the column views it reads, made before it."""
        self._written = True                       # later code makes no more of them
        return [f"{indent}{name} = np.{'zeros' if name in self.zeroed else 'empty'}({shape}, dtype)"
                for name, shape in self.scratch] + \
            [f"{indent}{name} = _transpose({matrix})" for matrix, name in self.transposed.items()] + \
            [f"{indent}{name} = {columns}" for columns, name in self.columns.items()]

    def _transposed(self, matrix: Node) -> str:
        """`W.T` for a product `v @ W.T`; in a loop (optimised code) a C-ordered copy made
        once before it (`W_T = _transpose(W)`): `dot` is 10-25% faster on it than on the
        view `W.T` at every size we benchmark, in both dtypes (docs/generated-code.md)."""
        code = self.expr(matrix)[0]
        if not (self.buffered and self._lead == 1 and code.isidentifier()):
            return f"{code}.T"
        if code not in self.transposed:
            self.helpers.add("_transpose")
            self.transposed[code] = self.namer.name(f"{code}_T")
        return self.transposed[code]

    def _give(self, lent: tuple | None) -> list[str]:
        if lent is not None:
            shape, name = lent
            self._free[shape].append(name)
        return []

    def _formula_into(self, node: Node, dest: str, indent: str) -> list[str] | None:
        """A nonlinearity as ufunc calls into `dest` (None: no ufunc form, see lower.py)."""
        expr, operand = node.arg.expr, node.src[0]
        if not lowerable(expr):
            return None
        lines, lent = [], None
        if self._needs_scratch(operand) and in_place_safe(expr) and self._buildable(operand, node):
            lines, u = self.into(operand, dest, indent), dest      # built where the result goes
        else:
            u, lines, lent = self._operand(operand, indent)
        if u == dest and not in_place_safe(expr):
            return None
        shape = self._full_shape(node)
        take = lambda: self.take(shape)                          # noqa: E731
        give = lambda name: self._give((shape, name))            # noqa: E731
        lines += formula_into(expr, u, dest, indent, self.constant, take, give, self.helpers)
        return lines + self._give(lent)

    def _inline_negation(self, operand: Node) -> bool:
        """`-b` written inline (not a value of its own): a sum subtracts b instead."""
        return _negated(operand) and operand not in self.env

    def _update(self, node: Node, dest: str, operand: Node, indent: str) -> list[str]:
        """`dest *= b` for a gate, `dest += b` (or `-= b`) for a sum, as ufunc calls."""
        if node.op is Op.SUM and self._inline_negation(operand):
            operand, sign = operand.src[0], "-"            # `-b` written inline: subtract b
        else:
            sign = "*" if node.op is Op.GATE else "+"
        code, lines, lent = self._operand(operand, indent)
        return lines + [indent + update(dest, sign, code)] + self._give(lent)

    def _into_parts(self, node: Node, dest: str, indent: str) -> list[str]:
        """Each part of a concat computed into its slice of `dest` (a slice of a slice is
        written as one: `d[..., :n]`, not `d[..., :3*n][..., :n]`); a part already computed
        there (`placed`) is left as it is."""
        lines = []
        composed = node.arg == len(self.shape(node)) - 1 and dest in self._views
        base, offset = self._views[dest] if composed else (dest, sympy.Integer(0))
        for k, part in enumerate(node.src):
            index = self.part_index(node, k, offset)
            row = self.column_row(base, index, part) if self._in_loop() else None
            target = row or f"{base}{index}"
            if node.arg == len(self.shape(node)) - 1:
                self._views[target] = (base, offset + self._part_offset(node, k))
            if self.placed.get(part) == (node, k):
                continue
            if part in self.env:
                whole = "[...]" if target.isidentifier() else ""      # a view made before the loop
                lines.append(f"{indent}{target}{whole} = {self.env[part][0]}")
            else:
                lines += self._named_view(part, target, self.into(part, target, indent), indent)
        return lines

    def _named_view(self, part: Node, target: str, lines: list[str], indent: str) -> list[str]:
        """A slice the lines write and read more than once (`multiply(d[..., :n], s,
        d[..., :n])`) is named once (`d_f = d[..., :n]`): NumPy makes a new view object per
        slicing, ~0.1 us each, which adds up in a loop of small arrays."""
        if target.isidentifier():                  # a view made before the loop already
            return lines
        whole = re.compile(rf"(?<![\w.]){re.escape(target)}")    # not the end of another name
        if sum(len(whole.findall(line)) for line in lines) < 2:
            return lines
        view = self.name(part)
        return [f"{indent}{view} = {target}"] + [whole.sub(view, line) for line in lines]

    def _part_offset(self, node: Node, k: int):
        return sympy.expand(sum((self.shape(p)[node.arg] for p in node.src[:k]), sympy.Integer(0)))

    def part_index(self, node: Node, k: int, offset=0) -> str:
        """The index of part k of a concat in its array: `[..., n:2*n]` (`[..., lo:hi, :, :]`
        when the axis is not the last)."""
        rank, axis = len(self.shape(node)), node.arg
        lo = sympy.expand(offset + self._part_offset(node, k))
        hi = sympy.expand(lo + self.shape(node.src[k])[axis])
        index = ["...", f"{'' if lo == 0 else self.dim(lo)}:{self.dim(hi)}"] + [":"] * (rank - 1 - axis)
        return f"[{', '.join(index)}]"

    def bind(self, node: Node, text: str, prec: int = ATOM) -> None:
        self.env[node] = (text, prec)

    def forget(self, nodes: Iterable[Node], names: bool = False) -> None:
        """Drop the nodes' code; with `names`, their identifiers too (another block that
        computes them again names them afresh)."""
        for node in nodes:
            self.env.pop(node, None)
        if names:
            nodes = set(nodes)
            self._given = {key: name for key, name in self._given.items() if key[0] not in nodes}


_ROLE = {
    Op.CONCAT: "cat", Op.MATMUL: "mm", Op.NONLIN: "act", Op.GATE: "gated", Op.SUM: "sum",
    Op.SLICE: "part", Op.OUTER: "outer", Op.BSUM: "bsum", Op.BCAST: "bcast", Op.ZEROS: "zeros",
    Op.INPUT: "in", Op.STATE: "state", Op.PARAM: "param",
}


_NAMED = {"1": "one", "2": "two", "3": "three", "1/2": "half", "0": "zero", "-1": "minus_one",
          "-1/2": "minus_half", "-2": "minus_two"}


def _multiplied_leaf(node: Node) -> str | None:
    """The input or state that every batched term of a sum multiplies (through slices of
    one stacked product): a sum of one side's products is named after that side, apart
    from the sum of both (gru_torch's `n_x_sum`, `n_h_sum` and `n_sum`)."""
    vectors = set()
    for term in node.src:
        if not term.batched:
            continue
        term = _base(term)
        if term.op is not Op.MATMUL or term.arg:
            return None
        vectors.add(term.src[1])
    if len(vectors) != 1:
        return None
    (vector,) = vectors
    return vector.arg if vector.op in (Op.INPUT, Op.STATE) else None


def _one_leaf(node: Node) -> str | None:
    """The one input or state among a value's operands (`h` of `f * h`), if there is one."""
    leaves = {s.arg for s in node.src if s.op in (Op.INPUT, Op.STATE)}
    return leaves.pop() if len(leaves) == 1 else None


def _base(node: Node) -> Node:
    """The value a chain of slices views."""
    while node.op is Op.SLICE:
        node = node.src[0]
    return node


def _negated(node: Node) -> bool:
    """`-b` (an affine nonlinearity): added to a sum by subtracting b."""
    return ops.is_map(node, -U)


def _constant_name(value: sympy.Number, literal: str) -> str:
    """`one`, `half`, `two`, ...; other numbers `k_0_25` (from the literal)."""
    return _NAMED.get(str(value)) or "k_" + literal.replace("-", "minus_")
