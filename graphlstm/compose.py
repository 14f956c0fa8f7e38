"""Composite models: deep (stacked) cells and bidirectional models.

`stack(a, b, ...)` is a cell again: layer k+1 reads layer k's outputs at the same step, so
one step of the stack is one `Function` and everything downstream (grad, unroll, compile,
render, check_grads) works on it unchanged. Every parameter, state, equation and size of
layer k is renamed with the prefix `lk.` (`l1.W_f`, `l2.h'`, `l2.n`), which reads like a
PyTorch state_dict key (generated code spells it `l1_W_f`); the stack's inputs and outputs
keep their names (`x`, `h`).

`bidirectional(cell)` cannot be a cell: its reverse-time half at step t depends on inputs
after t. It is a sequence model instead: a *paired cell* runs a forward-time copy (`fwd.`)
on x[t] and a reverse-time copy (`rev.`) on x[T-1-t] in one loop (one generated module,
one set of GEMMs), and a thin wrapper reverses time for the reverse copy and concatenates
the outputs per step. `layers > 1` feeds each layer's joined output sequence to the next,
as `nn.LSTM(num_layers=k, bidirectional=True)` does.
"""
from __future__ import annotations

import hashlib
import linecache
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import sympy

from . import ops
from .cell import Cell
from .errors import SpecError
from .ir import Function, Node, Op
from .shapes import show, size_symbol

FWD, REV = "fwd.", "rev."


# ---------------------------------------------------------------------------------------
# Copying a step under new names


@dataclass
class _Copy:
    """One cell's step copied under a prefix: old node -> new node, and what it adds."""

    nodes: dict[Node, Node] = field(default_factory=dict)
    shapes: dict[Node, tuple] = field(default_factory=dict)
    labels: dict[Node, str] = field(default_factory=dict)
    equations: list[tuple[str, Node]] = field(default_factory=list)


def _resize(dims, sizes: Mapping[sympy.Symbol, sympy.Expr]) -> tuple:
    return tuple(sympy.expand(sympy.sympify(d).xreplace(dict(sizes))) for d in dims)


def _rebuild(node: Node, src: list[Node], sizes) -> Node:
    """The node over new operands, through the constructors so the graph stays canonical."""
    if node.op is Op.CONCAT:
        return ops.concat(src, node.arg)
    if node.op is Op.SUM:
        return ops.add(*src)
    if node.op is Op.NONLIN:
        return ops.nonlin(node.arg, src[0])
    if node.op is Op.SLICE:
        return Node.make(Op.SLICE, src, (node.arg[0],) + _resize(node.arg[1:], sizes))
    if node.op is Op.ZEROS:
        return Node.make(Op.ZEROS, (), (_resize(node.arg[0], sizes), node.arg[1]))
    return Node.make(node.op, src, node.arg)


def copy_step(step: Function, prefix: str, sizes: Mapping[sympy.Symbol, sympy.Expr],
              wiring: Mapping[Node, Node] = {}) -> _Copy:
    """Copy a step with every leaf and equation renamed `prefix + name` and sizes mapped by
    `sizes`; leaves in `wiring` are replaced by the given nodes (a layer's inputs by the
    previous layer's outputs)."""
    out = _Copy(nodes=dict(wiring))
    for leaf in step.leaves:
        if leaf not in out.nodes:
            out.nodes[leaf] = ops.leaf(leaf.op, prefix + leaf.arg)
            out.shapes[out.nodes[leaf]] = _resize(step.shapes[leaf], sizes)
    for node in step.nodes():
        if node not in out.nodes:
            new = _rebuild(node, [out.nodes[s] for s in node.src], sizes)
            out.nodes[node] = new
            out.shapes.setdefault(new, _resize(step.shapes[node], sizes))
        if node in step.labels and node not in wiring:
            out.labels.setdefault(out.nodes[node], prefix + step.labels[node])
    out.equations = [(prefix + name, out.nodes[node]) for name, node in step.equations]
    return out


