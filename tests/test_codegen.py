"""Generated NumPy modules: standalone, readable, dtype-preserving, optimised == plain."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import reference
from graphlstm.testing import default_sizes, random_problem


def test_forward_equals_reference_interpreter(any_cell):
    sizes = default_sizes(any_cell)
    params, xs, state0, _, _ = random_problem(any_cell, sizes, T=5, B=2)
    ys_ref, st_ref = reference.run_sequence(any_cell, params, xs, state0)
    for optimize in (True, False):
        ys, st = gl.compile(any_cell, optimize=optimize).forward(params, xs, state0)
        for k in ys_ref:
            np.testing.assert_allclose(ys[k], ys_ref[k], rtol=0, atol=1e-13)
        for k in st_ref:
            np.testing.assert_allclose(st[k], st_ref[k], rtol=0, atol=1e-13)


def _assert_optimised_equals_plain(cell, sizes) -> None:
    """Forward and backward of gl.compile(cell) and of its plain code agree to 1e-12."""
    params, xs, state0, dys, dstate = random_problem(cell, sizes, T=6, B=3, seed=2)
    fast, plain = gl.compile(cell), gl.compile(cell, optimize=False)
    for a, b in zip(fast.forward(params, xs, state0), plain.forward(params, xs, state0)):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12)
    g1 = fast.backward(params, xs, state0, dys, dstate)
    g2 = plain.backward(params, xs, state0, dys, dstate)
    assert set(g1) == set(g2)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=0, atol=1e-12, err_msg=k)


def test_optimised_equals_plain(any_cell):
    _assert_optimised_equals_plain(any_cell, default_sizes(any_cell))


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_chunked_backward_equals_plain(any_cell, steps):
    """The backward computes the values no gradient flows into a chunk of steps at a time
    (all T at once for the small arrays of the other tests): with chunks of 1, 3 (the last
    one partial: T=7) and 7 steps, the gradients are the plain code's."""
    from graphlstm.codegen import Program
    sizes = default_sizes(any_cell)
    params, xs, state0, dys, dstate = random_problem(any_cell, sizes, T=7, B=2, seed=3)
    fast = Program(any_cell, gl.compile(any_cell).source, optimize=True)   # a module of its own
    fast.module._chunk_steps = lambda T, per_step: steps
    got = fast.backward(params, xs, state0, dys, dstate)
    want = gl.compile(any_cell, optimize=False).backward(params, xs, state0, dys, dstate)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12, err_msg=k)


def test_chunk_sizes_follow_the_arrays():
    """All T steps in one chunk at B=1 (the point: fewer NumPy calls), chunks of about 64K
    numbers for large batches, never fewer than one step."""
    prog = gl.compile(gl.zoo.get("lstm"))
    assert "steps = _chunk_steps(T, B * 5*n)" in prog.source
    chunk_steps = prog.module._chunk_steps
    assert chunk_steps(200, 1 * 5 * 32) == 200
    assert chunk_steps(100, 32 * 5 * 128) == 3
    assert chunk_steps(100, 64 * 5 * 512) == 1
    assert chunk_steps(0, 0) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_in_is_dtype_out(dtype):
    cell = gl.zoo.get("gru")
    params, xs, state0, dys, dstate = random_problem(cell, {"n_in": 3, "n": 4}, dtype=dtype)
    prog = gl.compile(cell)
    ys, st = prog.forward(params, xs, state0)
    grads = prog.backward(params, xs, state0, dys, dstate)
    assert {a.dtype for a in [*ys.values(), *st.values(), *grads.values()]} == {np.dtype(dtype)}


def test_defaults_zero_state_and_bare_array():
    cell = gl.zoo.get("lstm")
    params, xs, _, dys, _ = random_problem(cell, {"n_in": 3, "n": 4})
    prog = gl.compile(cell)
    zeros = {s: np.zeros((3, 4)) for s in cell.states}
    a, _ = prog.forward(params, xs["x"])
    b, _ = prog.forward(params, xs, zeros)
    np.testing.assert_array_equal(a["h"], b["h"])
    g1 = prog.backward(params, xs, None, dys)
    g2 = prog.backward(params, xs, zeros, dys, {s: np.zeros((3, 4)) for s in cell.states})
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


