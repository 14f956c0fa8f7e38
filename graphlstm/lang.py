"""The `.cell` language: one equation per line, parsed with Python's `ast` into builder calls.

The only text rewrite before `ast` is the prime: `c'` becomes the identifier `cʹ` (U+02B9,
a letter), which users cannot write themselves. Nothing is ever evaluated: each statement
is parsed, its tree is walked with a whitelist, and anything else is a `SpecError` placed
at its line and column. Limits (documented in docs/language.md): a file of at most
`MAX_BYTES` bytes, a line of at most `MAX_LINE` characters, brackets nested at most
`MAX_DEPTH` deep.
"""
from __future__ import annotations

import ast
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .builder import CellBuilder, Value, _number, name_problem
from .errors import WIDTH, SpecError
from .ir import Node, Op

if TYPE_CHECKING:
    from .cell import Cell

MAX_BYTES = 1_000_000
MAX_LINE = 10_000
MAX_DEPTH = 100
PRIME = "\u02b9"
KEYWORDS = ("cell", "input", "state", "param", "nonlinearity", "output")
_PRIMED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)'")
_DESCRIBE = {
    ast.Attribute: "attribute access", ast.Subscript: "a subscript", ast.Lambda: "a lambda",
    ast.IfExp: "a conditional", ast.Compare: "a comparison", ast.BoolOp: "a boolean operator",
    ast.Tuple: "a tuple", ast.Starred: "unpacking", ast.NamedExpr: "an assignment expression",
    ast.Dict: "a dict", ast.Set: "a set", ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.Await: "await", ast.Yield: "yield",
    ast.JoinedStr: "a string", ast.Slice: "a slice",
}


def parse(text: str | bytes, name: str | None = None) -> "Cell":
    """Parse a cell written in the language; every problem is a `SpecError`."""
    if name is not None and name_problem(name):
        raise SpecError(f"bad cell name {name!r}: {name_problem(name)}")
    text = _decode(text)
    return _Parser(text, name).run()


def load(path: str | Path) -> "Cell":
    """Read and parse a `.cell` file; the cell is named after the file unless it says.

    A file name that is not an identifier (`my-lstm.cell`) gives the name `my_lstm`: the
    name reaches generated code, so it is never taken as written.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)     # enough to see that a file is too large
    except OSError as e:
        raise SpecError(f"cannot read {path}: {e.strerror or e}") from None
    return parse(data, name=cell_name(path.stem))


def cell_name(stem: str) -> str:
    """An identifier from a file name: other characters become `_` (`2-layer` -> `c_2_layer`)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", stem).lstrip("_") or "cell"
    return "c_" + name if name[0].isdigit() else name