def _renamed_sizes(step: Function, prefix: str, fixed: Mapping[str, sympy.Expr] = {}) -> dict:
    """Each size symbol of a step -> `prefix + name` (or the expression `fixed` gives it)."""
    return {size_symbol(s): fixed.get(s, size_symbol(prefix + s)) for s in step.sizes}


def _ordered_sizes(exprs) -> tuple[str, ...]:
    out: list[str] = []
    for expr in exprs:
        for sym in sorted(sympy.sympify(expr).free_symbols, key=lambda s: str(s)):
            if str(sym) not in out:
                out.append(str(sym))
    return tuple(out)


def _custom(cells: Sequence[Cell]) -> tuple:
    out: list = []
    for cell in cells:
        out += [fn for fn in cell.step.meta.get("custom", ()) if fn not in out]
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Stacked cells


def stack(*cells: Cell, name: str | None = None) -> Cell:
    """A deep cell: layer k+1's inputs are fed, in order, by layer k's outputs at the same
    step; the stack's inputs are the first layer's and its outputs the last layer's, under
    their own names (`x`, `h`).

    Layer k's parameters, states, equations and sizes are renamed `lk.NAME` (1-based:
    `l1.W_f` is PyTorch's `weight_*_l0`), so per-layer sizes stay distinct except where a
    layer's input size is bound to the previous layer's output size (`l2.n_in` becomes
    `l1.n`). A size that cannot be bound is a `SpecError`. Stacks of stacks flatten. The
    step's `meta["layers"]` lists `(prefix, cell name)` per layer (prefix with its dot,
    e.g. `("l1.", "lstm")`) for diagrams, and `meta["layer_cells"]` the cells.
    """
    layers = _flatten(cells)
    if not layers:
        raise SpecError("stack needs at least one cell")
    parts, outputs, shapes = [], None, {}
    for k, cell in enumerate(layers, start=1):
        prefix = f"l{k}."
        if outputs is None:
            wiring, fixed = _inputs(cell, prefix, shapes), {}
        else:
            wiring, fixed = _wire(cell, outputs, shapes, k)
        part = copy_step(cell.step, prefix, _renamed_sizes(cell.step, prefix, fixed), wiring)
        shapes.update(part.shapes)
        parts.append((prefix, cell, part))
        results = dict(cell.step.results)
        outputs = [(o, part.nodes[results[o]]) for o in cell.outputs]
    return Cell(_stacked_function(parts, outputs, shapes, name))


def _flatten(cells) -> list[Cell]:
    out: list[Cell] = []
    for cell in cells:
        if isinstance(cell, Bidirectional):
            raise TypeError("stack takes cells; a bidirectional layer needs whole sequences: "
                            "use gl.bidirectional(cell, layers=k)")
        if not isinstance(cell, Cell):
            raise TypeError(f"stack takes cells, got {type(cell).__name__}")
        out += list(cell.step.meta.get("layer_cells", (cell,)))
    return out


def _inputs(cell: Cell, prefix: str, shapes: dict) -> dict[Node, Node]:
    """The stack's inputs are the first layer's, under their own names (like its outputs)."""
    sizes = _renamed_sizes(cell.step, prefix)
    wiring = {}
    for leaf in cell.step.leaves_of(Op.INPUT):
        wiring[leaf] = ops.leaf(Op.INPUT, leaf.arg)
        shapes[wiring[leaf]] = _resize(cell.step.shapes[leaf], sizes)
    return wiring


