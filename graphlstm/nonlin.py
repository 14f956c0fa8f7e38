"""Nonlinearities as data: a table of SymPy formulas, and their derivatives by `sympy.diff`.

Each `Nonlinearity` is a formula in one real variable `u`. Where the derivative is cheaper
written through the output `y = f(u)` (tanh: `1 - y**2`, sigmoid: `y*(1 - y)`), the table
says so, and the backward code reuses the stored output instead of recomputing. User
formulas from `nonlinearity NAME(v) = EXPR` are parsed by walking Python's `ast` with a
whitelist (see `formula_from_ast`), never by `eval` or `sympify` of the raw text.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable

import sympy

from .errors import SpecError

U = sympy.Symbol("u", real=True)


class sigmoid(sympy.Function):
    """The logistic function, kept as one symbol so printers can emit a stable form."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg: sympy.Expr, **kwargs) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-arg))

    def _latex(self, printer) -> str:
        return rf"\sigma\left({printer._print(self.args[0])}\right)"


class softplus(sympy.Function):
    """log(1 + exp(u)), kept as one symbol so printers can emit `logaddexp`."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg: sympy.Expr, **kwargs) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(arg))


class hard_sigmoid(sympy.Function):
    """clip(u/6 + 1/2, 0, 1), as PyTorch's `hardsigmoid`."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x = self.args[0]
        return (sympy.Heaviside(x + 3, 0) - sympy.Heaviside(x - 3, 1)) / 6


@dataclass(frozen=True)
class Nonlinearity:
    """An elementwise map `u -> expr`.

    `name` is empty for the affine maps that constants make (`1 - z`, `0.5 * v`, `-v`);
    `grad_of_output`, when given, is the derivative written in the output (as `U`).
    """

    name: str
    expr: sympy.Expr
    grad_of_output: sympy.Expr | None = None

    @property
    def is_affine(self) -> bool:
        return sympy.diff(self.expr, U, 2) == 0 and not self.name

    @property
    def is_identity(self) -> bool:
        return self.expr == U

    def __call__(self, arg: sympy.Expr) -> sympy.Expr:
        return self.expr.xreplace({U: arg})

    def __repr__(self) -> str:
        return self.name or str(self.expr)


def _builtin(name: str, expr: sympy.Expr, grad_of_output: sympy.Expr | None = None):
    return Nonlinearity(name, expr, grad_of_output)


BUILTINS: dict[str, Nonlinearity] = {
    "sigmoid": _builtin("sigmoid", sigmoid(U), U * (1 - U)),
    "tanh": _builtin("tanh", sympy.tanh(U), 1 - U**2),
    "relu": _builtin("relu", sympy.Max(U, 0), sympy.Heaviside(U, 0)),
    "identity": _builtin("identity", U),
    "softplus": _builtin("softplus", softplus(U)),
    "softsign": _builtin("softsign", U / (1 + sympy.Abs(U)), (1 - sympy.Abs(U)) ** 2),
    "hard_sigmoid": _builtin("hard_sigmoid", hard_sigmoid(U)),
}


def affine(expr: sympy.Expr) -> Nonlinearity:
    """The elementwise map a constant makes with a vector, e.g. `1 - u`."""
    return Nonlinearity("", sympy.expand(expr))


def derivative(fn: Nonlinearity) -> tuple[Nonlinearity, bool]:
    """The derivative of `fn` as a nonlinearity, and whether it reads the output (True)
    or the input (False) of `fn`."""
    if fn.grad_of_output is not None:
        return Nonlinearity(f"d_{fn.name}", fn.grad_of_output), True
    grad = sympy.diff(fn.expr, U)
    grad = _tidy(grad.replace(sympy.DiracDelta, lambda *args: sympy.S.Zero))
    name = f"d_{fn.name}" if fn.name else ""
    return Nonlinearity(name, grad), False


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """Light simplification that keeps the stable forms (sigmoid, softplus) intact.
    (The derivative of a step such as `sign` is taken as 0 where it exists, as relu's is.)"""
    return sympy.factor_terms(expr) if expr.is_Add else expr


_W = sympy.Wild("w")


def stabilise(expr: sympy.Expr) -> sympy.Expr:
    """Rewrite forms that overflow into their stable named equivalents:
    `log(1 + exp(w))` -> `softplus(w)`, `1/(1 + exp(-w))` -> `sigmoid(w)`, and
    `log(sigmoid(w))` -> `-softplus(-w)` (sigmoid rounds to 0 below w = -37 in float64)."""
    expr = expr.replace(sympy.log(1 + sympy.exp(_W)), softplus(_W))
    expr = expr.replace(1 / (1 + sympy.exp(-_W)), sigmoid(_W))
    expr = expr.replace(1 / (1 + sympy.exp(_W)), sigmoid(-_W))
    expr = expr.replace(sympy.log(sigmoid(_W)), -softplus(-_W))
    return expr


# ---------------------------------------------------------------------------------------
# User formulas: `ast` -> SymPy through a whitelist

_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "abs": sympy.Abs,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "atan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "sign": sympy.sign,
    "max": sympy.Max, "min": sympy.Min,
}
_CONSTANTS = {"pi": sympy.pi, "e": sympy.E}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a**b}


