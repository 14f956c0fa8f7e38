"""Losses, optimisers and gradient flow: against finite differences, hand computations,
torch.optim and full backprop through time."""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import optim

torch = pytest.importorskip("torch")

READOUT = gl.zoo.source("rnn") + "param W_y[k, n]\noutput y = W_y @ h' + b_y\n"


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function, entry by entry."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def random_ys(rng, T=4, B=3, k=5):
    return {"y": rng.standard_normal((T, B, k)), "h": rng.standard_normal((T, B, 2))}


# -- losses -----------------------------------------------------------------------------------
@pytest.mark.parametrize("last", [False, True])
def test_mse_matches_finite_differences_and_zeroes_other_outputs(rng, last):
    ys = random_ys(rng)
    target = rng.standard_normal(ys["y"].shape[1:] if last else ys["y"].shape)
    loss, dys = gl.mse_loss(ys, target, output="y")
    assert np.allclose(dys["y"], numeric_grad(lambda: gl.mse_loss(ys, target, "y")[0], ys["y"]))
    assert not dys["h"].any() and dys["h"].shape == ys["h"].shape
    scored = ys["y"][-1] if last else ys["y"]
    assert loss == pytest.approx(np.mean((scored - target) ** 2))
    if last:
        assert not dys["y"][:-1].any()


@pytest.mark.parametrize("last", [False, True])
def test_cross_entropy_matches_torch(rng, last):
    ys = random_ys(rng)
    shape = ys["y"].shape[1:-1] if last else ys["y"].shape[:-1]
    labels = rng.integers(0, 5, size=shape)
    loss, dys = gl.softmax_cross_entropy(ys, labels, output="y")
    logits = torch.tensor(ys["y"][-1] if last else ys["y"], requires_grad=True)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), torch.tensor(labels).reshape(-1))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert np.allclose(dys["y"][-1] if last else dys["y"], logits.grad.numpy(), atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits():
    ys = {"y": np.array([[[1000.0, 0.0, -1000.0]]])}
    loss, dys = gl.softmax_cross_entropy(ys, np.array([0]))
    assert loss == 0.0 and np.all(np.isfinite(dys["y"]))


def test_losses_keep_float32(rng):
    ys = {"y": rng.standard_normal((3, 2, 4)).astype(np.float32)}
    assert gl.mse_loss(ys, np.zeros((2, 4)))[1]["y"].dtype == np.float32
    assert gl.softmax_cross_entropy(ys, np.zeros(2, int))[1]["y"].dtype == np.float32


@pytest.mark.parametrize("call, match", [
    (lambda ys: gl.mse_loss(ys, np.zeros((3, 5))), "say which"),
    (lambda ys: gl.mse_loss(ys, np.zeros((3, 5)), output="z"), "no output 'z'"),
    (lambda ys: gl.mse_loss(ys, np.zeros((3, 4)), output="y"), "target has shape"),
    (lambda ys: gl.softmax_cross_entropy(ys, np.zeros(3), output="y"), "integer"),
    (lambda ys: gl.softmax_cross_entropy(ys, np.full(3, 5), output="y"), r"\[0, 5\)"),
])
def test_loss_errors_name_the_problem(rng, call, match):
    with pytest.raises(ValueError, match=match):
        call(random_ys(rng))


def test_loss_dys_drive_backward_to_the_true_gradient(rng):
    """End to end: d loss / d params through the generated backward, against differences."""
    cell = gl.parse(READOUT)
    prog = gl.compile(cell)
    params = cell.init_params({"n_in": 2, "n": 3, "k": 4}, seed=1)
    xs = rng.standard_normal((5, 2, 2))
    labels = rng.integers(0, 4, size=2)

    def loss():
        return gl.softmax_cross_entropy(prog.forward(params, xs)[0], labels, output="y")[0]

    _, dys = gl.softmax_cross_entropy(prog.forward(params, xs)[0], labels, output="y")
    grads = prog.backward(params, xs, None, dys)
    for name in ("W", "W_y"):
        assert np.allclose(grads[name], numeric_grad(loss, params[name]), atol=1e-8)


# -- optimisers -------------------------------------------------------------------------------
def run_both(make_ours, make_torch, steps=5, seed=0):
    """The same quadratic-ish problem under our optimiser and torch's; final params."""
    rng = np.random.default_rng(seed)
    start = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}
    ours = {k: v.copy() for k, v in start.items()}
    theirs = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    opt, topt = make_ours(ours), make_torch(list(theirs.values()))
    for _ in range(steps):
        grads = {k: np.sin(v) + v ** 3 for k, v in ours.items()}
        grads["x"] = np.ones(7)  # inputs' gradients ride along and are ignored
        opt.step(grads)
        topt.zero_grad()
        sum(torch.sum(-torch.cos(v) + v ** 4 / 4) for v in theirs.values()).backward()
        topt.step()
    return ours, {k: v.detach().numpy() for k, v in theirs.items()}