def _decode(text: str | bytes) -> str:
    """The text of a cell: UTF-8 and at most MAX_BYTES long, else a located SpecError."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            _too_large(text[:MAX_BYTES + 1].decode("utf-8", errors="replace"), len(text), "bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[:e.start].count(b"\n") + 1
            start = text.rfind(b"\n", 0, e.start) + 1
            end = text.find(b"\n", e.start)
            shown = text[start:end if end >= 0 else len(text)].decode("utf-8", errors="replace")
            col = len(text[start:e.start].decode("utf-8", errors="replace")) + 1
            raise SpecError(f"the file is not UTF-8 text (byte 0x{text[e.start]:02x})",
                            line, col, shown) from None
    if not isinstance(text, str):
        raise SpecError(f"expected cell text, got {type(text).__name__}")
    if len(text) > MAX_BYTES:
        _too_large(text, len(text), "characters")
    return text


def _lines(text: str) -> list[str]:
    """The lines as an editor counts them: only \\n, \\r\\n and \\r end a line (other
    separators that `str.splitlines` knows are characters, refused outside comments)."""
    lines = re.split(r"\r\n|\r|\n", text)
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def _too_large(text: str, size: int, unit: str) -> None:
    """Raise the size-limit error at the line and column where the limit is crossed."""
    line = text.count("\n", 0, MAX_BYTES) + 1
    start = text.rfind("\n", 0, MAX_BYTES) + 1
    stop = min(len(text), MAX_BYTES + WIDTH)     # enough of the line to show the column
    end = text.find("\n", start, stop)
    shown = text[start:end if end >= 0 else stop]
    raise SpecError(f"the cell text is {size} {unit}; the limit is {MAX_BYTES}",
                    line, MAX_BYTES - start + 1, shown)


class _Parser:
    """Reads lines, classifies statements and drives a CellBuilder."""

    def __init__(self, text: str, name: str | None) -> None:
        self.text = text
        self.lines = _lines(text)
        self.b = CellBuilder(name or "cell")
        self.named_cell = False
        self.defined_at: dict[str, int] = {}

    def run(self):
        statements = list(self._statements())
        if not statements:
            raise SpecError("the cell is empty: declare inputs and states, then equations", 1, 1,
                            self.lines[0])
        self._prescan(statements)
        first = statements[0][:2]
        for lineno, col, code in _declarations_first(statements):
            self.b.position = (lineno, col)
            try:
                self._statement(lineno, col, code)
            except SpecError as e:
                raise self._place(e, lineno, col) from None
            except RecursionError:
                raise self._place(SpecError("the expression is nested too deeply"), lineno, col) from None
        try:
            return self.b.build(source=self.text)
        except SpecError as e:      # what the builder cannot place belongs at the top
            raise self._place(e, *first) from None

    # -- lines ----------------------------------------------------------------------------
    def _statements(self):
        """(line number, column of the code, code) for every non-blank line, comments cut."""
        for lineno, raw in enumerate(self.lines, start=1):
            if len(raw) > MAX_LINE:
                raise SpecError(f"line is {len(raw)} characters long; the limit is {MAX_LINE}",
                                lineno, MAX_LINE + 1, raw)
            code = raw.split("#", 1)[0].rstrip()
            stripped = code.lstrip()
            if not stripped:
                continue
            col = len(code) - len(stripped) + 1
            self._check_characters(lineno, code)
            yield lineno, col, stripped

    def _check_characters(self, lineno: int, code: str) -> None:
        for i, ch in enumerate(code):
            if not ch.isascii() or (not ch.isprintable() and ch != "\t"):
                raise SpecError(f"unexpected character {ch!r}: the language is ASCII "
                                f"(only comments may hold other text)", lineno, i + 1,
                                self.lines[lineno - 1])
        self._check_depth(lineno, code)
        for match in re.finditer(r"[0-9]{400,}", code):
            raise SpecError("a number of more than 400 digits is not a finite float",
                            lineno, match.start() + 1, self.lines[lineno - 1])
        for match in re.finditer(r"['\"]", _PRIMED.sub(lambda m: m.group(1) + PRIME, code)):
            raise SpecError("strings are not part of the language (a prime ' follows a name)",
                            lineno, match.start() + 1, self.lines[lineno - 1])

    def _check_depth(self, lineno: int, code: str) -> None:
        """Brackets nest at most MAX_DEPTH deep (the generated code nests more, and Python
        stops at 200)."""
        depth = 0
        for i, ch in enumerate(code):
            depth += (ch in "([{") - (ch in ")]}")
            if depth > MAX_DEPTH:
                raise SpecError(f"brackets nest more than {MAX_DEPTH} deep", lineno, i + 1,
                                self.lines[lineno - 1])

    def _prescan(self, statements) -> None:
        """Where each equation name is defined, to tell 'used before definition' apart from
        'a parameter'."""
        for lineno, _, code in statements:
            head = code.split(None, 1)[0] if code.split() else ""
            if head in KEYWORDS and head != "output":
                continue
            body = code[len("output"):] if head == "output" else code
            if "=" in body:
                target = body.split("=", 1)[0].strip().rstrip("'")
                self.defined_at.setdefault(target, lineno)

    def _place(self, error: SpecError, lineno: int, col: int) -> SpecError:
        node = getattr(error, "node", None)
        if error.line is None and node is not None and hasattr(node, "col_offset"):
            lineno, col = self._node_position(node)
        elif error.line is not None:
            lineno, col = error.line, error.col
        text = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        return SpecError(error.message.replace(PRIME, "'"), lineno, col, text)

    def _node_position(self, node: ast.AST) -> tuple[int, int]:
        lineno, base, segment = self.current
        encoded = segment.encode("utf-8")
        prefix = encoded[:node.col_offset].decode("utf-8", errors="ignore")
        return lineno, base + len(prefix)

    def _parse(self, lineno: int, col: int, segment: str, mode: str = "eval") -> ast.AST:
        """Parse a piece of a line (primes rewritten); `col` is where it starts (1-based)."""
        rewritten = _PRIMED.sub(lambda m: m.group(1) + PRIME, segment)
        self.current = (lineno, col, rewritten)
        try:
            with warnings.catch_warnings():     # `1if x`: Python warns; here it is an error
                warnings.simplefilter("error", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(rewritten, mode=mode)
        except SyntaxError as e:
            offset = (e.offset or 1) - 1
            prefix = rewritten.encode()[:offset].decode("utf-8", errors="ignore") \
                if e.offset and e.text is None else rewritten[:offset]
            message = (e.msg or "syntax error").replace(PRIME, "'")
            raise SpecError(f"syntax error: {message}", lineno, col + len(prefix),
                            self.lines[lineno - 1]) from None
        except (RecursionError, MemoryError, ValueError):
            raise SpecError("the expression is too large or nested too deeply", lineno, col,
                            self.lines[lineno - 1]) from None
        return tree

    # -- statements -----------------------------------------------------------------------
    def _statement(self, lineno: int, col: int, code: str) -> None:
        head, _, rest = code.partition(" ")
        if "\t" in code and not rest:
            head, _, rest = code.partition("\t")
        rest_col = col + len(code) - len(rest.lstrip())
        rest = rest.strip()
        handler: Callable | None = {
            "cell": self._cell, "input": self._inputs, "state": self._states,
            "param": self._params, "nonlinearity": self._nonlinearity, "output": self._output,
        }.get(head)
        if handler is None:
            self._equation(lineno, col, code)
        elif not rest:
            raise SpecError(f"'{head}' needs something after it", lineno, col + len(head) + 1)
        else:
            handler(lineno, rest_col, rest)

    def _cell(self, lineno: int, col: int, rest: str) -> None:
        if self.named_cell:
            raise SpecError("the cell is named twice", lineno, col)
        if not rest.isidentifier() or not rest.isascii():
            raise SpecError(f"a cell name is one identifier, got {rest!r}", lineno, col)
        if name_problem(rest):      # here, not at build time, so that it points at the name
            raise SpecError(f"bad cell name {rest!r}: {name_problem(rest)}", lineno, col)
        self.b.name, self.named_cell = rest, True

    def _declared(self, lineno: int, col: int, rest: str):
        """`a[size], b[size, size]` -> [(name, [size ast...], ast node)]."""
        tree = self._parse(lineno, col, rest).body
        items = tree.elts if isinstance(tree, ast.Tuple) else [tree]
        out = []
        for item in items:
            if not (isinstance(item, ast.Subscript) and isinstance(item.value, ast.Name)):
                raise _at(SpecError("a declaration is NAME[size], e.g. x[n_in]"), item)
            dims = item.slice.elts if isinstance(item.slice, ast.Tuple) else [item.slice]
            out.append((item.value.id, dims, item))
        return out

    def _sizes(self, dims, item):
        try:
            return [self.b.size_from_ast(d) for d in dims]
        except SpecError as e:
            if getattr(e, "node", None) is None:
                e.node = item
            raise

    def _inputs(self, lineno, col, rest):
        for name, dims, item in self._declared(lineno, col, rest):
            self.b.position = self._node_position(item)
            _located_call(lambda: self.b.input(name, self._value_shape(name, dims, item)), item)

    def _states(self, lineno, col, rest):
        for name, dims, item in self._declared(lineno, col, rest):
            self.b.position = self._node_position(item)
            _located_call(lambda: self.b.state(name, self._value_shape(name, dims, item)), item)

    def _value_shape(self, name, dims, item):
        """A vector `x[n]` or a feature map `x[channels, height, width]`."""
        if len(dims) not in (1, 3):
            raise _at(SpecError(f"'{name}' is a vector {name}[size] or a feature map "
                                f"{name}[channels, height, width]"), item)
        sizes = self._sizes(dims, item)
        return sizes[0] if len(sizes) == 1 else tuple(sizes)

    def _params(self, lineno, col, rest):
        for name, dims, item in self._declared(lineno, col, rest):
            _located_call(lambda: self.b.param(name, self._sizes(dims, item)), item)

    def _nonlinearity(self, lineno, col, rest):
        head, eq, body = rest.partition("=")
        if not eq or not body.strip():
            raise SpecError("write nonlinearity NAME(u) = EXPR", lineno, col)
        call = self._parse(lineno, col, head.strip()).body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and len(call.args) == 1 and isinstance(call.args[0], ast.Name)
                and not call.keywords):
            raise SpecError("write nonlinearity NAME(u) = EXPR, with one variable", lineno, col)
        name_at = self._node_position(call.func)
        body_col = col + len(head) + 1 + (len(body) - len(body.lstrip()))
        tree = self._parse(lineno, body_col, body.strip()).body
        try:
            self.b.nonlinearity(call.func.id, tree, var=call.args[0].id)
        except SpecError as e:      # a formula error carries its node; a name error does not
            if e.line is None and getattr(e, "node", None) is None:
                raise SpecError(e.message, *name_at) from None
            raise

    def _output(self, lineno, col, rest):
        if "=" in rest:
            tree = self._parse(lineno, col, rest, mode="exec")
            target, value = self._assignment(tree)
            if target.endswith(PRIME):
                raise _at(SpecError("an output name takes no prime"), tree.body[0].targets[0])
            result = self._expr(value)
            _located_call(lambda: self.b.output(target, result), tree.body[0].targets[0])
            self.b.texts[target] = " ".join(rest.split())
            return
        tree = self._parse(lineno, col, rest).body
        for item in (tree.elts if isinstance(tree, ast.Tuple) else [tree]):
            if not isinstance(item, ast.Name):
                raise _at(SpecError("write output NAME, output NAME' or output NAME = EXPR"), item)
            value = self._output_value(item)
            name = item.id[:-1] if item.id.endswith(PRIME) else item.id
            _located_call(lambda: self.b.emit(name, value), item)

    def _output_value(self, item: ast.Name) -> Value:
        """The value `output NAME` emits: an input, a state, a new state or an equation."""
        if not item.id.endswith(PRIME) and item.id not in self.defined_at \
                and item.id not in self.b.nonlinearities and self.b.lookup(item.id) is None:
            raise _at(SpecError(f"output '{item.id}' is not defined: write output NAME = EXPR, "
                                "or output an input, a state or an equation"), item)
        value = self._name(item)
        if value.node.op is Op.PARAM and not item.id.endswith(PRIME):
            raise _at(SpecError(f"'{item.id}' is a parameter; an output is computed by the cell "
                                f"(write output y = ... )"), item)
        return value

    def _equation(self, lineno, col, code):
        tree = self._parse(lineno, col, code, mode="exec")
        target, value = self._assignment(tree)
        result = self._expr(value)
        target_node = tree.body[0].targets[0]
        if isinstance(result, (int, float)):
            raise _at(SpecError("an equation must be a vector expression, not a constant"), value)
        if target.endswith(PRIME):
            _located_call(lambda: self.b.update(target[:-1], result), target_node)
        else:
            _located_call(lambda: self.b.let(target, result), target_node)
        self.b.texts[target.replace(PRIME, "'")] = " ".join(code.split())

    def _assignment(self, tree: ast.Module) -> tuple[str, ast.expr]:
        if len(tree.body) != 1:
            raise SpecError("one equation per line")
        stmt = tree.body[0]
        if isinstance(stmt, ast.Expr):
            raise _at(SpecError("expected an equation NAME = EXPR or a declaration "
                                f"({', '.join(KEYWORDS)})"), stmt)
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            raise _at(SpecError("an equation is NAME = EXPR"), stmt)
        if not isinstance(stmt.targets[0], ast.Name):
            raise _at(SpecError("the left side of an equation is one name"), stmt.targets[0])
        return stmt.targets[0].id, stmt.value

    # -- expressions ----------------------------------------------------------------------
    def _expr(self, node: ast.AST):
        """A Value (or a Python number, for constants) from an expression tree."""
        try:
            return self._translate(node)
        except SpecError as e:
            if e.line is None and getattr(e, "node", None) is None:
                e.node = node
            raise

    def _translate(self, node: ast.AST):
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Constant):
            if type(node.value) in (int, float):
                return _finite(node.value, node)
            raise _at(SpecError(f"{_describe(node)} is not part of the cell language"), node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self._expr(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.List):
            parts = [self._expr(e) for e in node.elts]
            for part, elt in zip(parts, node.elts):
                if _number(part):
                    raise _at(SpecError("a concat holds vectors, not constants"), elt)
            self._vector_operands(*zip(parts, node.elts))
            return self.b.concat(*parts)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise _at(SpecError(f"{_describe(node)} is not part of the cell language"), node)

    def _binop(self, node: ast.BinOp):
        """A chain `a + b * c - d ...`, walked down its left side without recursion, so a
        long sum costs no stack."""
        spine = []
        while isinstance(node, ast.BinOp):
            node = _hoist_scale(node)
            if not isinstance(node, ast.BinOp):
                break
            if isinstance(node.op, ast.MatMult) and not isinstance(node.left, ast.Name):
                raise _at(SpecError(self._left_of_matmul(node.left)), node)
            spine.append(node)
            node = node.left
        value = self._expr(node)
        for binop in reversed(spine):
            right = self._expr(binop.right)
            value = _located_call(lambda: self._combine(binop, value, right), binop)
        return value

    def _combine(self, node: ast.BinOp, left, right):
        op = type(node.op)
        if _number(left) and _number(right):
            return _fold(op, left, right, node)
        if op is ast.MatMult:
            if _number(left) or _number(right):
                raise _at(SpecError("@ takes a parameter matrix and a vector"), node)
            return self.b._matmul(left, right)
        self._vector_operands((left, node.left), (right, node.right))
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if op is ast.Div:
            if not _number(right):
                raise _at(SpecError("division is only by a constant"), node.right)
            return left / right
        raise _at(SpecError(f"the operator {_OPNAMES.get(op, op.__name__)} is not part of the "
                            "cell language (use + - * @, or declare a nonlinearity)"), node)

    def _vector_operands(self, *operands: tuple[object, ast.AST]) -> None:
        """Refuse a matrix parameter used as a vector at that use (`W @ h + W`: the second
        `W`), not at the whole expression around it."""
        for value, node in operands:
            if isinstance(value, Value):
                try:
                    self.b.check_not_matrix(value)
                except SpecError as e:
                    raise _at(e, node) from None

    def _left_of_matmul(self, left: ast.expr) -> str:
        """Why an expression cannot stand left of @, with the fix: Python binds `x * W @ h`
        as `(x * W) @ h`, so a product is written first when it is combined."""
        message = "the left side of @ must be a parameter matrix"
        if isinstance(left, ast.BinOp) and isinstance(left.op, ast.MatMult):
            return message + " (a product of matrices is not in the language: write W @ (V @ v))"
        params = [n for n in ast.walk(left) if isinstance(n, ast.Name) and self._param_like(n.id)]
        if params:      # the matrix meant is the one nearest the @
            name = max(params, key=lambda n: n.col_offset).id
            return message + (f", not an expression: write the product first, e.g. "
                              f"`-({name} @ v)` or `a * ({name} @ v)`")
        return message

    def _param_like(self, ident: str) -> bool:
        """Whether a name in an equation stands (or will stand) for a parameter."""
        value = self.b.lookup(ident)
        if value is not None:
            return value.node.op is Op.PARAM
        return not ident.endswith(PRIME) and ident not in self.b.nonlinearities \
            and ident not in self.defined_at

    def _call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _at(SpecError(f"{_describe(node.func)} is not part of the cell language; "
                                "a call is NAME(expr)"), node.func)
        name = node.func.id
        if name not in self.b.nonlinearities:
            raise _at(SpecError(f"unknown function '{name}' (nonlinearities: "
                                f"{', '.join(self.b.nonlinearities)}; declare others with "
                                "`nonlinearity NAME(u) = EXPR`)"), node.func)
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise _at(SpecError(f"{name} takes exactly one argument"), node)
        arg = self._expr(node.args[0])
        if _number(arg):
            raise _at(SpecError(f"{name} of a constant is a constant, not a vector"), node)
        self._vector_operands((arg, node.args[0]))
        return self.b.apply(name, arg)

    def _name(self, node: ast.Name) -> Value:
        ident = node.id
        if ident.endswith(PRIME):
            base = ident[:-1]
            try:
                return self.b.new_state(base)
            except SpecError as e:
                raise _at(e, node) from None
        value = self.b.lookup(ident)
        if value is not None:
            return value
        if ident in self.b.nonlinearities:
            raise _at(SpecError(f"'{ident}' is a nonlinearity; apply it: {ident}(...)"), node)
        if ident in self.defined_at:
            raise _at(SpecError(f"'{ident}' is used before it is defined "
                                f"(line {self.defined_at[ident]})"), node)
        saved, self.b.position = self.b.position, self._node_position(node)
        try:
            return self.b.param(ident)
        except SpecError as e:
            raise _at(e, node) from None
        finally:
            self.b.position = saved



def _declarations_first(statements):
    """The statements with every declaration (cell, input, state, param, nonlinearity) ahead
    of the equations and outputs, each group in its written order: a declaration may stand
    anywhere in the file, as in a paper's list of symbols."""
    def declares(statement) -> bool:
        words = statement[2].split(None, 1)
        return bool(words) and words[0] in KEYWORDS and words[0] != "output" \
            and not statement[2][len(words[0]):].lstrip().startswith(("=", "'"))
    return [st for st in statements if declares(st)] + [st for st in statements if not declares(st)]


