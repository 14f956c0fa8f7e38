"""Bad arrays give a ValueError naming the array and the shape expected; odd but valid
arrays (non-contiguous, read-only, T = 0, B = 0) give the right answer; inputs are never
modified in place nor handed back. Forward and backward, plain and optimised code."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import graphlstm as gl
from graphlstm.reference import run_sequence
from graphlstm.testing import random_problem

TWO_INPUTS = gl.parse("""
cell two
param V[k, n]
input x[n_in], u[m]
state h[n], c[n]
h' = tanh(W @ [x, u, h] + b)
c' = c * sigmoid(h') + u2 * tanh(P @ u)
output h'
output y = V @ c'
""")
SIZES = {"n_in": 3, "m": 2, "n": 4, "k": 5}
RNN = gl.zoo.get("rnn")

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

MODES = [pytest.param(opt, id="optimised" if opt else "plain") for opt in (False, True)]


@pytest.fixture(params=MODES)
def prog(request):
    return gl.compile(TWO_INPUTS, optimize=request.param)


@pytest.fixture
def problem():
    return random_problem(TWO_INPUTS, SIZES, T=5, B=3)


def _call(prog, direction: str, params, xs, state0, dys, dstate):
    if direction == "forward":
        return prog.forward(params, xs, state0)
    return prog.backward(params, xs, state0, dys, dstate)


def _replace(problem, group: str, name: str | None, value):
    """The problem with one array (or a whole group when name is None) replaced."""
    params, xs, state0, dys, dstate = (copy.copy(a) for a in problem)
    groups = {"params": params, "xs": xs, "state0": state0, "dys": dys, "dstate_T": dstate}
    if name is None:
        return tuple(value if g == group else groups[g] for g in groups)
    if value is _DELETE:
        del groups[group][name]
    else:
        groups[group][name] = value
    return params, xs, state0, dys, dstate


_DELETE = object()

# (group, name, how to break it, fragments the message must hold)
BAD = {
    "input-rank-2": ("xs", "x", lambda a: a[0], ["xs['x']", "[T, B, n_in]"]),
    "input-rank-4": ("xs", "x", lambda a: a[None], ["xs['x']", "[T, B, n_in]"]),
    "input-size": ("xs", "u", lambda a: a[..., :1], ["m = xs['u'].shape[2]"]),   # blames W
    "input-int": ("xs", "x", lambda a: a.astype(np.int64), ["xs['x']", "int64", "[T, B, n_in]"]),
    "input-int32": ("xs", "u", lambda a: a.astype(np.int32), ["xs['u']", "int32"]),
    "input-complex": ("xs", "x", lambda a: a.astype(complex), ["xs['x']", "complex128"]),
    "input-object": ("xs", "x", lambda a: a.astype(object), ["xs['x']", "object"]),
    "input-float16": ("xs", "x", lambda a: a.astype(np.float16), ["xs['x']", "float16"]),
    "input-bool": ("xs", "x", lambda a: a > 0, ["xs['x']", "bool"]),
    "input-longdouble": ("xs", "x", lambda a: a.astype(np.longdouble), ["xs['x']"]),
    "input-float32-among-float64": ("xs", "u", lambda a: a.astype(np.float32), ["xs['u']", "float32"]),
    "input-list": ("xs", "x", lambda a: a.tolist(), ["xs['x']", "NumPy array", "[T, B, n_in]"]),
    "input-scalar": ("xs", "x", lambda a: np.float64(1.0), ["xs['x']", "NumPy array"]),
    "input-matrix": ("xs", "u", lambda a: np.matrix(a[0]), ["xs['u']", "matrix"]),
    "input-masked": ("xs", "x", lambda a: np.ma.masked_array(a), ["xs['x']", "MaskedArray"]),
    "input-missing": ("xs", "u", lambda a: _DELETE, ["xs", "missing ['u']"]),
    "input-unknown": ("xs", "z", lambda a: np.zeros((5, 3, 2)), ["xs", "unknown ['z']"]),
    "T-mismatch": ("xs", "u", lambda a: a[:2], ["xs['u']", "[T, B, m]", "(5, 3, 2)"]),
    "B-mismatch": ("xs", "u", lambda a: a[:, :2], ["xs['u']", "[T, B, m]", "(5, 3, 2)"]),
    "param-missing": ("params", "W", lambda a: _DELETE, ["params", "missing ['W']"]),
    "param-unknown": ("params", "Q", lambda a: np.zeros(3), ["params", "unknown ['Q']"]),
    "param-columns": ("params", "W", lambda a: a[:, :-1], ["params['W']", "[n, m + n + n_in]"]),
    "param-rows": ("params", "b", lambda a: a[:-1], ["params['b']", "[n]"]),
    "param-rank": ("params", "b", lambda a: a[None], ["params['b']", "[n]"]),
    "param-int": ("params", "b", lambda a: a.astype(int), ["params['b']", "int64", "[n]"]),
    "param-float32": ("params", "V", lambda a: a.astype(np.float32), ["params['V']", "float32"]),
    "param-python-float": ("params", "u2", lambda a: 1.0, ["params['u2']", "NumPy array"]),
    "state0-batch": ("state0", "h", lambda a: a[:2], ["state0['h']", "[B, n]", "(3, 4)"]),
    "state0-size": ("state0", "c", lambda a: a[:, :2], ["state0['c']", "[B, n]"]),
    "state0-rank": ("state0", "h", lambda a: a[None], ["state0['h']", "[B, n]"]),
    "state0-missing": ("state0", "c", lambda a: _DELETE, ["state0", "missing ['c']"]),
    "state0-dtype": ("state0", "h", lambda a: a.astype(np.float32), ["state0['h']", "float32"]),
}
BAD_BACKWARD = {
    "dys-missing": ("dys", "y", lambda a: _DELETE, ["dys", "missing ['y']"]),
    "dys-unknown": ("dys", "c", lambda a: np.zeros((5, 3, 4)), ["dys", "unknown ['c']"]),
    "dys-shape": ("dys", "y", lambda a: a[:, :, :2], ["dys['y']", "[T, B, k]"]),
    "dys-T": ("dys", "h", lambda a: a[:4], ["dys['h']", "[T, B, n]"]),
    "dys-dtype": ("dys", "h", lambda a: a.astype(np.float32), ["dys['h']", "float32"]),
    "dstate-shape": ("dstate_T", "c", lambda a: a[:, :1], ["dstate_T['c']", "[B, n]"]),
    "dstate-missing": ("dstate_T", "h", lambda a: _DELETE, ["dstate_T", "missing ['h']"]),
}
WHOLE = {
    "params-none": ("params", None, ["params must be a dict"]),
    "params-list": ("params", [], ["params must be a dict"]),
    "xs-none": ("xs", None, ["xs must be a dict"]),
    "xs-list": ("xs", [np.zeros((5, 3, 3))], ["xs must be a dict"]),
    "xs-bare-array-two-inputs": ("xs", np.zeros((5, 3, 3)), ["xs must be a dict", "'x', 'u'"]),
    "state0-list": ("state0", [], ["state0 must be a dict"]),
}


def _expect_value_error(call, fragments) -> None:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_array_names_the_array_and_the_shape(prog, problem, direction, case):
    group, name, break_it, fragments = BAD[case]
    old = problem[("params", "xs", "state0").index(group)].get(name)
    args = _replace(problem, group, name, break_it(old))
    _expect_value_error(lambda: _call(prog, direction, *args), fragments)


@pytest.mark.parametrize("case", sorted(BAD_BACKWARD))
def test_bad_cotangent_names_the_array_and_the_shape(prog, problem, case):
    group, name, break_it, fragments = BAD_BACKWARD[case]
    index = ("params", "xs", "state0", "dys", "dstate_T").index(group)
    args = _replace(problem, group, name, break_it(problem[index].get(name)))
    _expect_value_error(lambda: prog.backward(*args), fragments)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("case", sorted(WHOLE))
def test_bad_argument_says_what_it_must_be(prog, problem, direction, case):
    group, value, fragments = WHOLE[case]
    args = _replace(problem, group, None, value)
    _expect_value_error(lambda: _call(prog, direction, *args), fragments)


def test_cotangents_must_be_given_to_backward(prog, problem):
    params, xs, state0, _, _ = problem
    _expect_value_error(lambda: prog.backward(params, xs, state0, None), ["dys must be a dict"])


def test_size_readable_only_from_the_state_needs_state0():
    cell = gl.parse("param W[k, n_in]\ninput x[n_in]\nstate h[n]\nh' = tanh(h) * 2\n"
                    "output y = W @ x\noutput h'\n")
    prog = gl.compile(cell)
    params = cell.init_params({"n_in": 2, "k": 3, "n": 4})
    xs = np.ones((2, 1, 2))
    _expect_value_error(lambda: prog.forward(params, xs), ["size n", "pass state0", "[B, n]"])
    ys, state_T = prog.forward(params, xs, {"h": np.full((1, 4), 0.5)})
    assert ys["h"].shape == (2, 1, 4) and np.allclose(state_T["h"], ys["h"][-1])


def test_a_size_read_off_a_sum_is_never_negative():
    cell = gl.parse("input x[n_in], v[n_in + m]\nstate h[n]\nh' = tanh(W @ [x, v, h])\noutput h'\n")
    prog = gl.compile(cell)
    params = cell.init_params({"n_in": 3, "m": 1, "n": 2})
    xs = {"x": np.ones((2, 1, 3)), "v": np.ones((2, 1, 2))}       # v is shorter than x
    _expect_value_error(lambda: prog.forward(params, xs), ["xs['v']", "[T, B, m + n_in]"])


@pytest.mark.parametrize("text", [
    "input x[a + b]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n",
    "input x[a + b]\nstate h[a + b]\nh' = tanh(x + h)\noutput h'\n",
    "input x[n_in]\nstate h[a + b + 1]\nh' = tanh(W @ [x, h] + c)\noutput h'\n"])
def test_sizes_that_only_occur_as_a_sum_need_not_be_separable(text):
    cell = gl.parse(text)
    sizes = {s: k + 2 for k, s in enumerate(cell.sizes)}
    problem = random_problem(cell, sizes, T=3, B=2)
    params, xs, state0, dys, dstate = problem
    plain, optimised = gl.compile(cell, optimize=False), gl.compile(cell)
    for s0 in (None, state0):                       # a and b are never needed apart
        ys, state_T = optimised.forward(params, xs, s0)
        expected, _ = run_sequence(cell, params, xs, s0)
        np.testing.assert_allclose(ys["h"], expected["h"], rtol=1e-12)
    grads = optimised.backward(params, xs, state0, dys, dstate)
    for k, g in plain.backward(params, xs, state0, dys, dstate).items():
        np.testing.assert_allclose(grads[k], g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["lstm", "gru_torch", "mgu"])
def test_a_state_of_size_zero_runs(name):
    cell = gl.zoo.get(name)
    params = cell.init_params({"n_in": 3, "n": 0})
    x = np.ones((4, 2, 3))
    ys, state_T = gl.compile(cell).forward(params, x)
    grads = gl.compile(cell).backward(params, x, None, {"h": ys["h"]})
    assert ys["h"].shape == (4, 2, 0) and state_T["h"].shape == (2, 0)
    np.testing.assert_array_equal(grads["x"], np.zeros((4, 2, 3)))


@pytest.mark.parametrize("dtype", ["int32", "float16", "bogus"])
def test_init_params_makes_only_the_dtypes_programs_run_in(dtype):
    _expect_value_error(lambda: RNN.init_params({"n_in": 2, "n": 3}, dtype=dtype),
                        ["float32 or float64", dtype])


# -- valid but unusual arrays ---------------------------------------------------------------

def _results(prog, problem):
    ys, state_T = prog.forward(*problem[:3])
    grads = prog.backward(*problem)
    return {**{"ys." + k: v for k, v in ys.items()}, **{"state_T." + k: v for k, v in state_T.items()},
            **{"grad." + k: v for k, v in grads.items()}}


def _transform(problem, how):
    return tuple({k: how(v) for k, v in group.items()} for group in problem)


def _fortran(a):
    return np.asfortranarray(a)


def _strided(a):
    return np.repeat(a, 2, axis=-1)[..., ::2]


def _reversed_twice(a):
    return a[::-1].copy()[::-1]


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("how", [_fortran, _strided, _reversed_twice, _read_only],
                         ids=["fortran", "strided", "negative-strides", "read-only"])
def test_layout_does_not_matter(prog, problem, how):
    expected = _results(prog, problem)
    got = _results(prog, _transform(problem, how))
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)


def test_float32_in_float32_out(prog, problem):
    problem32 = _transform(problem, lambda a: a.astype(np.float32))
    for key, value in _results(prog, problem32).items():
        assert value.dtype == np.float32, key


def test_no_time_steps(prog, problem):
    params, xs, state0, dys, dstate = problem
    xs0 = {k: v[:0] for k, v in xs.items()}
    dys0 = {k: v[:0] for k, v in dys.items()}
    ys, state_T = prog.forward(params, xs0, state0)
    assert ys["h"].shape == (0, 3, 4) and ys["y"].shape == (0, 3, 5)
    for s in state0:
        np.testing.assert_array_equal(state_T[s], state0[s])
        assert not np.shares_memory(state_T[s], state0[s])
    grads = prog.backward(params, xs0, state0, dys0, dstate)
    for p in params:
        np.testing.assert_array_equal(grads[p], np.zeros_like(params[p]))
    assert grads["x"].shape == (0, 3, 3) and grads["u"].shape == (0, 3, 2)
    for s in dstate:
        np.testing.assert_array_equal(grads[s], dstate[s])


def test_final_states_share_no_memory_with_the_outputs(prog, problem):
    """Masking ys in place must not change the state carried into the next chunk, and
    editing state_T must not change what a vjp's pullback reads."""
    params, xs, state0, dys, dstate = problem
    ys, state_T = prog.forward(params, xs, state0)
    assert not any(np.shares_memory(y, s) for y in ys.values() for s in state_T.values())
    ys, state_T, pullback = prog.vjp(params, xs, state0)
    expected = pullback(dys, dstate)
    for s in state_T.values():
        s[...] = np.nan
    for k, g in pullback(dys, dstate).items():
        np.testing.assert_array_equal(g, expected[k])


