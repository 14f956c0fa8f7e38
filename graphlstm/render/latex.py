"""A cell's equations in LaTeX, as the papers write them.

    f_{t} &= \\sigma\\left(W_{f} \\left[x_{t}, h_{t-1}\\right] + b_{f}\\right) \\\\
    c_{t} &= f_{t} \\odot c_{t-1} + i_{t} \\odot g_{t}

States read `s_{t-1}` and their updates `s_{t}`; inputs and intermediate values carry `t`;
parameters carry none. Names, nonlinearities and the affine maps constants make go through
SymPy's LaTeX printer (`h_tilde` -> `\\tilde{h}`, `1 - z` -> `1 - z_{t}`, a custom
formula -> its `\\frac`); the four primitives are joined around them here: `[a, b]`,
`W v`, `a \\odot b`, `a + b`.
"""
from __future__ import annotations

import re

import sympy

from .. import ops
from ..ir import Function, Node, Op
from ..nonlin import U, Nonlinearity

PLACEHOLDER = sympy.Symbol("PLACEHOLDER")
THROUGH_SYMPY = ("sigmoid", "tanh", "relu")   # short forms: σ(·), tanh(·), max(0, ·)
ATOM, PRODUCT, SUM = 3, 2, 1                   # precedence of what an expression is


def symbol(name: str, time: str | None = None) -> str:
    """A name through SymPy's printer, with a time subscript joined to any it has:
    `W_f` -> `W_{f}`, (`h_tilde`, t) -> `\\tilde{h}_{t}`, (`h_1`, t-1) -> `h_{1,t-1}`;
    a stacked cell's layer prefix is a superscript, `l2.W_f` -> `W_{f}^{(l2)}`."""
    layer, _, name = name.rpartition(".")
    if layer:   # a stacked cell's `l1.W_f` -> W_{f}^{(l1)}
        return symbol(name, time) + f"^{{({layer})}}"
    accent = re.fullmatch(r"(.+)_(tilde|hat|bar|dot|vec)", name)
    text = sympy.latex(sympy.Symbol(accent.group(1) + accent.group(2) if accent else name))
    if time is None:
        return text
    match = re.search(r"_\{([^{}]*)\}$", text)
    if match:
        return text[:match.start()] + "_{" + match.group(1) + "," + time + "}"
    return f"{text}_{{{time}}}"