def _hoist_scale(node: ast.BinOp) -> ast.expr:
    """`-W @ v` and `0.5 * W @ v` as meant: Python binds them `(-W) @ v` and `(0.5 * W) @ v`,
    but a scaled matrix is no value of the language, so the constant moves onto the product:
    `-(W @ v)`, `0.5 * (W @ v)` (also `W * 0.5 @ v`, `W / 2 @ v`). Other trees are kept."""
    if not isinstance(node.op, ast.MatMult):
        return node
    left = node.left
    if isinstance(left, ast.UnaryOp) and isinstance(left.op, (ast.USub, ast.UAdd)):
        return ast.copy_location(ast.UnaryOp(left.op, _product(left.operand, node)), left)
    if isinstance(left, ast.BinOp) and isinstance(left.op, ast.Mult) and _constant(left.left):
        return ast.copy_location(ast.BinOp(left.left, left.op, _product(left.right, node)), left)
    if isinstance(left, ast.BinOp) and isinstance(left.op, (ast.Mult, ast.Div)) \
            and _constant(left.right):
        return ast.copy_location(ast.BinOp(_product(left.left, node), left.op, left.right), left)
    return node


def _product(matrix: ast.expr, node: ast.BinOp) -> ast.expr:
    """`matrix @ (the right side of node)`, placed at the matrix, itself hoisted
    (`-0.5 * W @ v`)."""
    return _hoist_scale(ast.copy_location(ast.BinOp(matrix, ast.MatMult(), node.right), matrix))


