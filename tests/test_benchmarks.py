"""The benchmark's contenders compute what graphlstm computes (fast, small sizes).

The hand-fused NumPy LSTM is checked against the compiled `lstm` zoo cell to 1e-10 in float64,
and against torch.nn.LSTM; the PyTorch peers (nn.LSTM, nn.GRU, eager loops) against the
compiled zoo cells, forward and backward.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import graphlstm as gl

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_rnn  # noqa: E402
import numpy_lstm  # noqa: E402
import torch_cells  # noqa: E402

SIZES = {"n_in": 3, "n": 5}
T, B = 6, 2


def problem(cell_name: str, dtype: str = "float64", seed: int = 0) -> dict:
    """Parameters, inputs, initial states and incoming gradients for a small sequence."""
    cell = gl.zoo.get(cell_name)
    rng = np.random.default_rng(seed)
    states = {s: rng.standard_normal((B, SIZES["n"])).astype(dtype) for s in cell.states}
    return dict(params=cell.init_params(SIZES, seed=seed, dtype=dtype),
                x=rng.standard_normal((T, B, SIZES["n_in"])).astype(dtype),
                state0=states,
                dys=rng.standard_normal((T, B, SIZES["n"])).astype(dtype),
                dstate_T={s: rng.standard_normal((B, SIZES["n"])).astype(dtype) for s in states})


def compiled(cell_name: str, optimize: bool = True) -> gl.Program:
    return gl.compile(gl.zoo.get(cell_name), optimize=optimize)


def assert_close(got: dict, want: dict, tol: float) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("optimize", [True, False])
def test_numpy_lstm_matches_graphlstm_float64(optimize):
    p, prog = problem("lstm"), compiled("lstm", optimize)
    ys, state_T = numpy_lstm.forward(p["params"], {"x": p["x"]}, p["state0"])
    want_ys, want_state = prog.forward(p["params"], {"x": p["x"]}, p["state0"])
    assert_close(ys, want_ys, 1e-10)
    assert_close(state_T, want_state, 1e-10)
    grads = numpy_lstm.backward(p["params"], {"x": p["x"]}, p["state0"], {"h": p["dys"]},
                                p["dstate_T"])
    want = prog.backward(p["params"], {"x": p["x"]}, p["state0"], {"h": p["dys"]}, p["dstate_T"])
    assert_close(grads, want, 1e-10)


def test_numpy_lstm_defaults_and_float32():
    p, prog = problem("lstm", "float32"), compiled("lstm")
    grads = numpy_lstm.backward(p["params"], p["x"], None, p["dys"])
    want = prog.backward(p["params"], p["x"], None, {"h": p["dys"]})
    assert all(g.dtype == np.float32 for g in grads.values())
    assert_close(grads, want, 1e-4)


def torch_problem(p: dict) -> tuple[dict, torch.Tensor, dict]:
    """Leaf tensors for the parameters, the input and the initial states."""
    return (torch_cells.tensors(p["params"], True), torch.tensor(p["x"], requires_grad=True),
            torch_cells.tensors(p["state0"], True))


def torch_vjp(forward, leaves: list, p: dict) -> None:
    torch_cells.vjp_runner(forward, leaves, torch.tensor(p["dys"]),
                           torch_cells.tensors(p["dstate_T"]))()


def test_nn_lstm_matches_numpy_lstm():
    p = problem("lstm")
    lstm = torch_cells.nn_lstm(p["params"], SIZES["n_in"])
    _, x, state0 = torch_problem(p)
    ys, state_T = torch_cells.nn_forward(lstm, x, state0)
    want_ys, want_state = numpy_lstm.forward(p["params"], p["x"], p["state0"])
    np.testing.assert_allclose(ys.detach().numpy(), want_ys["h"], atol=1e-12)
    for s in ("h", "c"):
        np.testing.assert_allclose(state_T[s].detach().numpy(), want_state[s], atol=1e-12)
    torch_vjp(lambda: torch_cells.nn_forward(lstm, x, state0),
              [*lstm.parameters(), x, *state0.values()], p)
    got = torch_cells.nn_lstm_grads(lstm, SIZES["n_in"])
    got.update(x=x.grad.numpy(), h=state0["h"].grad.numpy(), c=state0["c"].grad.numpy())
    want = numpy_lstm.backward(p["params"], p["x"], p["state0"], p["dys"], p["dstate_T"])
    assert_close(got, want, 1e-10)


def test_nn_gru_matches_graphlstm_gru_torch():
    p = problem("gru_torch")
    gru = torch_cells.nn_gru(p["params"], SIZES["n_in"])
    _, x, state0 = torch_problem(p)
    ys, state_T = torch_cells.nn_forward(gru, x, state0)
    want_ys, want_state = compiled("gru_torch").forward(p["params"], p["x"], p["state0"])
    np.testing.assert_allclose(ys.detach().numpy(), want_ys["h"], atol=1e-12)
    np.testing.assert_allclose(state_T["h"].detach().numpy(), want_state["h"], atol=1e-12)
    torch_vjp(lambda: torch_cells.nn_forward(gru, x, state0),
              [*gru.parameters(), x, *state0.values()], p)
    want = compiled("gru_torch").backward(p["params"], p["x"], p["state0"], {"h": p["dys"]},
                                          p["dstate_T"])
    got = {"x": x.grad.numpy(), "h": state0["h"].grad.numpy()}
    for kind, module_name in (("W_i", "weight_ih_l0"), ("W_h", "weight_hh_l0"),
                              ("b_i", "bias_ih_l0"), ("b_h", "bias_hh_l0")):
        stacked = getattr(gru, module_name).grad.numpy()
        for k, gate in enumerate(torch_cells.GRU_TORCH_ORDER):
            got[kind + gate] = stacked[k * SIZES["n"]:(k + 1) * SIZES["n"]]
    assert_close(got, want, 1e-10)


@pytest.mark.parametrize("cell_name", sorted(torch_cells.EAGER_STEPS))
def test_eager_loop_matches_graphlstm(cell_name):
    p, prog = problem(cell_name), compiled(cell_name)
    params, x, state0 = torch_problem(p)
    forward = lambda: torch_cells.eager_forward(cell_name, params, x, state0)  # noqa: E731
    ys, state_T = forward()
    want_ys, want_state = prog.forward(p["params"], p["x"], p["state0"])
    np.testing.assert_allclose(ys.detach().numpy(), want_ys["h"], atol=1e-12)
    assert_close({k: v.detach().numpy() for k, v in state_T.items()}, want_state, 1e-12)
    torch_vjp(forward, [*params.values(), x, *state0.values()], p)
    got = {name: leaf.grad.numpy() for name, leaf in {**params, **state0, "x": x}.items()}
    want = prog.backward(p["params"], p["x"], p["state0"], {"h": p["dys"]}, p["dstate_T"])
    assert_close(got, want, 1e-10)


@pytest.mark.parametrize("cell_name", sorted(bench_rnn.GEMM_SHAPE))
def test_roofline_flops_match_the_cell(cell_name):
    """The roofline's GEMMs do 3x the forward matmul FLOPs: forward, d input, d weights."""
    cfg = bench_rnn.Config("tiny", T=4, B=3, n_in=5, n=7)
    shapes = gl.zoo.get(cell_name).param_shapes({"n_in": cfg.n_in, "n": cfg.n})
    forward = sum(2 * cfg.T * cfg.B * s[0] * s[1] for s in shapes.values() if len(s) == 2)
    assert bench_rnn.gemm_flops(bench_rnn.gemm_plan(cell_name, cfg)) == 3 * forward