class _Printer:
    """Prints the nodes of one step, stopping at named values."""

    def __init__(self, fn: Function) -> None:
        self.fn = fn
        self.states = {leaf.arg for leaf in fn.leaves_of(Op.STATE)}
        self.named: dict[Node, str] = {}
        for name, node in fn.equations:
            self.named.setdefault(node, self.lhs(name))

    def lhs(self, name: str) -> str:
        """The symbol of an equation's value: `c'` -> `c_{t}`, `f` -> `f_{t}`."""
        if name.endswith("'") and name[:-1] in self.states:
            return symbol(name[:-1], "t")
        return symbol(name, "t")

    def leaf(self, node: Node) -> str:
        if node.op is Op.STATE:
            return symbol(node.arg, "t-1")
        if node.op is Op.INPUT:
            return symbol(node.arg, "t")
        return symbol(node.arg)

    def expr(self, node: Node, top: bool = False) -> tuple[str, int]:
        """LaTeX of a node and its precedence."""
        if not top and node in self.named:
            return self.named[node], ATOM
        if node.op in (Op.INPUT, Op.STATE, Op.PARAM):
            return self.leaf(node), ATOM
        printer = getattr(self, f"_{node.op.name.lower()}", None)
        if printer is None:
            raise ValueError(f"gl.latex writes cells; a {node.op.value} node has no LaTeX form")
        return printer(node)

    def wrapped(self, node: Node, least: int) -> str:
        text, prec = self.expr(node)
        return text if prec >= least else rf"\left({text}\right)"

    def _concat(self, node: Node) -> tuple[str, int]:
        return r"\left[" + ", ".join(self.expr(s)[0] for s in node.src) + r"\right]", ATOM

    def _matmul(self, node: Node) -> tuple[str, int]:
        """`W v`, `W^{\top} v`, or `W \ast v` for a kernel (a convolution)."""
        matrix = self.wrapped(node.src[0], ATOM) + (r"^{\top}" if node.arg else "")
        conv = r" \ast" if len(self.fn.shapes[node.src[0]]) > 2 else ""
        return f"{matrix}{conv} {self.wrapped(node.src[1], ATOM)}", PRODUCT

    def _gate(self, node: Node) -> tuple[str, int]:
        """`a \\odot b`; a sum or a matrix product inside is parenthesised."""
        left, right = (self.expr(s)[0] if s.op is Op.GATE and s not in self.named
                       else self.wrapped(s, ATOM) for s in node.src)
        return rf"{left} \odot {right}", PRODUCT

    def _sum(self, node: Node) -> tuple[str, int]:
        text = self.expr(node.src[0])[0]
        for term in node.src[1:]:
            if ops.is_map(term, -U) and term not in self.named:
                text += " - " + self.wrapped(term.src[0], PRODUCT)
            else:
                text += " + " + self.expr(term)[0]
        return text, SUM

    def _nonlin(self, node: Node) -> tuple[str, int]:
        fn: Nonlinearity = node.arg
        if fn.name == "identity":
            return self.expr(node.src[0])
        if fn.name and fn.name not in THROUGH_SYMPY:
            return rf"\operatorname{{{_escape(fn.name)}}}\left({self.expr(node.src[0])[0]}\right)", ATOM
        return self._through_sympy(fn, node.src[0])

    def _through_sympy(self, fn: Nonlinearity, operand: Node) -> tuple[str, int]:
        """σ, tanh, max(0, ·) and affine maps (`1 - z`, `\\frac{v}{2}`) by SymPy's
        printer, with the operand's LaTeX put in place of the variable."""
        expr = fn.expr.xreplace({U: PLACEHOLDER})
        text = sympy.latex(expr)
        simple = expr.is_Function or isinstance(expr, (sympy.Max, sympy.Min))
        least = SUM if simple else (ATOM if expr.is_Pow else PRODUCT)
        inner = self.expr(operand)[0] if simple else self.wrapped(operand, least)
        prec = ATOM if simple else (SUM if expr.is_Add else PRODUCT)
        return text.replace(sympy.latex(PLACEHOLDER), inner), prec

    def _bcast(self, node: Node) -> tuple[str, int]:
        return self.expr(node.src[0])


def _escape(name: str) -> str:
    return name.replace("_", r"\_")


def _custom_lines(fn: Function) -> list[str]:
    """One definition per custom nonlinearity: `\\operatorname{mysoft}(u) &= \\frac{u}{|u| + 1}`."""
    lines = []
    for custom in fn.meta.get("custom", ()):
        lines.append(rf"\operatorname{{{_escape(custom.name)}}}(u) &= {sympy.latex(custom.expr)}")
    return lines


def latex(cell) -> str:
    """The cell's equations as a LaTeX `aligned` environment (no surrounding `$$`), with
    the definitions of any custom nonlinearities after them."""
    from ..autodiff import as_function
    fn = as_function(cell)
    printer = _Printer(fn)
    lines = [f"{printer.lhs(name)} &= {printer.expr(node, top=True)[0]}" for name, node in fn.equations]
    lines += _outputs(fn, printer)
    lines += _custom_lines(fn)
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def _outputs(fn: Function, printer: _Printer) -> list[str]:
    """Outputs that are not already an equation under their own name (`output y = h'`)."""
    written = {name for name, _ in fn.equations}
    lines = []
    for name, node in fn.results:
        if name.endswith("'") or name in written or (name + "'") in written:
            continue
        lines.append(f"{symbol(name, 't')} &= {printer.expr(node)[0]}")
    return lines
