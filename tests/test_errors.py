"""Every malformed cell gives one SpecError at the right line and column, quickly.

Each case names the line and what the caret points at (a piece of that line: the column
is where it starts), or a column number, and a fragment of the message. The message must
show the offending line and a caret under the column, the way Python's SyntaxError does.
The CLI prints that one message and exits non-zero.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import graphlstm as gl
from graphlstm import lang
from graphlstm.errors import WIDTH

HDR = "input x[n_in]\nstate h[n]\n"          # lines 1 and 2 of most cases
END = "\noutput h'\n"
NL = "\ninput x[n_in]\nstate h[n]\nh' = f(W @ [x, h])\noutput h'\n"   # after a nonlinearity line


def _case(name, text, line, where, fragment):
    return pytest.param(text, line, where, fragment, id=name)


CASES = [
    # states
    _case("missing-update", "input x[n_in]\nstate h[n], c[n]\nh' = tanh(W @ [x, h])" + END,
          2, "c[n]", "state 'c' has no update"),
    _case("missing-update-only-state", "input x[n]\nstate h[n]\noutput y = tanh(W @ [x, h])\n",
          2, "h[n]", "no update"),
    _case("double-update", HDR + "h' = tanh(W @ [x, h])\nh' = tanh(V @ [x, h])" + END,
          4, 1, "updated twice"),
    _case("new-state-before-update", HDR + "a = tanh(h')\nh' = tanh(W @ x)" + END,
          3, "h')", "used before it is defined"),
    _case("prime-on-equation", HDR + "a = tanh(W @ x)\nh' = a'" + END, 4, "a'", "not a state"),
    _case("prime-on-input", HDR + "h' = tanh(W @ x')" + END, 3, "x'", "not a state"),
    _case("primed-lhs-not-state", HDR + "a' = tanh(W @ h)\nh' = h" + END, 3, 1, "not a state"),
    _case("double-prime", HDR + "h'' = tanh(W @ h)" + END, 3, 3, "strings are not part"),
    _case("state-assigned-without-prime", HDR + "h = tanh(W @ h)\nh' = h" + END,
          3, 1, "'h' is a state: its update is written h' = ..."),
    # names
    _case("assigned-twice", HDR + "a = tanh(W @ x)\na = tanh(V @ x)\nh' = a" + END,
          4, 1, "'a' is assigned twice (line 3)"),
    _case("input-assigned", HDR + "x = tanh(W @ h)\nh' = x" + END, 3, 1, "'x' is an input"),
    _case("declared-twice", "input x[n], x[n]\nstate h[n]\nh' = h" + END, 1, 13, "declared twice"),
    _case("input-and-state", "input x[n]\nstate x[n]\nx' = x\noutput x'\n", 2, "x[n]",
          "declared twice"),
    _case("nonlinearity-named-like-input", HDR + "nonlinearity x(u) = u\nh' = h" + END,
          3, "x(u)", "'x' is an input"),
    _case("equation-named-like-nonlinearity", HDR + "tanh = W @ h\nh' = h" + END,
          3, 1, "'tanh' is a nonlinearity"),
    _case("output-named-like-state", HDR + "h' = tanh(W @ h)\noutput h = V @ x\n",
          4, "h =", "'h' is a state"),
    _case("output-named-like-equation", HDR + "a = W @ h\nh' = a\noutput a = V @ h\n",
          5, "a =", "assigned twice"),
    _case("dunder-name", HDR + "__class__ = tanh(W @ h)\nh' = h" + END, 3, 1,
          "may not start with '__'"),
    _case("keyword-name", HDR + "for = tanh(W @ h)\nh' = h" + END, 3, "= tanh", "syntax error"),
    _case("non-ascii-name", HDR + "h' = tanh(W @ h\u00e9)" + END, 3, "\u00e9", "unexpected character"),
    # definition order and cycles
    _case("use-before-definition", HDR + "a = tanh(W @ b)\nb = tanh(V @ x)\nh' = a" + END,
          3, "b)", "'b' is used before it is defined (line 4)"),
    _case("cycle", HDR + "a = tanh(W @ b)\nb = tanh(V @ a)\nh' = a + b" + END,
          3, "b)", "used before it is defined"),
    _case("self-cycle", HDR + "a = tanh(W @ a)\nh' = a" + END, 3, "a)", "used before"),
    # what is not in the language
    _case("unknown-function", HDR + "h' = foo(W @ [x, h])" + END, 3, "foo", "unknown function 'foo'"),
    _case("attribute", HDR + "h' = np.tanh(W @ [x, h])" + END, 3, "np.", "attribute access"),
    _case("call-of-call", HDR + "h' = tanh(W @ x)(h)" + END, 3, "tanh(W", "a call is NAME(expr)"),
    _case("lambda", HDR + "h' = (lambda q: q)(h)" + END, 3, "lambda", "a lambda"),
    _case("subscript", HDR + "h' = tanh(W @ x[0])" + END, 3, "x[0]", "a subscript"),
    _case("slice", HDR + "h' = h[1:2]" + END, 3, "h[1", "a subscript"),
    _case("string", HDR + "h' = tanh(W @ 'x')" + END, 3, "'x'", "strings are not part"),
    _case("double-quoted-string", HDR + 'h\' = tanh(W @ "x")' + END, 3, '"x"', "strings"),
    _case("f-string", HDR + 'h\' = f"{h}"' + END, 3, '"{h}"', "strings"),
    _case("conditional", HDR + "h' = h if x else h" + END, 3, "h if", "a conditional"),
    _case("comparison", HDR + "h' = h < h" + END, 3, "h < h", "a comparison"),
    _case("boolean", HDR + "h' = h and h" + END, 3, "h and", "a boolean operator"),
    _case("not", HDR + "h' = not h" + END, 3, "not", "the operator not"),
    _case("invert", HDR + "h' = ~h" + END, 3, "~", "the operator ~"),
    _case("power", HDR + "h' = h ** 2" + END, 3, "h **", "the operator **"),
    _case("modulo", HDR + "h' = h % 2" + END, 3, "h %", "the operator %"),
    _case("walrus", HDR + "h' = (a := h)" + END, 3, "a :=", "an assignment expression"),
    _case("set", HDR + "h' = {h}" + END, 3, "{h}", "a set"),
    _case("dict", HDR + "h' = {h: h}" + END, 3, "{h:", "a dict"),
    _case("comprehension", HDR + "h' = [a for a in h]" + END, 3, "[a for", "a comprehension"),
    _case("generator", HDR + "h' = tanh(a for a in h)" + END, 3, "(a for", "a comprehension"),
    _case("starred", HDR + "h' = [*h]" + END, 3, "*h", "unpacking"),
    _case("await", HDR + "h' = await h" + END, 3, "await", "await"),
    _case("yield", HDR + "h' = (yield h)" + END, 3, "yield", "yield"),
    _case("none", HDR + "h' = None" + END, 3, "None", "the constant None"),
    _case("bool-constant", HDR + "h' = True * h" + END, 3, "True", "the constant True"),
    _case("complex-constant", HDR + "h' = h * 1j" + END, 3, "1j", "the constant 1j"),
    _case("ellipsis", HDR + "h' = ..." + END, 3, "...", "the constant Ellipsis"),
    _case("keyword-argument", HDR + "h' = tanh(u=h)" + END, 3, "tanh", "exactly one argument"),
    _case("two-arguments", HDR + "h' = tanh(h, h)" + END, 3, "tanh", "exactly one argument"),
    _case("star-argument", HDR + "h' = tanh(*h)" + END, 3, "tanh", "exactly one argument"),
    _case("nonlinearity-without-call", HDR + "h' = tanh" + END, 3, "tanh", "apply it"),
    # statements that are not equations
    _case("import", HDR + "import os\nh' = h" + END, 3, 1, "an equation is NAME = EXPR"),
    _case("def", HDR + "def f(): pass\nh' = h" + END, 3, 1, "an equation is NAME = EXPR"),
    _case("expression-statement", HDR + "print(h)\nh' = h" + END, 3, 1, "expected an equation"),
    _case("two-statements", HDR + "h' = h; a = h" + END, 3, 1, "one equation per line"),
    _case("augmented", HDR + "h' += h" + END, 3, 1, "an equation is NAME = EXPR"),
    _case("chained-assignment", HDR + "a = b = tanh(W @ h)\nh' = a" + END, 3, 1, "NAME = EXPR"),
    _case("tuple-target", HDR + "a, b = h, h\nh' = a" + END, 3, 1, "one name"),
    _case("annotated", HDR + "a: int = tanh(W @ h)\nh' = a" + END, 3, 1, "NAME = EXPR"),
    _case("decorator", HDR + "@tanh\nh' = h" + END, 3, 1, "syntax error"),
    _case("no-right-side", HDR + "h' =" + END, 3, 5, "syntax error"),
    _case("unclosed-bracket", HDR + "h' = tanh(W @ [x, h)" + END, 3, ")", "syntax error"),
    _case("line-continuation", HDR + "h' = h + \\\nh" + END, 3, (6, 11), "syntax error"),
    _case("unknown-character", HDR + "h' = tanh(W @ h) $" + END, 3, "$", "syntax error"),
    _case("nul-character", HDR + "h' = h\x00" + END, 3, "\x00", "unexpected character"),
    _case("form-feed", HDR + "h' = h\x0c + h" + END, 3, "\x0c", "unexpected character"),
    # sizes and shapes
    _case("size-conflict", HDR + "h' = x + h" + END, 3, "x + h", "size mismatch in a sum: n_in vs n"),
    _case("size-conflict-deep", HDR + "h' = tanh(W @ h + h) * sigmoid(x)" + END, 3, "tanh",
          "size mismatch in a gate"),
    _case("gate-sizes", HDR + "h' = x * h" + END, 3, "x * h", "size mismatch in a gate"),
    _case("matmul-columns", "param W[n, n]\n" + HDR + "h' = tanh(W @ [x, h])" + END, 4, "W @",
          "size mismatch in W @ ...: the columns of W"),
    _case("update-size", "input x[n]\nstate h[n + 1]\nh' = tanh(W @ [x, h]) + x" + END, 3, 1,
          "size mismatch in the update of state 'h'"),
    _case("matmul-left-not-param", HDR + "h' = tanh((W @ x) @ h)" + END, 3, "(W @ x) @",
          "the left side of @ must be a parameter matrix"),
    _case("matmul-left-input", HDR + "h' = tanh(x @ h)" + END, 3, "x @", "the left side of @"),
    _case("matmul-left-negated-input", HDR + "h' = tanh(-x @ h)" + END, 3, "x @",
          "the left side of @ must be a parameter matrix"),
    _case("matmul-left-gated-param", HDR + "h' = tanh(x * W @ h)" + END, 3, "x * W @",
          "the left side of @ must be a parameter matrix, not an expression: write the product "
          "first, e.g. `-(W @ v)`"),
    _case("matmul-left-gate-of-negated-param", HDR + "h' = tanh(b * -W @ [x, h])" + END, 3,
          "b * -W", "write the product first, e.g. `-(W @ v)` or `a * (W @ v)`"),
    _case("matmul-left-sum-of-params", HDR + "h' = tanh((W + V) @ h)" + END, 3, "(W + V) @",
          "write the product first"),
    _case("matmul-left-product", HDR + "h' = tanh((W @ V) @ h)" + END, 3, "(W @ V) @",
          "a product of matrices is not in the language"),
    _case("matmul-constant", HDR + "h' = W @ 2" + END, 3, "W @", "@ takes a parameter matrix"),
    _case("matrix-as-vector", HDR + "h' = tanh(W @ h) * W" + END, 3, 20, "parameter 'W' is a matrix"),
    _case("matrix-as-bias", HDR + "h' = tanh(W @ h + W)" + END, 3, "W)", "parameter 'W' is a matrix"),
    _case("matrix-as-bias-first", HDR + "h' = tanh(W + W @ h)" + END, 3, "W +",
          "parameter 'W' is a matrix"),
    _case("matrix-scaled-as-vector", HDR + "h' = tanh(W @ h) + 0.5 * W" + END, 3, 26,
          "parameter 'W' is a matrix"),
    _case("matrix-in-call", HDR + "a = W @ h\nh' = tanh(W)" + END, 4, "W)", "'W' is a matrix"),
    _case("matrix-in-concat", HDR + "a = W @ h\nh' = tanh(U @ [x, W])" + END, 4, "W]",
          "'W' is a matrix"),
    _case("vector-then-matrix", HDR + "h' = tanh(b * h + b @ x)" + END, 3, "b @",
          "parameter 'b' is used as a vector elsewhere"),
    _case("declared-map-left-of-matmul", "param W[n, n, n]\n" + HDR + "h' = tanh(W @ h)" + END,
          4, "W @", "parameter 'W' is declared as a feature map [n, n, n] (line 1), but left of @ "
          "it must be a matrix: declare it `param W[out, in]`"),
    _case("declared-vector-left-of-matmul", "param W[n]\n" + HDR + "h' = tanh(W @ h)" + END,
          4, "W @", "'W' is declared as a vector [n] (line 1)"),
    _case("uninferable", HDR + "h' = tanh(W @ x + b) * tanh(V @ q)" + END, 3, "V @",
          "cannot infer the shape of parameter 'V'"),
    _case("empty-concat", HDR + "h' = tanh(W @ [])" + END, 3, "[]", "an empty concat"),
    _case("constant-in-concat", HDR + "h' = tanh(W @ [1, h])" + END, 3, "1,", "not constants"),
    _case("constant-equation", HDR + "a = 3\nh' = h" + END, 3, "3", "not a constant"),
    _case("nonlinearity-of-constant", HDR + "h' = tanh(1) * h" + END, 3, "tanh", "of a constant"),
    _case("division-by-vector", HDR + "h' = x / h" + END, 3, 10, "division is only by a constant"),
    _case("division-by-zero", HDR + "h' = h / 0" + END, 3, "h /", "division by zero"),
    _case("constant-division-by-zero", HDR + "h' = h * (1 / 0)" + END, 3, "1 /", "division by zero"),
    _case("infinite-constant", HDR + "h' = 1e999 * h" + END, 3, "1e999", "too large"),
    _case("overflowing-constant", HDR + "h' = 1e300 * 1e300 * h" + END, 3, "1e300", "too large"),
    _case("long-number", HDR + "h' = " + "9" * 500 + " * h" + END, 3, "9", "more than 400 digits"),
    _case("no-output", HDR + "h' = tanh(W @ h)\n", 2, "h[n]",
          "a cell needs at least one output (e.g. `output h'`)"),
    _case("no-input", "state h[n]\nh' = tanh(W @ h)" + END, 1, 1, "at least one input"),
    _case("no-input-after-comments", "# rnn\n\n  cell rnn\nstate h[n]\nh' = tanh(W @ h)" + END,
          3, 3, "at least one input"),
    _case("no-state-no-output", "input x[n_in]\na = tanh(W @ x)\n", 1, "x[",
          "at least one state or output"),
    _case("constant-output", HDR + "h' = tanh(W @ [x, h])\noutput h'\noutput y = tanh(b)\n",
          5, 1, "depends on no input or state"),
    # declarations
    _case("declaration-without-size", "input x\nstate h[n]\nh' = h" + END, 1, "x", "NAME[size]"),
    _case("declaration-call", "input x(n)\nstate h[n]\nh' = h" + END, 1, "x(n)", "NAME[size]"),
    _case("declaration-attribute", "input os.x[n]\nstate h[n]\nh' = h" + END, 1, "os", "NAME[size]"),
    _case("zero-size", "input x[0]\nstate h[n]\nh' = h" + END, 1, "0", "must be positive"),
    _case("difference-size", "input x[n - 1]\nstate h[n]\nh' = h" + END, 1, "n -", "a sum of them"),
    _case("float-size", "input x[1.5]\nstate h[n]\nh' = h" + END, 1, "1.5", "a sum of them"),
    _case("call-size", "input x[len(n)]\nstate h[n]\nh' = h" + END, 1, "len", "a sum of them"),
    _case("underscore-size", "input x[_n]\nstate h[n]\nh' = h" + END, 1, "_n", "bad size name"),
    _case("empty-size", "input x[]\nstate h[n]\nh' = h" + END, 1, "]", "syntax error"),
    _case("matrix-input", "input x[n, m]\nstate h[n]\nh' = h" + END, 1, "x[", "a vector"),
    _case("five-dim-param", "param W[n, n, n, n, n]\n" + HDR + "h' = h" + END, 1, "W[",
          "must be a vector"),
    _case("empty-input-line", "input\nstate h[n]\nh' = h" + END, 1, 7, "needs something after it"),
    _case("misspelt-keyword", "inputs x[n]\nstate h[n]\nh' = h" + END, 1, "x[", "syntax error"),
    _case("bad-cell-name", "cell 3x\n" + HDR + "h' = h" + END, 1, "3x", "one identifier"),
    _case("dunder-cell-name", "cell __init__\n" + HDR + "h' = tanh(W @ [x, h])" + END, 1,
          "__init__", "bad cell name '__init__': names may not start with '__'"),
    _case("two-word-cell-name", "cell a b\n" + HDR + "h' = h" + END, 1, "a b", "one identifier"),
    _case("cell-named-twice", "cell a\ncell b\n" + HDR + "h' = h" + END, 2, "b", "named twice"),
    # outputs
    _case("output-undefined", HDR + "h' = tanh(W @ [x, h])\noutput q\n", 4, "q",
          "output 'q' is not defined"),
    _case("output-parameter", HDR + "h' = tanh(W @ h) + b\noutput b\n", 4, "b", "is a parameter"),
    _case("output-twice", HDR + "h' = tanh(W @ h)\noutput h'\noutput h'\n", 5, "h'", "given twice"),
    _case("output-prime-name", HDR + "h' = tanh(W @ h)\noutput y' = h\n", 4, "y'", "takes no prime"),
    _case("output-expression", HDR + "h' = tanh(W @ h)\noutput tanh(h')\n", 4, "tanh",
          "write output NAME"),
    _case("output-nonlinearity", HDR + "h' = tanh(W @ h)\noutput tanh\n", 4, "tanh", "apply it"),
    # nonlinearity declarations
    _case("nl-two-variables", "nonlinearity f(u) = u * v" + NL, 1, "v", "'v' is a second one"),
    _case("nl-sum", "nonlinearity f(u) = sum(u)" + NL, 1, "sum", "unknown function 'sum'"),
    _case("nl-subscript", "nonlinearity f(u) = u[0]" + NL, 1, "u[0]", "a subscript"),
    _case("nl-list", "nonlinearity f(u) = [u, u]" + NL, 1, "[u", "a list"),
    _case("nl-matmul", "nonlinearity f(u) = u @ u" + NL, 1, "u @", "the operator MatMult"),
    _case("nl-attribute", "nonlinearity f(u) = u.real" + NL, 1, "u.real", "attribute access"),
    _case("nl-call-of-lambda", "nonlinearity f(u) = (lambda: u)()" + NL, 1, "(lambda", "a call"),
    _case("nl-string", "nonlinearity f(u) = 'u'" + NL, 1, "'u'", "strings"),
    _case("nl-keyword", "nonlinearity f(u) = exp(x=u)" + NL, 1, "exp", "positional arguments only"),
    _case("nl-erf", "nonlinearity f(u) = erf(u)" + NL, 1, "erf", "unknown function 'erf'"),
    _case("nl-division-by-zero", "nonlinearity f(u) = u / 0" + NL, 1, "u / 0", "infinite or undefined"),
    _case("nl-log-zero", "nonlinearity f(u) = log(0 * u)" + NL, 1, "log", "infinite or undefined"),
    _case("nl-complex", "nonlinearity f(u) = sqrt(-1) * u" + NL, 1, "sqrt", "complex"),
    _case("nl-huge-power", "nonlinearity f(u) = 9 ** 9 ** 9 * u" + NL, 1, 26, "exponent"),
    _case("nl-huge-exp", "nonlinearity f(u) = exp(exp(exp(100))) * u" + NL, 1, "exp(exp(100",
          "too large"),
    _case("nl-infinite-constant", "nonlinearity f(u) = 1e999 * u" + NL, 1, "1e999", "too large"),
    _case("nl-builtin-name", "nonlinearity tanh(u) = u" + NL, 1, "tanh", "built-in nonlinearity"),
    _case("nl-twice", "nonlinearity f(u) = u\nnonlinearity f(u) = u" + NL, 2, "f(", "declared twice"),
    _case("nl-two-parameters", "nonlinearity f(u, v) = u" + NL, 1, "f(u", "with one variable"),
    _case("nl-constant-parameter", "nonlinearity f(1) = u" + NL, 1, "f(1", "with one variable"),
    _case("nl-no-body", "nonlinearity f(u)" + NL, 1, "f(u", "NAME(u) = EXPR"),
    _case("nl-self-reference", "nonlinearity f(u) = f(u)" + NL, 1, 21, "unknown function 'f'"),
    _case("nl-dunder", "nonlinearity __f__(u) = u" + NL, 1, "__f__", "may not start with '__'"),
    _case("nl-never-declared", HDR + "h' = f(W @ h)" + END, 3, "f(", "unknown function 'f'"),
    # files
    _case("empty", "", 1, 1, "the cell is empty"),
    _case("only-comments", "# a comment\n\n   # another\n", 1, 1, "the cell is empty"),
    _case("long-line", HDR + "h' = h" + " + h" * 3000 + END, 3, lang.MAX_LINE + 1,
          f"the limit is {lang.MAX_LINE}"),
    _case("nested-parentheses", HDR + "h' = " + "(" * 4900 + "h" + ")" * 4900 + END, 3,
          5 + lang.MAX_DEPTH + 1, "brackets nest more than"),
    _case("ten-thousand-parentheses", HDR + "h' = " + "(" * 10000 + "h" + ")" * 10000 + END, 3,
          lang.MAX_LINE + 1, "the limit is"),
    _case("nested-calls", HDR + "h' = " + "tanh(" * 150 + "h" + ")" * 150 + END, 3,
          5 + 5 * lang.MAX_DEPTH + 5, "brackets nest more than"),
    _case("long-sum", HDR + "h' = tanh(h) + " + "+".join(["x"] * 3000) + END, 3, (1, 6),
          "too large or nested too deeply"),
    _case("deep-unary", HDR + "h' = " + "-" * 5000 + "h" + END, 3, (1, 6), "nested too deeply"),
]


def _column(text: str, line: int, where) -> int | tuple[int, int]:
    """The expected column: a number, a (lo, hi) range, or where a piece of the line starts."""
    if not isinstance(where, str):
        return where
    shown = lang._lines(text)[line - 1]
    assert where in shown, f"{where!r} is not on line {line}: {shown!r}"
    return shown.index(where) + 1


def _parse_error(text) -> tuple[gl.SpecError, float]:
    """The error and the CPU seconds it took (process time: a loaded machine does not count)."""
    start = time.process_time()
    with pytest.raises(gl.SpecError) as info:
        gl.parse(text)
    return info.value, time.process_time() - start


def assert_shows_line_and_caret(error: gl.SpecError) -> None:
    """The message holds 'line L, column C', the offending line (a window of at most WIDTH
    of its characters, `...` marking a cut) and a caret under the character at C, on screen:
    the padding copies the tabs of the shown line."""
    message = str(error)
    assert message.startswith(f"line {error.line}, column {error.col}: ")
    assert "Traceback" not in message
    _, shown, caret = message.split("\n")
    assert shown.startswith("    ") and caret.startswith("    ")
    shown, caret = shown[4:], caret[4:]
    at = len(caret) - 1
    assert caret[at] == "^" and at <= len(shown)
    assert caret[:at] == "".join("\t" if ch == "\t" else " " for ch in shown[:at])
    text = error.text
    if len(text) <= WIDTH:
        assert shown == text
    else:
        assert len(shown) <= WIDTH + len("...  ...")
        assert shown.startswith("... ") or shown.endswith(" ...")
    if error.col <= len(text):
        assert shown[at] == text[error.col - 1]
    else:
        assert at == len(shown)                 # just after the end of the line


@pytest.mark.parametrize("text, line, where, fragment", CASES)
def test_malformed_cell_gives_one_located_spec_error(text, line, where, fragment):
    error, seconds = _parse_error(text)
    assert fragment in error.message, str(error)
    assert error.line == line, str(error)
    col = _column(text, line, where)
    if isinstance(col, tuple):
        assert col[0] <= error.col <= col[1], str(error)
    else:
        assert error.col == col, str(error)
    assert error.text == lang._lines(text)[line - 1]
    assert_shows_line_and_caret(error)
    assert seconds < 1.0
    assert "\u02b9" not in str(error)          # the internal prime never shows


def test_ten_megabyte_line_is_refused_quickly():
    for text in ("a" * 10_000_000, b"a" * 10_000_000, "h' = h\n" * 1_500_000):
        start = time.process_time()
        with pytest.raises(gl.SpecError, match="the limit is 1000000") as info:
            gl.parse(text)
        assert time.process_time() - start < 1.0
        assert info.value.line >= 1 and info.value.col >= 1


def test_ten_megabyte_file_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.cell"
    path.write_bytes(b"# " + b"x" * 10_000_000 + b"\n")
    start = time.process_time()
    with pytest.raises(gl.SpecError, match="the limit is 1000000") as info:
        gl.load(path)
    assert time.process_time() - start < 1.0
    assert (info.value.line, info.value.col) == (1, lang.MAX_BYTES + 1)
    assert_shows_line_and_caret(info.value)


@pytest.mark.parametrize("data, line, col", [
    (b"input x[n]\nstate h[n]\nh' = h \xff + h\noutput h'\n", 3, 8),
    (b"input x[n]\nstate h[n]\nh' = h # caf\xe9\noutput h'\n", 3, 13),
    (b"\xfe\xff", 1, 1),
    (b"input x[n]\r\nstate h[n]\r\n\x80", 3, 1),
], ids=["in-code", "latin-1-comment", "first-byte", "after-crlf"])
def test_bytes_that_are_not_utf8(data, line, col):
    error, seconds = _parse_error(data)
    assert "not UTF-8" in error.message
    assert (error.line, error.col) == (line, col)
    assert_shows_line_and_caret(error)
    assert seconds < 1.0


def test_utf8_comments_and_line_endings_are_fine():
    text = "# caf\u00e9 \u03c3(x) \u2028 \u0085\r\ninput x[n]\rstate h[n]\r\nh' = tanh(W @ [x, h])\n" \
           "output h'"
    assert gl.parse(text.encode("utf-8")).states == ("h",)
    with pytest.raises(gl.SpecError) as info:
        gl.parse(text.replace("output h'", "output q"))
    assert info.value.line == 5                # \r, \n and \r\n end lines; \u2028 does not


def test_non_text_is_refused():
    with pytest.raises(gl.SpecError, match="expected cell text"):
        gl.parse(12)


@pytest.mark.parametrize("name", ['a"""', "a b", "3x", "__x", "x\n", "\u00e9"])
def test_parse_refuses_a_cell_name_that_is_not_an_identifier(name):
    with pytest.raises(gl.SpecError, match="cell name"):
        gl.parse("input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n", name=name)


