"""The Python builder: symbolic values with `@ * + -` overloaded, building a `Cell`.

    b = gl.CellBuilder("rnn")
    x, h = b.input("x", "n_in"), b.state("h", "n")
    b.update(h, gl.tanh(b.param("W") @ gl.concat(x, h) + b.param("b")))
    b.output(h.new)          # or b.output("h", value)
    cell = b.build()

Every operation unifies shapes as it is made (see `shapes.Unifier`), so a size conflict is
reported at the operation that causes it. The `.cell` language is a thin front end that
calls these same methods.
"""
from __future__ import annotations

import ast
from numbers import Real
from typing import TYPE_CHECKING, Sequence

import sympy

from . import ops
from .errors import SpecError
from .ir import Node, Op
from .nonlin import BUILTINS, U, Nonlinearity, affine, formula_from_ast, stabilise
from .shapes import Unifier, show, size_symbol

if TYPE_CHECKING:
    from .cell import Cell

Position = tuple[int, int] | None


class Value:
    """A symbolic value of a cell under construction; combine with `@ * + -`."""

    __array_priority__ = 1000   # so numpy scalars defer to our operators

    def __init__(self, builder: "CellBuilder", node: Node) -> None:
        self.builder, self.node = builder, node

    # -- the primitives -----------------------------------------------------------------
    def __matmul__(self, other: "Value") -> "Value":
        return self.builder._matmul(self, other)

    def __mul__(self, other) -> "Value":
        return self.builder._mul(self, other)

    __rmul__ = __mul__

    def __add__(self, other) -> "Value":
        return self.builder._add(self, other)

    __radd__ = __add__

    def __sub__(self, other) -> "Value":
        return self.builder._add(self, -other if isinstance(other, Real) else -_value(self.builder, other))

    def __rsub__(self, other) -> "Value":
        return self.builder._add(-self, other)

    def __neg__(self) -> "Value":
        return self.builder._affine(-U, self)

    def __pos__(self) -> "Value":
        return self

    def __truediv__(self, other) -> "Value":
        if not isinstance(other, Real) or isinstance(other, bool):
            raise SpecError("division is only by a constant (an elementwise gate is `*`)")
        if other == 0:
            raise SpecError("division by zero")
        return self.builder._affine(U / sympy.nsimplify(other), self)

    # -- information ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.builder.unifier.resolve(d) for d in self.builder._shapes[self.node])

    @property
    def new(self) -> "Value":
        """For a state: its update `s'` (once defined)."""
        return self.builder.new_state(self)

    def __repr__(self) -> str:
        return f"Value({self.node!r}, shape={show(self.shape)})"

    def __bool__(self):
        raise TypeError("a symbolic value has no truth value")


def _value(builder: "CellBuilder", x) -> Value:
    if isinstance(x, Value):
        if x.builder is not builder:
            raise SpecError("values from two different builders cannot be combined")
        return x
    raise SpecError(f"expected a vector expression, got {type(x).__name__} {x!r}")


def _number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


