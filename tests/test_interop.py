"""PyTorch in and out: from_torch / to_torch against nn.RNN, nn.LSTM, nn.GRU (values and
every gradient, float64, 1e-10), and the torch backend against the NumPy program."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import interop
from graphlstm.testing import default_sizes, random_problem

torch = pytest.importorskip("torch")
nn = torch.nn

T, B, N_IN, H = 5, 3, 4, 3
TOL = 1e-10


def make_module(kind: str, layers: int, bidir: bool, batch_first: bool, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, dtype=torch.float64)
    if kind.startswith("rnn"):
        return nn.RNN(N_IN, H, nonlinearity=kind.split("_")[1], **common)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](N_IN, H, **common)


def torch_run(module, x, state0, dy, dstate):
    """PyTorch's outputs and gradients of sum(y * dy) + sum(state_T * dstate)."""
    x = torch.tensor(x, requires_grad=True)
    s0 = [torch.tensor(s, requires_grad=True) for s in state0]
    y, st = module(x, tuple(s0) if len(s0) > 1 else s0[0])
    st = st if isinstance(st, tuple) else (st,)
    loss = (y * torch.tensor(dy)).sum() + sum((a * torch.tensor(d)).sum() for a, d in zip(st, dstate))
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return (y.detach().numpy(), [a.detach().numpy() for a in st], grads, x.grad.numpy(),
            [s.grad.numpy() for s in s0])


def close(a, b, what):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
    assert err <= TOL, f"{what}: max abs error {err:.2e}"
    return err


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