def test_saved_module_runs_without_graphlstm(tmp_path):
    cell = gl.zoo.get("lstm_peephole_diag")
    params, xs, state0, dys, dstate = random_problem(cell, {"n_in": 3, "n": 4})
    prog = gl.compile(cell)
    prog.save(tmp_path / "cell_np.py")
    assert "graphlstm" not in [line.split()[1] for line in prog.source.splitlines()
                               if line.startswith(("import ", "from "))]
    np.savez(tmp_path / "data.npz", **{f"p_{k}": v for k, v in params.items()},
             **{f"x_{k}": v for k, v in xs.items()}, **{f"s_{k}": v for k, v in state0.items()},
             **{f"d_{k}": v for k, v in dys.items()}, **{f"t_{k}": v for k, v in dstate.items()})
    script = """
import sys, json, numpy as np
sys.modules["graphlstm"] = None          # importing graphlstm would fail
import cell_np
z = np.load("data.npz")
pick = lambda p: {k[2:]: z[k] for k in z.files if k.startswith(p)}
ys, st = cell_np.forward(pick("p_"), pick("x_"), pick("s_"))
g = cell_np.backward(pick("p_"), pick("x_"), pick("s_"), pick("d_"), pick("t_"))
np.savez("out.npz", **{"y_" + k: v for k, v in ys.items()}, **{"g_" + k: v for k, v in g.items()})
"""
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {script}"],
                   cwd=tmp_path, check=True, capture_output=True)
    out = np.load(tmp_path / "out.npz")
    ys, _ = prog.forward(params, xs, state0)
    grads = prog.backward(params, xs, state0, dys, dstate)
    np.testing.assert_array_equal(out["y_h"], ys["h"])
    for k, v in grads.items():
        np.testing.assert_array_equal(out[f"g_{k}"], v)


def test_generated_code_reads_like_the_equations():
    src = gl.compile(gl.zoo.get("lstm"), optimize=False).source
    assert "# f = sigmoid(W_f @ [x, h] + b_f)" in src
    assert "# Grad of: c' = f * c + i * g" in src
    assert "c_new = f * c + i * g" in src
    assert "def forward(params, xs, state0=None, tape=None):" in src
    assert "def backward(params, xs, state0, dys, dstate_T=None, tape=None):" in src
    assert "**(-1" not in src and "np.exp(-" not in src   # overflow-free sigmoid


def test_same_cell_same_source():
    a = gl.compile(gl.parse(gl.zoo.source("gru"), name="gru")).source
    b = gl.compile(gl.parse(gl.zoo.source("gru"), name="gru")).source
    assert a == b


def test_sigmoid_does_not_overflow():
    cell = gl.parse("input x[n]\nstate h[n]\nh' = sigmoid(W @ x) * h + sigmoid(V @ h)\noutput h'")
    params = {"W": np.full((2, 2), 1e4, np.float32), "V": np.full((2, 2), -1e4, np.float32)}
    xs = np.full((3, 1, 2), 50.0, np.float32)
    with np.errstate(all="raise"):
        ys, _ = gl.compile(cell).forward(params, xs, {"h": np.ones((1, 2), np.float32)})
    assert np.isfinite(ys["h"]).all()


def test_bad_arrays_raise_value_error_naming_the_array():
    cell = gl.zoo.get("lstm")
    params, xs, _, _, _ = random_problem(cell, {"n_in": 3, "n": 4})
    prog = gl.compile(cell)
    bad = dict(params, W_f=params["W_f"][:, :5])
    with pytest.raises(ValueError, match=r"params\['W_f'\].*\[n, n \+ n_in\]"):
        prog.forward(bad, xs)
    with pytest.raises(ValueError, match=r"xs\['x'\].*int64"):
        prog.forward(params, {"x": np.zeros((2, 3, 3), np.int64)})
    with pytest.raises(ValueError, match="missing"):
        prog.forward({k: v for k, v in params.items() if k != "b_f"}, xs)


def test_vjp_reuses_the_forward_sweep(any_cell):
    sizes = default_sizes(any_cell)
    params, xs, state0, dys, dstate = random_problem(any_cell, sizes, T=4, B=2, seed=4)
    prog = gl.compile(any_cell)
    ys, state_T, pullback = prog.vjp(params, xs, state0)
    expected_ys, _ = prog.forward(params, xs, state0)
    grads, expected = pullback(dys, dstate), prog.backward(params, xs, state0, dys, dstate)
    for k in expected_ys:
        np.testing.assert_array_equal(ys[k], expected_ys[k])
    for k in expected:
        np.testing.assert_array_equal(grads[k], expected[k])


def test_a_tape_serves_one_backward_and_what_forward_returned_survives_it(any_cell):
    """The backward reuses the tape's arrays (gate gradients overwrite spent activations),
    so it empties the tape; a second backward with it runs the forward sweep again."""
    sizes = default_sizes(any_cell)
    params, xs, state0, dys, dstate = random_problem(any_cell, sizes, T=5, B=2, seed=5)
    prog = gl.compile(any_cell)
    tape: dict = {}
    ys, state_T = prog.module.forward(params, xs, state0, tape)
    kept = [{k: v.copy() for k, v in group.items()} for group in (ys, state_T)]
    first = prog.module.backward(params, xs, state0, dys, dstate, tape)
    assert tape == {}
    second = prog.module.backward(params, xs, state0, dys, dstate, tape)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k], err_msg=k)
    for group, before in zip((ys, state_T), kept):
        for k in before:
            np.testing.assert_array_equal(group[k], before[k], err_msg=k)


