"""Nothing in a cell is ever executed.

Payloads that would run a command, write a file or evaluate text are planted in every
position the grammar has: equations (both sides, call arguments), sizes, declaration
names, nonlinearity heads and bodies, output lines, the cell name, comments and the file
name. An audit hook watches for processes, file writes and `exec`/`eval` while the text is
parsed (and, where it parses, compiled and run); a marker file must never appear.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import graphlstm as gl

MARKER = "pwned_marker"

# Payloads that, were they executed, would leave MARKER in the working directory.
PAYLOADS = [
    f"__import__('os').system('touch {MARKER}')",
    f'__import__("os").system("touch {MARKER}")',
    f"open('{MARKER}', 'w').write('x')",
    f"exec('open(\"{MARKER}\", \"w\")')",
    f"eval('__import__(\"os\").system(\"touch {MARKER}\")')",
    "getattr(__import__('os'), 'system')('touch " + MARKER + "')",
    "().__class__.__bases__[0].__subclasses__()",
    "__builtins__",
    "__import__",
    "breakpoint()",
    "globals()",
    "compile",
    "lambda: exec",
    "exec(bytes([116, 111, 117, 99, 104]))",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "sympify",
    "x.__class__",
]

# Every position of the grammar, as a template with one hole.
CELL = "input x[n_in]\nstate h[n]\n{eq}\noutput h'\n"
POSITIONS = {
    "equation": CELL.format(eq="h' = {p}"),
    "call-argument": CELL.format(eq="h' = tanh({p})"),
    "matmul-right": CELL.format(eq="h' = tanh(W @ {p})"),
    "gate": CELL.format(eq="h' = tanh(W @ [x, h]) * {p}"),
    "concat-part": CELL.format(eq="h' = tanh(W @ [x, {p}])"),
    "equation-name": CELL.format(eq="{p} = tanh(W @ [x, h])\nh' = h"),
    "input-size": "input x[{p}]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n",
    "state-size": "input x[n]\nstate h[{p}]\nh' = tanh(W @ [x, h])\noutput h'\n",
    "param-size": "param W[n, {p}]\n" + CELL.format(eq="h' = tanh(W @ [x, h])"),
    "input-name": "input {p}[n]\nstate h[n]\nh' = tanh(W @ h)\noutput h'\n",
    "state-name": "input x[n]\nstate {p}[n]\nh' = h\noutput h'\n",
    "param-name": "param {p}[n, n]\n" + CELL.format(eq="h' = tanh(W @ h)"),
    "nonlinearity-body": "nonlinearity f(u) = {p}\n" + CELL.format(eq="h' = f(W @ [x, h])"),
    "nonlinearity-inner": "nonlinearity f(u) = exp({p}) * u\n" + CELL.format(eq="h' = f(W @ h)"),
    "nonlinearity-name": "nonlinearity {p}(u) = u\n" + CELL.format(eq="h' = tanh(W @ h)"),
    "nonlinearity-variable": "nonlinearity f({p}) = u\n" + CELL.format(eq="h' = f(W @ h)"),
    "output-name": "input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput {p}\n",
    "output-equation": "input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput y = {p}\n",
    "output-equation-name": "input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput {p} = h'\n",
    "cell-name": "cell {p}\n" + CELL.format(eq="h' = tanh(W @ [x, h])"),
    "whole-line": "input x[n]\nstate h[n]\n{p}\nh' = tanh(W @ [x, h])\noutput h'\n",
    "after-keyword": "input x[n], {p}\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n",
}

# Comments may hold anything: the cell parses, compiles and runs, and nothing happens.
COMMENTED = "# {p}\ninput x[n]  # {p}\nstate h[n]\nh' = tanh(W @ [x, h])  # {p}\noutput h'  # {p}\n"

_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
           "subprocess.Popen", "pty.spawn", "os.remove", "os.rename", "shutil.rmtree",
           "builtins.input", "builtins.breakpoint", "socket.connect")
_WATCH = threading.local()


def _hook(event: str, args) -> None:
    if not getattr(_WATCH, "on", False):
        return
    if event == "exec":
        source = getattr(args[0], "co_filename", "<?>")   # text, not a module file
        if source.startswith("<") and not source.startswith("<graphlstm") and _tainted(args[0]):
            watching_log.append((event, getattr(args[0], "co_filename", "?")))
    elif event in _EVENTS:
        watching_log.append((event, repr(args)[:200]))
    if event == "open" and MARKER in str(args[0]) and any(m in str(args[1]) for m in "wax+"):
        watching_log.append((event, repr(args)[:200]))


_TAINT = {"__import__", "system", "open", "exec", "eval", "getattr", "globals", "breakpoint",
          "compile", "sympify", "__subclasses__", "__builtins__", "__class__", "bytes", MARKER}


def _tainted(code) -> bool:
    """Whether exec'd text holds a word of a payload (libraries exec text of their own, e.g.
    namedtuple; eval or sympify of planted text would carry the payload's words)."""
    names = set(getattr(code, "co_names", ())) | {c for c in getattr(code, "co_consts", ())
                                                   if isinstance(c, str)}
    nested = [c for c in getattr(code, "co_consts", ()) if hasattr(c, "co_names")]
    return bool(names & _TAINT) or any(MARKER in n for n in names) or any(map(_tainted, nested))


