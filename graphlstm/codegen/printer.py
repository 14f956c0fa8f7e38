"""Printing nonlinearities as NumPy: a small subclass of SymPy's `NumPyPrinter`.

SymPy's default prints `1/(1 + exp(-x))` as `(1 + numpy.exp(-x))**(-1.0)`, which
overflows and reads badly; here `sigmoid` prints as the helper `_sigmoid` (overflow-free),
`softplus` as the helper `_softplus` (no overflow, no underflow), `Heaviside` as `np.heaviside`, `Max(u, 0)` as `np.maximum`,
and powers as a person writes them.

Numbers: with a `constant` callback (the NumPy code generator sets one) each number is
printed as the name of a 0-d array of the run's dtype (`one - g**2`), made once per call:
NumPy takes twice as long for `1 - g` as for `one - g` on a small array (a Python scalar is
converted at every call), and the dtype is kept either way. Without one they stay Python
scalars, which keep float32 float32 too. Exponents are always written as literals.
"""
from __future__ import annotations

from typing import Callable

import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import precedence

from ..nonlin import U, Nonlinearity

ATOM, POW, UNARY, MUL, ADD = 100, 14, 13, 12, 11


class Printer(NumPyPrinter):
    """NumPy code for elementwise formulas, `np.`-prefixed, with stable named functions."""

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": False, "inline": True,
                          "allow_unknown_functions": False})
        self.helpers: set[str] = set()
        self.constant: Callable[[sympy.Number], str] | None = None   # number -> its name

    def _number(self, expr, literal: str) -> str:
        return self.constant(expr) if self.constant is not None else literal

    def _print_Integer(self, expr) -> str:
        return self._number(expr, str(expr.p))

    def _print_Zero(self, expr) -> str:
        return self._number(expr, "0")

    def _print_Half(self, expr) -> str:
        return self._number(expr, "0.5")

    def _module_format(self, fqn: str, register: bool = True) -> str:
        return "np." + fqn.split(".")[-1] if fqn.startswith("numpy.") else fqn

    def _print_sigmoid(self, expr) -> str:
        self.helpers.add("_sigmoid")
        return f"_sigmoid({self._print(expr.args[0])}{self.half_arg()})"

    def half_arg(self) -> str:
        """`_sigmoid`'s second argument: the name of the constant 0.5, when numbers are named."""
        return f", {self.constant(sympy.S.Half)}" if self.constant is not None else ""

    def _print_softplus(self, expr) -> str:
        self.helpers.add("_softplus")
        return f"_softplus({self._print(expr.args[0])})"

    def _print_hard_sigmoid(self, expr) -> str:
        return f"np.clip({self.parenthesize(expr.args[0], precedence(sympy.Mul(2, U)))} / 6 + 0.5, 0, 1)"

    def _print_Heaviside(self, expr) -> str:
        h0 = expr.args[1] if len(expr.args) > 1 else sympy.Rational(1, 2)
        return f"np.heaviside({self._print(expr.args[0])}, {self._print(h0)})"

    def _print_Max(self, expr) -> str:
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr) -> str:
        return self._fold("np.minimum", expr.args)

    def _fold(self, fn: str, args) -> str:
        args = sorted(args, key=lambda a: a.is_number)   # the array first: np.maximum(u, 0)
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        return out

    def _print_sign(self, expr) -> str:
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr) -> str:
        return f"np.abs({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sympy.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        if exp == -sympy.Rational(1, 2):
            return f"1 / np.sqrt({self._print(base)})"
        if exp.is_Integer and exp < 0:
            inner = base if exp == -1 else base**(-exp)
            return f"1 / {self.parenthesize(inner, precedence(expr) + 1)}"
        constant, self.constant = self.constant, None          # exponents stay literals
        try:
            power = self.parenthesize(exp, precedence(expr) + 1)
        finally:
            self.constant = constant
        return f"{self.parenthesize(base, precedence(expr) + 1)}**{power}"

    def _print_Rational(self, expr) -> str:
        if expr.q == 1:
            return self._number(expr, str(expr.p))
        q = expr.q
        while q % 2 == 0:
            q //= 2
        while q % 5 == 0:
            q //= 5
        literal = repr(expr.p / expr.q) if q == 1 else f"{expr.p}/{expr.q}"
        return self._number(expr, literal)

    def _print_Float(self, expr) -> str:
        return self._number(expr, repr(float(expr)))


def print_nonlinearity(printer: Printer, fn: Nonlinearity, operand: str, operand_prec: int
                       ) -> tuple[str, int]:
    """`fn` applied to an operand expression, with the precedence of the result."""
    arg = operand if operand_prec >= ATOM else f"({operand})"
    expr = fn.expr.xreplace({U: sympy.Symbol(arg, real=True)})
    text = printer.doprint(expr)
    if arg != operand:
        text = text.replace(f"({arg})", arg)   # f((a + b)) -> f(a + b)
    prec = precedence(expr)
    if expr.is_Symbol or expr.is_Function or expr.is_Atom:
        return text, ATOM
    if expr.is_Pow:
        return text, POW if not text.startswith("1 /") else MUL
    if expr.is_Mul:
        return text, UNARY if text.startswith("-") and prec < 50 else MUL
    return text, ADD