class CellBuilder:
    """Collects declarations and equations, checks them, and builds a `Cell`."""

    def __init__(self, name: str = "cell") -> None:
        self.name = name
        self.unifier = Unifier()
        self.position: Position = None       # where the current statement is (set by the parser)
        self._shapes: dict[Node, tuple] = {}
        self._sizes: list[str] = []
        self._inputs: dict[str, Node] = {}
        self._input_pos: dict[str, Position] = {}
        self._states: dict[str, Node] = {}
        self._state_pos: dict[str, Position] = {}
        self._params: dict[str, Node] = {}
        self._param_kind: dict[str, str] = {}
        self._param_pos: dict[str, Position] = {}
        self._declared: set[str] = set()
        self._named: dict[str, Node] = {}
        self._equations: list[tuple[str, Node]] = []
        self._updates: dict[str, Node] = {}
        self._outputs: list[tuple[str, Node]] = []
        self._labels: dict[Node, str] = {}
        self._pending: list[Node] = []
        self._positions: dict[str, Position] = {}
        self.texts: dict[str, str] = {}          # equation name -> its source line
        self.nonlinearities: dict[str, Nonlinearity] = dict(BUILTINS)
        self._custom: list[str] = []

    # -- declarations ---------------------------------------------------------------------
    def size(self, spec) -> sympy.Expr:
        """A size from an int, a symbol name, a sum such as "n_in + n", or a SymPy expr."""
        if isinstance(spec, sympy.Expr):
            expr = spec
        elif isinstance(spec, int) and not isinstance(spec, bool):
            expr = sympy.Integer(spec)
        elif isinstance(spec, str):
            try:
                tree = ast.parse(spec.strip(), mode="eval").body
            except SyntaxError:
                raise SpecError(f"bad size {spec!r}: write a symbol, an integer or a sum") from None
            expr = self.size_from_ast(tree)
        else:
            raise SpecError(f"bad size {spec!r}: write a symbol, an integer or a sum")
        for sym in sorted(expr.free_symbols, key=str):
            if str(sym) not in self._sizes:
                self._sizes.append(str(sym))
        if expr.is_Integer and expr <= 0:
            raise SpecError(f"a size must be positive, got {expr}")
        return expr

    def size_from_ast(self, node: ast.AST) -> sympy.Expr:
        """A size written as `n`, `3` or a sum of them, from its ast."""
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or not node.id.isidentifier():
                raise _located(SpecError(f"bad size name '{node.id}'"), node)
            return size_symbol(node.id)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value <= 0:
                raise _located(SpecError(f"a size must be positive, got {node.value}"), node)
            return sympy.Integer(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.size_from_ast(node.left) + self.size_from_ast(node.right)
        raise _located(SpecError("a size is a symbol, a positive integer or a sum of them"), node)

    def input(self, name: str, size) -> Value:
        """Declare a per-step input: a vector `name[size]`, or a feature map when `size` is
        a (channels, height, width) tuple."""
        value = self._leaf(Op.INPUT, name, self._value_shape(size), self._inputs)
        self._input_pos[name] = self.position
        return value

    def state(self, name: str, size) -> Value:
        """Declare a recurrent state (vector or feature map); give it one `update`."""
        value = self._leaf(Op.STATE, name, self._value_shape(size), self._states)
        self._state_pos[name] = self.position
        return value

    def _value_shape(self, size) -> tuple:
        if isinstance(size, (tuple, list)):
            if len(size) not in (1, 3):
                raise SpecError("a value is a vector [n] or a feature map [channels, height, width]")
            return tuple(self.size(d) for d in size)
        return (self.size(size),)

    def param(self, name: str, shape: Sequence | None = None) -> Value:
        """A parameter; with `shape` its shape is fixed, otherwise inferred from its uses."""
        self._check_name(name)
        if name in self._params:
            if shape is not None and name in self._declared:
                raise SpecError(f"parameter '{name}' is declared twice")
            if shape is not None:
                raise SpecError(f"parameter '{name}' is used before its param line"
                                f"{_line_of(self._param_pos[name])}; put param lines first")
            return Value(self, self._params[name])
        if self._defined_as(name):
            raise SpecError(f"'{name}' is {self._defined_as(name)}; it cannot be a parameter")
        node = ops.leaf(Op.PARAM, name)
        self._params[name] = node
        self._param_pos[name] = self.position
        if shape is not None:
            dims = tuple(self.size(d) for d in shape)
            if len(dims) not in (1, 2, 3, 4):
                raise SpecError(f"parameter '{name}' must be a vector [n], a matrix [out, in], a map "
                                f"[channels, height, width] or a convolution [out, in, kh, kw]")
            if len(dims) == 4 and not all(d.is_Integer and d % 2 == 1 for d in dims[2:]):
                raise SpecError(f"the kernel of convolution '{name}' must have odd integer sizes "
                                f"(same padding), e.g. [out, in, 3, 3]")
            self._shapes[node] = dims
            self._param_kind[name] = "matrix" if len(dims) in (2, 4) else "vector"
            self._declared.add(name)
        return Value(self, node)

    def nonlinearity(self, name: str, formula, var: str = "u"):
        """Declare a custom elementwise nonlinearity from a formula in one variable.

        `formula` is a SymPy expression in `sympy.Symbol(var)`, or an `ast` expression
        (the language passes the parsed body). Returns a function applying it to values.
        """
        self._check_name(name)
        if name in self.nonlinearities and name not in BUILTINS:
            raise SpecError(f"nonlinearity '{name}' is declared twice")
        if name in BUILTINS:
            raise SpecError(f"'{name}' is a built-in nonlinearity; choose another name")
        if self._defined_as(name):
            raise SpecError(f"'{name}' is {self._defined_as(name)}; a nonlinearity needs its own name")
        if isinstance(formula, str):     # parsed like the language, never sympified
            formula = _formula_tree(formula)
        if isinstance(formula, ast.AST):
            expr = formula_from_ast(formula, var, self.nonlinearities)
        elif isinstance(formula, sympy.Expr):
            expr = self._formula_from_sympy(formula, var)
        else:
            raise SpecError(f"a nonlinearity formula is a string or a SymPy expression, "
                            f"got {type(formula).__name__}")
        fn = Nonlinearity(name, expr)
        self.nonlinearities[name] = fn
        self._custom.append(name)
        return lambda v: self.apply(name, v)

    def _formula_from_sympy(self, expr: sympy.Expr, var: str) -> sympy.Expr:
        free = expr.free_symbols
        if len(free) > 1 or (free and str(next(iter(free))) != var):
            raise SpecError(f"a nonlinearity is elementwise in one variable ({var}); "
                            f"got {', '.join(sorted(map(str, free)))}")
        return stabilise(expr.xreplace({s: U for s in free}))

    # -- equations ------------------------------------------------------------------------
    def let(self, name: str, value: Value) -> Value:
        """An intermediate equation `name = value`."""
        self._check_assignable(name)
        value = _value(self, value)
        self._finish_equation(name, value.node)
        self._named[name] = value.node
        return value

    def update(self, state, value: Value) -> Value:
        """The state update `s' = value`."""
        name = state if isinstance(state, str) else state.node.arg
        if name not in self._states:
            raise SpecError(f"'{name}' is not a state; only states take a prime")
        if name in self._updates:
            raise SpecError(f"state '{name}' is updated twice")
        value = self._vector(_value(self, value))
        self._equate_shapes(self._shapes[self._states[name]], value.shape,
                            f"the update of state '{name}'")
        self._finish_equation(name + "'", value.node)
        self._updates[name] = value.node
        return value

    def new_state(self, state) -> Value:
        name = state if isinstance(state, str) else state.node.arg
        if name not in self._states:
            raise SpecError(f"'{name}' is not a state; only states take a prime")
        if name not in self._updates:
            raise SpecError(f"{name}' is used before it is defined")
        return Value(self, self._updates[name])

    def output(self, name, value: Value | None = None) -> None:
        """Emit a value at each step: `output("y", expr)` defines and emits `y`;
        `output(value)` emits a named value (a state update `h'` is emitted as `h`)."""
        if value is None:
            value = _value(self, name)
            self.emit(self._name_of(value), value)
            return
        self._check_assignable(name)
        value = _value(self, value)
        self._finish_equation(name, value.node)
        self._named[name] = value.node
        self.emit(name, value)

    def emit(self, name: str, value: Value) -> None:
        """Emit an already defined value as the output `name`."""
        if any(n == name for n, _ in self._outputs):
            raise SpecError(f"output '{name}' is given twice")
        self._outputs.append((name, _value(self, value).node))

    def _name_of(self, value: Value) -> str:
        node = value.node
        if node.op in (Op.INPUT, Op.STATE):
            return node.arg
        for state, upd in self._updates.items():
            if upd is node:
                return state
        for name, named in self._named.items():
            if named is node:
                return name
        raise SpecError("an output must be named: use output(name, value)")

    def lookup(self, name: str) -> Value | None:
        """The value a name stands for in an equation (None: not defined yet)."""
        for table in (self._named, self._inputs, self._states, self._params):
            if name in table:
                return Value(self, table[name])
        return None

    def apply(self, fn_name: str, value) -> Value:
        """Apply a nonlinearity (built-in or declared) elementwise."""
        if fn_name not in self.nonlinearities:
            raise SpecError(f"unknown nonlinearity '{fn_name}' (known: "
                            f"{', '.join(self.nonlinearities)})")
        value = self._vector(_value(self, value))
        return self._wrap(ops.nonlin(self.nonlinearities[fn_name], value.node), value.shape)

    def concat(self, *values: Value) -> Value:
        """Stack vectors: `[a, b, ...]`."""
        if not values:
            raise SpecError("an empty concat [] has no size")
        vals = [self._vector(_value(self, v)) for v in values]
        for v in vals[1:]:
            self._check_same_rank(vals[0].shape, v.shape, "a concat")
            for d0, d in zip(vals[0].shape[1:], v.shape[1:]):
                self.unifier.equate(d0, d, "a concat")
        total = sympy.expand(sum((v.shape[0] for v in vals), sympy.Integer(0)))
        node = ops.concat([v.node for v in vals])
        for part in node.src:          # a parameter beside batched parts: broadcast over B
            if part.op is Op.BCAST:
                self._shapes.setdefault(part, self._shapes[part.src[0]])
        return self._wrap(node, (total,) + vals[0].shape[1:])

    # -- the operators (called from Value) -----------------------------------------------
    def _matmul(self, left, right) -> Value:
        left = _value(self, left)
        if left.node.op is not Op.PARAM:
            raise SpecError("the left side of @ must be a parameter matrix")
        right = self._vector(_value(self, right))
        matrix = self._as_matrix(left.node)
        name = left.node.arg
        if len(right.shape) == 3 and len(matrix) != 4:
            raise SpecError(f"'{name}' acts on a feature map: declare it as a convolution, "
                            f"e.g. `param {name}[out, in, 3, 3]`")
        if len(right.shape) == 1 and len(matrix) != 2:
            raise SpecError(f"convolution '{name}' acts on feature maps, not on vectors")
        self.unifier.equate(matrix[1], right.shape[0], f"{name} @ ...: the columns of "
                                                        f"{name} and the operand's size")
        return self._wrap(ops.matmul(left.node, right.node), (matrix[0],) + right.shape[1:])

    def _mul(self, a, b) -> Value:
        if _number(b):
            return self._affine(sympy.nsimplify(b) * U, a)
        if _number(a):
            return self._affine(sympy.nsimplify(a) * U, b)
        a, b = self._pair(a, b)
        self._equate_shapes(a.shape, b.shape, "a gate (elementwise product)")
        return self._wrap(ops.gate(a.node, b.node), a.shape)

    def _add(self, a, b) -> Value:
        if _number(b):
            return self._affine(U + sympy.nsimplify(b), a)
        if _number(a):
            return self._affine(U + sympy.nsimplify(a), b)
        a, b = self._pair(a, b)
        self._equate_shapes(a.shape, b.shape, "a sum")
        return self._wrap(ops.add(a.node, b.node), a.shape)

    def _affine(self, expr: sympy.Expr, value) -> Value:
        value = self._vector(_value(self, value))
        return self._wrap(ops.nonlin(affine(expr), value.node), value.shape)

    # -- shapes ---------------------------------------------------------------------------
    def _wrap(self, node: Node, shape: tuple) -> Value:
        if node not in self._shapes:
            self._shapes[node] = tuple(shape)
            if node not in self._labels:
                self._pending.append(node)
        return Value(self, node)

    def _vector(self, value: Value, like: "Value | None" = None) -> Value:
        """Use a value as a vector (a parameter used so becomes a vector parameter, shaped
        like its partner `like` in a sum or gate: a map when the partner is a map)."""
        node = value.node
        if node.op is Op.PARAM:
            self.check_not_matrix(value)
            self._param_kind[node.arg] = "vector"
            if node not in self._shapes:
                rank = len(like.shape) if like is not None and like.node in self._shapes else 1
                self._shapes[node] = tuple(self.unifier.fresh(node.arg) for _ in range(rank))
        return value

    def check_not_matrix(self, value) -> None:
        """Refuse a matrix parameter where a vector is needed; separate from `_vector` so the
        language can place the error at the operand, before any shape is given."""
        node = value.node if isinstance(value, Value) else None
        if node is not None and node.op is Op.PARAM \
                and self._param_kind.get(node.arg, "vector") != "vector":
            raise SpecError(f"parameter '{node.arg}' is a matrix; it can only be used left of @")

    def _pair(self, a, b) -> tuple[Value, Value]:
        """Both sides of a sum or gate as vectors; a new parameter takes its partner's rank."""
        a, b = _value(self, a), _value(self, b)
        if b.node not in self._shapes:
            return self._vector(a), self._vector(b, like=self._vector(a))
        return self._vector(a, like=self._vector(b)), b

    def _as_matrix(self, node: Node) -> tuple:
        kind = self._param_kind.setdefault(node.arg, "matrix")
        if kind != "matrix" and node.arg in self._declared:
            raise self._declared_not_matrix(node.arg)
        if kind != "matrix":
            raise SpecError(f"parameter '{node.arg}' is used as a vector elsewhere; "
                            f"a matrix parameter can only be used left of @")
        if node not in self._shapes:
            self._shapes[node] = (self.unifier.fresh(node.arg), self.unifier.fresh(node.arg))
        return self._shapes[node]

    def _declared_not_matrix(self, name: str) -> SpecError:
        """A `param` line gave the name a rank that is not a matrix's: the declaration, not
        another use, is what conflicts with `@`."""
        shape = self._shapes[self._params[name]]
        what = "a vector" if len(shape) == 1 else "a feature map"
        return SpecError(f"parameter '{name}' is declared as {what} {show(shape)}"
                         f"{_line_of(self._param_pos.get(name))}, but left of @ it must be a "
                         f"matrix: declare it `param {name}[out, in]` (a convolution: "
                         f"[out, in, kh, kw])")

    def _equate_shapes(self, a: tuple, b: tuple, what: str) -> None:
        self._check_same_rank(a, b, what)
        for da, db in zip(a, b):
            self.unifier.equate(da, db, what)

    @staticmethod
    def _check_same_rank(a: tuple, b: tuple, what: str) -> None:
        if len(a) != len(b):
            raise SpecError(f"rank mismatch in {what}: {show(a)} vs {show(b)}")

    # -- bookkeeping ----------------------------------------------------------------------
    def _leaf(self, op: Op, name: str, shape: tuple, table: dict) -> Value:
        self._check_name(name)
        if name in self._inputs or name in self._states or name in self._params \
                or name in self._named or name in self.nonlinearities:
            raise SpecError(f"'{name}' is declared twice")
        node = ops.leaf(op, name)
        table[name] = node
        self._shapes[node] = shape
        return Value(self, node)

    def _finish_equation(self, name: str, node: Node) -> None:
        for pending in self._pending:
            self._labels.setdefault(pending, name)
        self._pending.clear()
        self._labels.setdefault(node, name)
        self._equations.append((name, node))
        self._positions[name] = self.position

    def _defined_as(self, name: str) -> str | None:
        """What a name already stands for ("an input", ...), or None when it is free."""
        for table, what in ((self._inputs, "an input"), (self._states, "a state"),
                            (self._named, "an equation"), (self._params, "a parameter"),
                            (self.nonlinearities, "a nonlinearity")):
            if name in table:
                return what
        return None

    def _check_assignable(self, name: str) -> None:
        """An equation may only define a new name (each name is assigned once)."""
        self._check_name(name)
        what = self._defined_as(name)
        if what == "an equation":
            raise SpecError(f"'{name}' is assigned twice{_line_of(self._positions.get(name))}")
        if what == "a state":
            raise SpecError(f"'{name}' is a state: its update is written {name}' = ...")
        if what:
            raise SpecError(f"'{name}' is {what}; it cannot be assigned")

    def _check_name(self, name: str) -> None:
        problem = name_problem(name)
        if problem:
            raise SpecError(f"bad name {name!r}: {problem}")

    # -- the result -----------------------------------------------------------------------
    def build(self, source: str | None = None) -> "Cell":
        """Check completeness (every state updated, every shape known) and make the Cell."""
        from .cell import Cell
        from .ir import Function
        self._check_complete()
        results = tuple(self._outputs) + tuple((s + "'", n) for s, n in self._updates.items())
        self._check_batched(results)
        # every equation gets its shapes, used or not (passes and codegen walk them all)
        shapes = self._final_shapes([n for _, n in results] + [n for _, n in self._equations])
        leaves = tuple(self._inputs.values()) + tuple(self._states.values()) + tuple(
            p for p in self._params.values() if p in shapes)
        step = Function(
            name=self.name, leaves=leaves, results=results, shapes=shapes,
            labels=dict(self._labels), equations=tuple(self._equations),
            sizes=tuple(self._sizes), kind="cell",
            meta={"custom": tuple(self.nonlinearities[c] for c in self._custom),
                  "text": dict(self.texts)})
        return Cell(step, source=source)

    def _check_complete(self) -> None:
        """A valid name, an input, a state update for every state, an output. Each error is
        placed where the missing piece belongs (when the parser gave positions): a missing
        output at the first state, whose update is the usual output."""
        problem = name_problem(self.name)
        if problem:
            raise SpecError(f"bad cell name {self.name!r}: {problem}")
        if not self._inputs:
            raise SpecError("a cell needs at least one input (the sequence it runs over), "
                            "e.g. `input x[n_in]`")
        first_input = next(iter(self._inputs))
        if not self._states and not self._outputs:
            raise _at(SpecError("a cell needs at least one state or output: declare a "
                                "state, or write `output y = ...`"),
                      self._input_pos.get(first_input))
        for name in self._states:
            if name not in self._updates:
                raise _at(SpecError(f"state '{name}' has no update {name}' = ..."),
                          self._state_pos.get(name))
        if not self._outputs:
            state = next(iter(self._states))
            raise _at(SpecError(f"a cell needs at least one output (e.g. `output {state}'`)"),
                      self._state_pos.get(state))

    def _check_batched(self, results) -> None:
        """Every output and update depends on an input or a state (else it is a constant)."""
        for name, node in results:
            if not node.batched:
                where = self._positions.get(name) or self._state_pos.get(name.rstrip("'"))
                raise _at(SpecError(f"{name} depends on no input or state: it would be the "
                                    "same constant at every step"), where)

    def _final_shapes(self, roots: list[Node]) -> dict[Node, tuple]:
        from .ir import toposort
        shapes: dict[Node, tuple] = {}
        for name, node in self._params.items():
            if node not in self._shapes:
                raise _at(SpecError(f"parameter '{name}' is never used"), self._param_pos[name])
        leaves = list(self._inputs.values()) + list(self._states.values()) + list(self._params.values())
        for node in leaves + toposort(roots):
            if node in shapes:
                continue
            shape = tuple(self.unifier.resolve(d) for d in self._shapes[node])
            if node.op is Op.PARAM and self.unifier.unresolved(shape):
                raise _at(self._uninferable(node.arg, shape), self._param_pos[node.arg])
            shapes[node] = shape
        return shapes

    def _uninferable(self, name: str, shape: tuple) -> SpecError:
        kind = "matrix" if len(shape) == 2 else "vector"
        shown = ", ".join("?" if self.unifier.unresolved((d,)) else show(d) for d in shape)
        hint = ", ".join(f"n_{name.lower()}" if self.unifier.unresolved((d,)) else show(d) for d in shape)
        return SpecError(f"cannot infer the shape of parameter '{name}' (a {kind} [{shown}]); "
                         f"declare it with a param line, e.g. `param {name}[{hint}]`")


def _formula_tree(text: str) -> ast.expr:
    """The ast of a formula written as text (`"u / (1 + abs(u))"`)."""
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise SpecError(f"bad formula {text!r}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError("the formula is too large or nested too deeply") from None


def _line_of(position: Position) -> str:
    return f" (line {position[0]})" if position else ""


def name_problem(name) -> str | None:
    """Why `name` cannot name a cell or a value (None: it can). Names reach generated
    Python code, so they are ASCII identifiers, and '__' starts Python's reserved names
    (`__init__`) and the ones it mangles."""
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        return "names are ASCII identifiers"
    if name.startswith("__"):
        return "names may not start with '__' (Python reserves them in generated code)"
    return None


def _at(error: SpecError, position: Position) -> SpecError:
    return error if position is None else SpecError(error.message, *position)


def _located(error: SpecError, node: ast.AST) -> SpecError:
    """Attach an ast node's position (the parser turns it into line and column)."""
    error.node = node
    return error


# ---------------------------------------------------------------------------------------
# Module-level spellings of the primitives: gl.concat(x, h), gl.sigmoid(v), gl.nonlinearity(...)

def concat(*values: Value) -> Value:
    """Stack vectors: `gl.concat(x, h)` is `[x, h]`."""
    if not values or not isinstance(values[0], Value):
        raise SpecError("concat takes symbolic values from one CellBuilder")
    return values[0].builder.concat(*values)


def apply(name: str, value: Value) -> Value:
    """Apply a nonlinearity by name (built-in or declared on the value's builder)."""
    if not isinstance(value, Value):
        raise SpecError(f"{name} takes a symbolic value from a CellBuilder, got {type(value).__name__}")
    return value.builder.apply(name, value)


def _nonlinearity_function(name: str):
    def fn(value: Value) -> Value:
        return apply(name, value)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} of a symbolic value."
    return fn


sigmoid = _nonlinearity_function("sigmoid")
tanh = _nonlinearity_function("tanh")
relu = _nonlinearity_function("relu")
identity = _nonlinearity_function("identity")
softplus = _nonlinearity_function("softplus")
softsign = _nonlinearity_function("softsign")
hard_sigmoid = _nonlinearity_function("hard_sigmoid")