def _constant(node: ast.AST) -> bool:
    """Whether an expression is arithmetic on numbers only (a scale factor)."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, (ast.USub, ast.UAdd)) and _constant(node.operand)
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)) \
            and _constant(node.left) and _constant(node.right)
    return False


_OPNAMES = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.BitAnd: "&",
            ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}


def _fold(op, a, b, node):
    """Fold arithmetic on two constants (the result must still meet a vector)."""
    try:
        if op is ast.Add:
            return _finite(a + b, node)
        if op is ast.Sub:
            return _finite(a - b, node)
        if op is ast.Mult:
            return _finite(a * b, node)
        if op is ast.Div:
            return _finite(a / b, node)
    except ZeroDivisionError:
        raise _at(SpecError("division by zero"), node) from None
    except OverflowError:
        raise _at(SpecError("the constant is too large (not a finite float)"), node) from None
    raise _at(SpecError(f"the operator {_OPNAMES.get(op, op.__name__)} is not part of the cell "
                        "language"), node)


def _finite(value, node: ast.AST):
    """A constant that is a finite float (huge integers and `1e999` are refused)."""
    try:
        ok = math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        raise _at(SpecError("the constant is too large (not a finite float)"), node)
    return value


_UNARY = {ast.Invert: "~", ast.Not: "not"}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.UnaryOp):
        return f"the operator {_UNARY.get(type(node.op), type(node.op).__name__)}"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)):
            return "a string"
        return f"the constant {node.value!r}"
    return _DESCRIBE.get(type(node), type(node).__name__.lower())


def _at(error: SpecError, node: ast.AST) -> SpecError:
    if error.line is None and getattr(error, "node", None) is None:
        error.node = node
    return error


def _located_call(fn, node: ast.AST):
    try:
        return fn()
    except SpecError as e:
        raise _at(e, node) from None


# ---------------------------------------------------------------------------------------
# Printing cells back as text


def format_expr(fn, node: Node, names: dict[Node, str], top: bool = True) -> str:
    """A node as the language writes it, stopping at named nodes: `sigmoid(W_f @ [x, h] + b_f)`."""
    from .ir import Op
    if not top and node in names:
        return names[node]
    sub = lambda n: format_expr(fn, n, names, top=False)  # noqa: E731
    op = node.op
    if op in (Op.INPUT, Op.STATE, Op.PARAM):
        return node.arg
    if op is Op.CONCAT:
        return "[" + ", ".join(sub(s) for s in node.src) + "]"
    if op is Op.MATMUL:
        return f"{sub(node.src[0])}{'ᵀ' if node.arg else ''} @ {_paren(node.src[1], sub)}"
    if op is Op.GATE:
        return f"{_paren(node.src[0], sub)} * {_paren(node.src[1], sub)}"
    if op is Op.SUM:
        out = sub(node.src[0])
        for s in node.src[1:]:
            if s.op is Op.NONLIN and not s.arg.name and s.arg.expr == -_u():
                out += f" - {_paren(s.src[0], sub)}"
            else:
                out += f" + {sub(s)}"
        return out
    if op is Op.NONLIN:
        if node.arg.name:
            return f"{node.arg.name}({sub(node.src[0])})"
        import sympy
        return str(node.arg.expr.xreplace({_u(): sympy.Symbol(_paren(node.src[0], sub))}))
    if op is Op.SLICE:
        axis, lo, hi = node.arg
        return f"{_paren(node.src[0], sub)}[{lo}:{hi}]"
    if op is Op.OUTER:
        return f"Σ_b {_paren(node.src[0], sub)} ⊗ {_paren(node.src[1], sub)}"
    if op is Op.BSUM:
        return f"Σ_b {_paren(node.src[0], sub)}"
    if op is Op.BCAST:
        return sub(node.src[0])
    if op is Op.ZEROS:
        return "0"
    raise NotImplementedError(op)


def _paren(node: Node, sub) -> str:
    text = sub(node)
    from .ir import Op
    simple = node.op in (Op.INPUT, Op.STATE, Op.PARAM, Op.CONCAT, Op.ZEROS) or \
        (node.op is Op.NONLIN and node.arg.name) or text.isidentifier()
    return text if simple else f"({text})"


def _u():
    from .nonlin import U
    return U


def to_text(cell) -> str:
    """A cell in the language, from its graph (for cells built in Python)."""
    from .shapes import show
    step = cell.step
    lines = [f"cell {cell.name}"]
    decl = lambda names: ", ".join(f"{n}[{show(cell.shape(n)[0])}]" for n in names)  # noqa: E731
    if cell.inputs:
        lines.append(f"input {decl(cell.inputs)}")
    if cell.states:
        lines.append(f"state {decl(cell.states)}")
    for fn in step.meta.get("custom", ()):
        lines.append(f"nonlinearity {fn.name}(u) = {fn.expr}")
    names = {leaf: leaf.arg for leaf in step.leaves}
    names.update({node: name for name, node in step.equations})
    outputs = dict(step.results)
    for name, node in step.equations:
        lines.append(f"{name} = {format_expr(step, node, names)}")
    for out in cell.outputs:
        node = outputs[out]
        written = names.get(node, out)
        lines.append(f"output {written}")
    return "\n".join(lines) + "\n"
