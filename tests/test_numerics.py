"""Numerics: no overflow, no NaN, no floating-point warning for inputs and parameters up to
|1e4|, in float32 and float64; float32 close to float64 on the zoo.

Every check runs under `np.errstate(all="raise")`, so any overflow, invalid operation,
division by zero or underflow is an exception; the one exception is tanh's slope `1 - y**2`,
whose square underflows for |y| below 1e-19 (float32) and is then exactly 0 (the answer, 1,
is exact). Values are drawn from [-1e4, 1e4] together
with the extremes and the thresholds where `exp` overflows or underflows (±88, ±710) and
tiny normal numbers (±1e-30); subnormal inputs are not used (producing one is itself an
underflow).

float32 against float64: the float64 program runs on the float32 problem cast to float64,
so only the arithmetic differs; the error of an array `a` is the norm-wise relative error
`||a32 - a64||_2 / ||a64||_2` over the whole array (time, batch and features), required
below 1e-5 for every output, final state and gradient.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl
from graphlstm.codegen.runtime import HELPERS
from graphlstm.testing import random_problem

DTYPES = [np.float32, np.float64]
MODES = [pytest.param(opt, id="optimised" if opt else "plain") for opt in (False, True)]
EXTREMES = [-1e4, -710, -88, -30, -3, -1, -1e-30, 0, 1e-30, 1, 3, 30, 88, 710, 1e4]


def _grid(dtype) -> np.ndarray:
    """[T, B, n] inputs: the extremes and thresholds, then uniform values in [-1e4, 1e4]."""
    rng = np.random.default_rng(7)
    values = np.concatenate([EXTREMES, rng.uniform(-1e4, 1e4, 45), rng.uniform(-40, 40, 60)])
    return values.reshape(4, 3, 10).astype(dtype)


def _exact(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and f'(x) in float64 from textbook formulas (warnings off: inf is fine here)."""
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        s = 1 / (1 + np.exp(-x))
        table = {
            "sigmoid": (s, s * (1 - s)),
            "tanh": (np.tanh(x), 1 - np.tanh(x) ** 2),
            "relu": (np.maximum(x, 0), (x > 0).astype(float)),
            "identity": (x, np.ones_like(x)),
            "softplus": (np.logaddexp(x, 0), s),
            "softsign": (x / (1 + np.abs(x)), 1 / (1 + np.abs(x)) ** 2),
            "hard_sigmoid": (np.clip(x / 6 + 0.5, 0, 1), ((x > -3) & (x < 3)) / 6),
        }
    return table[name]


NONLINEARITIES = ["sigmoid", "tanh", "relu", "identity", "softsign", "hard_sigmoid", "softplus"]


@pytest.mark.parametrize("optimize", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NONLINEARITIES)
def test_builtin_nonlinearity_and_derivative_raise_nothing(name, dtype, optimize):
    cell = gl.parse(f"input x[n]\noutput y = {name}(x)\n", name=name)
    prog = gl.compile(cell, optimize=optimize)
    x = _grid(dtype)
    ones = np.ones_like(x)
    with np.errstate(all="raise", under="ignore" if name == "tanh" else "raise"):
        y = prog.forward({}, x)[0]["y"]
        dx = prog.backward({}, x, None, {"y": ones})["x"]
    value, slope = _exact(name, x)
    eps = np.finfo(dtype).eps
    # a slope computed from the rounded output (1 - y**2, y*(1 - y)) is off by a few eps
    for got, want in ((y, value), (dx, slope)):
        assert got.dtype == dtype
        assert np.all(np.abs(got - want) <= 4 * eps * np.abs(want) + 2 * eps), name


def test_softplus_helper_is_stable_and_accurate():
    namespace = {"np": np}
    exec(HELPERS["_softplus"], namespace)        # our own helper text, as the module would
    for dtype in DTYPES:
        x = _grid(dtype)
        with np.errstate(all="raise"):
            y = namespace["_softplus"](x)
        want = _exact("softplus", x)[0]
        eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
        assert y.dtype == dtype and np.all(np.abs(y - want) <= 2 * eps * np.abs(want) + tiny)


