"""Formulas lowered to ufunc calls into given arrays (codegen/lower.py), against SymPy's lambdify."""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

from graphlstm.codegen.lower import formula_into, in_place_safe, lowerable
from graphlstm.codegen.naming import NUMPY_CALLS
from graphlstm.codegen.runtime import HELPERS
from graphlstm.nonlin import BUILTINS, U, Nonlinearity, derivative, numpy_function, sigmoid

FORMULAS = [
    1 - U**2, U * (1 - U), sigmoid(U), sympy.tanh(U), sympy.Max(U, 0), sympy.Min(0, U),
    sympy.Heaviside(U, 0), U / (1 + sympy.Abs(U)), (1 - sympy.Abs(U))**2, -U, 1 - U, U - 1,
    -U - 1, U * sigmoid(U), sympy.exp(-U**2 / 2), 1 / (1 + U**2), 2**U, U / 3 + sympy.S.Half,
    sympy.sqrt(U**2 + 1), 1 / sympy.sqrt(1 + U**2), -2 * U, 3 / U, -1 / U, U**3 - U,
    sympy.atan(U) * sympy.cos(U) - sympy.sin(U) / 4, sympy.exp(U) / (1 + sympy.exp(U)),
    sympy.sinh(U) + sympy.cosh(U) * sympy.sign(U), sympy.Max(U, U / 4), sympy.log(1 + U**2),
    (U + 1)**sympy.Rational(3, 2) - U * sympy.tanh(U)**2,
]
FORMULAS += [derivative(fn)[0].expr for fn in BUILTINS.values()]


def _run(expr, u: np.ndarray, in_place: bool) -> np.ndarray:
    """Execute the lowered statements on `u` (into `u` itself when in_place)."""
    constants: dict[str, np.ndarray] = {}

    def constant(value) -> str:
        name = f"c{len(constants)}"
        constants[name] = np.array(float(value), u.dtype)
        return name

    scratch: list[str] = []
    free: list[str] = []

    def take() -> str:
        if free:
            return free.pop()
        scratch.append(f"s{len(scratch)}")
        return scratch[-1]

    lines = formula_into(expr, "u", "u" if in_place else "dest", "", constant, take,
                         free.append, set())
    space: dict = {"np": np, "u": u.copy(), "dest": np.empty_like(u), **constants,
                   **{name: getattr(np, name) for name in NUMPY_CALLS}}
    space.update({name: np.empty_like(u) for name in scratch})
    exec(HELPERS["_sigmoid"], space)                       # noqa: S102 - our own helper
    for line in lines:
        exec(line, space)                                  # noqa: S102 - our own output
    return space["u" if in_place else "dest"]


@pytest.mark.parametrize("expr", [e for e in FORMULAS if lowerable(e)], ids=str)
def test_lowered_formula_matches_lambdify(expr):
    u = np.linspace(0.1, 2.5, 24).reshape(4, 6) * np.where(np.arange(24) % 3, 1, -1).reshape(4, 6)
    with np.errstate(all="ignore"):
        want = numpy_function(Nonlinearity("", expr))(u) * np.ones_like(u)
        got = _run(expr, u, in_place=False)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13, equal_nan=True)
        if in_place_safe(expr):
            np.testing.assert_allclose(_run(expr, u, in_place=True), want, rtol=1e-13,
                                       atol=1e-13, equal_nan=True)


def test_what_is_not_lowered():
    from graphlstm.nonlin import hard_sigmoid, softplus
    assert not lowerable(softplus(U)) and not lowerable(hard_sigmoid(U))
    assert not lowerable(U + sympy.exp(2)) and not lowerable(sympy.Max(U, 0, 1 - U))
    assert lowerable(sympy.tanh(U)) and in_place_safe(sympy.tanh(U))
    assert not in_place_safe(U * sigmoid(U)) and in_place_safe(softplus(U))


def test_no_temporaries_in_the_calls():
    """Every lowered statement is one call of a NumPy function (or the sigmoid helper) on
    names only, writing into its last argument: the destination or a scratch array."""
    call = re.compile(r"^(\w+)\((\w+, )*(out=)?(dest|s)\)$")
    for expr in FORMULAS:
        if lowerable(expr):
            lines = formula_into(expr, "u", "dest", "", lambda v: "k", lambda: "s",
                                 lambda name: None, set())
            for line in lines:
                if line.startswith("copyto("):                # copyto(destination, source)
                    assert re.match(r"^copyto\((dest|s), \w+\)$", line), line
                    continue
                match = call.match(line)
                assert match and match.group(1) in NUMPY_CALLS | {"_sigmoid"}, line
                keyword = match.group(1) in ("maximum", "minimum")    # NumPy 2.4 wants out=
                assert (match.group(3) is not None) == keyword, line


@pytest.mark.parametrize("expr", [U * (1 - U), U * sigmoid(U), 1 - U**2, U + sympy.tanh(U),
                                  -U - sympy.exp(U), U / (1 + U**2)], ids=str)
def test_a_term_beside_u_is_built_in_the_destination(expr):
    """`u * (1 - u)`: `subtract(one, u, dest); multiply(u, dest, dest)`, no scratch array
    (a scratch array per derivative is memory a backward chunk holds for every step)."""
    taken = []
    lines = formula_into(expr, "u", "dest", "", lambda v: "k", lambda: taken.append("s") or "s",
                         lambda name: None, set())
    assert lines and not taken, lines