def _loop_body(src: str, header: str, inner: bool = False) -> list[str]:
    """The lines of the first time loop after `header` in a generated function (a chunked
    backward loop: the chunk's lines and the inner loop's, see `Plan._plan_chunks`; with
    `inner`, the `for t in range(...)` loop's only)."""
    lines = src[src.index(header):].splitlines()
    loop = r"\s*for t in range\(" if inner else r"    for (t|stop) in range\("
    start = next(i for i, line in enumerate(lines) if re.match(loop, line))
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line.strip())
    return body


def test_lstm_loops_update_in_place_and_copy_no_state():
    """The LSTM's forward step adds the recurrent term into its input projection's slot,
    activates the gates in place, writes c' and h' into their sequences (no per-step copy,
    and the output is a view of h's sequence); the backward writes the gate gradients into
    the spent activations' slots. The only [T, B, ...] arrays: the gate array (one spare
    slot), the states' [T+1] sequences, tanh(c') and the input gradient."""
    src = gl.compile(gl.zoo.get("lstm")).source
    forward = _loop_body(src, "def forward(")
    assert "f_i_o_g_sum = f_i_o_g_x_sum[t]" in forward    # x @ W_x.T + b, all steps at once
    assert "dot(h, W_f_i_o_g_h_T, tmp_4n)" in forward     # made before the loop
    assert "add(f_i_o_g_sum, tmp_4n, f_i_o_g_sum)" in forward
    assert "_sigmoid(f_i_o_act, half, f_i_o_act)" in forward
    assert "c_new = c_seq[t + 1]" in forward and "h_new = h_seq[t + 1]" in forward
    assert not any(line.endswith("= h") or line.endswith("= c") for line in forward)
    assert 'return {"h": h_seq[1:]}' in src
    backward = _loop_body(src, "def backward(")
    assert "d_f_i_o_g_cat = f_i_o_g_seq[t + 1]" in backward
    assert src.count("np.empty((T") == 4 and src.count("np.empty((B, 4*n), dtype)") == 1
    assert "d_h_new, d_c_new, grad_h, grad_c = grad_h, grad_c, d_h_new, d_c_new" in backward
    assert "np.empty((T + 1, B, 4*n), dtype)" in src


_ARG = r"[\w.]+(\[[^\]]*\])*"                                           # a name, a view, W.T
_VIEW = re.compile(r"^\w+ = \w+(\[[^\]]*\])+$")                      # x = seq[t][..., :n]
_INTO = re.compile(rf"^\w+\({_ARG}(, {_ARG})*(, out={_ARG})?\)$")       # add(a, b, x), no temporaries
_UPDATE = re.compile(r"^[^=()]+ [-+*/]= [^=()]+$")                          # x += y[..., :n]
_RENAME = re.compile(r"^[\w, ]+ = [\w, ]+$")                              # h, c = h_new, c_new
_COPY = re.compile(r"^\w+\[[^\]]*\] = \w+(\[[^\]]*\])*$")                # x[...] = y[..., :n]
_CHUNK = re.compile(r"^(start = max\(stop - steps, 0\)|for t in range\(stop - 1, start - 1, -1\):)$")


def _allocating(body: list[str]) -> list[str]:
    """Loop lines that may make a new array: anything but a view, a call of names and views
    only (which writes into its last argument), an in-place update, or renaming."""
    return [line for line in body if line and not line.startswith("#") and not any(
        rule.match(line) for rule in (_VIEW, _INTO, _UPDATE, _RENAME, _COPY, _CHUNK))]


@pytest.mark.parametrize("name", [n for n in gl.zoo.names() if n != "convlstm"])
def test_optimised_loops_make_no_array(name):
    """Item 1 of the performance contract: no per-step allocation where it can be avoided.
    Every value of both loops of these zoo cells lives in an array made before the loop (a
    sequence slot, a buffer or a scratch array) and is computed into it or in place.
    (convlstm's convolutions make their im2col arrays.)"""
    src = gl.compile(gl.zoo.get(name)).source
    for header in ("def forward(", "def backward("):
        assert _allocating(_loop_body(src, header)) == [], header


@pytest.mark.parametrize("name", gl.zoo.names())
def test_time_loops_slice_no_columns(name):
    """A step's columns of a sequence (`f = f_i_o_act[..., :n]`) or of a scratch array are
    rows of views made once before the loop (`f = f_seq[t]`): an Ellipsis slicing costs
    ~180 ns a step, a row ~70 ns."""
    src = gl.compile(gl.zoo.get(name)).source
    for header in ("def forward(", "def backward("):
        body = _loop_body(src, header, inner=True)
        assert [line for line in body if "[..." in line] == [], header


