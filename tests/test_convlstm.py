"""The convolutional LSTM (feature maps, 4-D parameters as same-padded convolutions)
against a PyTorch ConvLSTM written with F.conv2d: values and every gradient."""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl
from graphlstm.testing import random_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional

SIZES = {"n_in": 2, "n": 3, "H": 5, "W": 4}


def torch_convlstm(p, xs, h, c):
    """Shi et al. 2015, written directly with torch ops."""
    conv = lambda w, v: F.conv2d(v, w, padding=(w.shape[2] // 2, w.shape[3] // 2))  # noqa: E731
    outs = []
    for x in xs:
        xh = torch.cat([x, h], 1)
        i = torch.sigmoid(conv(p["W_i"], xh) + p["p_i"] * c + p["b_i"])
        f = torch.sigmoid(conv(p["W_f"], xh) + p["p_f"] * c + p["b_f"])
        c = f * c + i * torch.tanh(conv(p["W_c"], xh) + p["b_c"])
        o = torch.sigmoid(conv(p["W_o"], xh) + p["p_o"] * c + p["b_o"])
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), h, c


@pytest.mark.parametrize("optimize", [True, False])
def test_convlstm_equals_pytorch(optimize):
    cell = gl.zoo.get("convlstm")
    params, xs, state0, dys, dstate = random_problem(cell, SIZES, T=4, B=2, seed=3)
    prog = gl.compile(cell, optimize=optimize)
    ys, st = prog.forward(params, xs, state0)
    grads = prog.backward(params, xs, state0, dys, dstate)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(xs["x"], requires_grad=True)
    th, tc = (torch.tensor(state0[s], requires_grad=True) for s in ("h", "c"))
    out, h, c = torch_convlstm(tp, tx, th, tc)
    np.testing.assert_allclose(ys["h"], out.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(st["c"], c.detach().numpy(), rtol=0, atol=1e-12)
    loss = (out * torch.tensor(dys["h"])).sum() + (h * torch.tensor(dstate["h"])).sum() \
        + (c * torch.tensor(dstate["c"])).sum()
    loss.backward()
    expected = {**{k: v.grad for k, v in tp.items()}, "x": tx.grad, "h": th.grad, "c": tc.grad}
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value.numpy(), rtol=0, atol=1e-10, err_msg=key)


def test_kernel_sizes_are_declared_odd():
    with pytest.raises(gl.SpecError, match="odd"):
        gl.parse("input x[a, H, W]\nstate h[a, H, W]\nparam K[a, a, 2, 2]\nh' = tanh(K @ x)\noutput h'")


def test_dense_matrix_on_a_map_asks_for_a_convolution():
    with pytest.raises(gl.SpecError, match=r"param U\[out, in, 3, 3\]"):
        gl.parse("input x[a, H, W]\nstate h[a, H, W]\nh' = tanh(U @ x)\noutput h'")


def test_conv_kernel_5x3_and_stacked_maps_gradcheck():
    cell = gl.parse("""
        input x[a, H, W]
        state h[b, H, W]
        param K[b, a + b, 5, 3]
        h' = tanh(K @ [x, h] + bias) * sigmoid(m * h)
        output h'
    """)
    report = gl.testing.check_grads(cell, {"a": 2, "b": 2, "H": 6, "W": 5})
    assert report.ok, str(report)