CONFIGS = [(1, False, False), (2, False, True), (1, True, False), (2, True, True)]


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidir,batch_first", CONFIGS)
def test_from_torch_equals_pytorch(kind, layers, bidir, batch_first):
    module = make_module(kind, layers, bidir, batch_first)
    rng = np.random.default_rng(1)
    D = 2 if bidir else 1
    x = rng.standard_normal((B, T, N_IN) if batch_first else (T, B, N_IN))
    y_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    n_states = 2 if kind == "lstm" else 1
    state0 = [rng.standard_normal((layers * D, B, H)) for _ in range(n_states)]
    dy, dstate = rng.standard_normal(y_shape), [rng.standard_normal((layers * D, B, H)) for _ in state0]
    y_t, st_t, grads_t, dx_t, ds0_t = torch_run(module, x, state0, dy, dstate)

    model, params = interop.from_torch(module)
    assert all(v.dtype == np.float64 for v in params.values())
    prog = model.compile() if bidir else gl.compile(model)
    xs = interop.time_major(x) if batch_first else x
    dys = interop.time_major(dy) if batch_first else dy
    s0 = interop.state_from_torch(model, *state0)
    ys, st = prog.forward(params, {model.inputs[0]: xs}, s0)
    y = ys[model.outputs[0]]
    close(interop.batch_major(y) if batch_first else y, y_t, "output")
    for a, b in zip(as_tuple(interop.state_to_torch(model, st)), st_t):
        close(a, b, "final state")
    dst = interop.state_from_torch(model, *dstate)
    grads = prog.backward(params, {model.inputs[0]: xs}, s0, {model.outputs[0]: dys}, dst)
    for name, g in interop.grads_to_torch(model, grads).items():
        close(g, grads_t[name], f"grad {name}")
    assert set(interop.grads_to_torch(model, grads)) == set(grads_t)
    dx = grads[model.inputs[0]]
    close(interop.batch_major(dx) if batch_first else dx, dx_t, "grad input")
    for a, b in zip(as_tuple(interop.state_to_torch(model, grads)), ds0_t):
        close(a, b, "grad initial state")


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_plain_program_equals_pytorch(kind):
    """The plain (unoptimised) code too, on a two-layer module."""
    module = make_module(kind, 2, False, False, seed=3)
    x = np.random.default_rng(2).standard_normal((T, B, N_IN))
    y_t = module(torch.tensor(x))[0].detach().numpy()
    model, params = interop.from_torch(module)
    ys, _ = gl.compile(model, optimize=False).forward(params, x)
    close(ys["h"], y_t, "output")


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_from_torch_cells(cls):
    torch.manual_seed(0)
    module = getattr(nn, cls)(N_IN, H, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((B, N_IN))
    out = module(torch.tensor(x))
    h = (out[0] if isinstance(out, tuple) else out).detach().numpy()
    cell, params = interop.from_torch(module)
    ys, _ = gl.compile(cell).forward(params, x[None])
    close(ys["h"][0], h, "h")


@pytest.mark.parametrize("name,layers,bidir", [("lstm", 1, False), ("rnn", 2, False), ("gru_torch", 1, True),
                                               ("rnn_relu", 2, True)])
def test_to_torch_round_trip(name, layers, bidir):
    """to_torch's module computes what the model computes; from_torch brings it back."""
    base = interop.rnn_relu() if name == "rnn_relu" else gl.zoo.get(name)
    model = gl.bidirectional(base, layers) if bidir else (gl.stack(*[base] * layers) if layers > 1 else base)
    params = model.init_params({"n_in": N_IN, "n": H} if bidir or layers == 1 else
                               {"l1.n_in": N_IN, "l1.n": H, "l2.n": H}, seed=4)
    module = interop.to_torch(model, params)
    assert module.num_layers == layers and module.bidirectional == bidir
    x = np.random.default_rng(5).standard_normal((T, B, N_IN))
    y_t = module(torch.tensor(x))[0].detach().numpy()
    prog = model.compile() if bidir else gl.compile(model)
    close(prog.forward(params, x)[0]["h"], y_t, "output")
    again, params2 = interop.from_torch(module)
    assert again.params == model.params
    close(prog.forward(params2, x)[0]["h"], y_t, "output after the round trip")


def test_to_torch_refuses_what_pytorch_lacks():
    with pytest.raises(ValueError, match="no module for the cell mgu"):
        interop.to_torch(gl.zoo.get("mgu"), {})
    mixed = gl.stack(gl.zoo.get("lstm"), gl.zoo.get("gru_torch"))
    with pytest.raises(ValueError, match="mixes"):
        interop.to_torch(mixed, mixed.init_params({"l1.n_in": 2, "l1.n": 3, "l2.n": 3}))
    deep = gl.stack(gl.zoo.get("lstm"), gl.zoo.get("lstm"))
    with pytest.raises(ValueError, match="one hidden size"):
        interop.to_torch(deep, deep.init_params({"l1.n_in": 2, "l1.n": 3, "l2.n": 4}))


def test_from_torch_float32_keeps_dtype():
    model, params = interop.from_torch(nn.LSTM(N_IN, H, dtype=torch.float32))
    assert model is gl.zoo.get("lstm")
    assert {v.dtype for v in params.values()} == {np.dtype("float32")}


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="nn.RNN, nn.LSTM, nn.GRU"):
        interop.from_torch(nn.Linear(2, 3))
    with pytest.raises(NotImplementedError, match="proj_size"):
        interop.from_torch(nn.LSTM(4, 5, proj_size=2))


# -- the torch backend ------------------------------------------------------------------------

def run_module(module, cell, xs, state0, dys, dstate):
    """The module's outputs and autograd gradients (under the graphlstm names)."""
    xs_t = {k: torch.tensor(v, requires_grad=True) for k, v in xs.items()}
    s0_t = {k: torch.tensor(v, requires_grad=True) for k, v in state0.items()}
    ys, st = module(xs_t, s0_t)
    loss = sum((ys[o] * torch.tensor(dys[o])).sum() for o in cell.outputs) + \
        sum((st[s] * torch.tensor(dstate[s])).sum() for s in cell.states)
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    grads.update({k: v.grad for k, v in {**xs_t, **s0_t}.items()})
    return ({k: v.detach().numpy() for k, v in {**ys, **st}.items()},
            {k: (v.numpy() if v is not None else 0.0) for k, v in grads.items()})


