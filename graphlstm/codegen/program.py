"""Standalone NumPy modules from cells: forward through time, and backprop through time.

The step (after the passes, when optimising) is split into regions by what each value
depends on:

    once per call    parameters only (packed weights)            before the loop
    all steps        inputs and parameters, no state             before the loop, [T, B, ...]
    time loop        anything that reads a state                 for t in range(T)
    backward chunks  backward values no gradient flows into      before each chunk of steps
                     (`1 - g**2`: the forward sweep's only)      of the backward loop
    after the loop   backward values the recurrence never reads  after the loop, [T, B, ...]

`forward(params, xs, state0, tape)` records on a dict `tape` what the backward step reads
(the states at every step, the stored activations, the hoisted arrays); `backward` reads
the tape, or makes one by calling `forward`. Plain code (`optimize=False`) stores only the
states and recomputes every forward value inside the backward loop; optimised code stores
the activations and batches all it can over time.
"""
from __future__ import annotations

import io
import re
import textwrap
import tokenize
from collections import Counter
from typing import Iterable

import sympy

from ..autodiff import grad_name, vjp
from ..ir import Function, Node, Op
from ..nonlin import U
from ..shapes import only_as_sum, show
from .. import ops
from .printer import ATOM
from .emit import Emitter
from .layout import Sequence, plan_layout
from .naming import NUMPY_CALLS, Namer
from .runtime import HELPERS, VALIDATION

I1, I2, I3 = "    ", "        ", "            "


def state_dependent(nodes: Iterable[Node]) -> set[Node]:
    """The nodes that read a state (directly or through other nodes)."""
    out: set[Node] = set()
    for node in nodes:
        if node.op is Op.STATE or any(s in out for s in node.src):
            out.add(node)
    return out


def _is_expensive(node: Node) -> bool:
    """Worth storing rather than recomputing: transcendental activations and matmuls (a slice
    of one is stored as the slice, which is smaller)."""
    if node.op is Op.SLICE:
        return _is_expensive(node.src[0])
    if node.op is Op.NONLIN:
        return bool(node.arg.name) and node.arg.name != "identity"
    return node.op in (Op.MATMUL, Op.OUTER, Op.CONCAT)


