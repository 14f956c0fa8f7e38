"""Gradient checking: compiled backprop through time against central differences.

`check_grads(cell)` draws random parameters, inputs, initial states and cotangents, and
compares `<grad, v>` from `prog.backward` with the central difference of
`L = sum(ys * dys) + sum(state_T * dstate_T)` along random directions v, in float64, for
every parameter, input and initial state. A five-point stencil keeps the difference's own
error near 1e-12, so a real mistake stands out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass
class GradCheck:
    """The worst relative error per array, and the verdict against `tol`."""

    cell: str
    errors: dict[str, float]
    tol: float
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return bool(self.worst <= self.tol)

    def __str__(self) -> str:
        width = max((len(k) for k in self.errors), default=4)
        lines = [f"gradient check of {self.cell} (sizes {self.sizes}; float64, central differences)",
                 f"  {'array':<{width}}  worst relative error"]
        lines += [f"  {k:<{width}}  {v:.2e}" for k, v in self.errors.items()]
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"{verdict}: worst {self.worst:.2e} (tolerance {self.tol:.0e})")
        return "\n".join(lines)


def default_sizes(cell) -> dict[str, int]:
    """Small, distinct sizes (3, 4, 5, ...) so that transposition mistakes show."""
    return {s: 3 + i for i, s in enumerate(cell.sizes)}


def random_problem(cell, sizes: Mapping[str, int], T: int = 4, B: int = 3, seed: int = 0,
                   dtype="float64"):
    """(params, xs, state0, dys, dstate_T) drawn at random for a cell."""
    from .ir import concrete_shape
    rng = np.random.default_rng(seed)
    params = cell.init_params(sizes, seed=seed, dtype=dtype)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}
    shape = lambda name: concrete_shape(cell.shape(name), sizes)  # noqa: E731
    draw = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    xs = {i: draw(T, B, *shape(i)) for i in cell.inputs}
    state0 = {s: draw(B, *shape(s)) for s in cell.states}
    dys = {o: draw(T, B, *shape(o)) for o in cell.outputs}
    dstate = {s: draw(B, *shape(s)) for s in cell.states}
    return params, xs, state0, dys, dstate


def check_grads(cell, sizes: Mapping[str, int] | None = None, *, T: int = 4, B: int = 3,
                seed: int = 0, tol: float = 1e-7, directions: int = 2, optimize: bool = True,
                program=None, strict: bool = True) -> GradCheck:
    """Check a cell's compiled backward against central differences of its forward.

    Returns a `GradCheck`; with `strict` (the default) a failure raises AssertionError
    showing the table.
    """
    from .codegen import compile as compile_cell
    sizes = dict(sizes or default_sizes(cell))
    prog = program or compile_cell(cell, optimize=optimize)
    params, xs, state0, dys, dstate = random_problem(cell, sizes, T, B, seed)
    grads = prog.backward(params, xs, state0, dys, dstate)
    groups = {"params": params, "xs": xs, "state0": state0}

    def loss(which: str, name: str, value: np.ndarray) -> float:
        args = {k: dict(v) for k, v in groups.items()}
        args[which][name] = value
        ys, state_T = prog.forward(args["params"], args["xs"], args["state0"])
        return float(sum(np.sum(ys[o] * dys[o]) for o in dys)
                     + sum(np.sum(state_T[s] * dstate[s]) for s in dstate))

    rng = np.random.default_rng(seed + 1)
    errors: dict[str, float] = {}
    for which, arrays in groups.items():
        for name, value in arrays.items():
            worst = 0.0
            for _ in range(directions):
                v = rng.standard_normal(value.shape)
                numeric = _directional(lambda a: loss(which, name, a), value, v)
                analytic = float(np.sum(grads[name] * v))
                scale = max(abs(numeric), abs(analytic), 1e-10)
                error = abs(numeric - analytic) / scale
                worst = max(worst, error) if np.isfinite(error) else float("inf")   # NaN fails
            errors[name] = worst
    report = GradCheck(cell.name, errors, tol, sizes)
    if strict and not report.ok:
        raise AssertionError(str(report))
    return report


def _directional(f, x: np.ndarray, v: np.ndarray, eps: float = 1e-5) -> float:
    """d/dh f(x + h v) at 0 by the five-point central stencil (error O(eps^4))."""
    f1, f_1 = f(x + eps * v), f(x - eps * v)
    f2, f_2 = f(x + 2 * eps * v), f(x - 2 * eps * v)
    return (8 * (f1 - f_1) - (f2 - f_2)) / (12 * eps)