def _wire(cell: Cell, outputs: list[tuple[str, Node]], shapes: dict, k: int):
    """Feed layer k's inputs from the previous layer's outputs; bind the input sizes."""
    if len(outputs) != len(cell.inputs):
        raise SpecError(f"layer {k} ({cell.name}) has {len(cell.inputs)} input(s) "
                        f"{list(cell.inputs)} but layer {k - 1} has {len(outputs)} output(s) "
                        f"{[o for o, _ in outputs]}")
    step = cell.step
    fixed: dict[str, sympy.Expr] = {}
    for x, (o, node) in zip(cell.inputs, outputs):
        want, have = step.shapes[step.leaf(x)], shapes[node]
        if len(want) != len(have):
            raise SpecError(f"layer {k} ({cell.name}) input {x}{show(want)} cannot take layer "
                            f"{k - 1}'s output {o}{show(have)}: ranks differ")
        for dim, value in zip(want, have):
            dim = sympy.sympify(dim)
            if dim.is_Symbol and str(dim) not in fixed:
                fixed[str(dim)] = value
    sizes = _renamed_sizes(step, f"l{k}.", fixed)
    for x, (o, node) in zip(cell.inputs, outputs):
        want = _resize(step.shapes[step.leaf(x)], sizes)
        if any(sympy.expand(a - b) != 0 for a, b in zip(want, shapes[node])):
            raise SpecError(f"layer {k} ({cell.name}) input {x} of size {show(want)} cannot "
                            f"take layer {k - 1}'s output {o} of size {show(shapes[node])}")
    wiring = {step.leaf(x): node for x, (_, node) in zip(cell.inputs, outputs)}
    return wiring, fixed


def _stacked_function(parts, outputs, shapes, name) -> Function:
    cells = [cell for _, cell, _ in parts]
    leaves: list[Node] = []
    for op in (Op.INPUT, Op.STATE, Op.PARAM):
        for prefix, cell, part in parts:
            leaves += [part.nodes[l] for l in cell.step.leaves_of(op) if part.nodes[l].op is op]
    updates = [(prefix + s + "'", part.nodes[dict(cell.step.results)[s + "'"]])
               for prefix, cell, part in parts for s in cell.states]
    labels: dict[Node, str] = {}
    for _, _, part in parts:
        for node, label in part.labels.items():
            labels.setdefault(node, label)
    names = [c.name for c in cells]
    default = f"{names[0]}_x{len(names)}" if len(set(names)) == 1 else "_".join(names)
    return Function(
        name=name or default, leaves=tuple(leaves), results=tuple(outputs) + tuple(updates),
        shapes=shapes, labels=labels,
        equations=tuple(eq for _, _, part in parts for eq in part.equations),
        sizes=_ordered_sizes(d for leaf in leaves for d in shapes[leaf]), kind="cell",
        meta={"custom": _custom(cells), "layers": tuple((p, c.name) for p, c, _ in parts),
              "layer_cells": tuple(cells)})


# ---------------------------------------------------------------------------------------
# Bidirectional models


def paired(cell: Cell) -> Cell:
    """Two independent copies of a cell in one step: `fwd.` and `rev.` leaves, equations
    and outputs (sizes shared: both read the same input). The bidirectional wrapper feeds
    `rev.` inputs reversed in time."""
    parts = [(p, copy_step(cell.step, p, {})) for p in (FWD, REV)]
    step, results = cell.step, dict(cell.step.results)
    leaves = [part.nodes[l] for op in (Op.INPUT, Op.STATE, Op.PARAM)
              for _, part in parts for l in step.leaves_of(op)]
    outs = [(p + o, part.nodes[results[o]]) for p, part in parts for o in cell.outputs]
    upds = [(p + s + "'", part.nodes[results[s + "'"]]) for p, part in parts for s in cell.states]
    shapes, labels = {}, {}
    for _, part in parts:
        shapes.update(part.shapes)
        labels.update(part.labels)
    fn = Function(name=f"{cell.name}_paired", leaves=tuple(leaves), results=tuple(outs + upds),
                  shapes=shapes, labels=labels,
                  equations=tuple(eq for _, part in parts for eq in part.equations),
                  sizes=step.sizes, kind="cell",
                  meta={"custom": _custom([cell]), "layers": ((FWD, cell.name), (REV, cell.name)),
                        "paired": True})
    return Cell(fn)