def test_empty_batch(prog, problem):
    params, xs, state0, dys, dstate = problem
    cut = lambda group: {k: v[:, :0] if v.ndim == 3 else v[:0] for k, v in group.items()}  # noqa
    xs0, state00, dys0, dstate0 = cut(xs), cut(state0), cut(dys), cut(dstate)
    for s0 in (None, state00):
        ys, state_T = prog.forward(params, xs0, s0)
        assert ys["h"].shape == (5, 0, 4) and state_T["c"].shape == (0, 4)
        grads = prog.backward(params, xs0, s0, dys0, dstate0)
        for p in params:
            np.testing.assert_array_equal(grads[p], np.zeros_like(params[p]))
        assert grads["x"].shape == (5, 0, 3) and grads["h"].shape == (0, 4)


def test_zero_sized_vectors(prog, problem):
    params, xs, state0, dys, dstate = problem
    xs = {**xs, "x": xs["x"][..., :0]}
    params = {**params, "W": params["W"][:, 3:]}
    ys, _ = prog.forward(params, xs, state0)
    expected, _ = run_sequence(TWO_INPUTS, params, xs, state0)
    np.testing.assert_allclose(ys["y"], expected["y"], rtol=1e-12)
    assert prog.backward(params, xs, state0, dys, dstate)["x"].shape == (5, 3, 0)