def _scaled_problem(cell, dtype, scale: float, seed: int = 0):
    """Parameters, inputs and initial states uniform in [-scale, scale], with the extremes
    ±scale themselves present; cotangents standard normal."""
    sizes = {s: 4 + i for i, s in enumerate(cell.sizes)}
    params, xs, state0, dys, dstate = random_problem(cell, sizes, T=6, B=3, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)

    def scaled(group):
        out = {}
        for k, v in group.items():
            a = rng.uniform(-scale, scale, v.shape)
            a.flat[:2] = (scale, -scale)[:a.size]
            out[k] = a.astype(dtype)
        return out

    return scaled(params), scaled(xs), scaled(state0), dys, dstate


def _run_raising(prog, problem) -> list[np.ndarray]:
    with np.errstate(all="raise"):
        ys, state_T = prog.forward(*problem[:3])
        grads = prog.backward(*problem)
    return list(ys.values()) + list(state_T.values()) + list(grads.values())


@pytest.mark.parametrize("optimize", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("name", gl.zoo.names())
def test_zoo_raises_nothing_for_values_up_to_1e4(name, scale, dtype, optimize):
    cell = gl.zoo.get(name)
    prog = gl.compile(cell, optimize=optimize)
    for out in _run_raising(prog, _scaled_problem(cell, dtype, scale)):
        assert out.dtype == dtype and np.isfinite(out).all()


ALL_BUILTINS = """
param V[n, n]
input x[n_in]
state h[n], c[n]
p = W @ [x, h] + b
c' = sigmoid(p) * c + hard_sigmoid(p) * tanh(U @ x) + relu(p) * 0.5
h' = softsign(V @ c') * identity(c') + tanh(c') * 0.5
output h'
output y = softsign(p) - hard_sigmoid(h') + relu(V @ h')
"""


@pytest.mark.parametrize("optimize", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_every_builtin_in_a_recurrence_stays_finite(scale, dtype, optimize):
    """Overflow, invalid and division raise; underflow alone is allowed here: through time,
    products of small derivatives (softsign's is 1/(1+|u|)^2) truly fall below float32's
    range, and flushing them to zero is the right answer."""
    cell = gl.parse(ALL_BUILTINS, name="all_builtins")
    prog = gl.compile(cell, optimize=optimize)
    problem = _scaled_problem(cell, dtype, scale)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        ys, state_T = prog.forward(*problem[:3])
        grads = prog.backward(*problem)
    for out in list(ys.values()) + list(state_T.values()) + list(grads.values()):
        assert out.dtype == dtype and np.isfinite(out).all()


def _relative(a32: np.ndarray, a64: np.ndarray) -> float:
    """Norm-wise relative error of a float32 result against the float64 one."""
    scale = np.linalg.norm(a64)
    return float(np.linalg.norm(a32.astype(np.float64) - a64) / scale) if scale else \
        float(np.linalg.norm(a32))


@pytest.mark.parametrize("optimize", MODES)
@pytest.mark.parametrize("name", gl.zoo.names())
def test_float32_within_1e_5_of_float64_on_the_zoo(name, optimize):
    cell = gl.zoo.get(name)
    prog = gl.compile(cell, optimize=optimize)
    problem = random_problem(cell, {s: 8 for s in cell.sizes}, T=20, B=4, seed=3)
    as32 = tuple({k: v.astype(np.float32) for k, v in g.items()} for g in problem)
    as64 = tuple({k: v.astype(np.float64) for k, v in g.items()} for g in as32)
    results = {}
    for label, args in (("32", as32), ("64", as64)):
        ys, state_T = prog.forward(*args[:3])
        grads = prog.backward(*args)
        results[label] = {**{f"ys[{k}]": v for k, v in ys.items()},
                          **{f"state_T[{k}]": v for k, v in state_T.items()},
                          **{f"grad[{k}]": v for k, v in grads.items()}}
    errors = {k: _relative(results["32"][k], results["64"][k]) for k in results["64"]}
    assert max(errors.values()) < 1e-5, errors
    assert all(v.dtype == np.float32 for v in results["32"].values())