def _closure(roots: Iterable[Node], inside) -> set[Node]:
    """The nodes reachable from `roots` through operands, staying where `inside(node)`."""
    out: set[Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in out or not inside(node):
            continue
        out.add(node)
        stack.extend(node.src)
    return out


def in_order(nodes: set[Node], fn: Function) -> list[Node]:
    """A set of nodes in the function's stable order."""
    order = {n: i for i, n in enumerate(fn.nodes())}
    return sorted(nodes, key=lambda n: order.get(n, len(order)))


class Plan:
    """Where every value lives: forward regions, the backward loop and after-loop parts,
    what the forward sweep stores per step and what the backward recomputes."""

    def __init__(self, step: Function, optimize: bool) -> None:
        from ..passes import optimize_backward
        self.fwd, self.optimize = step, optimize
        nodes = [n for n in step.nodes() if not n.op.is_leaf or n.op is Op.ZEROS]
        stateful = state_dependent(step.nodes())
        self.const = [n for n in nodes if not n.batched]
        self.pre = [n for n in nodes if optimize and n.batched and n not in stateful
                    and n.op is not Op.BCAST]
        taken = set(self.const) | set(self.pre)
        self.loop = [n for n in nodes if n not in taken]
        self.bwd = optimize_backward(vjp(step)) if optimize else vjp(step)
        self.seeds = self.bwd.meta["seeds"]
        self.fwd_nodes = set(step.nodes())
        self._split_backward()
        self._plan_memory()
        self._plan_chunks()

    def _split_backward(self) -> None:
        """Backward nodes the recurrence needs stay in the loop; the rest (optimised) go
        after it, computed for all steps at once."""
        fwd_nodes = self.fwd_nodes
        results = dict(self.bwd.results)
        grad_state = [results[grad_name(s.arg)] for s in self.fwd.leaves_of(Op.STATE)]
        recurrent = _closure(grad_state, lambda n: n not in fwd_nodes)
        backward = [n for n in self.bwd.nodes()
                    if n not in fwd_nodes and (n.op is Op.ZEROS or not n.op.is_leaf)]
        self.loop_b = [n for n in backward if n in recurrent or not self.optimize]
        self.post_b = [n for n in backward if n not in set(self.loop_b)]
        # backward loop values (and carried state cotangents) read after the loop: kept per step
        seeds = {self.seeds[s.arg + "'"] for s in self.fwd.leaves_of(Op.STATE)}
        kept = set(self.loop_b) | seeds
        self.post_store = in_order({s for n in self.post_b for s in n.src if s in kept}, self.bwd)

    def _plan_memory(self) -> None:
        """Which forward loop values to store per step (optimised: the expensive ones the
        backward reaches), which to recompute in the backward loop or after it, and which
        before-loop arrays the backward reads (all kept on the tape)."""
        loop_f, available = set(self.loop), set(self.const) | set(self.pre)
        fwd_nodes = self.fwd_nodes
        reads = lambda region: [s for n in region for s in n.src if s in loop_f]  # noqa: E731
        self.stored: set[Node] = set()
        if self.optimize:
            results = dict(self.fwd.results)
            self.kept_free = {results[s.arg + "'"] for s in self.fwd.leaves_of(Op.STATE)}
            stored = self._frontier(reads(self.loop_b + self.post_b), loop_f)
            # a slice of a stored array is a free view: store the array, not the slice too
            self.stored = {n for n in stored if not (n.op is Op.SLICE and n.src[0] in stored)}
        cheap = lambda n: n in loop_f and n not in self.stored  # noqa: E731
        self.recompute = in_order(_closure(reads(self.loop_b), cheap), self.fwd)
        self.recompute_post = in_order(_closure(reads(self.post_b), cheap), self.fwd)
        everything = self.loop_b + self.post_b + self.recompute + self.recompute_post
        self.taped = {s for n in everything for s in n.src if s in available and s in fwd_nodes}

    def _plan_chunks(self) -> None:
        """Backward loop values no gradient flows into are functions of the forward sweep
        only (`1 - g**2`, `f * (1 - f)`, `h_tilde - h`): optimised code computes them for a
        chunk of steps at once before those steps, and the loop reads them per step. At
        B=1 that is fewer, larger NumPy calls (an MGU's backward step makes 13 calls, not
        18: ~9% faster forward + backward); chunks keep the arrays small (`_chunk_steps`).
        Slices and negations the loop reads stay in it as well: there they are free (a
        view, a `subtract`)."""
        region = self.recompute + self.loop_b
        self.chunk: list[Node] = []
        self.chunk_out: list[Node] = []
        self.loop_region = region
        if not self.optimize:
            return
        fwd_nodes, inside = self.fwd_nodes, set(region)
        pinned = set(self.post_store) | set(dict(self.bwd.results).values())
        free: set[Node] = set()
        for node in region:
            if node.batched and node.op not in (Op.ZEROS, Op.BCAST) and node not in pinned \
                    and all(s in free or (s in fwd_nodes and s not in inside) for s in node.src):
                free.add(node)
        light = {n for n in free if n.op is Op.SLICE or ops.is_map(n, -U)}
        stay = inside - free
        stack = [s for n in stay for s in n.src if s in light]
        while stack:
            node = stack.pop()
            if node not in stay:
                stay.add(node)
                stack.extend(s for s in node.src if s in light)
        out = {s for n in stay for s in n.src if s in free and s not in light}
        self.chunk = in_order(_closure(out, lambda n: n in free), self.bwd)
        self.chunk_out = in_order(out, self.bwd)
        self.loop_region = [n for n in region if n in stay]

    def _frontier(self, roots: list[Node], loop_f: set[Node]) -> set[Node]:
        """Walk back from what the backward reads; store an expensive value where the walk
        meets it (and do not look behind it), recompute the cheap ones on the way. A new
        state costs nothing to keep: it is in the state's sequence already. Nor does a
        value that only adds a parameter to an expensive one, in its stead (gru_torch's
        `W_hn @ h + b_hn`): the same memory, and nothing to recompute."""
        stored: set[Node] = set()
        seen: set[Node] = set()
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node in seen or node not in loop_f:
                continue
            seen.add(node)
            if _is_expensive(node) or node in self.kept_free or self._with_parameter(node):
                stored.add(node)
            else:
                stack.extend(node.src)
        return stored

    def _with_parameter(self, node: Node) -> bool:
        """A sum of one expensive value and parameters, of the value's shape."""
        if node.op is not Op.SUM:
            return False
        batched = [s for s in node.src if s.batched]
        return len(batched) == 1 and _is_expensive(batched[0]) and \
            self.fwd.shapes[batched[0]] == self.fwd.shapes[node]


class ModuleWriter:
    """Writes the generated module for one cell."""

    def __init__(self, cell, step: Function, optimize: bool, backward: bool = True) -> None:
        self.cell, self.step, self.optimize = cell, step, optimize
        self.with_backward = backward
        self.base = Namer()
        self.leaf_names = {leaf: self.base.name(leaf.arg) for leaf in step.leaves}
        self.seq_names = {leaf: self.base.name(leaf.arg + "_seq") for leaf in step.leaves
                          if leaf.op is not Op.PARAM}
        self.dims = {s: self.base.name(s) for s in step.sizes}
        self.namer = self.base
        self.texts = step.meta.get("text", {})
        self.helpers: set[str] = set()
        self.plan = Plan(step, optimize)
        self.layout = plan_layout(self.plan, dict(step.results), list(cell.outputs),
                                  list(step.leaves_of(Op.STATE)), backward)
        self.seq_name: dict[Sequence, str] = {}     # each sequence's name (and tape key)
        self.tape_arrays: dict[Node, str] = {}      # before-loop arrays on the tape

    def seq_base(self, seq: Sequence, em: Emitter) -> str:
        """What a sequence (and its slot at step t) is called: the stored value filling it,
        else the equations its root comes from (`f_i_o_g` for the LSTM's gate array)."""
        whole = self.layout.whole(seq)
        if whole is not None:
            return em.base_name(whole)
        return self.step.labels.get(seq.root) or em.base_name(seq.root)

    def fresh_namer(self) -> Namer:
        """Each generated function names its locals afresh (leaves and sizes are shared)."""
        namer = Namer(())
        namer.used = set(self.base.used)
        self.namer = namer
        return namer

    # -- the module ----------------------------------------------------------------------
    def source(self) -> str:
        fwd = self.forward()
        bwd = [BackwardWriter(self).write(), ""] if self.with_backward else []
        code = [fwd, "", *bwd, "# Helpers", self.prepare()]
        code += [HELPERS[h].rstrip() + "\n" for h in sorted(self.helpers)]
        code.append(VALIDATION.rstrip() + "\n")
        return "\n".join([self.header(), *imports("\n".join(code)), "", self.constants(), "",
                          *code])

    def header(self) -> str:
        kind = "optimised" if self.optimize else "plain: the graph as written, no optimisation passes"
        what = "forward and backward" if self.with_backward else "forward"
        lines = [f'"""{self.cell.name}: {what} through time, generated by graphlstm ({kind}).',
                 "", "One step:"]
        lines += [f"    {self.equation_text(name)}" for name, _ in self.cell.step.equations]
        lines += ["", "Standalone: needs only NumPy. Arrays are time-major: "
                  + ", ".join(f'xs["{i}"] is {show(("T", "B") + self.cell.shape(i))}'
                              for i in self.cell.inputs) + ";",
                  "state0[name] is [B, size]; weights follow nn.Linear ([out, in]; a batch "
                  "computes v @ W.T).", "",
                  "    ys, state_T = forward(params, xs, state0=None)"]
        if self.with_backward:
            lines += ["    grads = backward(params, xs, state0, dys, dstate_T=None)", "",
                      "Pass the same dict as `tape` to forward and then backward to run the forward",
                      "sweep once: backward then reads what forward recorded."]
        lines.append('"""')
        return "\n".join(lines)

    def constants(self) -> str:
        c = self.cell
        tup = lambda names: "(" + "".join(f'"{n}", ' for n in names).rstrip(" ") + ")"  # noqa
        return "\n".join([f"INPUTS = {tup(c.inputs)}", f"STATES = {tup(c.states)}",
                          f"PARAMS = {tup(c.params)}", f"OUTPUTS = {tup(c.outputs)}",
                          f"SIZES = {tup(c.sizes)}"])

    def equation_text(self, label: str) -> str | None:
        """The source text of an equation, for the comment above its code."""
        if label in self.texts:
            return self.texts[label]
        from ..lang import format_expr
        fn = self.cell.step
        for name, node in fn.equations:
            if name == label:
                names = {leaf: leaf.arg for leaf in fn.leaves}
                names.update({n: e for e, n in fn.equations})
                return f"{name} = {format_expr(fn, node, names)}"
        return None

    def comment(self, label: str) -> str | None:
        """The equation(s) a block implements; fused blocks list every member."""
        grad = label.startswith("d_")
        parts = (label[2:] if grad else label).split("+")
        texts = [t for t in (self.equation_text(p) for p in parts) if t]
        if not texts:
            return None
        prefix = "Grad of: " if grad else ""
        return "\n".join(prefix + t for t in texts)

    def emitter(self, fn: Function) -> Emitter:
        em = Emitter(fn, self.namer, dict(self.dims), self.comment)
        em.printer.helpers = self.helpers
        em.helpers = self.helpers
        return em

    def shape_text(self, node_or_shape, fn: Function | None = None, lead=("T", "B")) -> str:
        shape = fn.shapes[node_or_shape] if fn is not None else node_or_shape
        dims = list(lead) + [self._dim(d) for d in shape]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    # -- validation ----------------------------------------------------------------------
    def prepare(self) -> str:
        """`_prepare`: check every array (mapping, type, dtype, rank), read T, B, the dtype and
        the sizes off them, check every shape, and copy the (small) initial states so that
        no caller's array is ever written or returned."""
        c = self.cell
        first = c.inputs[0]
        lines = ["def _prepare(params, xs, state0, dys=None, dstate_T=None, backward=False):",
                 f'{I1}"""Check every array and read T, B, the dtype and the sizes off them."""',
                 f'{I1}params = _mapping("params", params, PARAMS)',
                 f"{I1}if isinstance(xs, np.ndarray) and len(INPUTS) == 1:",
                 f"{I2}xs = {{INPUTS[0]: xs}}",
                 f'{I1}xs = _mapping("xs", xs, INPUTS)',
                 f'{I1}first = _array("xs[{first!r}]", xs[{first!r}], {2 + len(c.shape(first))}, None, '
                 f'"{show(("T", "B") + c.shape(first))}")',
                 f"{I1}dtype = first.dtype",
                 f"{I1}T, B = first.shape[:2]",
                 f"{I1}if backward:",
                 f'{I2}dys = _mapping("dys", dys, OUTPUTS)']
        static = self._group("xs", c.inputs, ("T", "B")) + self._group("params", c.params, ())
        optional = [("state0", self._group("state0", c.states, ("B",))),
                    ("dys", self._group("dys", c.outputs, ("T", "B"))),
                    ("dstate_T", self._group("dstate_T", c.states, ("B",)))]
        lines += [self._check_array(a, I1) for a in static]
        for what, arrays in optional:
            lines.append(f"{I1}if {what} is not None:")
            if what != "dys":
                lines.append(f'{I2}{what} = _mapping("{what}", {what}, STATES)')
            lines += [self._check_array(a, I2) for a in arrays] or [f"{I2}pass"]
        lines += self._read_sizes(static, optional)
        lines += [self._expect(a, I1) for a in static]
        lines += self._optional("state0", optional[0][1])
        lines.append(f"{I1}if backward:")
        lines += [self._expect(a, I2) for a in optional[1][1]] or [f"{I2}pass"]
        lines += [I1 + line for line in self._optional("dstate_T", optional[2][1])]
        sizes = ", ".join(self.dims[s] for s in c.sizes)
        lines.append(f"{I1}return xs, state0, dys, dstate_T, T, B, dtype, "
                     f"({sizes}{',' if len(c.sizes) == 1 else ''})")
        return "\n".join(lines) + "\n"

    def _group(self, group: str, names, lead: tuple) -> list[tuple[str, str, tuple, tuple]]:
        """(`group['name']`, name, lead axes, shape) of every array of a group of arguments."""
        return [(f"{group}[{n!r}]", n, lead, tuple(self.cell.shape(n))) for n in names]

    @staticmethod
    def _check_array(array, indent: str) -> str:
        what, _, lead, shape = array
        return (f'{indent}_array("{what}", {what}, {len(lead) + len(shape)}, dtype, '
                f'"{show(lead + shape)}")')

    def _expect(self, array, indent: str) -> str:
        """Check a shape; the message says where the sizes in it were read, when elsewhere."""
        what, _, lead, shape = array
        dims = ", ".join(list(lead) + [self._dim(d) for d in shape])
        sizes = sorted({str(s) for d in shape for s in sympy.sympify(d).free_symbols})
        note = ", ".join(f"{s} = {self.size_sources[s]}" for s in sizes
                         if s in self.size_sources and not self.size_sources[s].startswith(what))
        note = f', "{note}"' if note else ""
        return f'{indent}_expect("{what}", {what}, ({dims},), "{show(lead + shape)}"{note})'

    def _optional(self, what: str, arrays) -> list[str]:
        """A state dict: zeros when None, else its shapes checked and its arrays copied."""
        zeros = ", ".join(f'"{name}": np.zeros({self.shape_text(shape, lead=lead)}, dtype)'
                          for _, name, lead, shape in arrays)
        lines = [f"{I1}if {what} is None:", f"{I2}{what} = {{{zeros}}}", f"{I1}else:"]
        lines += [self._expect(a, I2) for a in arrays]
        lines.append(f"{I2}{what} = {{k: v.copy() for k, v in {what}.items()}}")
        return lines

    def _read_sizes(self, static, optional) -> list[str]:
        """Each size read off the first array dimension that determines it: from xs and
        params if they can, else from state0, dys or dstate_T (whichever is given)."""
        known: set[str] = set()
        found = self._readable(static, known)
        self.size_sources = {s: source for s, _, source in found}
        lines = [f"{I1}{self.dims[s]} = {value}" for s, value, _ in found]
        remaining = [s for s in self.cell.sizes if s not in known]
        while remaining:
            found = {what: {s: (v, src) for s, v, src in self._readable(arrays, set(known))}
                     for what, arrays in optional}
            size = next((s for s in remaining if any(s in f for f in found.values())), None)
            if size is None:
                lines += [self._unreadable(s, optional) for s in remaining]
                break
            branches = [(what, f[size][0]) for what, f in found.items() if size in f]
            self.size_sources[size] = " or ".join(f[size][1] for f in found.values() if size in f)
            for i, (what, value) in enumerate(branches):
                lines += [f"{I1}{'if' if i == 0 else 'elif'} {what} is not None:",
                          f"{I2}{self.dims[size]} = {value}"]
            lines += [f"{I1}else:", self._unreadable(size, optional, I2)]
            known.add(size)
            remaining.remove(size)
        return lines

    def _readable(self, arrays, known: set[str]) -> list[tuple[str, str, str]]:
        """(size, code reading it, where) for the sizes these arrays determine, given `known`
        (which grows): a dimension that is one unknown size plus known ones gives it."""
        out = []
        for _ in range(len(self.cell.sizes) + 1):
            for what, _, lead, shape in arrays:
                for axis, dim in enumerate(shape, start=len(lead)):
                    expr = sympy.sympify(dim)
                    free = [s for s in expr.free_symbols if str(s) not in known]
                    if not free or any(expr.coeff(s) != 1 for s in free):
                        continue
                    if len(free) > 1 and not self._only_together(free):
                        continue
                    first, *others = sorted(free, key=lambda s: self.cell.sizes.index(str(s)))
                    rest = self._dim(expr - first - sum(others))
                    known.update(map(str, free))
                    out.append((str(first), f'_size("{what}", {what}, {axis}, {rest}, '
                                            f'"{show(lead + shape)}")', f"{what}.shape[{axis}]"))
                    together = " + ".join(map(str, [first, *others]))
                    out += [(str(s), "0", f"0: only {together} is used") for s in others]
        return out

    def _only_together(self, sizes: list) -> bool:
        c = self.cell
        return only_as_sum(sizes, [*map(c.shape, (*c.inputs, *c.states, *c.params, *c.outputs)),
                                   *self.step.shapes.values()])

    def _unreadable(self, size: str, optional, indent: str = I1) -> str:
        states = [a for a in optional[0][1] if any(size in map(str, sympy.sympify(d).free_symbols)
                                                   for d in a[3])]
        where = f" ({states[0][0]} is {show(states[0][2] + states[0][3])})" if states else ""
        return (f'{indent}raise ValueError("the size {size} cannot be read from xs or params: '
                f'pass state0{where}")')

    def _dim(self, expr) -> str:
        """A size expression in the generated code's names (`n_in + n`; a size called T is T_)."""
        expr = sympy.sympify(expr)
        named = {s: sympy.Symbol(self.dims.get(str(s), str(s))) for s in expr.free_symbols}
        return str(expr.xreplace(named))

    # -- forward -------------------------------------------------------------------------
    def _sizes(self) -> str:
        names = [self.dims[s] for s in self.cell.sizes]
        return ", ".join(names) + ("," if len(names) == 1 else "")

    def bind_params(self, em: Emitter, fn: Function, used: set[Node]) -> list[str]:
        lines = []
        for leaf in fn.leaves_of(Op.PARAM):
            if leaf in used:
                lines.append(f'{I1}{self.leaf_names[leaf]} = params["{leaf.arg}"]')
            em.bind(leaf, self.leaf_names[leaf])
        return lines

    def forward(self) -> str:
        c, fn, plan = self.cell, self.step, self.plan
        self.fresh_namer()
        em = self.emitter(fn)
        em.contiguous = step_matrices(plan.loop + plan.recompute + plan.loop_b)
        results = dict(fn.results)
        outs = [results[o] for o in c.outputs]
        updates = [results[s + "'"] for s in c.states]
        states = fn.leaves_of(Op.STATE)
        tape_doc = (f"{I1}With a dict `tape`, also record what `backward` reads.\"\"\""
                    if self.with_backward else f'{I1}`tape` is unused (this module has no backward)."""')
        lines = ["def forward(params, xs, state0=None, tape=None):",
                 f'{I1}"""Run {c.name} over a sequence: (ys, state_T), both dicts of arrays.',
                 tape_doc,
                 f"{I1}xs, state0, _, _, T, B, dtype, ({self._sizes()}) = _prepare(params, xs, state0)"]
        lines += self.bind_params(em, fn, {s for n in fn.nodes() for s in n.src} | set(outs))
        taped = plan.taped if self.with_backward else set()
        lines += self.before_loop(em, set(outs + updates) | taped)
        lines += self.start_states(em, states)
        ys, dests = self.output_arrays(em, outs)
        lines += [f"{I1}{name} = np.empty({shape}, dtype)" for name, shape in ys.pop(None)]
        dests.update(self.loop_sequences(em, lines))
        body = self.loop_inputs(em, fn, plan.loop, I2)
        self.index_pre(em)
        dests.update({node: operand for node, operand in self.layout.over.items()
                      if node not in dests})
        lines += em.enter_loop(plan.loop, list(zip(updates, states)), plan.optimize, I1)
        body += em.block(plan.loop, I2, 1, keep=set(outs + updates), dests=dests)
        lines += em.scratch_lines(I1)
        lines.append(f"{I1}for t in range(T):")
        body += [f"{I2}{ys[o]}[t] = {em.expr(n)[0]}" for o, n in zip(c.outputs, outs)
                 if o in ys and dests.get(n) != f"{ys[o]}[t]"]
        for s, node in zip(states, updates):
            seq = self.layout.of_state.get(s)
            if seq is not None and dests.get(node) != f"{self.seq_name[seq]}[t + 1]":
                body.append(f"{I2}{self.seq_name[seq]}[t + 1] = {em.expr(node)[0]}")
        if states:
            body += em.carry([self.leaf_names[s] for s in states], updates, I2)
        lines += body if any(line.strip() for line in body) else [f"{I2}pass"]
        em.narrow()
        lines += self.record_tape(em) if self.with_backward else []
        ys_text = ", ".join(f'"{o}": {ys[o]}' if o in ys else f'"{o}": {self.output_views[o]}'
                            for o in c.outputs)
        in_seq = [s for s in states if s in self.layout.of_state]
        st_text = ", ".join(f'"{s.arg}": {self.leaf_names[s]}' + (".copy()" if s in in_seq else "")
                            for s in states)
        if in_seq:
            lines.append(f"{I1}# copies: the final states also live in the sequences returned "
                         "or taped")
        lines.append(f"{I1}return {{{ys_text}}}, {{{st_text}}}")
        return "\n".join(finished(lines, em)) + "\n"

    def before_loop(self, em: Emitter, needed_later: set[Node]) -> list[str]:
        """Values computed before the loop: once per call, then for all steps at once (an
        all-steps array that hosts a backward value is made one slot longer, see layout)."""
        plan, fn, lines = self.plan, self.step, []
        loop = set(plan.loop)
        used_by = lambda region: {s for n in region for s in n.src}  # noqa: E731
        if plan.const:
            keep = (set(plan.const) & (used_by(plan.pre) | used_by(plan.loop) | needed_later))
            block = em.block(plan.const, I1, 0, keep=keep)
            if block:
                lines += [f"{I1}# Once per call: parameters only"] + block
        if plan.pre:
            for leaf in fn.leaves_of(Op.INPUT):
                if any(leaf in n.src for n in plan.pre):
                    lines.append(f'{I1}{self.seq_names[leaf]} = xs["{leaf.arg}"]')
                    em.bind(leaf, self.seq_names[leaf])
            keep = set(plan.pre) & (used_by(loop) | needed_later)
            lines += [f"{I1}# All steps at once: inputs and parameters, no state"]
            dests = {}
            for seq in self.layout.seqs:
                if seq.kind == "pre" and seq.spare:
                    name = self.seq_name[seq] = self.namer.name(self.seq_base(seq, em) + "_seq")
                    lines.append(f"{I1}{name} = np.empty({self.shape_text(seq.root, fn, ('T + 1', 'B'))}, "
                                 f"dtype)  # slot T: for the backward")
                    dests[seq.root] = f"{name}[:T]"
            pre = set(plan.pre)
            dests.update({node: operand for node, operand in self.layout.over.items()
                          if node in pre})
            lines += em.block(plan.pre, I1, 2, keep=keep, dests=dests)
            for seq in self.layout.seqs:
                if seq.kind == "pre" and not seq.spare:
                    self.seq_name[seq] = em.env[seq.root][0]
            em.forget(fn.leaves_of(Op.INPUT))
        return lines

    def start_states(self, em: Emitter, states) -> list[str]:
        """Each state's starting value; a state with a sequence starts it at slot 0."""
        lines = []
        for s in states:
            seq = self.layout.of_state.get(s)
            if seq is None:
                lines.append(f'{I1}{self.leaf_names[s]} = state0["{s.arg}"]')
            else:
                name = self.seq_name[seq] = self.seq_names[s]
                lines += [f"{I1}{name} = np.empty({self.shape_text(s, self.step, ('T + 1', 'B'))}, dtype)",
                          f'{I1}{name}[0] = state0["{s.arg}"]',
                          f"{I1}{self.leaf_names[s]} = {name}[0]"]
            em.bind(s, self.leaf_names[s])
        return lines

    def output_arrays(self, em: Emitter, outs: list[Node]):
        """Each output's array: a view of a state's or stored value's sequence when it is
        one, else a new [T, B, ...] array its step writes into. Returns ({output: name,
        None: [(name, shape) to allocate]}, {node: its slot in the loop})."""
        c, layout, fn = self.cell, self.layout, self.step
        results = dict(fn.results)
        state_of = {results[s.arg + "'"]: s for s in fn.leaves_of(Op.STATE) if s in layout.of_state}
        ys, new, dests = {}, [], {}
        self.output_views: dict[str, str] = {}
        loop = set(self.plan.loop)
        for o, node in zip(c.outputs, outs):
            if node in state_of:
                self.output_views[o] = f"{self.seq_name[layout.of_state[state_of[node]]]}[1:]"
                continue
            if node in layout.home and layout.home[node].visible:
                seq = layout.home[node]
                if seq not in self.seq_name:
                    self.seq_name[seq] = self.namer.name(self.seq_base(seq, em) + "_seq")
                self.output_views[o] = self.seq_name[seq]
                continue
            ys[o] = self.namer.name(f"ys_{o}")
            new.append((ys[o], self.shape_text(node, fn)))
            if node in loop and node not in dests and node not in updates_of_leaves(fn) \
                    and node not in layout.home:
                dests[node] = f"{ys[o]}[t]"
        ys[None] = new
        return ys, dests

    def loop_sequences(self, em: Emitter, lines: list[str]) -> dict[Node, str]:
        """Allocate the sequences loop values fill (stored values, and arrays stored values
        live in); returns each such value's slot at step t."""
        dests = {}
        for node, seq in self.layout.home.items():
            if seq.kind == "state":
                dests[node] = f"{self.seq_name[seq]}[t + 1]"
                continue
            if seq not in self.seq_name:
                self.seq_name[seq] = self.namer.name(self.seq_base(seq, em) + "_seq")
            name = self.seq_name[seq]
            lead = ("T + 1" if seq.spare else "T", "B")
            lines.append(f"{I1}{name} = np.empty({self.shape_text(node, self.step, lead)}, dtype)")
            dests[node] = f"{name}[t]"
        return dests

    def index_pre(self, em: Emitter) -> None:
        """Inside the loop, an all-steps array is read at step t."""
        for node in self.plan.pre:
            if node in em.env and em.env[node][0].isidentifier():
                em.bind(node, f"{em.env[node][0]}[t]")

    def unindex_pre(self, em: Emitter) -> None:
        for node in self.plan.pre:
            if node in em.env and em.env[node][0].endswith("[t]"):
                em.bind(node, em.env[node][0][:-3])

    def record_tape(self, em: Emitter) -> list[str]:
        """`tape.update(...)`: the sequences and the before-loop arrays backward reads."""
        self.unindex_pre(em)
        items = [self.seq_name[seq] for seq in self.layout.seqs]
        self.tape_arrays = {}
        for node in in_order(self.plan.taped, self.step):
            text = em.expr(node)[0]
            if text.isidentifier() and text not in items:
                items.append(text)
                self.tape_arrays[node] = text
        if not items:
            return []
        pairs = ", ".join(f'"{key}": {key}' for key in items)
        return [f"{I1}if tape is not None:", f"{I2}tape.update({{{pairs}}})"]

    def loop_inputs(self, em: Emitter, fn: Function, region: list[Node], indent: str) -> list[str]:
        lines = []
        results = {n for _, n in fn.results}
        for leaf in fn.leaves_of(Op.INPUT):
            if any(leaf in n.src for n in region) or leaf in results:
                lines.append(f'{indent}{self.leaf_names[leaf]} = xs["{leaf.arg}"][t]')
                em.bind(leaf, self.leaf_names[leaf])
        return lines


def _tokens(code: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(code + "\n").readline))


