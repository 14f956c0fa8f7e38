"""Stacked cells and bidirectional models: names, sizes, and every stage downstream."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import reference
from graphlstm.testing import check_grads, random_problem

LSTM, GRU, RNN = gl.zoo.get("lstm"), gl.zoo.get("gru_torch"), gl.zoo.get("rnn")
DEEP_SIZES = {"l1.n_in": 3, "l1.n": 4, "l2.n": 5}


def test_stack_names_sizes_and_layers():
    deep = gl.stack(LSTM, GRU)
    assert isinstance(deep, gl.Cell) and deep.name == "lstm_gru_torch"
    assert deep.inputs == ("x",) and deep.outputs == ("h",)
    assert deep.states == ("l1.h", "l1.c", "l2.h")
    assert deep.params[:2] == ("l1.W_f", "l1.b_f") and "l2.W_hn" in deep.params
    assert deep.sizes == ("l1.n_in", "l1.n", "l2.n")     # l2.n_in is bound to l1.n
    shapes = deep.param_shapes(DEEP_SIZES)
    assert shapes["l1.W_f"] == (4, 7) and shapes["l2.W_ir"] == (5, 4) and shapes["l2.W_hr"] == (5, 5)
    assert deep.step.meta["layers"] == (("l1.", "lstm"), ("l2.", "gru_torch"))
    labels = set(deep.step.labels.values())
    assert all(label.startswith(("l1.", "l2.")) for label in labels)
    assert gl.stack(LSTM, LSTM, LSTM).name == "lstm_x3"


def test_stack_of_stacks_flattens():
    assert gl.stack(gl.stack(RNN, RNN), RNN).params == gl.stack(RNN, RNN, RNN).params


@pytest.mark.parametrize("optimize", [True, False])
def test_stack_gradients(optimize):
    report = check_grads(gl.stack(LSTM, GRU), DEEP_SIZES, optimize=optimize)
    assert report.ok


def test_stack_equals_layers_run_in_turn():
    """Layer 2 reads layer 1's output at the same step: the same as two programs in turn."""
    deep = gl.stack(LSTM, GRU)
    params, xs, state0, _, _ = random_problem(deep, DEEP_SIZES, T=5, B=2, seed=3)
    layer = lambda p, d: {k[len(p):]: v for k, v in d.items() if k.startswith(p)}  # noqa: E731
    ys1, st1 = gl.compile(LSTM).forward(layer("l1.", params), xs["x"], layer("l1.", state0))
    ys2, st2 = gl.compile(GRU).forward(layer("l2.", params), ys1["h"], layer("l2.", state0))
    for optimize in (True, False):
        ys, st = gl.compile(deep, optimize=optimize).forward(params, xs, state0)
        np.testing.assert_allclose(ys["h"], ys2["h"], rtol=0, atol=1e-13)
        np.testing.assert_allclose(st["l1.c"], st1["c"], rtol=0, atol=1e-13)
        np.testing.assert_allclose(st["l2.h"], st2["h"], rtol=0, atol=1e-13)
    ys_ref, _ = reference.run_sequence(deep, params, xs, state0)
    np.testing.assert_allclose(ys_ref["h"], ys2["h"], rtol=0, atol=1e-13)


def test_stack_grad_and_unroll_graphs():
    deep = gl.stack(RNN, RNN)
    backward = gl.grad(deep)
    results = dict(backward.graph["function"].results)
    assert {"grad_l1.W", "grad_l2.W", "grad_x", "grad_l2.h"} <= set(results)
    unrolled = gl.unroll(deep, T=3)
    assert {"l1.h@0", "l2.h@0", "x@2"} <= set(unrolled.nodes)
    assert any(d["state"] for _, _, d in unrolled.edges(data=True))


def test_stack_size_errors():
    two = gl.parse("input x[n_in], u[m]\nstate h[n]\nh' = tanh(W @ [x, u, h])\noutput h'")
    with pytest.raises(gl.SpecError, match="layer 2 .* 2 input"):
        gl.stack(RNN, two)
    fixed = gl.parse("input x[7]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'")
    with pytest.raises(gl.SpecError, match="layer 2 .* cannot take layer 1's output h"):
        gl.stack(RNN, fixed)
    with pytest.raises(gl.SpecError, match="at least one"):
        gl.stack()
    with pytest.raises(TypeError, match="bidirectional"):
        gl.stack(gl.bidirectional(RNN), RNN)


def test_stack_shares_sizes_on_purpose():
    """A layer whose input size is its state size (x[n], h[n]) ties the sizes together."""
    square = gl.parse("input x[n]\nstate h[n]\nh' = tanh(W @ x + U @ h)\noutput h'", name="square")
    deep = gl.stack(RNN, square)
    assert deep.sizes == ("l1.n_in", "l1.n")
    assert deep.param_shapes({"l1.n_in": 2, "l1.n": 3})["l2.U"] == (3, 3)


# -- bidirectional ---------------------------------------------------------------------------

def test_bidirectional_names_and_shapes():
    bi = gl.bidirectional(LSTM)
    assert bi.params[:2] == ("fwd.W_f", "fwd.b_f") and "rev.b_g" in bi.params
    assert bi.states == ("fwd.h", "fwd.c", "rev.h", "rev.c")
    assert bi.shape("h") == (2 * LSTM.shape("h")[0],)
    deep = gl.bidirectional(LSTM, layers=2)
    shapes = deep.param_shapes({"n_in": 3, "n": 4})
    assert shapes["l1.fwd.W_f"] == (4, 7) and shapes["l2.rev.W_f"] == (4, 12)
    assert deep.pair.step.meta["layers"] == (("fwd.", "lstm"), ("rev.", "lstm"))
    assert type(gl.compile(deep)).__name__ == "BidirectionalProgram"   # gl.compile hands off