@pytest.mark.parametrize("optimize", [False, True])
def test_a_one_input_cell_takes_a_bare_array(optimize):
    prog = gl.compile(RNN, optimize=optimize)
    params, xs, state0, dys, dstate = random_problem(RNN, {"n_in": 3, "n": 4}, T=4, B=2)
    ys, _ = prog.forward(params, xs["x"], state0)
    expected, _ = prog.forward(params, xs, state0)
    np.testing.assert_array_equal(ys["h"], expected["h"])
    grads = prog.backward(params, xs["x"], state0, dys, dstate)
    np.testing.assert_array_equal(grads["x"], prog.backward(params, xs, state0, dys, dstate)["x"])


def test_inputs_are_never_modified_nor_returned(prog, problem):
    """Every array passed in is unchanged after forward, backward and vjp, and nothing
    returned shares memory with anything passed in."""
    before = copy.deepcopy(problem)
    outputs = list(_results(prog, problem).values())
    ys, state_T, pullback = prog.vjp(*problem[:3])
    outputs += list(ys.values()) + list(state_T.values()) + list(pullback(*problem[3:]).values())
    for group_before, group_after in zip(before, problem):
        assert group_before.keys() == group_after.keys()
        for name in group_before:
            np.testing.assert_array_equal(group_after[name], group_before[name], err_msg=name)
    inputs = [a for group in problem for a in group.values()]
    for out in outputs:
        assert not any(np.shares_memory(out, a) for a in inputs)


def test_read_only_inputs_everywhere_including_a_bare_array():
    prog = gl.compile(RNN)
    params, xs, state0, dys, dstate = _transform(random_problem(RNN, {"n_in": 2, "n": 3}), _read_only)
    ys, state_T = prog.forward(params, xs["x"], state0)
    prog.backward(params, xs["x"], state0, dys, dstate)
    assert np.isfinite(ys["h"]).all()
