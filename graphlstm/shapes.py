"""Symbolic shapes: sizes are SymPy symbols and sums of them, unified across the cell.

A parameter whose shape is not declared starts with unknown dimensions (`?W_f.0`). Every
primitive adds equations between dimensions (`W_f @ [x, h]` says W_f has `n_in + n`
columns); `Unifier.equate` solves each as soon as it is made, so a conflict is reported at
the expression that causes it. Distinct size symbols are never unified: `n_in = n` is an
error, not a discovery.
"""
from __future__ import annotations

import sympy

from .errors import SpecError


def size_symbol(name: str) -> sympy.Symbol:
    """The SymPy symbol of a declared size (`n`, `n_in`)."""
    return sympy.Symbol(name, integer=True, positive=True)


class Unifier:
    """Solves linear equations between dimensions for the unknown ones, incrementally."""

    def __init__(self) -> None:
        self.solution: dict[sympy.Symbol, sympy.Expr] = {}
        self.unknowns: dict[sympy.Symbol, str] = {}   # unknown -> what it is the size of
        self._count = 0

    def fresh(self, owner: str) -> sympy.Symbol:
        """A new unknown dimension of `owner` (a parameter name)."""
        self._count += 1
        unknown = sympy.Symbol(f"?{owner}.{self._count}", integer=True)
        self.unknowns[unknown] = owner
        return unknown

    def resolve(self, dim: sympy.Expr) -> sympy.Expr:
        return sympy.expand(sympy.sympify(dim).xreplace(self.solution))

    def equate(self, a: sympy.Expr, b: sympy.Expr, what: str) -> None:
        """Make `a == b`, or raise SpecError saying what clashed (`what` describes where)."""
        diff = self.resolve(a) - self.resolve(b)
        if diff == 0:
            return
        open_ = sorted((s for s in diff.free_symbols if s in self.unknowns), key=str)
        for unknown in open_:
            coeff = diff.coeff(unknown)
            rest = diff - coeff * unknown
            if coeff.is_Integer and coeff != 0 and unknown not in rest.free_symbols:
                value = sympy.expand(-rest / coeff)
                if _integral(value):              # `[a, a]` of 2n columns: a has n rows
                    self._bind(unknown, value)
                    return
        raise SpecError(f"size mismatch in {what}: {show(self.resolve(a))} vs "
                        f"{show(self.resolve(b))}")

    def _bind(self, unknown: sympy.Symbol, value: sympy.Expr) -> None:
        self.solution = {k: sympy.expand(v.xreplace({unknown: value}))
                         for k, v in self.solution.items()}
        self.solution[unknown] = value

    def unresolved(self, shape: tuple) -> list[sympy.Symbol]:
        """The unknown dimensions left in a shape after solving."""
        out = []
        for dim in shape:
            out += sorted((s for s in self.resolve(dim).free_symbols if s in self.unknowns), key=str)
        return out


def _integral(expr: sympy.Expr) -> bool:
    """Whether a size expression has integer coefficients (n, not n/2)."""
    return all(c.is_Integer for c in sympy.Poly(expr, *expr.free_symbols).coeffs()) \
        if expr.free_symbols else expr.is_Integer


def read_sizes(dims, shapes) -> dict[str, int]:
    """The size symbols read off (symbolic dimension, actual length) pairs: a dimension with
    one unknown symbol gives it (`n_in + n` once n is known, `2*n`), as does one whose unknowns
    occur only as their sum in all of `shapes` (see `only_as_sum`)."""
    sizes: dict[str, int] = {}
    for _ in range(3):
        for dim, actual in dims:
            expr = sympy.sympify(dim).xreplace({size_symbol(k): sympy.Integer(v)
                                                for k, v in sizes.items()})
            free = sorted(expr.free_symbols, key=str)
            if len(free) == 1:
                coeff = expr.coeff(free[0])
                value = sympy.sympify((actual - (expr - coeff * free[0])) / coeff) if coeff else None
                if value is not None and value.is_Integer:
                    sizes[str(free[0])] = int(value)
            elif free and all(expr.coeff(s) == 1 for s in free) and only_as_sum(free, shapes):
                sizes[str(free[0])] = int(actual - (expr - sum(free)))
                sizes.update({str(s): 0 for s in free[1:]})
    return sizes


def only_as_sum(sizes, shapes) -> bool:
    """Whether the sizes occur only as their sum in every one of `shapes` (`x[a + b]`, no `a`
    alone): computing with the sum alone is then exact, so when only the sum can be read off
    the arrays, the first size may carry it and the others be 0."""
    first, *others = [sympy.sympify(s) for s in sizes]
    total = sympy.Dummy("total")
    for shape in shapes:
        for dim in shape:
            dim = sympy.expand(sympy.sympify(dim).subs(first, total - sum(others)))
            if dim.free_symbols & set(others):
                return False
    return True


def show(dim_or_shape) -> str:
    """A size or shape as a user writes it: `n_in + n`, `[n, n_in + n]`."""
    if isinstance(dim_or_shape, tuple):
        return "[" + ", ".join(show(d) for d in dim_or_shape) + "]"
    if isinstance(dim_or_shape, str):       # "T", "B": shown as written, never sympified
        return dim_or_shape
    expr = sympy.sympify(dim_or_shape)
    if expr.is_Add:
        ints = [t for t in expr.args if t.is_Integer]
        syms = sorted((t for t in expr.args if not t.is_Integer), key=lambda t: str(t))
        return " + ".join([str(t) for t in syms] + [str(t) for t in ints])
    return "?" if any(str(s).startswith("?") for s in expr.free_symbols) else str(expr)