@pytest.mark.parametrize("name", gl.zoo.names())
def test_torch_backend_equals_numpy_on_the_zoo(name):
    """Forward and every gradient (autograd through the generated module vs backward)."""
    cell = gl.zoo.get(name)
    params, xs, state0, dys, dstate = random_problem(cell, default_sizes(cell), T=4, B=2, seed=1)
    ref = gl.compile(cell)
    ys, st = ref.forward(params, xs, state0)
    grads = ref.backward(params, xs, state0, dys, dstate)
    for optimize in (True, False):
        module = gl.compile(cell, backend="torch", optimize=optimize).module(params)
        assert set(dict(module.named_parameters())) == set(cell.params)
        values, grads_t = run_module(module, cell, xs, state0, dys, dstate)
        for k, v in {**ys, **st}.items():
            close(values[k], v, f"{name} {k}")
        assert set(grads_t) == set(grads)
        for k, g in grads.items():
            close(grads_t[k], g, f"{name} grad {k}")


def test_torch_backend_on_the_corpus():
    """Every corner of the language (custom and all built-in nonlinearities, two inputs,
    readouts, integer sizes, no state) through the Program-like torch wrapper."""
    from cells import CORPUS
    for name, text in sorted(CORPUS.items()):
        cell = gl.parse(text, name=name)
        params, xs, state0, dys, dstate = random_problem(cell, default_sizes(cell), T=3, B=2, seed=2)
        ref, prog = gl.compile(cell), gl.compile(cell, backend="torch")
        for a, b in zip(ref.forward(params, xs, state0), prog.forward(params, xs, state0)):
            for k in a:
                close(b[k], a[k], f"{name} {k}")
        g_ref = ref.backward(params, xs, state0, dys, dstate)
        g = prog.backward(params, xs, state0, dys, dstate)
        for k in g_ref:
            close(g[k], g_ref[k], f"{name} grad {k}")


@pytest.mark.parametrize("optimize", [True, False])
def test_torch_backend_stacked_and_bidirectional(optimize):
    deep = gl.stack(gl.zoo.get("lstm"), gl.zoo.get("gru_torch"))
    bi = gl.bidirectional(gl.zoo.get("lstm"), layers=2)
    for model, sizes in ((deep, {"l1.n_in": 3, "l1.n": 4, "l2.n": 5}), (bi, {"n_in": 3, "n": 4})):
        ref = model.compile(optimize=optimize) if model is bi else gl.compile(model, optimize=optimize)
        prog = (bi.compile(backend="torch", optimize=optimize) if model is bi
                else gl.compile(model, backend="torch", optimize=optimize))
        assert list(prog.module(sizes=sizes).state_dict()) == list(model.params)
        params, xs, state0, dys, dstate = random_problem(model, sizes, T=4, B=2, seed=6)
        for a, b in zip(ref.forward(params, xs, state0), prog.forward(params, xs, state0)):
            for k in a:
                close(b[k], a[k], f"{model.name} {k}")
        g_ref = ref.backward(params, xs, state0, dys, dstate)
        g = prog.backward(params, xs, state0, dys, dstate)
        assert set(g) == set(g_ref)
        for k in g_ref:
            close(g[k], g_ref[k], f"{model.name} grad {k}")