def test_bidirectional_equals_two_directions():
    bi = gl.bidirectional(GRU)
    params, xs, state0, _, _ = random_problem(bi, {"n_in": 3, "n": 4}, T=5, B=2, seed=4)
    part = lambda p, d: {k[len(p):]: v for k, v in d.items() if k.startswith(p)}  # noqa: E731
    prog = gl.compile(GRU)
    fwd, st_f = prog.forward(part("fwd.", params), xs["x"], part("fwd.", state0))
    rev, st_r = prog.forward(part("rev.", params), xs["x"][::-1], part("rev.", state0))
    ys, st = bi.compile().forward(params, xs, state0)
    np.testing.assert_allclose(ys["h"], np.concatenate([fwd["h"], rev["h"][::-1]], -1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(st["rev.h"], st_r["h"], rtol=0, atol=1e-14)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("optimize", [True, False])
def test_bidirectional_gradients(layers, optimize):
    bi = gl.bidirectional(LSTM, layers=layers)
    assert check_grads(bi, {"n_in": 3, "n": 4}, program=bi.compile(optimize=optimize)).ok


def test_bidirectional_source_is_standalone(tmp_path):
    bi = gl.bidirectional(RNN, layers=2)
    bi.compile().save(tmp_path / "birnn.py")
    params, xs, state0, dys, _ = random_problem(bi, {"n_in": 3, "n": 4}, T=4, B=2, seed=5)
    np.savez(tmp_path / "data.npz", xs=xs["x"], dy=dys["h"], **{f"p_{k}": v for k, v in params.items()})
    script = (
        "import sys; sys.modules['graphlstm'] = None\n"
        "import numpy as np, birnn\n"
        "d = np.load('data.npz')\n"
        "p = {k[2:]: d[k] for k in d.files if k.startswith('p_')}\n"
        "ys, st = birnn.forward(p, d['xs'])\n"
        "g = birnn.backward(p, d['xs'], None, {'h': d['dy']})\n"
        "np.save('ys.npy', ys['h']); np.save('gx.npy', g['x'])\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    prog = bi.compile()
    ys, _ = prog.forward(params, xs)
    grads = prog.backward(params, xs, None, dys)
    np.testing.assert_array_equal(np.load(tmp_path / "ys.npy"), ys["h"])
    np.testing.assert_array_equal(np.load(tmp_path / "gx.npy"), grads["x"])


def test_bidirectional_errors():
    two = gl.parse("input x[n_in], u[m]\nstate h[n]\nh' = tanh(W @ [x, u, h])\noutput h'")
    assert gl.bidirectional(two).inputs == ("x", "u")
    with pytest.raises(gl.SpecError, match="one input and one output"):
        gl.bidirectional(two, layers=2)
    with pytest.raises(ValueError, match="positive integer"):
        gl.bidirectional(LSTM, layers=0)
    prog = gl.bidirectional(RNN).compile()
    params = gl.bidirectional(RNN).init_params({"n_in": 2, "n": 3})
    with pytest.raises(ValueError, match=r"dys\['h'\] must be an array \[T, B, 2 \* size\]"):
        prog.backward(params, np.zeros((2, 1, 2)), None, {"h": np.zeros((2, 1, 5))})
    with pytest.raises(ValueError, match="missing"):
        prog.forward({}, np.zeros((2, 1, 2)))


NO_TORCH = """
import sys
sys.modules["torch"] = None          # torch cannot be imported in this process
import numpy as np
import graphlstm as gl
deep = gl.stack(gl.zoo.get("lstm"), gl.zoo.get("lstm"))
params = deep.init_params({"l1.n_in": 2, "l1.n": 3, "l2.n": 3})
ys, _ = gl.compile(deep).forward(params, np.zeros((4, 1, 2)))
bi = gl.bidirectional(gl.zoo.get("rnn"))
bi.compile().forward(bi.init_params({"n_in": 2, "n": 3}), gl.interop.time_major(np.zeros((1, 4, 2))))
for attempt in (lambda: gl.compile(gl.zoo.get("lstm"), backend="torch"),
                lambda: bi.compile(backend="torch"),
                lambda: gl.interop.from_torch(object()),
                lambda: gl.interop.to_torch(gl.zoo.get("rnn"), {})):
    try:
        attempt()
    except ImportError as e:
        assert "pip install torch" in str(e), e
    else:
        raise SystemExit("no ImportError")
print("ok")
"""


def test_graphlstm_works_without_torch():
    """Everything outside the torch paths runs without torch; the torch paths say what to install."""
    out = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_stack_and_bidirectional_of_feature_maps():
    """ConvLSTM layers: map sizes are bound layer to layer; directions join along channels."""
    conv = gl.zoo.get("convlstm")
    deep = gl.stack(conv, conv)
    assert deep.sizes == ("l1.n_in", "l1.H", "l1.W", "l1.n", "l2.n")
    assert check_grads(deep, {"l1.n_in": 2, "l1.H": 4, "l1.W": 3, "l1.n": 2, "l2.n": 3}, T=3, B=2).ok
    bi = gl.bidirectional(conv, layers=2)
    assert bi.shape("h")[1:] == conv.shape("h")[1:]
    sizes = {"n_in": 2, "H": 4, "W": 3, "n": 2}
    assert bi.param_shapes(sizes)["l2.fwd.W_i"] == (2, 6, 3, 3)
    assert check_grads(bi, sizes, T=3, B=2, program=bi.compile()).ok