watching_log: list = []
sys.addaudithook(_hook)      # audit hooks stay for the process; this one is idle unless watching


class _Watch:
    """Record forbidden events (processes, file writes, exec of planted text) in the block."""

    def __enter__(self):
        watching_log.clear()
        _WATCH.on = True
        return watching_log

    def __exit__(self, *exc):
        _WATCH.on = False
        return False


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _assert_untouched(where: Path) -> None:
    assert not (where / MARKER).exists()
    assert [p.name for p in where.iterdir()] == []


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("position", sorted(POSITIONS))
def test_planted_code_is_never_run(in_tmp, position, payload):
    """Code is a SpecError; a payload that is a plain name (`compile`) may be a legal name,
    and then the cell compiles and runs, and still nothing happens."""
    text = POSITIONS[position].replace("{p}", payload)
    with _Watch() as events:
        try:
            cell = gl.parse(text)
        except gl.SpecError:
            cell = None
    assert events == []
    if cell is not None:
        assert payload.isidentifier(), f"{payload!r} was accepted in {position}"
        _run_quietly(cell)
    _assert_untouched(in_tmp)


def _run_quietly(cell) -> None:
    """Compile (both ways) and run a cell under watch: only our own module may be exec'd."""
    with _Watch() as events:
        sizes = {s: 2 for s in cell.sizes}
        for optimize in (False, True):
            prog = gl.compile(cell, optimize=optimize)
            params, xs, state0, dys, dstate = gl.testing.random_problem(cell, sizes, T=2, B=1)
            prog.forward(params, xs, state0)
            prog.backward(params, xs, state0, dys, dstate)
    assert events == []


@pytest.mark.parametrize("payload", PAYLOADS[:3])
def test_payloads_in_comments_are_inert_end_to_end(in_tmp, payload):
    cell = gl.parse(COMMENTED.replace("{p}", payload))
    with _Watch() as events:
        for optimize in (False, True):
            prog = gl.compile(cell, optimize=optimize)
            assert payload not in prog.source
            params = cell.init_params({"n": 3})
            ys, _ = prog.forward(params, np.zeros((2, 1, 3)))
            prog.backward(params, np.zeros((2, 1, 3)), None, {"h": ys["h"]})
    assert events == []
    _assert_untouched(in_tmp)


FILE_NAMES = ['a""";__import__("os").system("touch ' + MARKER + '");"""',
              "a'''\nimport os\nos.system('touch " + MARKER + "')\n'''",
              "x\\N{LATIN SMALL LETTER A}", "x\\", "x\r\nimport os"]


@pytest.mark.parametrize("stem", FILE_NAMES, ids=range(len(FILE_NAMES)))
def test_file_names_never_reach_generated_code(in_tmp, stem):
    path = in_tmp / (stem + ".cell")
    try:
        path.write_text("input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n")
    except OSError:
        pytest.skip("the file system refuses this name")
    with _Watch() as events:
        cell = gl.load(path)
        assert cell.name.isidentifier() and cell.name.isascii()
        prog = gl.compile(cell)
        prog.forward(cell.init_params({"n": 2}), np.zeros((1, 1, 2)))
    assert events == []
    assert not (in_tmp / MARKER).exists()


@pytest.mark.parametrize("payload", PAYLOADS[:2] + ['x"""', "a\nb"])
def test_builder_names_sizes_and_formulas_are_never_run(in_tmp, payload):
    with _Watch() as events:
        b = gl.CellBuilder("c")
        for call in (lambda: b.input(payload, "n"), lambda: b.state("h", payload),
                     lambda: b.param(payload), lambda: b.size(payload),
                     lambda: b.nonlinearity("f", payload), lambda: b.nonlinearity(payload, "u")):
            with pytest.raises(gl.SpecError):
                call()
        with pytest.raises(gl.SpecError):
            gl.parse("input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n", name=payload)
    assert events == []
    _assert_untouched(in_tmp)


def test_formula_text_is_parsed_not_sympified(in_tmp):
    b = gl.CellBuilder("c")
    with _Watch() as events:
        b.nonlinearity("soft", "u / (1 + abs(u))")
    assert events == [] and "soft" in b.nonlinearities


@pytest.mark.parametrize("make", ["stack", "bidirectional"])
def test_composite_names_never_reach_generated_code(in_tmp, make):
    from graphlstm import compose
    name = 'a""";__import__("os").system("touch ' + MARKER + '");"""'
    rnn = gl.zoo.get("rnn")
    with pytest.raises(gl.SpecError, match="bad cell name"):
        model = compose.stack(rnn, rnn, name=name) if make == "stack" else \
            compose.bidirectional(rnn, name=name)
        model.compile() if make == "bidirectional" else gl.compile(model)
    assert not (in_tmp / MARKER).exists()