class FormulaError(SpecError):
    """A formula error; `node` is the ast node at fault."""

    def __init__(self, message: str, node: ast.AST) -> None:
        super().__init__(message)
        self.node = node


def formula_from_ast(tree: ast.expr, var: str, known: dict[str, Nonlinearity]) -> sympy.Expr:
    """Translate the body of `nonlinearity NAME(var) = BODY` into a SymPy expression in `U`.

    Only numbers, the one variable, `+ - * / **`, the whitelisted functions, `pi`, `e`,
    the built-in nonlinearities and earlier user ones are accepted.
    """

    def walk(node: ast.AST) -> sympy.Expr:
        return _checked(read(node), node)

    def read(node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _constant(node)
        if isinstance(node, ast.Name):
            if node.id == var:
                return U
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise FormulaError(f"a nonlinearity is elementwise in one variable ({var}); "
                               f"'{node.id}' is a second one", node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and right.is_number and abs(right) > MAX_EXPONENT:
                raise FormulaError(f"an exponent is at most {MAX_EXPONENT} in size", node.right)
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call(node)
        raise FormulaError(f"{_describe(node)} is not allowed in a nonlinearity formula", node)

    def call(node: ast.Call) -> sympy.Expr:
        name = node.func.id
        if node.keywords or not node.args:
            raise FormulaError(f"'{name}' takes positional arguments only", node)
        args = [walk(a) for a in node.args]
        if name in known and len(args) == 1:
            return known[name](args[0])
        if name in _FUNCTIONS:
            if name not in ("max", "min") and len(args) != 1:
                raise FormulaError(f"'{name}' takes one argument", node)
            return _FUNCTIONS[name](*args)
        raise FormulaError(f"unknown function '{name}' (allowed: "
                           f"{', '.join(sorted(set(_FUNCTIONS) | set(known)))})", node)

    expr = walk(tree)
    if not expr.free_symbols <= {U}:
        raise FormulaError("a nonlinearity must depend on its variable only", tree)
    _check_real_and_finite(expr, tree)
    return stabilise(expr)


MAX_EXPONENT = 64
MAX_CONSTANT = 1e300


def _checked(value: sympy.Expr, node: ast.AST) -> sympy.Expr:
    """A sub-formula; when it is a number (`exp(5)`, `9**9`), it must be a real float of at
    most 1e300 in size. Checked bottom-up, so no constant ever grows past that."""
    if value.free_symbols:
        return value
    number = sympy.N(value, 17)
    if number.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise FormulaError("this is infinite or undefined (a division by zero?)", node)
    if not number.is_real:
        raise FormulaError("this is complex; a nonlinearity is real", node)
    if abs(number) > MAX_CONSTANT:
        raise FormulaError("this constant is too large (at most 1e300)", node)
    return value


def _constant(node: ast.Constant) -> sympy.Expr:
    """A number of a formula, refused when it is not a modest finite float."""
    try:
        ok = abs(float(node.value)) <= MAX_CONSTANT
    except OverflowError:
        ok = False
    if not ok:
        raise FormulaError("the constant is too large (at most 1e300)", node)
    if isinstance(node.value, float):
        return sympy.nsimplify(node.value)
    return sympy.Integer(node.value)


def _check_real_and_finite(expr: sympy.Expr, tree: ast.AST) -> None:
    """Refuse formulas that SymPy finds infinite, undefined or complex (`u/0`, `sqrt(-1)*u`)
    and numbers beyond float range: the generated code would compute NaN or fail."""
    if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise FormulaError("the formula is infinite or undefined (a division by zero?)", tree)
    if expr.has(sympy.I):
        raise FormulaError("the formula is complex; a nonlinearity is real", tree)
    for number in expr.atoms(sympy.Number):
        if abs(number) > MAX_CONSTANT:
            raise FormulaError("a constant of the formula is too large (at most 1e300)", tree)


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: "attribute access", ast.Subscript: "a subscript",
             ast.Lambda: "a lambda", ast.IfExp: "a conditional", ast.Compare: "a comparison",
             ast.BoolOp: "a boolean operator", ast.List: "a list", ast.Tuple: "a tuple",
             ast.Call: "a call", ast.Starred: "unpacking", ast.NamedExpr: "an assignment",
             ast.Dict: "a dict", ast.Set: "a set"}
    if isinstance(node, ast.Constant):
        return "a string" if isinstance(node.value, (str, bytes)) else f"the constant {node.value!r}"
    if isinstance(node, ast.BinOp):
        return f"the operator {type(node.op).__name__}"
    return names.get(type(node), type(node).__name__.lower())


def numpy_function(fn: Nonlinearity) -> Callable:
    """A NumPy callable for `fn` made by `sympy.lambdify`, independent of our code printer;
    the reference interpreter uses it as an oracle."""
    modules = [{
        "sigmoid": lambda x: 1 / (1 + _np().exp(-x)),
        "softplus": lambda x: _np().logaddexp(0, x),
        "hard_sigmoid": lambda x: _np().clip(x / 6 + 0.5, 0, 1),
        "Heaviside": lambda x, h0=0.5: _np().heaviside(x, h0),
    }, "numpy"]
    return sympy.lambdify(U, fn.expr, modules=modules)


def _np():
    import numpy
    return numpy