class Bidirectional:
    """A bidirectional sequence model over a cell: per layer, a forward-time copy (`fwd.`)
    and a reverse-time copy (`rev.`) with their own parameters, outputs concatenated per
    step (`ys[o][t] = [fwd o at t, rev o at t]`, size 2m).

    It is a sequence model, not a cell (the reverse copy at step t reads inputs after t);
    `compile()` gives a Program-like object whose standalone source holds the paired step
    (both copies in one loop) and the time-reversing wrapper. Names: `fwd.W_f`, `rev.h`;
    with `layers > 1`, `l1.fwd.W_f` ... and layer k+1 reads layer k's joined outputs (the
    cell needs one input and one output; its input size becomes 2m there). The reverse
    copy's final state `rev.h` is its state after reading x[0], as PyTorch's h_n.
    """

    def __init__(self, cell: Cell, layers: int = 1, name: str | None = None) -> None:
        if not isinstance(cell, Cell):
            raise TypeError(f"bidirectional takes a cell, got {type(cell).__name__}")
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        self.cell, self.layers = cell, layers
        self.pair = paired(cell)
        from .cell import check_model_name
        self.name = check_model_name(name or f"bidirectional_{cell.name}"
                                     + (f"_x{layers}" if layers > 1 else ""))
        self.prefixes = ("",) if layers == 1 else tuple(f"l{k}." for k in range(1, layers + 1))
        self._deep = _deep_sizes(cell) if layers > 1 else {}
        self.inputs, self.outputs, self.sizes = cell.inputs, cell.outputs, cell.sizes
        self.states = tuple(p + s for p in self.prefixes for s in self.pair.states)
        self.params = tuple(p + q for p in self.prefixes for q in self.pair.params)

    def shape(self, name: str) -> tuple:
        """The symbolic shape of an input, output (2m), state or parameter, by name."""
        if name in self.inputs:
            return self.cell.shape(name)
        if name in self.outputs:
            m, *rest = self.cell.shape(name)
            return (sympy.expand(2 * m), *rest)
        for k, prefix in enumerate(self.prefixes):
            if prefix and not name.startswith(prefix):
                continue
            shape = self.pair.shape(name[len(prefix):])
            return _resize(shape, self._deep) if k > 0 else shape
        raise KeyError(name)

    # the parameter helpers are the Cell's, over this model's names and shapes
    param_shapes = Cell.param_shapes
    init_params = Cell.init_params
    _check_sizes = Cell._check_sizes

    @property
    def step(self):
        """There is no one-step Function: say how to compile the model instead."""
        raise AttributeError(f"{self.name} is a sequence model, not a cell: compile it with "
                             f"model.compile() (its .pair is the paired one-step cell)")

    def compile(self, optimize: bool = True, backend: str = "numpy") -> "BidirectionalProgram":
        """The model as standalone code: forward, backward (backprop through both
        directions and every layer), source and save."""
        if backend != "numpy":
            from .interop import compile_backend
            return compile_backend(self, backend, optimize)
        from .codegen import compile as compile_cell
        return BidirectionalProgram(self, compile_cell(self.pair, optimize=optimize))

    def __repr__(self) -> str:
        return (f"<Bidirectional {self.name}: {self.layers} layer(s) of {self.cell.name}, "
                f"inputs {list(self.inputs)}, outputs {list(self.outputs)}, {len(self.params)} params>")


def bidirectional(cell: Cell, layers: int = 1, name: str | None = None) -> Bidirectional:
    """A bidirectional model of a cell (see `Bidirectional`); `layers` deep."""
    return Bidirectional(cell, layers, name)


def _deep_sizes(cell: Cell) -> dict:
    """For layers after the first: the input size symbol -> 2 x the output size (the
    first axis: channels, for feature maps; the other axes must agree)."""
    if len(cell.inputs) != 1 or len(cell.outputs) != 1:
        raise SpecError(f"a deep bidirectional model needs a cell with one input and one "
                        f"output; {cell.name} has inputs {list(cell.inputs)} and outputs "
                        f"{list(cell.outputs)}")
    (dim, *rest), (out, *out_rest) = cell.shape(cell.inputs[0]), cell.shape(cell.outputs[0])
    dim = sympy.sympify(dim)
    if not dim.is_Symbol or dim in sympy.sympify(out).free_symbols or tuple(rest) != tuple(out_rest):
        raise SpecError(f"a deep bidirectional {cell.name} feeds {show((2 * out, *out_rest))} to "
                        f"its input {show((dim, *rest))}; the input's first size must be a size "
                        f"of its own and the others the output's")
    return {dim: sympy.expand(2 * out)}


