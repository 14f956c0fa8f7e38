"""PyTorch as the outside oracle: nn.LSTM / nn.GRU / nn.RNN forward, and torch.autograd on
hand-written PyTorch versions of the cells for every gradient."""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl

torch = pytest.importorskip("torch")

T, B, N_IN, N = 6, 3, 4, 5
SIZES = {"n_in": N_IN, "n": N}


def problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    params = cell.init_params(SIZES, seed=seed)
    xs = rng.standard_normal((T, B, N_IN))
    state0 = {s: rng.standard_normal((B, N)) for s in cell.states}
    return params, xs, state0


def t(a):
    return torch.tensor(a, requires_grad=True)


# -- forward against PyTorch's fused modules ------------------------------------------------

def test_lstm_equals_nn_lstm():
    cell = gl.zoo.get("lstm")
    params, xs, state0 = problem(cell)
    lstm = torch.nn.LSTM(N_IN, N).double()
    with torch.no_grad():   # PyTorch gate order i, f, g, o; W = [W_ih | W_hh]
        order = ["i", "f", "g", "o"]
        lstm.weight_ih_l0.copy_(torch.tensor(np.concatenate([params[f"W_{g}"][:, :N_IN] for g in order])))
        lstm.weight_hh_l0.copy_(torch.tensor(np.concatenate([params[f"W_{g}"][:, N_IN:] for g in order])))
        lstm.bias_ih_l0.copy_(torch.tensor(np.concatenate([params[f"b_{g}"] for g in order])))
        lstm.bias_hh_l0.zero_()
    out, (h, c) = lstm(torch.tensor(xs), (torch.tensor(state0["h"])[None], torch.tensor(state0["c"])[None]))
    for optimize in (True, False):
        ys, st = gl.compile(cell, optimize=optimize).forward(params, xs, state0)
        np.testing.assert_allclose(ys["h"], out.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(st["c"], c[0].detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(st["h"], h[0].detach().numpy(), rtol=0, atol=1e-12)


def test_gru_torch_equals_nn_gru():
    cell = gl.zoo.get("gru_torch")
    params, xs, state0 = problem(cell)
    gru = torch.nn.GRU(N_IN, N).double()
    with torch.no_grad():   # PyTorch order r, z, n
        gru.weight_ih_l0.copy_(torch.tensor(np.concatenate([params[f"W_i{g}"] for g in "rzn"])))
        gru.weight_hh_l0.copy_(torch.tensor(np.concatenate([params[f"W_h{g}"] for g in "rzn"])))
        gru.bias_ih_l0.copy_(torch.tensor(np.concatenate([params[f"b_i{g}"] for g in "rzn"])))
        gru.bias_hh_l0.copy_(torch.tensor(np.concatenate([params[f"b_h{g}"] for g in "rzn"])))
    out, h = gru(torch.tensor(xs), torch.tensor(state0["h"])[None])
    for optimize in (True, False):
        ys, st = gl.compile(cell, optimize=optimize).forward(params, xs, state0)
        np.testing.assert_allclose(ys["h"], out.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(st["h"], h[0].detach().numpy(), rtol=0, atol=1e-12)


def test_rnn_equals_nn_rnn():
    cell = gl.zoo.get("rnn")
    params, xs, state0 = problem(cell)
    rnn = torch.nn.RNN(N_IN, N).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(params["W"][:, :N_IN]))
        rnn.weight_hh_l0.copy_(torch.tensor(params["W"][:, N_IN:]))
        rnn.bias_ih_l0.copy_(torch.tensor(params["b"]))
        rnn.bias_hh_l0.zero_()
    out, h = rnn(torch.tensor(xs), torch.tensor(state0["h"])[None])
    ys, st = gl.compile(cell).forward(params, xs, state0)
    np.testing.assert_allclose(ys["h"], out.detach().numpy(), rtol=0, atol=1e-12)


# -- gradients against torch.autograd on hand-written cells ------------------------------------

def lstm_step(p, x, s):
    xh = torch.cat([x, s["h"]], -1)
    lin = lambda g: xh @ p[f"W_{g}"].T + p[f"b_{g}"]  # noqa: E731
    f, i, o, g = torch.sigmoid(lin("f")), torch.sigmoid(lin("i")), torch.sigmoid(lin("o")), torch.tanh(lin("g"))
    c = f * s["c"] + i * g
    h = o * torch.tanh(c)
    return {"h": h}, {"h": h, "c": c}


def gru_torch_step(p, x, s):
    h = s["h"]
    r = torch.sigmoid(x @ p["W_ir"].T + p["b_ir"] + h @ p["W_hr"].T + p["b_hr"])
    z = torch.sigmoid(x @ p["W_iz"].T + p["b_iz"] + h @ p["W_hz"].T + p["b_hz"])
    n = torch.tanh(x @ p["W_in"].T + p["b_in"] + r * (h @ p["W_hn"].T + p["b_hn"]))
    h = (1 - z) * n + z * h
    return {"h": h}, {"h": h}


def rnn_step(p, x, s):
    h = torch.tanh(torch.cat([x, s["h"]], -1) @ p["W"].T + p["b"])
    return {"h": h}, {"h": h}


def mgu_step(p, x, s):
    h = s["h"]
    f = torch.sigmoid(torch.cat([h, x], -1) @ p["W_f"].T + p["b_f"])
    ht = torch.tanh(torch.cat([f * h, x], -1) @ p["W_h"].T + p["b_h"])
    h = (1 - f) * h + f * ht
    return {"h": h}, {"h": h}


CUSTOM = """
cell softsign_rnn
nonlinearity mysoft(u) = u / (1 + abs(u))
nonlinearity lecun(v) = 1.7159 * tanh(2 * v / 3)
input x[n_in]
state h[n]
a = lecun(W @ [x, h] + b)
h' = mysoft(a) * sigmoid(U @ h)
output h'
"""


def custom_step(p, x, s):
    a = 1.7159 * torch.tanh(2 * (torch.cat([x, s["h"]], -1) @ p["W"].T + p["b"]) / 3)
    h = a / (1 + torch.abs(a)) * torch.sigmoid(s["h"] @ p["U"].T)
    return {"h": h}, {"h": h}


CASES = {"lstm": lstm_step, "gru_torch": gru_torch_step, "rnn": rnn_step, "mgu": mgu_step,
         "custom": custom_step}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("optimize", [True, False])
def test_gradients_equal_torch_autograd(name, optimize):
    cell = gl.parse(CUSTOM) if name == "custom" else gl.zoo.get(name)
    params, xs, state0 = problem(cell, seed=3)
    rng = np.random.default_rng(7)
    dys = {o: rng.standard_normal((T, B, N)) for o in cell.outputs}
    dst = {s: rng.standard_normal((B, N)) for s in cell.states}
    prog = gl.compile(cell, optimize=optimize)
    ys, st = prog.forward(params, xs, state0)
    grads = prog.backward(params, xs, state0, dys, dst)

    tp = {k: t(v) for k, v in params.items()}
    tx = t(xs)
    ts0 = {k: t(v) for k, v in state0.items()}
    state, outs = dict(ts0), []
    for step in range(T):
        out, state = CASES[name](tp, tx[step], state)
        outs.append(out["h"])
    ys_t = torch.stack(outs)
    np.testing.assert_allclose(ys[cell.outputs[0]], ys_t.detach().numpy(), rtol=0, atol=1e-12)
    loss = (ys_t * torch.tensor(dys[cell.outputs[0]])).sum() + sum(
        (state[s] * torch.tensor(dst[s])).sum() for s in cell.states)
    loss.backward()
    expected = {**{k: v.grad for k, v in tp.items()}, "x": tx.grad, **{k: v.grad for k, v in ts0.items()}}
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value.numpy(), rtol=0, atol=1e-10, err_msg=key)