def test_benchmark_runs_on_a_tiny_config(capsys):
    cfg = bench_rnn.Config("tiny", T=3, B=2, n_in=4, n=5)
    results = bench_rnn.run_config(cfg, "float64", min_repeats=1, budget_s=0.0)
    bench_rnn.print_results(results)
    out = capsys.readouterr().out
    assert "nn.LSTM" in out and "roofline" in out and "mgu" in out and "gl faster" in out
    assert all(0 <= n <= results.rounds for n in results.wins.values())
    assert all(results.wins[cell, "graphlstm"] == 0 for cell, _ in results.wins)   # never faster than itself


def test_peak_memory_runs_in_a_fresh_process():
    found = bench_rnn.peak_memory("numpy", bench_rnn.CONFIGS["small"], "float64")
    assert found["label"] == "numpy hand-fused"
    assert found["rss_mb"] >= 0 and found["traced_mb"] > 0


def test_every_contender_is_as_often_first_after_a_pause():
    """The contender that runs first after a switch of thread pools runs on a cold core; the
    running order rotates so that no contender is always that one."""
    pools = ["numpy", "numpy", "numpy", "torch", "torch"]
    groups = [[0, 1, 2], [3, 4]]
    first_after_switch = []
    previous = None
    for shift in range(12):
        for k in bench_rnn._order(groups, shift):
            if pools[k] != previous:
                first_after_switch.append(k)
                previous = pools[k]
    counts = [first_after_switch.count(k) for k in range(5)]
    assert sorted(set(first_after_switch)) == [0, 1, 2, 3, 4]
    assert max(counts[:3]) - min(counts[:3]) <= 1 and max(counts[3:]) - min(counts[3:]) <= 1


def test_the_kernels_in_use_agree_with_torch():
    """The benchmark's header check: graphlstm's LSTM gradients == nn.LSTM's (float64)."""
    assert bench_rnn.check_agreement() < 1e-9
    assert bench_rnn.blas_kernels() == "" or "numpy BLAS kernels" in bench_rnn.blas_kernels()


def test_compare_revisions_times_two_modules_on_the_same_arrays():
    import compare_revisions
    source = compare_revisions.sources(compare_revisions.ROOT, ["mgu"])["mgu"]
    old, new = (compare_revisions.load(source, name) for name in ("old_mgu", "new_mgu"))
    t_old, t_new, diff = compare_revisions.compare(old, new, "mgu", "small", "float64", rounds=1)
    assert t_old > 0 and t_new > 0 and diff == 0.0