def imports(code: str) -> list[str]:
    """`import numpy as np`, and the NumPy functions the code calls by name (the ones that
    write into a given array: a loop calls them dozens of times a step, see lower.py)."""
    tokens = _tokens(code)
    called = {tok.string for before, tok, after in zip(tokens, tokens[1:], tokens[2:])
              if tok.type == tokenize.NAME and tok.string in NUMPY_CALLS
              and after.string == "(" and before.string != "."}
    lines = ["import numpy as np"]
    if called:
        lines.append("from numpy import " + ", ".join(sorted(called))
                     + "  # called with the array to write last")
    return lines


def step_matrices(region: list[Node]) -> set[Node]:
    """Slices of parameters that a per-step matrix product multiplies by: made contiguous
    once per call (they go on the tape so, for the backward too), as NumPy's `dot` on a
    strided matrix is several times slower."""
    return {n.src[0] for n in region if n.op is Op.MATMUL and n.src[0].op is Op.SLICE
            and not n.src[0].batched}


def finished(lines: list[str], em: Emitter) -> list[str]:
    """A function's lines with the constants its code names defined after `_prepare`, and
    its column views under their final names (`Emitter.renamed`)."""
    at = next(i for i, line in enumerate(lines) if "= _prepare(" in line) + 1
    return [em.renamed(line) for line in lines[:at] + em.constant_lines(I1) + lines[at:]]


