"""Elementwise formulas as ufunc calls that write into a given array, with no temporaries.

Inside the time loops, `d = dc + dh * o * (1 - y**2)` written as one expression makes four
new arrays every step (at the large benchmark size each is 128-256 KB, and glibc hands such
blocks back to the kernel and faults them in again). Written into `d` it makes none:

    square(y, d)                   # y**2
    subtract(one, d, d)            # 1 - y**2
    multiply(d, o, d)
    multiply(d, dh, d)
    add(d, dc, d)

Every call gets the array it writes as its last, positional argument, an update in place
is a call too (`add(d, dc, d)`, not `d += dc`), and NumPy's functions are imported by name
(`multiply`, not `np.multiply`): at small sizes a step is dozens of calls of ~0.2 us each,
and the `out=` keyword adds ~0.05 us to a call, Python's in-place operator ~0.06 us, the
attribute lookup ~0.015 us; together ~15% of an MGU's time at B=1, n=32. `call_into` and
`update` are the one place this style is written (NumPy 2.4 deprecates a positional output
for `maximum` and `minimum` only, which keep `out=`).

`formula_into` does this for a nonlinearity's SymPy formula, in the formula's own argument
order: the term holding `u` is built in the destination first (so the destination may be
`u`'s own array when `u` occurs once, see `in_place_safe`), every other compound term in a
scratch array the caller lends (`take`/`give`: arrays made once, before the loop). A
formula with a function NumPy has no `out` argument for here (softplus, hard_sigmoid, a
Piecewise) is not lowered: `formula_into` returns None and the caller writes it as an
expression.
"""
from __future__ import annotations

from typing import Callable

import sympy

from ..nonlin import U, sigmoid
from .naming import NUMPY_CALLS

#: SymPy function -> NumPy ufunc (every ufunc takes an output array).
UFUNCS: dict[type, str] = {
    sympy.tanh: "tanh", sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin",
    sympy.cos: "cos", sympy.tan: "tan", sympy.atan: "arctan", sympy.sinh: "sinh",
    sympy.cosh: "cosh", sympy.Abs: "absolute", sympy.sign: "sign",
}
#: Binary SymPy functions (two arguments) -> NumPy ufunc.
BINARY: dict[type, str] = {sympy.Max: "maximum", sympy.Min: "minimum",
                           sympy.Heaviside: "heaviside"}
#: In-place operator -> the ufunc that does it.
_IN_PLACE = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}


#: Functions whose output NumPy wants by keyword (a third positional argument to `maximum`
#: or `minimum` is deprecated: it reads like a third operand).
_OUT_BY_KEYWORD = frozenset({"maximum", "minimum"})


def call_into(fn: str, dest: str, *args: str) -> str:
    """`fn(args..., dest)`: a call writing its result into the existing array `dest`, given
    as the last positional argument (`multiply(a, b, d)` is `d[...] = a * b`, with no new
    array); `out=dest` where NumPy asks for the keyword. A NumPy function is called by its
    own name (see `NUMPY_CALLS`)."""
    assert fn.startswith("_") or fn in NUMPY_CALLS, fn
    out = f"out={dest}" if fn in _OUT_BY_KEYWORD else dest
    return f"{fn}({', '.join(args)}, {out})"


def update(dest: str, sign: str, b: str) -> str:
    """`dest += b` (or `-=`, `*=`, `/=`) as the ufunc call `add(dest, b, dest)`."""
    return call_into(_IN_PLACE[sign], dest, dest, b)


def in_place_safe(expr: sympy.Expr) -> bool:
    """Whether a formula may overwrite `u`'s own array: `u` occurs once, so `formula_into`
    reads it in the first call, before anything is written; a formula that is not lowered is
    an expression, evaluated whole before it is assigned."""
    return not lowerable(expr) or sum(1 for e in sympy.preorder_traversal(expr) if e == U) == 1