@pytest.mark.parametrize("name, reason", [('x"""', "names are ASCII identifiers"),
                                          ("__init__", "names may not start with '__'")])
def test_builder_refuses_a_cell_name_that_is_not_an_identifier(name, reason):
    b = gl.CellBuilder(name)
    x, h = b.input("x", "n"), b.state("h", "n")
    b.update(h, gl.builder.tanh(b.param("W") @ b.concat(x, h)))
    b.output(h.new)
    with pytest.raises(gl.SpecError, match="bad cell name") as info:
        b.build()
    assert reason in info.value.message


def _long_line(before: int, after: int) -> str:
    """An update whose unknown function `foo` stands after `before` terms and before `after`."""
    return "h' = tanh(" + "h + " * before + "foo(h)" + " + h" * after + ")"


@pytest.mark.parametrize("before, after", [(0, 300), (30, 300), (100, 100), (300, 30), (300, 0)],
                         ids=["start", "early", "middle", "late", "end"])
def test_a_long_line_is_shown_around_the_error(before, after):
    """The caret and the offending name stay on screen however far right the error is."""
    line = _long_line(before, after)
    error, _ = _parse_error(HDR + line + END)
    assert (error.line, error.col) == (3, line.index("foo") + 1)
    assert_shows_line_and_caret(error)
    shown, caret = str(error).split("\n")[1:]
    assert shown[caret.index("^"):].startswith("foo(h)")
    assert shown.startswith("    ... ") == (error.col > WIDTH // 2 + 1)
    assert shown.endswith(" ...") == (len(line) - error.col >= WIDTH // 2)


def test_a_caret_past_the_end_of_a_long_line_is_shown():
    line = "h' = " + "h + " * 100 + "h +"
    error, _ = _parse_error(HDR + line + END)          # a sum without its last term
    assert (error.line, error.col) == (3, len(line) + 1)
    assert_shows_line_and_caret(error)
    assert str(error).split("\n")[1].endswith("h + h +")


@pytest.mark.parametrize("line", ["\th' =\ttanh(foo(h))", "h' =\t\ttanh(\tfoo(h))",
                                  "\t" * 3 + "h' = tanh(" + "h + " * 60 + "\tfoo(h))"])
def test_a_caret_after_tabs_lines_up(line):
    """.col counts a tab as one character; on screen the caret sits under the name."""
    error, _ = _parse_error(HDR + line + END)
    assert (error.line, error.col) == (3, line.index("foo") + 1)
    assert_shows_line_and_caret(error)
    shown, caret = str(error).split("\n")[1:]
    assert caret.expandtabs().index("^") == shown.expandtabs().index("foo(h)")


@pytest.mark.parametrize("stem, name", [("my-lstm", "my_lstm"), ("2layer", "c_2layer"),
                                        ("a b.c", "a_b_c"), ('x"""', "x___"), ("__", "cell")])
def test_load_makes_an_identifier_of_the_file_name(tmp_path, stem, name):
    path = tmp_path / f"{stem}.cell"
    path.write_text("input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n")
    assert gl.load(path).name == name


def test_load_of_a_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(gl.SpecError, match="cannot read"):
        gl.load(tmp_path / "nope.cell")


# -- the command line -------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphlstm.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cli_commands(tmp_path_factory) -> str:
    return _cli("--help", cwd=tmp_path_factory.mktemp("cli")).stdout


BAD_FILES = {
    "unknown-function": (HDR + "h' = foo(W @ [x, h])" + END).encode(),
    "size-conflict": (HDR + "h' = x + h" + END).encode(),
    "not-utf8": b"input x[n]\nstate h[n]\nh' = h \xff\noutput h'\n",
    "empty": b"",
    "nested": (HDR + "h' = " + "(" * 10000 + "h" + ")" * 10000 + END).encode(),
}


CLI_CASES = [("codegen", case) for case in sorted(BAD_FILES)] + \
    [(command, "unknown-function") for command in ("check", "render", "equations")]


@pytest.mark.parametrize("command, case", CLI_CASES)
def test_cli_prints_one_message_and_exits_non_zero(tmp_path, cli_commands, command, case):
    if f"    {command}" not in cli_commands:
        pytest.skip(f"the CLI has no '{command}' command yet")
    path = tmp_path / "bad.cell"
    path.write_bytes(BAD_FILES[case])
    result = _cli(command, str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    first, *rest = result.stderr.rstrip("\n").split("\n")
    assert first.startswith("graphlstm: error: line ") and ", column " in first, result.stderr
    assert len(rest) <= 2                      # the offending line and its caret
    assert list(tmp_path.iterdir()) == [path]  # nothing written
