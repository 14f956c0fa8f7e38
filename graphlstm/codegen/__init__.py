"""Code generation: cells -> standalone NumPy modules (see `program.py`)."""
from __future__ import annotations

import builtins
import hashlib
import linecache
import types
import weakref
from pathlib import Path

from .program import ModuleWriter

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_BY_SOURCE: dict[tuple, "Program"] = {}


class Program:
    """A compiled cell: `forward`, `backward`, the module `source`, and `save`.

    The source imports NumPy only; `save` writes it as a module that runs without
    graphlstm. It is registered with `linecache`, so tracebacks, `inspect.getsource`
    and pdb show the generated lines.
    """

    def __init__(self, cell, source: str, optimize: bool) -> None:
        self.cell, self.source, self.optimize = cell, source, optimize
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        self.filename = f"<graphlstm {cell.name} {digest}>"
        linecache.cache[self.filename] = (len(source), None, source.splitlines(True), self.filename)
        self.module = types.ModuleType(f"graphlstm_generated_{cell.name}")
        self.module.__file__ = self.filename
        code = builtins.compile(source, self.filename, "exec")
        exec(code, self.module.__dict__)  # our own generated code, never user text

    def forward(self, params, xs, state0=None):
        """`(ys, state_T)`: the cell run over `xs` ([T, B, size] per input)."""
        return self.module.forward(params, xs, state0)

    def backward(self, params, xs, state0, dys, dstate_T=None):
        """The gradients (every parameter, input and initial state) of
        `sum(ys * dys) + sum(state_T * dstate_T)`: backprop through time."""
        return self.module.backward(params, xs, state0, dys, dstate_T)

    def vjp(self, params, xs, state0=None):
        """`(ys, state_T, pullback)` as `jax.vjp` gives: `pullback(dys, dstate_T=None)`
        returns the gradients, reusing this forward sweep instead of running it again."""
        tape: dict = {}
        ys, state_T = self.module.forward(params, xs, state0, tape)

        def pullback(dys, dstate_T=None):
            return self.module.backward(params, xs, state0, dys, dstate_T, tape)

        return ys, state_T, pullback

    def save(self, path) -> Path:
        """Write the standalone module to `path` (importable without graphlstm)."""
        path = Path(path)
        path.write_text(self.source, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        kind = "optimised" if self.optimize else "plain"
        return f"<Program {self.cell.name} ({kind}), {len(self.source.splitlines())} lines>"


def generate(cell, optimize: bool = True, backward: bool = True) -> str:
    """The text of the standalone NumPy module of a cell (forward only with backward=False)."""
    from ..passes import optimize_step
    step = optimize_step(cell.step) if optimize else cell.step
    return ModuleWriter(cell, step, optimize, backward).source()


def compile(cell, optimize: bool = True, backend: str = "numpy") -> Program:
    """Generate, load and cache the NumPy module of a cell.

    `optimize=False` gives the plain code: the graph as written, everything per step.
    """
    from ..cell import Cell
    if not isinstance(cell, Cell) and hasattr(cell, "compile"):   # composite models (bidirectional)
        return cell.compile(optimize=optimize, backend=backend)
    if backend != "numpy":
        from .. import interop
        return interop.compile_backend(cell, backend, optimize)
    key = (optimize,)
    per_cell = _CACHE.setdefault(cell, {})
    if key in per_cell:
        return per_cell[key]
    source = generate(cell, optimize)
    structural = (source, optimize)
    program = _BY_SOURCE.get(structural)
    if program is None or program.cell.name != cell.name:
        program = Program(cell, source, optimize)
        _BY_SOURCE[structural] = program
    per_cell[key] = program
    return program