# ---------------------------------------------------------------------------------------
# The bidirectional program


HEADER = '''\
"""{name}: a bidirectional model, forward and backward, generated by graphlstm.

Per layer, a forward-time copy of {cell} (fwd.) reads x[t] and a reverse-time copy (rev.)
reads x[T-1-t]; both run in one loop as the paired step below (kept in its own
namespace), and the outputs are joined per step: ys[o][t] = [fwd o at t, rev o at t].
Layer k+1 reads layer k's joined outputs. Standalone: needs only NumPy; time-major.

    ys, state_T = forward(params, xs, state0=None)
    grads = backward(params, xs, state0, dys, dstate_T=None)
"""
import numpy as np


def _paired_step():
'''

WRAPPER = '''
    return forward, backward


_pair_forward, _pair_backward = _paired_step()
LAYERS = {layers}
MODEL_INPUTS = {inputs}
MODEL_OUTPUTS = {outputs}
MODEL_STATES = {states}
MODEL_PARAMS = {params}
PAIR_KEYS = {pair_keys}
JOIN_AXES = {axes}   # the axis each output's directions are joined along (channels)


def forward(params, xs, state0=None):
    """Run {name} over a sequence: (ys, state_T); ys[o][t] = [fwd o at t, rev o at t]."""
    params, xs, state0 = _model_args(params, xs, state0)
    state_T = {{}}
    for layer in LAYERS:
        pair_ys, pair_state = _pair_forward(_part(params, layer), _pair_xs(xs), _part(state0, layer))
        state_T.update({{layer + k: v for k, v in pair_state.items()}})
        ys = _join(pair_ys)
        xs = {{MODEL_INPUTS[0]: ys[MODEL_OUTPUTS[0]]}}
    return ys, state_T


def backward(params, xs, state0, dys, dstate_T=None):
    """Backprop through both directions and every layer: the gradient of
    sum(ys * dys) + sum(state_T * dstate_T) for every parameter, input and initial state."""
    params, xs, state0 = _model_args(params, xs, state0)
    dys = _model_dys(dys)
    if dstate_T is not None:
        dstate_T = _mapping("dstate_T", dstate_T, MODEL_STATES)
    layer_xs = []
    for layer in LAYERS:
        layer_xs.append(xs)
        pair_ys, _ = _pair_forward(_part(params, layer), _pair_xs(xs), _part(state0, layer))
        xs = {{MODEL_INPUTS[0]: _join(pair_ys)[MODEL_OUTPUTS[0]]}}
    grads = {{}}
    for layer, xs in reversed(list(zip(LAYERS, layer_xs))):
        g = _pair_backward(_part(params, layer), _pair_xs(xs), _part(state0, layer), _split(dys),
                           _part(dstate_T, layer))
        grads.update({{layer + k: g[k] for k in PAIR_KEYS}})
        dxs = {{i: g["fwd." + i] + g["rev." + i][::-1] for i in MODEL_INPUTS}}
        dys = {{MODEL_OUTPUTS[0]: dxs[MODEL_INPUTS[0]]}}
    grads.update(dxs)
    return grads


def _model_args(params, xs, state0):
    """Check the model's mappings (the paired step checks every array)."""
    params = _mapping("params", params, MODEL_PARAMS)
    if isinstance(xs, np.ndarray) and len(MODEL_INPUTS) == 1:
        xs = {{MODEL_INPUTS[0]: xs}}
    xs = _mapping("xs", xs, MODEL_INPUTS)
    if state0 is not None:
        state0 = _mapping("state0", state0, MODEL_STATES)
    return params, xs, state0


def _model_dys(dys):
    dys = _mapping("dys", dys, MODEL_OUTPUTS)
    for o, d in dys.items():
        axis = JOIN_AXES[o]
        if not isinstance(d, np.ndarray) or d.ndim != 2 - axis or d.shape[axis] % 2:
            expected = "[T, B, 2 * size" + ", ..." * (-1 - axis) + "]"
            raise ValueError(f"dys[{{o!r}}] must be an array {{expected}} (fwd and rev halves), "
                             f"got {{getattr(d, 'shape', type(d).__name__)}}")
    return dys


def _part(mapping, layer):
    """One layer's entries without the layer prefix (None stays None)."""
    if mapping is None:
        return None
    return {{k[len(layer):]: v for k, v in mapping.items() if k.startswith(layer)}}


def _pair_xs(xs):
    """The forward copy reads x[t]; the reverse copy x[T-1-t]."""
    out = {{"fwd." + k: v for k, v in xs.items()}}
    out.update({{"rev." + k: v[::-1] for k, v in xs.items()}})
    return out


def _join(pair_ys):
    """[fwd o at t, rev o at t]: the reverse copy's outputs put back in time order."""
    return {{o: np.concatenate((pair_ys["fwd." + o], pair_ys["rev." + o][::-1]), axis=JOIN_AXES[o])
            for o in MODEL_OUTPUTS}}


def _split(dys):
    """The cotangents of the joined outputs, as the paired step's (reverse half reversed)."""
    out = {{}}
    for o, d in dys.items():
        fwd, rev = np.split(d, 2, axis=JOIN_AXES[o])
        out["fwd." + o] = fwd
        out["rev." + o] = rev[::-1]
    return out
'''