@pytest.mark.parametrize("name", ["lstm_peephole_diag", "convlstm"])
def test_column_views_are_named_after_the_equations_that_read_them(name):
    """The peephole gates' columns first hold `p_f * c`, then `f`: the view is `f_seq`, so
    the loop reads `f = f_seq[t]` (not `f = f_gated_seq[t]`)."""
    src = gl.compile(gl.zoo.get(name)).source
    body = _loop_body(src, "def forward(")
    assert any(line.strip() == "f = f_seq[t]" for line in body), body
    assert "gated_seq" not in "\n".join(body)


def test_formulas_are_lowered_to_out_calls_in_the_loop():
    """A formula a user writes (softsign's derivative, a Gaussian) becomes ufunc calls into
    arrays made before the loop, and the code still matches the plain code."""
    cell = gl.parse(
        "cell bump_cell\nnonlinearity bump(v) = exp(-v**2 / 2) + v / (1 + abs(v))\n"
        "input x[n_in]\nstate h[n]\n"
        "a = bump(W @ [x, h] + b)\nh' = a * h - 0.5 * softsign(h) + 1\noutput h'\n")
    src = gl.compile(cell).source
    for header in ("def forward(", "def backward("):
        assert _allocating(_loop_body(src, header)) == [], header
    assert "exp(" in src and "from numpy import " in src
    _assert_optimised_equals_plain(cell, {"n_in": 3, "n": 4})


@pytest.mark.parametrize("name", ["mgu", "rnn", "gru", "lstm", "gru_torch"])
def test_matrices_of_the_time_loop_are_contiguous(name):
    """NumPy's dot on a strided matrix (a slice W[:, :n] of a parameter) is several times
    slower: the generated code copies such slices once per call (and a loop's `W.T` to a
    C-ordered `W_T`). The matrices it keeps on the tape (the ones the loops multiply by) are
    all contiguous."""
    import re
    cell = gl.zoo.get(name)
    params, xs, state0, _, _ = random_problem(cell, {"n_in": 3, "n": 4}, T=2, B=2)
    prog = gl.compile(cell)
    tape: dict = {}
    prog.module.forward(params, xs, state0, tape)
    transposed = dict(re.findall(r"^\s+(\w+) = _transpose\((\w+)\)$", prog.source, re.M))
    multiplied = {transposed.get(m, m)
                  for m in re.findall(r"\bdot\([^,]+, (\w+)(?:\.T)?[,)]", prog.source)}
    assert multiplied
    for key in multiplied:
        value = tape.get(key, params.get(key))
        assert value.flags.c_contiguous or value.flags.f_contiguous, key


def test_weight_gradients_are_views_of_one_array_the_gemms_write_into():
    """concat_slices: the LSTM's four weight gradients are rows of one [4n, n_in + n] array;
    the input and recurrent weight GEMMs write its two column blocks, no copy."""
    src = gl.compile(gl.zoo.get("lstm")).source
    after = src[src.index("# After the loop"):src.index("# Helpers")]
    assert after.count("matmul(") == 2 and ", d_f_i_o_g_outer[..., :n_in])" in after
    assert "grad_W_f = d_f_i_o_g_outer[..., :n, :]" in after
    assert "np.concatenate" not in after
    cell = gl.zoo.get("lstm")
    params, xs, state0, dys, dstate = random_problem(cell, {"n_in": 3, "n": 4}, T=3, B=2)
    grads = gl.compile(cell).backward(params, xs, state0, dys, dstate)
    assert grads["W_f"].base is not None
    assert all(grads[k].base is grads["W_f"].base for k in ("W_i", "W_o", "W_g"))


def test_per_call_vectors_are_widened_to_the_batch_before_the_loop():
    """NumPy loops over a broadcast [n] operand 2-3x slower than over two [B, n] arrays, so
    the peephole weights (and gru_torch's b_hn) are made [B, n] once per call; the code after
    the loop still uses the parameters themselves, and the results do not change."""
    src = gl.compile(gl.zoo.get("lstm_peephole_diag")).source
    assert "p_f_rows = np.ascontiguousarray(np.broadcast_to(p_f, (B, n)))" in src
    for header in ("def forward(", "def backward("):
        body = " ".join(line for line in _loop_body(src, header) if not line.startswith("#"))
        assert re.search(r"\bp_[fio]\b", body) is None and "p_o_rows" in body
    assert "b_hn_rows" in gl.compile(gl.zoo.get("gru_torch")).source
