"""Symbolic reverse mode: the backward graph, its code, and backprop through time."""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import ops, reference
from graphlstm.autodiff import vjp
from graphlstm.ir import Op
from graphlstm.testing import check_grads, random_problem
from graphlstm.unroll import unroll_function

BACKWARD_OPS = {op.value for op in Op}


@pytest.mark.parametrize("optimize", [True, False])
def test_every_cell_passes_the_gradient_check(any_cell, optimize):
    report = check_grads(any_cell, optimize=optimize)
    assert report.worst < 1e-7, str(report)
    assert set(report.errors) == set(any_cell.params) | set(any_cell.inputs) | set(any_cell.states)


def test_grad_is_a_graph_of_the_same_primitives(any_cell):
    gb = gl.grad(any_cell)
    assert gb.graph["kind"] == "backward"
    assert {data["op"] for _, data in gb.nodes(data=True)} <= BACKWARD_OPS
    fn = gb.graph["function"]
    assert [name for name, _ in fn.results] == [f"grad_{l.arg}" for l in any_cell.step.leaves]


def test_backward_graph_ties_nodes_to_the_forward_node_they_differentiate():
    fn = vjp(gl.zoo.get("lstm").step)
    adjoint = fn.meta["adjoint_of"]
    forward_nodes = set(gl.zoo.get("lstm").step.nodes())
    backward_nodes = [n for n in fn.nodes() if n not in forward_nodes and n.op is not Op.INPUT]
    assert backward_nodes and all(adjoint[n] in forward_nodes for n in backward_nodes)


def test_nonlinearity_derivatives_read_the_output_where_cheaper():
    src = gl.compile(gl.zoo.get("lstm"), optimize=False).source
    assert "(one - g**2)" in src and "(i*(one - i))" in src


def test_missing_vjp_rule_is_named(monkeypatch):
    monkeypatch.delitem(ops.VJP_RULES, Op.GATE)
    with pytest.raises(NotImplementedError, match="gate"):
        vjp(gl.zoo.get("lstm").step)


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_peephole_diag"])
def test_unrolled_graph_equals_compiled_forward_and_backward(name):
    cell, T = gl.zoo.get(name), 4
    params, xs, state0, dys, dstate = random_problem(cell, {"n_in": 3, "n": 4}, T=T, B=2)
    prog = gl.compile(cell)
    ys, state_T = prog.forward(params, xs, state0)
    grads = prog.backward(params, xs, state0, dys, dstate)

    fn = unroll_function(cell, T)
    leaves = {**params, **{f"{k}@0": v for k, v in state0.items()},
              **{f"{k}@{t}": v[t] for k, v in xs.items() for t in range(T)}}
    out = reference.run(fn, leaves)
    for t in range(T):
        np.testing.assert_allclose(out[f"h@{t}"], ys["h"][t], rtol=0, atol=1e-13)
    for s in cell.states:
        np.testing.assert_allclose(out[f"{s}@{T}"], state_T[s], rtol=0, atol=1e-13)

    back = vjp(fn)
    seeds = {f"d_h@{t}": dys["h"][t] for t in range(T)}
    seeds.update({f"d_{s}@{T}": dstate[s] for s in cell.states})
    g = reference.run(back, {**leaves, **seeds})
    for p in cell.params:
        np.testing.assert_allclose(g[f"grad_{p}"], grads[p], rtol=0, atol=1e-12)
    for s in cell.states:
        np.testing.assert_allclose(g[f"grad_{s}@0"], grads[s], rtol=0, atol=1e-12)
    for t in range(T):
        np.testing.assert_allclose(g[f"grad_x@{t}"], grads["x"][t], rtol=0, atol=1e-12)


def test_unroll_structure():
    g = gl.unroll(gl.zoo.get("lstm"), T=3)
    steps = {d["step"] for _, d in g.nodes(data=True) if d["step"] is not None}
    assert steps == {0, 1, 2}
    state_edges = [(u, v) for u, v, d in g.edges(data=True) if d["state"]]
    assert state_edges and all(g.nodes[v]["step"] == g.nodes[u]["step"] + 1 for u, v in state_edges)
    per_step = [sum(1 for _, d in g.nodes(data=True) if d["step"] == t and d["op"] not in ("input", "state"))
                for t in range(3)]
    assert per_step[0] == per_step[1] == per_step[2] > 0


def test_hessian_vector_product_matches_finite_difference_of_gradients():
    """grad(grad(cell)): second derivatives of a small LSTM step, against gradients' differences."""
    cell = gl.zoo.get("lstm")
    step, sizes = cell.step, {"n_in": 2, "n": 3}
    params, xs, state0, dys, dstate = random_problem(cell, sizes, T=1, B=2, seed=5)
    first = vjp(step)
    second = vjp(first)
    values = {**params, "x": xs["x"][0], **state0, "d_h": dys["h"][0],
              "d_h'": dstate["h"], "d_c'": dstate["c"]}
    rng = np.random.default_rng(0)
    v = {p: rng.standard_normal(params[p].shape) for p in params}
    # seed the second pass with v on the parameter gradients: gives H v (w.r.t. params)
    seeds = {f"d_grad_{leaf.arg}": (v[leaf.arg] if leaf.arg in v else np.zeros_like(values[leaf.arg]))
             for leaf in first.leaves}
    seeds = {f"d_{name}": seeds.get(f"d_{name}", np.zeros_like(values[name[5:]]))
             for name, _ in first.results}
    hv = reference.run(second, {**values, **seeds})

    def param_grads(p):
        out = reference.run(first, {**values, **p})
        return {k: out[f"grad_{k}"] for k in params}

    eps = 1e-6
    plus = param_grads({k: params[k] + eps * v[k] for k in params})
    minus = param_grads({k: params[k] - eps * v[k] for k in params})
    for k in params:
        fd = (plus[k] - minus[k]) / (2 * eps)
        np.testing.assert_allclose(hv[f"grad_{k}"], fd, rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("name", ["lstm", "gru_torch", "mgu"])
def test_float32_gradients_close_to_float64(name):
    cell = gl.zoo.get(name)
    p64, xs64, s64, dys64, ds64 = random_problem(cell, {"n_in": 3, "n": 4}, T=5, B=2)
    cast = lambda d: {k: v.astype(np.float32) for k, v in d.items()}  # noqa: E731
    prog = gl.compile(cell)
    g64 = prog.backward(p64, xs64, s64, dys64, ds64)
    g32 = prog.backward(cast(p64), cast(xs64), cast(s64), cast(dys64), cast(ds64))
    for k in g64:
        assert g32[k].dtype == np.float32
        scale = max(1.0, float(np.abs(g64[k]).max()))
        assert np.abs(g32[k] - g64[k]).max() / scale < 1e-4, k