def test_torch_source_reads_like_the_equations():
    prog = gl.compile(gl.zoo.get("lstm"), backend="torch", optimize=False)
    src = prog.source
    assert "import numpy" not in src and "graphlstm" not in src.split('"""', 2)[2]
    assert "class Lstm(nn.Module):" in src
    assert "        self.W_f = nn.Parameter(torch.empty((n, n + n_in), dtype=dtype, device=device))" in src
    assert ("            # f = sigmoid(W_f @ [x, h] + b_f)\n            x_h = torch.cat((x, h), dim=-1)\n"
            "            f = torch.sigmoid(x_h @ W_f.T + b_f)\n") in src
    assert "            # h' = o * tanh(c')\n            h_new = o * torch.tanh(c_new)" in src
    assert src == gl.compile(gl.parse(gl.zoo.source("lstm"), name="lstm"), backend="torch",
                             optimize=False).source   # deterministic


def test_torch_module_is_standalone(tmp_path):
    """The saved source imports torch only, and runs where graphlstm cannot be imported."""
    cell = gl.zoo.get("gru_torch")
    prog = gl.compile(cell, backend="torch")
    prog.save(tmp_path / "gru_mod.py")
    script = ("import sys; sys.modules['graphlstm'] = None\n"
              "import torch, gru_mod\n"
              "m = gru_mod.GruTorch(n_in=3, n=4, dtype=torch.float64)\n"
              "ys, st = m(torch.zeros(5, 2, 3, dtype=torch.float64))\n"
              "ys['h'].sum().backward()\n"
              "print(tuple(ys['h'].shape), m.W_hn.grad is not None)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(5, 2, 4) True"


def test_torch_module_follows_the_device():
    """No tensor is made on a fixed device: on 'meta' every output stays on 'meta'."""
    prog = gl.compile(gl.zoo.get("lstm_peephole_diag"), backend="torch")
    module = prog.module(sizes={"n_in": 3, "n": 4}, device="meta")
    ys, st = module(torch.zeros(6, 2, 3, device="meta"))
    assert ys["h"].device.type == "meta" and ys["h"].shape == (6, 2, 4)
    assert {v.device.type for v in st.values()} == {"meta"}


def test_torch_parameter_names_that_clash_with_nn_module():
    cell = gl.parse("input x[n_in]\nstate h[n]\nh' = tanh(training @ [x, h] + forward)\noutput h'",
                    name="clash")
    prog = gl.compile(cell, backend="torch")
    params, xs, state0, _, _ = random_problem(cell, default_sizes(cell), T=3, B=2)
    assert set(dict(prog.module(params).named_parameters())) == {"training_", "forward_"}
    close(prog.forward(params, xs, state0)[0]["h"], gl.compile(cell).forward(params, xs, state0)[0]["h"], "h")


def test_torch_module_checks_its_arguments():
    module = gl.compile(gl.zoo.get("rnn"), backend="torch").module(sizes={"n_in": 3, "n": 4})
    with pytest.raises(ValueError, match=r"xs\['x'\] has shape \(5, 2, 2\); expected \[T, B, n_in\]"):
        module(torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match="missing"):
        module({"y": torch.zeros(5, 2, 3)})


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        gl.compile(gl.zoo.get("rnn"), backend="jax")


def test_deploy_without_torch_example(capsys):
    """examples/deploy_without_torch.py --quick: train, import, run where torch is absent."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "examples" / "deploy_without_torch.py"
    spec = importlib.util.spec_from_file_location("deploy_without_torch", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    try:
        diff = example.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert "torch is not importable" in capsys.readouterr().out
    assert diff <= 1e-12


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_from_torch_without_biases(cls):
    torch.manual_seed(1)
    module = cls(N_IN, H, num_layers=2, bias=False, dtype=torch.float64)
    x = np.random.default_rng(3).standard_normal((T, B, N_IN))
    model, params = interop.from_torch(module)
    assert all(not v.any() for k, v in params.items() if ".b_" in k)
    close(gl.compile(model).forward(params, x)[0]["h"], module(torch.tensor(x))[0].detach().numpy(), "output")


def test_from_torch_warns_that_dropout_is_not_applied():
    with pytest.warns(UserWarning, match="dropout"):
        interop.from_torch(nn.GRU(N_IN, H, num_layers=2, dropout=0.5))