def _tuple_text(names) -> str:
    return "(" + "".join(f'"{n}", ' for n in names).rstrip(" ") + ")"


def source(model: Bidirectional, pair_source: str) -> str:
    """The standalone module of a bidirectional model: the paired step's generated module,
    indented into a function so that its names (forward, backward, ...) stay its own, then
    the model's forward and backward over layers and directions."""
    head = HEADER.format(name=model.name, cell=model.cell.name)
    tail = WRAPPER.format(
        name=model.name, layers=_tuple_text(model.prefixes), inputs=_tuple_text(model.inputs),
        outputs=_tuple_text(model.outputs), states=_tuple_text(model.states),
        params=_tuple_text(model.params), pair_keys=_tuple_text(model.pair.params + model.pair.states),
        axes=join_axes(model))
    from .codegen.runtime import MAPPING     # the one `_mapping` check every module shares
    return head + textwrap.indent(pair_source.rstrip() + "\n", "    ") + tail + MAPPING


def join_axes(model: Bidirectional) -> dict[str, int]:
    """Output name -> the axis its two directions are concatenated along: the first axis
    of its per-example shape (-1 for vectors, -3 for [channels, height, width] maps)."""
    return {o: -len(model.cell.shape(o)) for o in model.outputs}


class BidirectionalProgram:
    """A compiled bidirectional model: `forward`, `backward`, `source`, `save`, like
    `gl.Program`. The source holds the paired cell's generated module and the wrapper,
    so it is standalone (NumPy only) and `save` writes an importable module."""

    def __init__(self, model: Bidirectional, pair_program) -> None:
        self.model, self.cell, self.pair_program = model, model, pair_program
        self.optimize = pair_program.optimize
        self.source = source(model, pair_program.source)
        digest = hashlib.sha1(self.source.encode()).hexdigest()[:12]
        self.filename = f"<graphlstm {model.name} {digest}>"
        linecache.cache[self.filename] = (len(self.source), None,
                                          self.source.splitlines(True), self.filename)
        self.module = types.ModuleType(f"graphlstm_generated_{model.name}")
        self.module.__file__ = self.filename
        exec(compile(self.source, self.filename, "exec"), self.module.__dict__)  # our own code

    def forward(self, params, xs, state0=None):
        """`(ys, state_T)`: both directions over `xs` ([T, B, size]), outputs joined."""
        return self.module.forward(params, xs, state0)

    def backward(self, params, xs, state0, dys, dstate_T=None):
        """Gradients of `sum(ys * dys) + sum(state_T * dstate_T)` for every parameter,
        input and initial state, through both directions and every layer."""
        return self.module.backward(params, xs, state0, dys, dstate_T)

    def save(self, path) -> Path:
        """Write the standalone module (NumPy only) to `path`."""
        path = Path(path)
        path.write_text(self.source, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"<BidirectionalProgram {self.model.name}, {len(self.source.splitlines())} lines>"