@pytest.mark.parametrize("ours, theirs", [
    (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (lambda p: optim.Adam(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6),
     lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6)),
])
def test_optimisers_match_torch(ours, theirs):
    a, b = run_both(ours, theirs)
    for k in a:
        assert np.allclose(a[k], b[k], rtol=1e-10, atol=1e-12)


def test_optimisers_update_in_place_and_keep_dtype():
    p = {"w": np.ones(3, np.float32)}
    ref = p["w"]
    optim.Adam(p, lr=0.1).step({"w": np.ones(3)})
    assert p["w"] is ref and ref.dtype == np.float32 and np.allclose(ref, 0.9)


def test_optimiser_errors():
    with pytest.raises(ValueError, match="no gradient for parameter 'w'"):
        optim.SGD({"w": np.ones(2)}, lr=1).step({})
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        optim.SGD({"w": np.ones(2)}, lr=1).step({"w": np.ones(3)})
    with pytest.raises(ValueError, match="lr"):
        optim.Adam({"w": np.ones(2)}, lr=0)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(3)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5), "x": np.full(2, 1e6)}
    tensors = [torch.tensor(grads[k]) for k in "ab"]
    for t in tensors:
        t.grad = t.clone()
    ref = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    total = optim.clip_grad_norm(grads, 0.5, names=["a", "b"])
    assert total == pytest.approx(ref.item())
    assert np.allclose(grads["a"], tensors[0].grad.numpy())
    assert np.allclose(grads["b"], tensors[1].grad.numpy())
    assert grads["x"][0] == 1e6
    small = {"a": np.array([0.3, 0.4])}
    assert optim.clip_grad_norm(small, 1.0) == pytest.approx(0.5) and small["a"][1] == 0.4


def test_training_loop_learns_a_copy_task():
    """Generated code + losses + Adam: an RNN learns to output its previous input."""
    cell = gl.parse(READOUT)
    prog = gl.compile(cell)
    params = cell.init_params({"n_in": 1, "n": 8, "k": 1}, seed=0)
    opt = optim.Adam(params, lr=0.03)
    rng = np.random.default_rng(0)
    for _ in range(150):
        xs = rng.uniform(-1, 1, (6, 16, 1))
        loss, dys = gl.mse_loss(prog.forward(params, xs)[0], xs[-2], output="y")
        opt.step(prog.backward(params, xs, None, dys))
    assert loss < 0.02


# -- gradient flow ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "lstm_sl"])
def test_gradient_flow_matches_full_bptt(rng, name):
    """Lag k against backward on the suffix that starts at step T-1-k."""
    cell = gl.zoo.get(name)
    prog = gl.compile(cell)
    sizes = {s: 3 for s in cell.sizes}
    params = cell.init_params(sizes, seed=2)
    xs = {i: rng.standard_normal((6, 2, 3)) for i in cell.inputs}
    state0 = {s: rng.standard_normal((2, 3)) for s in cell.states}
    flow = gl.gradient_flow(cell, params, xs, state0)
    assert set(flow) == set(cell.states) and all(v.shape == (6,) for v in flow.values())
    for lag in (0, 2, 5):
        t = 5 - lag
        prefix = {k: v[:t] for k, v in xs.items()}
        s_t = prog.forward(params, prefix, state0)[1] if t else state0
        suffix = {k: v[t:] for k, v in xs.items()}
        ys, _ = prog.forward(params, suffix, s_t)
        dys = {k: np.zeros_like(v) for k, v in ys.items()}
        for d in dys.values():
            d[-1] = 1
        grads = prog.backward(params, suffix, s_t, dys)
        for s in cell.states:
            assert flow[s][lag] == pytest.approx(np.linalg.norm(grads[s]), rel=1e-10)


def test_gradient_flow_takes_a_loss_and_a_bare_array(rng):
    cell = gl.parse(READOUT)
    params = cell.init_params({"n_in": 2, "n": 4, "k": 1}, seed=0)
    xs = rng.standard_normal((5, 3, 2))
    target = np.zeros((3, 1))
    flow = gl.gradient_flow(cell, params, xs, loss=lambda ys: gl.mse_loss(ys, target, "y"))
    assert flow["h"].shape == (5,) and np.all(flow["h"] > 0)


def test_gradient_flow_vanishes_for_a_contracting_rnn(rng):
    """Seed 001: a tanh RNN with small weights forgets geometrically."""
    cell = gl.zoo.get("rnn")
    params = cell.init_params({"n_in": 2, "n": 8}, seed=0)
    params["W"] *= 0.5
    flow = gl.gradient_flow(cell, params, rng.standard_normal((30, 4, 2)))["h"]
    assert flow[29] < 1e-6 * flow[0]