def lowerable(expr: sympy.Expr) -> bool:
    """Whether every part of the formula has a ufunc form that writes into a given array."""
    if expr == U or expr.is_Number:
        return True
    if not expr.free_symbols:                 # a constant written as a function (exp(2))
        return False
    if expr.is_Add or expr.is_Mul:
        return all(lowerable(a) for a in expr.args)
    if expr.is_Pow:
        return lowerable(expr.args[0]) and (expr.args[1].is_Number or lowerable(expr.args[1]))
    if type(expr) in UFUNCS or isinstance(expr, sigmoid):
        return lowerable(expr.args[0])
    if type(expr) in BINARY:
        return len(expr.args) == 2 and all(lowerable(a) for a in expr.args)
    return False


class _Lowering:
    """The calls that compute one formula; `u`: the code of the formula's variable."""

    def __init__(self, u: str, constant: Callable[[sympy.Number], str],
                 take: Callable[[], str], give: Callable[[str], None], helpers: set[str]):
        self.u, self.constant, self.take, self.give, self.helpers = u, constant, take, give, helpers
        self.lines: list[str] = []

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def atom(self, e: sympy.Expr) -> str | None:
        """The code of a value that needs no call: `u` or a number."""
        if e == U:
            return self.u
        if e.is_Number:
            return self.constant(e)
        return None

    def using(self, e: sympy.Expr, line: Callable[[str], str]) -> None:
        """Emit `line(code of e)`: an atom as itself, anything else computed first into a
        scratch array, which is given back once the line has read it."""
        text = self.atom(e)
        if text is not None:
            self.emit(line(text))
            return
        scratch = self.take()
        self.into(e, scratch)
        self.emit(line(scratch))
        self.give(scratch)

    def beside(self, a: str, e: sympy.Expr, dest: str, line: Callable[[str], str]) -> None:
        """Emit `line(code of e)` for a call that also reads the atom `a`: a compound `e` is
        computed into `dest` itself first (`1 - u` for `u * (1 - u)`: `subtract(one, u, d);
        multiply(u, d, d)`), with no scratch array, unless `a` is `dest`."""
        if self.atom(e) is None and a != dest:
            self.into(e, dest)
            self.emit(line(dest))
        else:
            self.using(e, line)

    def into(self, e: sympy.Expr, dest: str) -> None:
        """Compute `e` into the array `dest`."""
        text = self.atom(e)
        if text is not None:
            self.emit(f"copyto({dest}, {text})")
        elif e.is_Add:
            self.sum_into(e, dest)
        elif e.is_Mul:
            self.product_into(e, dest)
        elif e.is_Pow:
            self.power_into(e, dest)
        elif isinstance(e, sigmoid):
            self.helpers.add("_sigmoid")
            arg = self.arg_into(e.args[0], dest)
            self.emit(call_into("_sigmoid", dest, arg, self.constant(sympy.S.Half)))
        elif type(e) in UFUNCS:
            self.emit(call_into(UFUNCS[type(e)], dest, self.arg_into(e.args[0], dest)))
        else:                                            # Max, Min, Heaviside
            first, second = e.args if e.args[0].has(U) else e.args[::-1]
            if type(e) is sympy.Heaviside:
                first, second = e.args
            a = self.arg_into(first, dest)
            self.using(second, lambda b: call_into(BINARY[type(e)], dest, a, b))

    def arg_into(self, e: sympy.Expr, dest: str) -> str:
        """A function's argument: an atom as itself, else computed into `dest` (which the
        function then overwrites with its result)."""
        text = self.atom(e)
        if text is not None:
            return text
        self.into(e, dest)
        return dest

    def sum_into(self, e: sympy.Expr, dest: str) -> None:
        terms = [(-t, True) if t.could_extract_minus_sign() else (t, False)
                 for t in e.as_ordered_terms()]
        terms.sort(key=lambda t: not t[0].has(U))       # the term with u first (stable)
        (first, negated), rest = terms[0], terms[1:]
        a = self.atom(first)
        if a is not None:                                # `1 - u`: one call reads both
            second, neg2 = rest.pop(0)
            if negated and neg2:                         # -a - b = -(a + b)
                self.beside(a, second, dest, lambda b: call_into("add", dest, a, b))
                self.emit(call_into("negative", dest, dest))
            elif negated:                                # -a + b = b - a
                self.beside(a, second, dest, lambda b: call_into("subtract", dest, b, a))
            elif a == dest:                              # u is already where the result goes
                self.using(second, lambda b: update(dest, "-" if neg2 else "+", b))
            else:
                self.beside(a, second, dest,
                            lambda b: call_into("subtract" if neg2 else "add", dest, a, b))
        else:
            self.into(first, dest)
            if negated and rest and not rest[0][1]:      # `c - x`: x subtracted from c
                self.using(rest.pop(0)[0], lambda b: call_into("subtract", dest, b, dest))
            elif negated:
                self.emit(call_into("negative", dest, dest))
        for term, neg in rest:
            self.using(term, lambda b: update(dest, "-" if neg else "+", b))

    def product_into(self, e: sympy.Expr, dest: str) -> None:
        coeff, _ = e.as_coeff_Mul()
        if coeff == -1:                                  # -x: x, negated
            a = self.arg_into(-e, dest)
            self.emit(call_into("negative", dest, a))
            return
        rest = e / coeff
        factors = list(rest.as_ordered_factors() if rest.is_Mul else [rest])
        factors += [coeff] if coeff != 1 else []        # one number, multiplied last
        num = [f for f in factors if not _is_denominator(f)]
        den = [1 / f for f in factors if _is_denominator(f)]
        num.sort(key=lambda f: not f.has(U))
        first = num.pop(0) if num else sympy.S.One
        a = self.atom(first)
        if a is not None and (num or den):              # `u * v`, `u / v`: one call
            op, sign, second = ("multiply", "*", num.pop(0)) if num else ("divide", "/", den.pop(0))
            if a == dest:
                self.using(second, lambda b: update(dest, sign, b))
            else:
                self.beside(a, second, dest, lambda b: call_into(op, dest, a, b))
        else:
            self.into(first, dest)
        for factors_, sign in ((num, "*"), (den, "/")):
            for factor in factors_:
                self.using(factor, lambda b: update(dest, sign, b))

    def power_into(self, e: sympy.Expr, dest: str) -> None:
        base, exp = e.args
        if exp.is_Number and exp < 0:                    # 1 / base**k, as the printer writes it
            a = self.arg_into(base**(-exp), dest)
            self.emit(call_into("divide", dest, self.constant(sympy.S.One), a))
            return
        a = self.arg_into(base, dest)
        if exp == 2:
            self.emit(call_into("square", dest, a))
        elif exp == sympy.Rational(1, 2):
            self.emit(call_into("sqrt", dest, a))
        elif exp.is_Integer:
            self.emit(call_into("power", dest, a, str(int(exp))))
        else:
            self.using(exp, lambda b: call_into("power", dest, a, b))


def _is_denominator(factor: sympy.Expr) -> bool:
    return factor.is_Pow and factor.args[1].is_Number and factor.args[1] < 0


def formula_into(expr: sympy.Expr, u: str, dest: str, indent: str,
                 constant: Callable[[sympy.Number], str], take: Callable[[], str],
                 give: Callable[[str], None], helpers: set[str]) -> list[str] | None:
    """Statements computing `expr` (a formula in U, with `u` the code of U) into `dest`, or
    None when some part has no ufunc form. `dest` may be `u` only if `in_place_safe`."""
    if not lowerable(expr):
        return None
    low = _Lowering(u, constant, take, give, helpers)
    low.into(expr, dest)
    return [indent + line for line in low.lines]
