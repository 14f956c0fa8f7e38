"""The torch backend: a cell as the source of a standalone PyTorch `nn.Module`.

    prog = gl.compile(cell, backend="torch")
    model = prog.module(params)            # an instance holding the weights (or prog.module_class)
    ys, state_T = model(xs, state0=None)   # dicts of tensors, time-major like the NumPy code
    prog.save("lstm_torch.py")             # imports torch only

The forward runs the step over time in torch ops, one statement per equation with the
equation above it as a comment; PyTorch's autograd does the backward, so there is no
backward code. Parameters are `nn.Parameter`s under the cell's names (a stacked cell's
`l1.W_f` lives in a submodule `l1`, so state_dict keys are the graphlstm names). Nothing
names a device: new tensors take the inputs' dtype and device, so the module runs on CPU,
CUDA or `meta` alike. With `optimize`, the graph passes run first and everything that
reads no state is computed for all steps at once before the loop (one GEMM over [T, B]).
"""
from __future__ import annotations

import builtins
import hashlib
import linecache
import types
import weakref
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
import sympy

from .. import ops
from ..ir import Function, Node, Op
from ..shapes import read_sizes, show
from .naming import RESERVED, Namer, identifier
from ..nonlin import U
from .printer import ATOM, MUL, Printer, print_nonlinearity
from .runtime import MAPPING

I1, I2, I3 = "    ", "        ", "            "
TORCH_LOCALS = frozenset({"torch", "nn", "math", "self", "xs", "state0", "ys", "state_T",
                          "T", "B", "t", "dtype", "device"})
CLASS_ATTRS = frozenset({"sizes", "INPUTS", "STATES", "OUTPUTS", "PARAMS", "SIZES",
                         "reset_parameters", "layers"})