# -- names cannot break the generated code ---------------------------------------------------

from graphlstm.codegen.naming import MODULE_NAMES  # noqa: E402
from graphlstm.codegen.runtime import HELPERS  # noqa: E402
from graphlstm.reference import run_sequence  # noqa: E402
from graphlstm.testing import check_grads, random_problem  # noqa: E402

# Names the generated module uses itself, Python builtins, soft keywords, helper and local
# names of the module and the names codegen derives from equations (x_h, h_new, d_h, ...).
DANGEROUS = sorted(
    (set(MODULE_NAMES) | set(HELPERS) | {
        "print", "len", "range", "sum", "max", "min", "abs", "list", "dict", "id", "type",
        "object", "iter", "map", "zip", "open", "exec", "eval", "input", "state", "output",
        "param", "cell", "nonlinearity", "match", "case", "_", "self", "math", "numpy", "e",
        "pi", "value", "what", "names", "expected", "shape", "rank", "sizes", "known",
        "_prepare", "_mapping", "_array", "_expect", "_size", "x_h", "h_new", "c_new", "d_h",
        "grad_W", "ys_h", "h_seq", "v_", "vW", "np_", "range_", "float32", "ndarray",
        "ValueError", "isinstance", "Exception", "super", "globals", "None_", "k"})
    - {"tanh", "sigmoid"})      # the nonlinearities the test cell applies (names of their own)
LINE_HEADS = {"input", "state", "param", "cell", "nonlinearity", "output"}
ROLES = ("inp", "st", "eq", "mat", "vec", "out", "size")


def _names_cell(names: dict) -> gl.Cell:
    """A small cell with every role filled by the given names (others: fixed safe names)."""
    n = names
    text = (f"input {n['inp']}[m]\nstate {n['st']}[{n['size']}]\n"
            f"{n['eq']} = tanh({n['mat']} @ [{n['inp']}, {n['st']}] + {n['vec']})\n"
            f"{n['st']}' = {n['eq']} * sigmoid(Vq @ {n['st']}) + {n['vec']} * {n['st']}\n"
            f"output {n['out']} = 2 * {n['st']}' - {n['eq']}\noutput {n['st']}'\n")
    return gl.parse(text, name="names")


def _role_table(shift: int) -> list[dict]:
    """Cells that together give every dangerous name one role (rotated by `shift`)."""
    pool = list(DANGEROUS)
    cells, k = [], 0
    while k < len(pool):
        names = {}
        for role in ROLES[shift:] + ROLES[:shift]:
            ok = [p for p in pool[k:] if p not in names.values() and _fits(role, p)]
            names[role] = ok[0] if ok else f"safe_{role}"
            if ok:
                pool.remove(ok[0])
        cells.append(names)
    return cells


def _fits(role: str, name: str) -> bool:
    if role in ("eq", "out") and name in LINE_HEADS:
        return False
    if role == "size" and name.startswith("_"):
        return False
    return name not in ("m", "Vq")


def _check_against_reference(cell: gl.Cell) -> None:
    sizes = {s: 4 + i for i, s in enumerate(cell.sizes)}       # unlike T = 3 and B = 2
    params, xs, state0, _, _ = random_problem(cell, sizes, T=3, B=2)
    expected, expected_state = run_sequence(cell, params, xs, state0)
    for optimize in (False, True):
        ys, state_T = gl.compile(cell, optimize=optimize).forward(params, xs, state0)
        for k in expected:
            np.testing.assert_allclose(ys[k], expected[k], rtol=1e-10, atol=1e-12)
        for k in expected_state:
            np.testing.assert_allclose(state_T[k], expected_state[k], rtol=1e-10, atol=1e-12)
        check_grads(cell, sizes, T=3, B=2, optimize=optimize)


@pytest.mark.parametrize("names", _role_table(0) + _role_table(3),
                         ids=lambda names: "-".join(names.values()))
def test_dangerous_names_compile_and_run_correctly(names):
    _check_against_reference(_names_cell(names))


@pytest.mark.parametrize("size", [
    "np", "range", "dtype", "params", "xs", "t", "first", "tape", "len",
    "T", "B"])
def test_dangerous_size_names(size):
    _check_against_reference(gl.parse(
        f"input x[{size}]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput y = x * 2\noutput h'\n"))


def test_a_custom_nonlinearity_named_like_the_module():
    _check_against_reference(gl.parse(
        "nonlinearity np(u) = u / (1 + abs(u))\nnonlinearity forward(v) = np(v) * 2\n"
        "input x[n]\nstate h[n]\nh' = forward(W @ [x, h]) * np(h)\noutput h'\n"))