def updates_of_leaves(fn: Function) -> set[Node]:
    """Result nodes that are leaves (an output that is a state or an input)."""
    return {n for _, n in fn.results if n.op.is_leaf}


class BackwardWriter:
    """Backprop through time: read the tape, run the recurrence backwards, then (optimised)
    compute everything the recurrence does not need for all steps at once."""

    def __init__(self, mw: ModuleWriter) -> None:
        self.mw, self.cell, self.plan = mw, mw.cell, mw.plan
        self.fwd, self.bwd, self.seeds = mw.step, mw.plan.bwd, mw.plan.seeds
        self.results = dict(self.bwd.results)

    def write(self) -> str:
        mw = self.mw
        mw.fresh_namer()
        em = mw.emitter(self.bwd)
        lines = ["def backward(params, xs, state0, dys, dstate_T=None, tape=None):",
                 f'{I1}"""Backprop through time: the gradient of sum(ys * dys) + sum(state_T * dstate_T)',
                 f"{I1}for every parameter, every input step and the initial state, as one dict.",
                 f"{I1}`tape`: the dict a forward call with the same arguments filled (else one is made);",
                 f"{I1}backward empties it, reusing its arrays.\"\"\"",
                 f"{I1}xs, state0, dys, dstate_T, T, B, dtype, ({mw._sizes()}) = "
                 f"_prepare(params, xs, state0, dys, dstate_T, backward=True)",
                 f"{I1}if not tape:",
                 f"{I2}tape = {{}}",
                 f"{I2}forward(params, xs, state0, tape)"]
        lines += mw.bind_params(em, self.bwd, {s for n in self.bwd.nodes() for s in n.src})
        lines += self.read_tape(em)
        lines += self.loop(em)
        lines += self.after_loop(em)
        lines += self.returned()
        return "\n".join(finished(lines, em)) + "\n"

    def returned(self) -> list[str]:
        """The return statement: every gradient, by leaf name."""
        grads = [f'"{l.arg}": {self.grads[l.arg]}' for l in self.fwd.leaves if l.op is not Op.STATE]
        grads += [f'"{s.arg}": {self.carried[s]}' for s in self.fwd.leaves_of(Op.STATE)]
        return [f"{I1}return {{" + ", ".join(grads) + "}"]

    def read_tape(self, em: Emitter) -> list[str]:
        """Take the forward sweep's arrays off the tape (which is then empty: the backward
        writes into some of them, so a tape serves one backward)."""
        lines, self.seqs = [], {}
        for seq, key in self.mw.seq_name.items():
            self.seqs[seq] = em.namer.name(key)
            lines.append(f'{I1}{self.seqs[seq]} = tape["{key}"]')
        self.arrays = {}
        for node, key in self.mw.tape_arrays.items():
            self.arrays[node] = em.namer.name(key)
            lines.append(f'{I1}{self.arrays[node]} = tape["{key}"]')
            em.bind(node, self.arrays[node])
        return lines + ([f"{I1}tape.clear()"] if lines else [])

    def grad_targets(self, em: Emitter) -> list[str]:
        """Name and initialise each gradient: accumulated in the loop, or made after it."""
        mw, lines = self.mw, []
        self.grads, self.accumulate = {}, []
        post = set(self.plan.post_b)
        for leaf in self.fwd.leaves:
            node = self.results[grad_name(leaf.arg)]
            if leaf.op is Op.STATE:
                continue
            is_param = leaf.op is Op.PARAM
            name = em.namer.name(grad_name(leaf.arg) + ("" if is_param else "_seq"))
            self.grads[leaf.arg] = name
            lead = () if is_param else ("T", "B")
            if node.op is Op.ZEROS:
                lines.append(f"{I1}{name} = np.zeros({mw.shape_text(leaf, self.fwd, lead)}, dtype)")
            elif node not in post:
                init = f"np.zeros_like({mw.leaf_names[leaf]})" if is_param else \
                    f"np.empty({mw.shape_text(leaf, self.fwd, lead)}, dtype)"
                lines.append(f"{I1}{name} = {init}")
                self.accumulate.append((leaf, name))
        return lines

    def kept_for_after(self, em: Emitter) -> list[str]:
        """Where each backward value read after the loop is kept, step by step: a new
        [T, B, ...] array, slot t + 1 of a forward sequence it shares, or its slice of a
        kept concatenation it is a part of (see layout)."""
        lines, self.slot, self.kept = [], {}, {}
        placed = self.mw.layout.placed
        arrays: dict[Node, tuple[str, str]] = {}    # node -> (array of every step, index of t)
        for node in [*self.plan.post_store, *self.mw.layout.containers]:
            host = self.mw.layout.shared.get(node)
            if node in placed or node in self.mw.layout.views:
                continue
            if host is not None:
                arrays[node] = (self.seqs[host], "t + 1")
                self.kept[node] = em.name(node, "_seq")
            else:
                name = em.name(node, "_seq")
                lines.append(f"{I1}{name} = np.empty({self.mw.shape_text(node, self.bwd)}, dtype)")
                arrays[node], self.kept[node] = (name, "t"), name
        pending = dict(placed)
        while pending:                        # outer concatenations first (parts may nest)
            for part, (concat, k) in list(pending.items()):
                if concat in arrays:          # its slice of every step, viewed once
                    index = em.part_index(concat, k)
                    array, step = arrays[concat]
                    name = em.name(part, "_seq")
                    lines.append(f"{I1}{name} = {array}{index}")
                    em.strided.add(name)
                    arrays[part] = (name, step)
                    self.kept[part] = f"{self.kept[concat]}{index}"
                    del pending[part]
        self.slot = {node: f"{array}[{step}]" for node, (array, step) in arrays.items()}
        for node, base in self.mw.layout.views.items():
            self.kept[node] = ops.CODE[Op.SLICE](node, [(self.kept[base], ATOM)], em)[0]
        em.placed = dict(placed)
        return lines

    def loop(self, em: Emitter) -> list[str]:
        """The reversed time loop (in chunks of steps when some values need no gradient),
        with the arrays it writes made before it."""
        mw, plan, fwd = self.mw, self.plan, self.fwd
        states = fwd.leaves_of(Op.STATE)
        lines, names = self.loop_setup(em)
        region, chunked = plan.loop_region, bool(plan.chunk)
        ind = I3 if chunked else I2
        head = self.chunk_head(em) if chunked else []
        body = mw.loop_inputs(em, fwd, region, ind)
        views = self.step_views(em, region, ind)
        body += views
        if chunked:
            body += [f"{ind}{local} = {array}[t - start]" for local, array in self.chunk_views(em)]
        dests = {n: slot for n, slot in self.slot.items() if n in set(region)}
        carried = [self.results[grad_name(s.arg)] for s in states]
        inputs = [self.seeds[s.arg + "'"] for s in states]
        lines += em.enter_loop(region, list(zip(carried, inputs)), plan.optimize, I1)
        body += em.block(region, ind, 1, keep=set(names) & set(region), names=names, dests=dests)
        self.views_made_in(em, region)
        for leaf, name in self.accumulate:
            expr = em.expr(self.results[grad_name(leaf.arg)])[0]
            body.append(f"{ind}{name} += {expr}" if leaf.op is Op.PARAM else f"{ind}{name}[t] = {expr}")
        body += [f"{ind}{slot} = {em.expr(n)[0]}" for n, slot in self.slot.items()
                 if n not in dests and n not in self.mw.layout.containers]
        if states:
            body += em.carry([self.carried[s] for s in states], carried, ind)
        body = self.without_unread(views, body)
        state_seeds = {self.seeds[s.arg + "'"] for s in states}
        em.forget(set(region) | set(plan.chunk) | state_seeds | set(fwd.leaves_of(Op.INPUT)))
        self.columns = em.columns
        em.narrow()
        if chunked:
            em.helpers.add("_chunk_steps")
            lines.append(f"{I1}steps = _chunk_steps(T, {self.per_step(em)})")
        lines += em.scratch_lines(I1)
        if chunked:
            return lines + self.chunk_loops(head, body)
        lines += [f"{I1}# Backward through time", f"{I1}for t in range(T - 1, -1, -1):"]
        return lines + (body if body else [f"{I2}pass"])

    def loop_setup(self, em: Emitter) -> tuple[list[str], dict[Node, str]]:
        """The carried cotangents (from dstate_T), the gradients' arrays, the kept values'
        arrays, the per-step seeds `dys_h[t]`; and the names of the gradients the loop makes."""
        states = self.fwd.leaves_of(Op.STATE)
        self.carried = {s: em.name(self.seeds[s.arg + "'"]) for s in states}
        lines = [f'{I1}{self.carried[s]} = dstate_T["{s.arg}"]' for s in states]
        lines += self.grad_targets(em)
        lines += self.kept_for_after(em)
        dys = {o: em.namer.name(f"dys_{o}") for o in self.cell.outputs}
        lines += [f'{I1}{dys[o]} = dys["{o}"]' for o in self.cell.outputs]
        for o in self.cell.outputs:
            em.bind(self.seeds[o], f"{dys[o]}[t]")
        for s in states:
            em.bind(self.seeds[s.arg + "'"], self.carried[s])
        names: dict[Node, str] = {}
        loop_set = set(self.plan.loop_b)
        for leaf in self.fwd.leaves:
            node = self.results[grad_name(leaf.arg)]
            if node in loop_set and node not in names:
                names[node] = em.namer.name(grad_name(leaf.arg))
        return lines, names

    def without_unread(self, views: list[str], body: list[str]) -> list[str]:
        """The body without the step views nothing reads (a slot `f_i_o_g = f_i_o_g_seq[t]`
        whose slices all became column views, `f_i_o_act = f_i_o_act_seq[t]`)."""
        target = lambda line: line.split("=")[0].strip()  # noqa: E731
        while True:
            read = Counter(tok.string for line in body for tok in _tokens(line.strip())
                           if tok.type == tokenize.NAME)
            unread = {line for line in views if line in body and read[target(line)] == 1}
            if not unread:
                return body
            for line in unread:
                self.views.pop(target(line), None)
            body = [line for line in body if line not in unread]

    def chunk_loops(self, head: list[str], body: list[str]) -> list[str]:
        """The chunks' arrays, and the loop over chunks (last first) around the time loop."""
        shape = lambda node: self.mw.shape_text(node, self.bwd, ("steps", "B"))  # noqa: E731
        lines = [f"{I1}{name} = np.empty({shape(n)}, dtype)" for n, name in self.chunk_arrays.items()]
        lines += [f"{I1}# Backward through time, `steps` steps at a time",
                  f"{I1}for stop in range(T, 0, -steps):",
                  f"{I2}start = max(stop - steps, 0)"]
        return lines + head + [f"{I2}for t in range(stop - 1, start - 1, -1):"] + body

    def chunk_head(self, em: Emitter) -> list[str]:
        """The values no gradient flows into (Plan._plan_chunks), for the chunk's steps
        start..stop-1 at once, from the forward sweep's arrays over those steps (which the
        loop has not written into yet: it writes slot t + 1 at step t, and t >= stop)."""
        plan, chunk = self.plan, set(self.plan.chunk)
        used = {s for n in plan.chunk for s in n.src if s not in chunk}
        bound = self.chunk_bindings(em, used)
        bases = {n: self.chunk_base(em, n) for n in plan.chunk_out}
        self.chunk_locals = {n: em.namer.name(base) for n, base in bases.items()}
        self.chunk_arrays = {n: em.namer.name(f"{base}_steps") for n, base in bases.items()}
        views = {n: em.namer.name(f"{base}_chunk") for n, base in bases.items()}
        named = {root for name, root in self.bwd.equations if not name.startswith("d_")}
        views.update({n: em.namer.name(f"{em.base_name(n)}_chunk") for n in plan.chunk
                      if n in named and n not in views})     # the loop's own `o` stays `o`
        dests = {n: f"{name}[:stop - start]" for n, name in self.chunk_arrays.items()}
        lines = [f"{I2}# Values no gradient flows into, for the chunk's steps at once"]
        em.steps, em.window = "steps", "[:stop - start]"
        block = em.block(plan.chunk, I2, 2, keep=set(plan.chunk_out), names=views, dests=dests)
        lines += [f"{I2}{view} = {rows}" for view, rows in em.windows] + block
        em.steps, em.window = "T", ""
        em.forget(bound + plan.chunk, names=True)
        return lines

    def chunk_bindings(self, em: Emitter, used: set[Node]) -> list[Node]:
        """Bind the forward values a chunk reads to their arrays over its steps (step t's
        state is slot t of its sequence, its update slot t + 1); returns them."""
        layout, fwd_em = self.mw.layout, self.mw.emitter(self.fwd)
        def steps(offset: int) -> str:
            return f"[start + {offset}:stop + {offset}]" if offset else "[start:stop]"
        texts: dict[Node, str] = {}
        for s in self.fwd.leaves_of(Op.STATE):
            texts[s] = f"{self.seqs[layout.of_state[s]]}{steps(0)}"
        for leaf in self.fwd.leaves_of(Op.INPUT):
            texts[leaf] = f'xs["{leaf.arg}"]{steps(0)}'
        for node, loc in layout.location.items():
            texts[node] = self.sliced(fwd_em, f"{self.seqs[loc.seq]}{steps(loc.offset)}", loc.path)
        for node, name in self.arrays.items():
            if node in set(self.plan.pre):
                texts[node] = f"{name}{steps(0)}"
        bound = [n for n in in_order(used, self.fwd) if n in texts]
        for node in bound:
            em.bind(node, texts[node])
        return bound

    def chunk_base(self, em: Emitter, node: Node) -> str:
        """What a chunk value is called: an activation's derivative after the activation
        (`g_deriv` for 1 - g**2), a product of such factors after them (`i_g_deriv` for
        i * (1 - g**2)), a difference after its terms (`h_tilde_minus_h`), anything else
        after its equation and role."""
        forward = self.plan.fwd_nodes
        if node.op is Op.NONLIN and node not in forward and node.src[0] in forward:
            return f"{em.base_name(node.src[0])}_deriv"
        if node.op is Op.GATE and node not in forward:
            parts = sorted((self.chunk_base(em, s) for s in node.src),
                           key=lambda part: part.endswith("_deriv"))     # i_g_deriv
            if len("_".join(parts)) <= 24:
                return "_".join(parts)
        if node.op is Op.SUM and len(node.src) == 2 and ops.is_map(node.src[1], -U):
            a, b = node.src[0], node.src[1].src[0]          # h_tilde - h: h_tilde_minus_h
            if a.op is not Op.NONLIN or a.arg.name:          # not an affine map (a constant)
                name = f"{self.chunk_base(em, a)}_minus_{self.chunk_base(em, b)}"
                if len(name) <= 24:
                    return name
        return em.base_name(node)

    def chunk_views(self, em: Emitter) -> list[tuple[str, str]]:
        """Each chunk value's step, for the loop (`g_deriv = g_deriv_steps[t - start]`)."""
        for node, local in self.chunk_locals.items():
            em.bind(node, local)
        return [(self.chunk_locals[n], array) for n, array in self.chunk_arrays.items()]

    def per_step(self, em: Emitter) -> str:
        """The number of elements the chunk's arrays hold per step, as code."""
        size = sum((sympy.prod(self.bwd.shapes[n]) for n in self.plan.chunk_out), sympy.Integer(0))
        text = em.dim(size)
        product = text.replace("*", "").replace("_", "").isalnum()       # 5*n, not n + n_in
        return f"B * {text}" if product else f"B * ({text})"

    def step_views(self, em: Emitter, region: list[Node], indent: str = I2) -> list[str]:
        """Name, once per step, the forward values the loop reads at step t: states, stored
        values (slices of their sequence's slot) and all-steps arrays."""
        used = {s for n in region for s in n.src}
        lines, slots = [], {}
        layout, fwd_em = self.mw.layout, self.mw.emitter(self.fwd)
        self.views: dict[str, str] = {}         # a local of the loop -> the tape array it views

        def slot(seq: Sequence, offset: int, node: Node) -> str:
            if (seq, offset) not in slots:
                whole = seq.kind == "state" or self.mw.layout.whole(seq) is not None
                base = em.base_name(node) if whole else self.mw.seq_base(seq, em)
                local = em.namer.name(base)
                index = "t" if offset == 0 else f"t + {offset}"
                lines.append(f"{indent}{local} = {self.seqs[seq]}[{index}]")
                em.note_row(local, f"{self.seqs[seq]}[{index}]")
                slots[seq, offset] = local
                self.views[local] = self.seqs[seq]
            return slots[seq, offset]

        for s in self.fwd.leaves_of(Op.STATE):
            if s in used:
                em.bind(s, slot(layout.of_state[s], 0, s))
        for node in in_order(used & set(layout.location), self.fwd):
            loc = layout.location[node]
            text = slot(loc.seq, loc.offset, node)
            if loc.path:
                local = em.namer.name(em.base_name(node))
                columns = self.sliced(fwd_em, "", loc.path)      # `[..., :3*n]`
                row = em.column_row(text, columns, node) or f"{text}{columns}"
                lines.append(f"{indent}{local} = {row}")
                em.note_row(local, row)
                self.views[local] = self.views[text]
                text = local
            em.bind(node, text)
        for node, name in self.arrays.items():
            if node in used and node in set(self.plan.pre):
                local = em.namer.name(em.base_name(node))
                lines.append(f"{indent}{local} = {name}[t]")
                self.views[local] = name
                em.bind(node, local)
        return lines

    def views_made_in(self, em: Emitter, region: list[Node]) -> None:
        """Add the loop's own names for slices of the tape's arrays (`f = f_i_o_act[..., :n]`)."""
        for node in region:
            if node.op is Op.SLICE and node in em.env and node.src[0] in em.env:
                name, base = em.env[node][0], em.env[node.src[0]][0]
                if name.isidentifier() and base in self.views:
                    self.views[name] = self.views[base]

    def release(self, after: list[str]) -> list[str]:
        """Drop the tape's arrays the code after the loop does not read, and the loop's views
        of them: the arrays made after the loop then reuse their memory (fresh memory costs
        page faults) and the backward's peak is lower."""
        code = textwrap.dedent("\n".join(after))
        read = {tok.string for tok in _tokens(code)
                if tok.type == tokenize.NAME}                   # not in comments or strings
        arrays = [*self.seqs.values(), *self.arrays.values()]
        dead = [a for a in arrays if a not in read]
        dead += [v for v, a in self.views.items() if a in dead and v not in read]
        dead += [v for v, a in self.column_roots().items() if a in dead and v not in read]
        if not dead:
            return []
        return [f"{I1}# read by the loop only: released, so that the arrays below reuse the memory",
                f"{I1}{' = '.join(dead)} = None"]

    def column_roots(self) -> dict[str, str]:
        """Each column view the loop reads (`f_seq = f_i_o_g_seq[..., :n]`) -> the array it
        views, through views of views."""
        code_of = {name: code for code, name in self.columns.items()}
        roots = {}
        for name, code in code_of.items():
            root = re.match(r"\w+", code).group(0)
            while root in code_of:
                root = re.match(r"\w+", code_of[root]).group(0)
            roots[name] = root
        return roots

    @staticmethod
    def sliced(fwd_em: Emitter, text: str, path) -> str:
        """`text` with the slices of a location's path applied."""
        for part in path:
            text = ops.CODE[Op.SLICE](part, [(text, ATOM)], fwd_em)[0]
        return text

    def after_views(self, em: Emitter) -> None:
        """Forward values over all steps, for the code after the loop."""
        layout, fwd_em = self.mw.layout, self.mw.emitter(self.fwd)
        for s in self.fwd.leaves_of(Op.STATE):
            em.bind(s, f"{self.seqs[layout.of_state[s]]}[:-1]")
        for node, loc in layout.location.items():
            name = self.seqs[loc.seq]
            spare = loc.seq.spare or loc.seq.kind == "state"
            base = f"{name}[1:]" if loc.offset else (f"{name}[:-1]" if spare else name)
            em.bind(node, self.sliced(fwd_em, base, loc.path))
        for node, name in self.arrays.items():
            em.bind(node, name)
        for node, text in self.kept.items():
            em.bind(node, text)

    def after_loop(self, em: Emitter) -> list[str]:
        plan, fwd = self.plan, self.fwd
        if not plan.post_b:
            return []
        self.after_views(em)
        for leaf in fwd.leaves_of(Op.INPUT):
            em.bind(leaf, f'xs["{leaf.arg}"]')
        for o in self.cell.outputs:
            em.bind(self.seeds[o], f'dys["{o}"]')
        targets, copies = {}, []
        post = set(plan.post_b)
        for leaf in fwd.leaves:
            node = self.results[grad_name(leaf.arg)]
            if leaf.op is Op.STATE or node not in post:
                continue
            if node in targets:   # two parameters with one gradient (b_ir, b_hr)
                copies.append(f"{I1}{self.grads[leaf.arg]} = {targets[node]}.copy()")
            else:
                targets[node] = self.grads[leaf.arg]
        lines = [f"{I1}# After the loop: all steps at once"]
        lines += [f"{I1}{self.kept[n]} = {self.seqs[host]}[1:]  # step t's is in slot t + 1"
                  for n, host in self.mw.layout.shared.items()]
        lines += em.block(plan.recompute_post + plan.post_b, I1, 2, keep=set(targets), names=targets)
        lines += copies
        return lines[:1] + self.release(lines[1:] + self.returned()) + lines[1:]