class TorchPrinter(Printer):
    """Elementwise formulas as torch code: `torch.sigmoid`, `torch.relu`, `torch.tanh`."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        name = fqn.split(".")[-1]
        if fqn.startswith("numpy."):
            return f"math.{name}" if name in ("pi", "e") else f"torch.{name}"
        return fqn

    def _print_sigmoid(self, expr) -> str:
        return f"torch.sigmoid({self._print(expr.args[0])})"

    def _print_softplus(self, expr) -> str:
        self.helpers.add("_softplus")
        return f"_softplus({self._print(expr.args[0])})"

    def _print_hard_sigmoid(self, expr) -> str:
        return f"torch.clamp({self._print(expr.args[0] / 6 + sympy.Rational(1, 2))}, 0, 1)"

    def _print_Heaviside(self, expr) -> str:
        arg = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sympy.Rational(1, 2)
        return f"torch.heaviside({arg}, torch.full_like({arg}, {self._print(h0)}))"

    def _print_Max(self, expr) -> str:
        return self._extreme(expr.args, "torch.maximum", "min")

    def _print_Min(self, expr) -> str:
        return self._extreme(expr.args, "torch.minimum", "max")

    def _extreme(self, args, fn: str, bound: str) -> str:
        """max(u, 0) -> torch.relu(u) (PyTorch's derivative at 0 is 0, as ours);
        max(u, c) -> torch.clamp(u, min=c); otherwise torch.maximum."""
        args = sorted(args, key=lambda a: a.is_number)
        out = self._print(args[0])
        for a in args[1:]:
            if a == 0 and bound == "min":
                out = f"torch.relu({out})"
            elif a.is_number:
                out = f"torch.clamp({out}, {bound}={self._print(a)})"
            else:
                out = f"{fn}({out}, {self._print(a)})"
        return out

    def _print_sign(self, expr) -> str:
        return f"torch.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr) -> str:
        return f"torch.abs({self._print(expr.args[0])})"

    def _print_erf(self, expr) -> str:
        return f"torch.erf({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sympy.Rational(1, 2):
            return f"torch.sqrt({self._print(base)})"
        if exp == -sympy.Rational(1, 2):
            return f"torch.rsqrt({self._print(base)})"
        return super()._print_Pow(expr, rational)


HELPERS = {
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) without overflow (as np.logaddexp(x, 0))."""
    return torch.logaddexp(x, torch.zeros_like(x))
''',
}

VALIDATION = MAPPING + '''

def _check(what, value, shape, expected):
    """A tensor of the given shape, or ValueError naming it and the shape expected."""
    if not torch.is_tensor(value):
        raise ValueError(f"{what} must be a tensor of shape {expected}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(value.shape)}; expected {expected} = {tuple(shape)}")
    return value


def _stack(steps, shape, dtype, device):
    """The per-step outputs as one [T, B, ...] tensor (empty when T = 0)."""
    return torch.stack(steps) if steps else torch.zeros(shape, dtype=dtype, device=device)
'''


# ---------------------------------------------------------------------------------------
# Expression templates: operands arrive as (text, precedence); each returns the same.


def _p(operand: tuple[str, int], min_prec: int) -> str:
    text, prec = operand
    return text if prec >= min_prec else f"({text})"


def _axis(node: Node, w: "StepWriter", axis: int) -> int:
    return axis - len(w.fn.shapes[node])


def _concat(node, args, w):
    parts = ", ".join(text for text, _ in args)
    return f"torch.cat(({parts}), dim={_axis(node, w, node.arg)})", ATOM


def _slice(node, args, w):
    axis, lo, hi = node.arg
    index = ["...", f"{'' if lo == 0 else w.dim(lo)}:{w.dim(hi)}"]
    index += [":"] * (len(w.fn.shapes[node]) - 1 - axis)
    return f"{_p(args[0], ATOM)}[{', '.join(index)}]", ATOM


def _matmul(node, args, w):
    matrix, vector = args
    if len(w.fn.shapes[node.src[0]]) == 4:
        return _conv(node, args, w)
    return f"{_p(vector, MUL)} @ {_p(matrix, ATOM)}{'' if node.arg else '.T'}", MUL


def _conv(node, args, w):
    """A 4-D parameter left of @: a same-padded 2-D convolution (cross-correlation, as
    PyTorch's conv2d; the transpose flag is its adjoint). All steps at once fold T into
    the batch and back."""
    matrix, vector = args
    kh, kw = w.fn.shapes[node.src[0]][2:]
    padding = f"({w.dim(sympy.floor(sympy.sympify(kh) / 2))}, {w.dim(sympy.floor(sympy.sympify(kw) / 2))})"
    fn = "nn.functional.conv_transpose2d" if node.arg else "nn.functional.conv2d"
    if w.lead < 2:
        return f"{fn}({vector[0]}, {matrix[0]}, padding={padding})", ATOM
    return (f"{fn}({_p(vector, ATOM)}.flatten(0, 1), {matrix[0]}, padding={padding})"
            f".unflatten(0, (T, B))", ATOM)


def _nonlin(node, args, w):
    text, prec = print_nonlinearity(w.printer, node.arg, *args[0])
    if "np." in text:
        raise NotImplementedError(f"the torch backend cannot print the nonlinearity {node.arg!r} ({text})")
    return text, prec


def _bcast(node, args, w):
    a = _p(args[0], ATOM)
    return f"{a}.expand({', '.join(w.lead_dims())}, *{a}.shape)", ATOM


def _zeros(node, args, w):
    shape, batched = node.arg
    dims = (w.lead_dims() if batched else []) + [w.dim(d) for d in shape]
    shape = f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"
    return f"torch.zeros({shape}, dtype=dtype, device=device)", ATOM


def _outer(node, args, w):
    a, b = args
    if node.arg:
        raise NotImplementedError("the torch backend writes forward code only (autograd does "
                                  "the backward); a convolution's weight gradient has no template")
    if not node.src[0].batched:
        return f"torch.outer({a[0]}, {b[0]})", ATOM
    if w.lead == 1:
        return f"{_p(a, ATOM)}.T @ {_p(b, ATOM)}", MUL
    return f"{_p(a, ATOM)}.flatten(0, 1).T @ {_p(b, ATOM)}.flatten(0, 1)", MUL


def _bsum(node, args, w):
    return f"{_p(args[0], ATOM)}.sum(dim={'0' if w.lead == 1 else '(0, 1)'})", ATOM


TORCH_CODE = {
    Op.CONCAT: _concat, Op.SLICE: _slice, Op.MATMUL: _matmul, Op.NONLIN: _nonlin,
    Op.GATE: lambda node, args, w: (f"{_p(args[0], MUL)} * {_p(args[1], MUL + 1)}", MUL),
    Op.SUM: ops.CODE[Op.SUM],   # `a + b - c` reads the same for tensors Op.BCAST: _bcast, Op.ZEROS: _zeros, Op.OUTER: _outer, Op.BSUM: _bsum,
}

_ROLE = {Op.CONCAT: "cat", Op.MATMUL: "mm", Op.NONLIN: "act", Op.GATE: "gated", Op.SUM: "sum",
         Op.SLICE: "part", Op.OUTER: "outer", Op.BSUM: "bsum", Op.BCAST: "bcast", Op.ZEROS: "zeros"}


# ---------------------------------------------------------------------------------------
# The forward of one step function


def state_dependent(nodes) -> set[Node]:
    """The nodes that read a state, directly or through other nodes."""
    out: set[Node] = set()
    for node in nodes:
        if node.op is Op.STATE or any(s in out for s in node.src):
            out.add(node)
    return out


class StepWriter:
    """Statements for one step Function: names values, inlines single-use ones, and
    writes the equation above the statements that compute it."""

    def __init__(self, cell, fn: Function, namer: Namer, dims: dict[str, str]) -> None:
        self.cell, self.fn, self.namer, self.dims = cell, fn, namer, dims
        self.printer = TorchPrinter()
        self.env: dict[Node, tuple[str, int]] = {}
        self.pending: dict[Node, tuple[str, int]] = {}
        self.lead = 1
        self.roots = {node: name for name, node in fn.equations}
        self.texts = cell.step.meta.get("text", {})

    def dim(self, expr) -> str:
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return str(int(expr))
        return str(expr.xreplace({s: sympy.Symbol(self.dims[str(s)]) for s in expr.free_symbols}))

    def lead_dims(self) -> list[str]:
        return ["T", "B"][2 - self.lead:]

    def expr(self, node: Node) -> tuple[str, int]:
        if node in self.env:
            return self.env[node]
        if node in self.pending:
            return self.pending.pop(node)
        if node.op not in TORCH_CODE:
            raise NotImplementedError(f"the torch backend has no template for '{node.op.value}'")
        return TORCH_CODE[node.op](node, [self.expr(s) for s in node.src], self)

    def base_name(self, node: Node) -> str:
        if node in self.roots:
            return self.roots[node]
        if node.op is Op.CONCAT and all(s in self.env for s in node.src):
            names = [self.env[s][0] for s in node.src]
            if all(n.isidentifier() and len(n) <= 12 for n in names):
                return "_".join(names)
        return f"{self.fn.labels.get(node, 'v')}_{_ROLE[node.op]}"

    def block(self, nodes: list[Node], indent: str, lead: int, keep: set[Node]) -> list[str]:
        """Statements computing `nodes` in order: equations and values used twice or in
        `keep` get names, the rest is written inline into its one user."""
        self.lead = lead
        members = set(nodes)
        uses = Counter(s for n in nodes for s in n.src if s in members)
        keep = set(keep) | {n.src[0] for n in nodes if n.op is Op.NONLIN and _reads_twice(n.arg)}
        lines: list[str] = []
        label = None
        for node in nodes:
            text = self.expr(node)
            if uses[node] == 1 and node not in keep and node not in self.roots:
                self.pending[node] = text
                continue
            new_label = self.fn.labels.get(node)
            if new_label is not None and new_label != label:
                note = self.equation_text(new_label)
                if note:
                    lines += ([""] if lines else []) + [f"{indent}# {note}"]
                label = new_label
            ident = self.namer.name(self.base_name(node))
            lines.append(f"{indent}{ident} = {text[0]}")
            self.env[node] = (ident, ATOM)
        return lines

    def equation_text(self, label: str) -> str | None:
        """The equation a label names, as written (None for labels of fused values)."""
        if label in self.texts:
            return self.texts[label]
        from ..lang import format_expr
        step = self.cell.step
        names = {leaf: leaf.arg for leaf in step.leaves}
        names.update({n: e for e, n in step.equations})
        for name, node in step.equations:
            if name == label:
                return f"{name} = {format_expr(step, node, names)}"
        return None


def _reads_twice(fn) -> bool:
    """Whether a formula reads its variable more than once (swish: u * sigmoid(u)); its
    operand is then named, not written out twice."""
    return fn.expr.count(U) > 1


class ModuleWriter:
    """Writes the nn.Module class of one cell (`forward` over time, parameters, sizes)."""

    def __init__(self, cell, step: Function, optimize: bool, class_name: str | None = None) -> None:
        self.cell, self.step, self.optimize = cell, step, optimize
        self.class_name = class_name or class_name_of(cell.name)
        self.namer = Namer(RESERVED | TORCH_LOCALS)
        self.dims = {s: self.namer.name(s) for s in cell.sizes}
        self.attrs = attribute_paths(cell.params)

    # -- the class -----------------------------------------------------------------------
    def class_source(self) -> str:
        c = self.cell
        tup = lambda names: "(" + "".join(f'"{n}", ' for n in names).rstrip(" ") + ")"  # noqa: E731
        lines = [f"class {self.class_name}(nn.Module):",
                 f'{I1}"""{c.name}: inputs {", ".join(c.inputs)}; states {", ".join(c.states) or "none"}; '
                 f'outputs {", ".join(c.outputs)}."""', "",
                 f"{I1}INPUTS = {tup(c.inputs)}", f"{I1}STATES = {tup(c.states)}",
                 f"{I1}OUTPUTS = {tup(c.outputs)}", f"{I1}PARAMS = {tup(c.params)}",
                 f"{I1}SIZES = {tup(c.sizes)}", ""]
        lines += self.init() + [""] + RESET + [""] + self.forward()
        return "\n".join(lines) + "\n"

    def init(self) -> list[str]:
        c = self.cell
        args = "".join(f"{self.dims[s]}, " for s in c.sizes)
        lines = [f"{I1}def __init__(self, {args}dtype=None, device=None):",
                 f'{I2}"""Parameters of the given sizes, initialised as PyTorch initialises RNNs."""',
                 f"{I2}super().__init__()",
                 f"{I2}self.sizes = {{" + ", ".join(f'"{s}": {self.dims[s]}' for s in c.sizes) + "}"]
        made: set[str] = set()
        for p in c.params:
            path = self.attrs[p]
            for k in range(1, len(path.split("."))):
                sub = ".".join(path.split(".")[:k])
                if sub not in made:
                    lines.append(f"{I2}self.{sub} = nn.Module()")
                    made.add(sub)
            shape = self.shape_text(c.shape(p))
            lines.append(f"{I2}self.{path} = nn.Parameter(torch.empty({shape}, dtype=dtype, device=device))")
        return lines + [f"{I2}self.reset_parameters()"]

    def dim(self, expr) -> str:
        """A size expression in the generated names (`T` and `B` stay as they are)."""
        expr = sympy.sympify(expr)
        return str(expr.xreplace({s: sympy.Symbol(self.dims.get(str(s), str(s))) for s in expr.free_symbols}))

    # -- forward -------------------------------------------------------------------------
    def regions(self) -> tuple[list[Node], list[Node], list[Node]]:
        """(parameters only, all steps at once, time loop) for the non-leaf nodes."""
        nodes = [n for n in self.step.nodes() if not n.op.is_leaf or n.op is Op.ZEROS]
        stateful = state_dependent(self.step.nodes())
        const = [n for n in nodes if not n.batched]
        pre = [n for n in nodes if n.batched and n not in stateful] if self.optimize else []
        taken = set(const) | set(pre)
        return const, pre, [n for n in nodes if n not in taken]

    def forward(self) -> list[str]:
        c, fn = self.cell, self.step
        w = StepWriter(c, fn, self.namer, self.dims)
        results = dict(fn.results)
        outs = [results[o] for o in c.outputs]
        upds = [results[s + "'"] for s in c.states]
        lines = [f"{I1}def forward(self, xs, state0=None):",
                 f'{I2}"""Run {c.name} over a sequence: (ys, state_T), dicts of [T, B, size] and '
                 f'[B, size] tensors."""']
        lines += self.prologue(w)
        const, pre, loop = self.regions()
        users = _users(fn)
        later = set(pre) | set(loop) | set(outs) | set(upds)
        keep_const = {n for n in const if any(u in later for u in users.get(n, ())) or n in later}
        if const:
            lines += [f"{I2}# Once per call: parameters only"] + w.block(const, I2, 0, keep_const)
        keep_pre = {n for n in pre if any(u in set(loop) for u in users.get(n, ())) or n in set(outs + upds)}
        if pre:
            for x in fn.leaves_of(Op.INPUT):
                w.env[x] = (self.seq[x], ATOM)
            lines += [f"{I2}# All steps at once: inputs and parameters, no state"]
            lines += w.block(pre, I2, 2, keep_pre)
        for node in keep_pre:
            w.env[node] = (f"{w.env[node][0]}[t]", ATOM)
        return lines + self.loop(w, loop, outs, upds)

    def prologue(self, w: StepWriter) -> list[str]:
        """Read and check the arguments, sizes and parameters."""
        c, fn = self.cell, self.step
        first = c.inputs[0]
        lines = [f"{I2}if torch.is_tensor(xs) and len(self.INPUTS) == 1:",
                 f"{I3}xs = {{self.INPUTS[0]: xs}}",
                 f'{I2}xs = _mapping("xs", xs, self.INPUTS)',
                 f'{I2}T, B = xs["{first}"].shape[:2]',
                 f'{I2}dtype, device = xs["{first}"].dtype, xs["{first}"].device']
        lines += [f'{I2}{self.dims[s]} = self.sizes["{s}"]' for s in c.sizes]
        self.seq = {x: self.namer.name(x.arg + "_seq") for x in fn.leaves_of(Op.INPUT)}
        for x in fn.leaves_of(Op.INPUT):
            shape = ("T", "B") + c.shape(x.arg)
            lines.append(f'{I2}{self.seq[x]} = _check("xs[{x.arg!r}]", xs["{x.arg}"], '
                         f'{self.shape_text(shape)}, "{show(shape)}")')
        lines += [f"{I2}if state0 is None:", f"{I3}state0 = {{"]
        lines += [f'{I3}    "{s}": {self.zeros(("B",) + c.shape(s))},' for s in c.states]
        lines += [f"{I3}}}", f'{I2}state0 = _mapping("state0", state0, self.STATES)']
        for s in c.states:
            shape = ("B",) + c.shape(s)
            lines.append(f'{I2}_check("state0[{s!r}]", state0["{s}"], {self.shape_text(shape)}, '
                         f'"{show(shape)}")')
        used = {s for n in fn.nodes() for s in n.src} | set(dict(fn.results).values())
        for p in fn.leaves_of(Op.PARAM):
            w.env[p] = (self.namer.name(p.arg), ATOM)
            if p in used:
                lines.append(f"{I2}{w.env[p][0]} = self.{self.attrs[p.arg]}")
        return lines

    def shape_text(self, shape) -> str:
        dims = [self.dim(d) for d in shape]
        return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"

    def zeros(self, shape) -> str:
        return f"torch.zeros({self.shape_text(shape)}, dtype=dtype, device=device)"

    def loop(self, w: StepWriter, loop: list[Node], outs: list[Node], upds: list[Node]) -> list[str]:
        c, fn = self.cell, self.step
        states = fn.leaves_of(Op.STATE)
        lines = []
        for s in states:
            w.env[s] = (self.namer.name(s.arg), ATOM)
        if states:
            reads = ", ".join('state0["' + s.arg + '"]' for s in states)
            lines.append(f"{I2}{', '.join(w.env[s][0] for s in states)} = {reads}")
        ys = {o: self.namer.name(f"ys_{o}") for o in c.outputs}
        lines += [f"{I2}{ys[o]} = []" for o in c.outputs]
        lines.append(f"{I2}for t in range(T):")
        body = []
        for x in fn.leaves_of(Op.INPUT):
            w.env[x] = (self.namer.name(x.arg), ATOM)
            body.append(f"{I3}{w.env[x][0]} = {self.seq[x]}[t]")
        body += w.block(loop, I3, 1, keep=set(outs) | set(upds))
        body += [f"{I3}{ys[o]}.append({w.expr(n)[0]})" for o, n in zip(c.outputs, outs)]
        if states:
            body.append(f"{I3}{', '.join(w.env[s][0] for s in states)} = "
                        f"{', '.join(w.expr(n)[0] for n in upds)}")
        lines += body
        shapes = {o: self.shape_text(("T", "B") + c.shape(o)) for o in c.outputs}
        ys_text = ", ".join(f'"{o}": _stack({ys[o]}, {shapes[o]}, dtype, device)' for o in c.outputs)
        st_text = ", ".join(f'"{s.arg}": {w.env[s][0]}' for s in states)
        return lines + [f"{I2}return {{{ys_text}}}, {{{st_text}}}"]


RESET = [f"{I1}def reset_parameters(self):",
         f'{I2}"""Uniform in +-1/sqrt(fan-in), as PyTorch initialises its RNNs."""',
         f"{I2}for p in self.parameters():",
         f"{I3}bound = 1 / math.sqrt(max(p.shape[-1], 1))",
         f"{I3}nn.init.uniform_(p, -bound, bound)"]


def _users(fn: Function) -> dict[Node, list[Node]]:
    table: dict[Node, list[Node]] = {}
    for node in fn.nodes():
        for s in node.src:
            table.setdefault(s, []).append(node)
    return table


def class_name_of(name: str) -> str:
    """`gru_torch` -> `GruTorch`: the nn.Module class of a cell."""
    parts = [p for p in identifier(name).split("_") if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts)
    return out if out and out[0].isalpha() else "Cell" + out


def attribute_paths(params) -> dict[str, str]:
    """Parameter name -> attribute path on the module: `l1.W_f` is `self.l1.W_f`, so the
    state_dict key is the name itself; a segment that would shadow an nn.Module attribute
    (`forward`, `training`, ...) gets a trailing underscore."""
    try:
        import torch
        taken = set(dir(torch.nn.Module())) | CLASS_ATTRS
    except ImportError:   # the source can be written without torch
        taken = set(CLASS_ATTRS)
    out = {}
    for p in params:
        segs = []
        for seg in p.split("."):
            seg = identifier(seg)
            segs.append(seg + "_" if seg in taken or seg.startswith("_") else seg)
        out[p] = ".".join(segs)
    return out


# ---------------------------------------------------------------------------------------
# Whole modules


def header(cell, model, class_name: str) -> str:
    """The module docstring: the step's equations (of `cell`) and how to run `model`."""
    lines = [f'"""{model.name} as a PyTorch module, generated by graphlstm.', "", "One step:"]
    w = StepWriter(cell, cell.step, Namer(), {})
    lines += [f"    {w.equation_text(name)}" for name, _ in cell.step.equations]
    inputs = ", ".join(f'xs["{i}"] is {show(("T", "B") + model.shape(i))}' for i in model.inputs)
    lines += ["", f"Standalone: needs only PyTorch. Time-major: {inputs}; state0[name] is [B, size].",
              "The forward runs in torch ops over time and autograd does the backward; new",
              "tensors take the inputs' dtype and device.", "",
              f"    model = {class_name}({', '.join(f'{identifier(s)}=...' for s in model.sizes)})",
              "    ys, state_T = model(xs, state0=None)   # dicts of tensors", '"""']
    return "\n".join(lines)


def cell_source(cell, optimize: bool) -> tuple[str, str]:
    """(source, class name) of a cell's module."""
    from ..passes import optimize_step
    step = optimize_step(cell.step) if optimize else cell.step
    writer = ModuleWriter(cell, step, optimize)
    body = writer.class_source()
    return _module(header(cell, cell, writer.class_name), [body]), writer.class_name


def _module(head: str, bodies: list[str]) -> str:
    helpers = [HELPERS[h].strip() + "\n" for h in sorted(_helpers_used(bodies))]
    parts = [head, "import math", "", "import torch", "from torch import nn", "", ""]
    parts += ["\n\n".join(bodies), "", "# Helpers", ""]
    parts += ["\n\n".join(helpers + [VALIDATION.strip() + "\n"])]
    return "\n".join(parts)


def _helpers_used(bodies: list[str]) -> set[str]:
    return {h for h in HELPERS if any(f"{h}(" in b for b in bodies)}


# ---------------------------------------------------------------------------------------
# Bidirectional models


BIDIRECTIONAL = '''
class {name}({pair}):
    """{model}: per layer, a forward-time copy (fwd.) on x[t] and a reverse-time copy (rev.)
    on x[T-1-t] ({pair}, both in one loop); outputs joined per step as [fwd, rev]."""

    LAYERS = {layers}
    MODEL_INPUTS = {inputs}
    MODEL_OUTPUTS = {outputs}
    JOIN_AXES = {axes}

    def __init__(self, {args}dtype=None, device=None):
        """Parameters of the given sizes; layers after the first read 2x the output size."""
{init}

    def layers(self):
        """(prefix, paired module) per layer; the state_dict keys are the model's names."""
        return [(prefix, getattr(self, prefix[:-1]) if prefix else self) for prefix in self.LAYERS]

    def forward(self, xs, state0=None):
        """Run {model} over a sequence: (ys, state_T); ys[o][t] = [fwd o at t, rev o at t]."""
        if torch.is_tensor(xs) and len(self.MODEL_INPUTS) == 1:
            xs = {{self.MODEL_INPUTS[0]: xs}}
        state_T = {{}}
        for prefix, layer in self.layers():
            pair_xs = {{**{{"fwd." + k: v for k, v in xs.items()}},
                       **{{"rev." + k: torch.flip(v, (0,)) for k, v in xs.items()}}}}
            part = None if state0 is None else {{k[len(prefix):]: v for k, v in state0.items()
                                                if k.startswith(prefix)}}
            pair_ys, pair_state = {pair}.forward(layer, pair_xs, part)
            state_T.update({{prefix + k: v for k, v in pair_state.items()}})
            ys = {{o: torch.cat((pair_ys["fwd." + o], torch.flip(pair_ys["rev." + o], (0,))),
                            dim=self.JOIN_AXES[o])
                  for o in self.MODEL_OUTPUTS}}
            xs = {{self.MODEL_INPUTS[0]: ys[self.MODEL_OUTPUTS[0]]}}
        return ys, state_T
'''


def bidirectional_source(model, optimize: bool) -> tuple[str, str]:
    """(source, class name) of a bidirectional model: the paired cell's class, and a
    subclass that reverses time, joins outputs and runs the layers."""
    from ..compose import join_axes
    from ..passes import optimize_step
    pair = model.pair
    step = optimize_step(pair.step) if optimize else pair.step
    writer = ModuleWriter(pair, step, optimize)
    name = class_name_of(model.name)
    body = BIDIRECTIONAL.format(name=name, pair=writer.class_name, model=model.name,
                                layers=_tup(model.prefixes), inputs=_tup(model.inputs),
                                outputs=_tup(model.outputs), axes=join_axes(model),
                                args="".join(f"{writer.dims[s]}, " for s in model.sizes),
                                init=_bidirectional_init(model, writer))
    return _module(header(pair, model, name), [writer.class_source(), body.strip() + "\n"]), name


def _bidirectional_init(model, writer: ModuleWriter) -> str:
    sizes = ", ".join(writer.dims[s] for s in model.sizes)
    deep = ", ".join(writer.dim(model._deep.get(sympy.Symbol(s, integer=True, positive=True),
                                                 sympy.Symbol(s, integer=True, positive=True)))
                     for s in model.sizes)
    if model.layers == 1:
        return f"{I2}super().__init__({sizes}, dtype=dtype, device=device)"
    lines = [f"{I2}nn.Module.__init__(self)",
             f"{I2}self.sizes = {{" + ", ".join(f'"{s}": {writer.dims[s]}' for s in model.sizes) + "}"]
    for k, prefix in enumerate(model.prefixes):
        args = sizes if k == 0 else deep
        lines.append(f"{I2}self.{prefix[:-1]} = {writer.class_name}({args}, dtype=dtype, device=device)")
    return "\n".join(lines)


def _tup(names) -> str:
    return "(" + "".join(f'"{n}", ' for n in names).rstrip(" ") + ")"


# ---------------------------------------------------------------------------------------
# The compiled object


class TorchProgram:
    """A cell (or bidirectional model) as PyTorch code: `.source`, `.module_class`,
    `.module(params)` for an instance holding given weights, `.save(path)`; and, so it
    can stand in for a NumPy `Program` in tests, `.forward` / `.backward` on NumPy arrays
    (backward by autograd)."""

    def __init__(self, model, source: str, class_name: str, optimize: bool) -> None:
        self.cell, self.source, self.class_name, self.optimize = model, source, class_name, optimize
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        self.filename = f"<graphlstm torch {model.name} {digest}>"
        linecache.cache[self.filename] = (len(source), None, source.splitlines(True), self.filename)
        self.namespace = types.ModuleType(f"graphlstm_torch_{identifier(model.name)}")
        self.namespace.__file__ = self.filename
        exec(builtins.compile(source, self.filename, "exec"), self.namespace.__dict__)  # our own code
        self.module_class = getattr(self.namespace, class_name)
        self.keys = attribute_paths(model.params)

    def module(self, params: Mapping[str, np.ndarray] | None = None, sizes: Mapping[str, int] | None = None,
               device=None, dtype=None):
        """An instance of the module class: with `params` (NumPy arrays or tensors) it holds
        them (sizes and dtype read off them); otherwise give `sizes`."""
        import torch
        sizes = {**(infer_sizes(self.cell, params) if params else {}), **dict(sizes or {})}
        missing = [s for s in self.cell.sizes if s not in sizes]
        if missing:
            raise ValueError(f"sizes {missing} are not readable from the parameters; pass sizes=")
        if dtype is None and params:
            dtype = torch.as_tensor(np.asarray(next(iter(params.values())))).dtype
        module = self.module_class(*[int(sizes[s]) for s in self.cell.sizes], dtype=dtype, device=device)
        if params:
            state = {self.keys[k]: torch.as_tensor(np.asarray(v)) for k, v in params.items()}
            module.load_state_dict(state)
        return module

    def forward(self, params, xs, state0=None):
        """`(ys, state_T)` as NumPy arrays, computed by the torch module."""
        import torch
        module = self.module(params)
        with torch.no_grad():
            ys, st = module(_tensors(xs, self.cell.inputs), _tensors(state0))
        return _arrays(ys), _arrays(st)

    def backward(self, params, xs, state0, dys, dstate_T=None):
        """The gradients of `sum(ys * dys) + sum(state_T * dstate_T)` by autograd, under
        the names `Program.backward` uses (every parameter, input and initial state)."""
        import torch
        module = self.module(params)
        xs_t = {k: v.requires_grad_() for k, v in _tensors(xs, self.cell.inputs).items()}
        first = xs_t[self.cell.inputs[0]]
        s0 = _tensors(state0) if state0 is not None else {
            s: torch.zeros(_concrete(self.cell.shape(s), module.sizes, first.shape[1:2]), dtype=first.dtype)
            for s in self.cell.states}
        s0 = {k: v.requires_grad_() for k, v in s0.items()}
        ys, st = module(xs_t, s0)
        loss = sum((ys[o] * torch.as_tensor(dys[o])).sum() for o in self.cell.outputs)
        if dstate_T is not None:
            loss = loss + sum((st[s] * torch.as_tensor(dstate_T[s])).sum() for s in self.cell.states)
        named = dict(module.named_parameters())
        leaves = {**{p: named[self.keys[p]] for p in self.cell.params}, **xs_t, **s0}
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return {k: (g if g is not None else torch.zeros_like(v)).detach().cpu().numpy()
                for (k, v), g in zip(leaves.items(), grads)}

    def save(self, path) -> Path:
        """Write the standalone module (imports torch only)."""
        path = Path(path)
        path.write_text(self.source, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"<TorchProgram {self.cell.name} ({self.class_name}), {len(self.source.splitlines())} lines>"


def infer_sizes(model, params: Mapping) -> dict[str, int]:
    """Read size symbols off parameter shapes (see `shapes.read_sizes`)."""
    dims = [pair for name, value in params.items() if name in model.params
            for pair in zip(model.shape(name), np.shape(value))]
    names = (*model.params, *getattr(model, "inputs", ()), *getattr(model, "states", ()))
    return read_sizes(dims, [model.shape(name) for name in names])


def _concrete(shape, sizes, lead=()) -> tuple[int, ...]:
    subs = {sympy.Symbol(k, integer=True, positive=True): v for k, v in sizes.items()}
    return tuple(lead) + tuple(int(sympy.sympify(d).xreplace(subs)) for d in shape)


def _tensors(values, names=None):
    import torch
    if values is None:
        return None
    if not isinstance(values, Mapping):
        values = {names[0]: values}
    return {k: torch.as_tensor(np.asarray(v)).clone() for k, v in values.items()}


def _arrays(values) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in values.items()}


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compile_torch(model, optimize: bool = True) -> TorchProgram:
    """The torch program of a cell or a bidirectional model (cached per model)."""
    from ..cell import Cell
    from ..compose import Bidirectional
    per_model = _CACHE.setdefault(model, {})
    if optimize not in per_model:
        if isinstance(model, Bidirectional):
            source, name = bidirectional_source(model, optimize)
        elif isinstance(model, Cell):
            source, name = cell_source(model, optimize)
        else:
            raise TypeError(f"expected a Cell or a bidirectional model, got {type(model).__name__}")
        per_model[optimize] = TorchProgram(model, source, name, optimize)
    return per_model[optimize]
