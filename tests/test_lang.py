"""The .cell language and the Python builder: same semantics, same graph."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import graphlstm as gl

SPEC_LSTM = """
# Standard LSTM with forget gate
cell lstm
input x[n_in]
state h[n], c[n]

f = sigmoid(W_f @ [x, h] + b_f)
i = sigmoid(W_i @ [x, h] + b_i)
o = sigmoid(W_o @ [x, h] + b_o)
g = tanh(W_g @ [x, h] + b_g)
c' = f * c + i * g
h' = o * tanh(c')
output h'
"""


def test_spec_example_and_api():
    cell = gl.parse(SPEC_LSTM)
    assert cell.name == "lstm"
    assert cell.inputs == ("x",) and cell.states == ("h", "c") and cell.outputs == ("h",)
    assert cell.params == ("W_f", "b_f", "W_i", "b_i", "W_o", "b_o", "W_g", "b_g")
    assert cell.sizes == ("n_in", "n")
    shapes = cell.param_shapes({"n_in": 3, "n": 5})
    assert shapes["W_f"] == (5, 8) and shapes["b_f"] == (5,)
    params = cell.init_params({"n_in": 3, "n": 5}, seed=0, dtype="float32")
    assert params["W_g"].dtype == np.float32 and params["W_g"].shape == (5, 8)


def test_a_parameter_vector_in_a_concatenation():
    """`W @ [x, p, h]` with a parameter vector p: p is the same for every example (broadcast
    over the batch), its shape is inferred, and the cell compiles and differentiates."""
    cell = gl.parse("cell c\ninput x[n_in]\nstate h[n]\nparam p[k]\n"
                    "h' = tanh(W @ [x, p, h])\noutput h'\n")
    assert tuple(map(str, cell.shape("W"))) == ("n", "k + n + n_in")
    for optimize in (False, True):
        assert gl.testing.check_grads(cell, optimize=optimize).ok


def test_python_builder_makes_the_same_graph():
    b = gl.CellBuilder("lstm")
    x = b.input("x", "n_in")
    h, c = b.state("h", "n"), b.state("c", "n")
    xh = b.concat(x, h)
    gate = lambda name, fn: b.let(name, b.apply(fn, b.param(f"W_{name}") @ xh + b.param(f"b_{name}")))  # noqa
    f, i, o, g = gate("f", "sigmoid"), gate("i", "sigmoid"), gate("o", "sigmoid"), gate("g", "tanh")
    c_new = b.update(c, f * c + i * g)
    b.update(h, o * b.apply("tanh", c_new))
    b.output(h.new)
    built, parsed = b.build(), gl.parse(SPEC_LSTM)
    assert dict(built.step.results) == dict(parsed.step.results)   # interned: identical nodes
    assert list(built.graph.nodes) == list(parsed.graph.nodes)


def test_module_level_builder_functions():
    b = gl.CellBuilder("rnn")
    x, h = b.input("x", "n_in"), b.state("h", "n")
    b.update(h, gl.tanh(b.param("W") @ gl.concat(x, h) + b.param("b")))
    b.output(h.new)
    assert gl.compile(b.build()).forward is not None


def test_constants_become_affine_nonlinearities():
    cell = gl.parse("input x[n]\nstate h[n]\nh' = (1 - x) * h + 0.5 * h - -x / 4 + (2 * 3) * x\noutput h'")
    ops = [d["op"] for _, d in cell.graph.nodes(data=True)]
    assert "nonlinearity" in ops and "sum" in ops
    xs, h0 = np.arange(6.0).reshape(3, 1, 2), np.ones((1, 2))
    ys, _ = gl.compile(cell).forward({}, xs, {"h": h0})
    expected, h = [], h0
    for x in xs:
        h = (1 - x) * h + 0.5 * h + x / 4 + 6 * x
        expected.append(h)
    np.testing.assert_allclose(ys["h"], np.stack(expected))


SCALED = "input x[n_in]\nstate h[n]\nh' = tanh({})\noutput h'\n"


@pytest.mark.parametrize("written, meant", [
    ("-W @ [x, h] + b", "-(W @ [x, h]) + b"),
    ("+W @ [x, h] + b", "W @ [x, h] + b"),
    ("0.5 * W @ [x, h] + b", "0.5 * (W @ [x, h]) + b"),
    ("W * 0.5 @ [x, h] + b", "(W @ [x, h]) * 0.5 + b"),
    ("W / 4 @ [x, h] + b", "(W @ [x, h]) / 4 + b"),
    ("-2 * W @ [x, h] + b", "-2 * (W @ [x, h]) + b"),
    ("(1 - 0.25) * -W @ [x, h] + b", "(1 - 0.25) * -(W @ [x, h]) + b"),
    ("b - 0.5 * W @ [x, h]", "b - 0.5 * (W @ [x, h])"),
    ("b * (-W @ [x, h])", "b * -(W @ [x, h])"),
], ids=["minus", "plus", "times", "times-right", "divided", "minus-times", "folded", "in-sum",
        "in-gate"])
def test_a_scaled_matrix_left_of_matmul_scales_the_product(written, meant):
    """Python binds `-W @ v` as `(-W) @ v` and `0.5 * W @ v` as `(0.5 * W) @ v`; the language
    reads them as `-(W @ v)` and `0.5 * (W @ v)`: the same graph, W a matrix."""
    a, b = gl.parse(SCALED.format(written)), gl.parse(SCALED.format(meant))
    assert dict(a.step.results) == dict(b.step.results)     # interned: identical nodes
    assert a.param_shapes({"n_in": 2, "n": 3})["W"] == (3, 5)


def test_a_negated_matrix_computes_the_negated_product():
    """`tanh(-W @ [x, h] + b)` runs forward and backward exactly as `tanh(-(W @ [x, h]) + b)`,
    and that is the negated product, not the product."""
    from graphlstm.testing import random_problem
    written = gl.parse(SCALED.format("-W @ [x, h] + b"))
    meant = gl.parse(SCALED.format("-(W @ [x, h]) + b"))
    problem = random_problem(written, {"n_in": 2, "n": 3}, T=4, B=2, seed=1)
    params, xs, state0 = problem[:3]
    runs = []
    for cell in (written, meant):
        prog = gl.compile(cell)
        ys, state_T = prog.forward(*problem[:3])
        runs.append((ys, state_T, prog.backward(*problem)))
    for got, want in zip(*runs):
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12)
    h, expected = state0["h"], []
    for x in xs["x"]:
        h = np.tanh(-np.concatenate([x, h], axis=1) @ params["W"].T + params["b"])
        expected.append(h)
    np.testing.assert_allclose(runs[0][0]["h"], np.stack(expected), rtol=1e-12)
    gl.testing.check_grads(written, {"n_in": 2, "n": 3})


def test_graph_nodes_carry_op_shape_and_equation():
    g = gl.zoo.get("lstm").graph
    assert g.nodes["f"]["op"] == "nonlinearity" and g.nodes["f"]["shape"] == ("n",)
    assert g.nodes["c'"]["eq"] == "c'" and g.nodes["W_f"]["op"] == "param"
    assert g.nodes["W_f"]["shape"] == ("n", "n + n_in")
    assert all("eq" in d for _, d in g.nodes(data=True))


def test_param_line_introduces_a_size():
    cell = gl.parse("input x[n_in]\nstate h[n]\nparam W_y[n_y, n]\nh' = tanh(W @ [x, h])\n"
                    "output y = W_y @ h' + b_y")
    assert cell.sizes == ("n_in", "n", "n_y")
    assert cell.param_shapes({"n_in": 2, "n": 3, "n_y": 4})["b_y"] == (4,)


def test_distinct_sizes_never_unify():
    with pytest.raises(gl.SpecError) as e:
        gl.parse("input x[n_in]\nstate h[n]\nh' = tanh(x + h)\noutput h'")
    assert e.value.line == 3 and "n_in" in e.value.message and "^" in str(e.value)


def test_uninferable_parameter_suggests_a_param_line():
    with pytest.raises(gl.SpecError, match=r"param W_y\[.*, n\]") as e:
        gl.parse("input x[n_in]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput y = W_y @ h'")
    assert e.value.line == 4 and e.value.col == 12


def test_a_value_repeated_in_a_concat_gets_its_size_by_division():
    cell = gl.parse("input x[n_in]\nstate h[n]\nparam W2[n, n + n]\na = W1 @ x\n"
                    "h' = tanh(W2 @ [a, a]) + a\noutput h'\n")
    assert cell.param_shapes({"n_in": 2, "n": 3}) == {"W2": (3, 6), "W1": (3, 2)}
    with pytest.raises(gl.SpecError, match="size mismatch") as e:     # n = 2 a: a is no size
        gl.parse("input x[n_in]\nstate h[n]\nparam W2[n, n]\na = W1 @ x\n"
                 "h' = tanh(W2 @ [a, a]) + h\noutput h'\n")
    assert e.value.line == 5


def test_a_log_sigmoid_formula_stays_finite_far_below_zero():
    cell = gl.parse("nonlinearity logsig(u) = log(1 / (1 + exp(-u)))\ninput x[n]\nstate h[n]\n"
                    "h' = logsig(x)\noutput h'\n")
    x = np.array([-800.0, -40.0, 0.0, 40.0]).reshape(4, 1, 1)
    ys, _ = gl.compile(cell).forward({}, x)
    expected = -np.logaddexp(0, -x)
    np.testing.assert_allclose(ys["h"], expected, rtol=1e-15)


@pytest.mark.parametrize("text", [
    "input x[n_in]\nh' = tanh(W @ [x, h])\nstate h[n]\noutput h'\n",
    "state h[n]\nh' = tanh(W @ [x, h])\ninput x[n_in]\noutput h'\n",
    "input x[n_in]\nstate h[n]\nh' = tanh(W @ [x, h])\nparam W[n, n_in + n]\noutput h'\n",
    "input x[n_in]\nstate h[n]\nh' = act(W @ [x, h])\noutput h'\nnonlinearity act(u) = u / (1 + abs(u))\n",
    "input x[n_in]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput y = W_y @ h'\nparam W_y[n_y, n]\n",
])
def test_declarations_may_stand_anywhere(text):
    cell = gl.parse(text)
    assert cell.inputs == ("x",) and cell.states == ("h",)
    sizes = {s: 2 + k for k, s in enumerate(cell.sizes)}
    assert gl.testing.check_grads(cell, sizes).ok


def test_missing_state_update_points_at_the_declaration():
    with pytest.raises(gl.SpecError, match="no update") as e:
        gl.parse("input x[n]\nstate h[n], c[n]\nh' = tanh(W @ x)\noutput h'")
    assert (e.value.line, e.value.col) == (2, 13)


def test_custom_nonlinearity_formula_is_parsed_not_evaluated():
    cell = gl.parse("nonlinearity sq(z) = log(1 + exp(z)) - z**2 / 2\ninput x[n]\nstate h[n]\n"
                    "h' = sq(W @ x) + h\noutput h'")
    fn = cell.step.meta["custom"][0]
    assert fn.name == "sq" and "softplus" in str(fn.expr)      # rewritten to the stable form


def test_load_names_cell_after_file(tmp_path):
    path = tmp_path / "mine.cell"
    path.write_text("input x[n]\nstate h[n]\nh' = tanh(W @ [x, h])\noutput h'\n")
    assert gl.load(path).name == "mine"


SIZE = st.sampled_from(["n", "n_in", "m"])
NONLIN = st.sampled_from(["sigmoid", "tanh", "relu", "softsign", "softplus", "identity", "hard_sigmoid"])


@st.composite
def cell_texts(draw):
    """Random well-formed cells: equations over the inputs, states and earlier equations."""
    n_states = draw(st.integers(1, 2))
    lines = ["input x[n_in]", "state " + ", ".join(f"s{k}[n]" for k in range(n_states))]
    vectors = [f"s{k}" for k in range(n_states)]
    for e in range(draw(st.integers(1, 5))):
        fn = draw(NONLIN)
        operands = draw(st.lists(st.sampled_from(vectors + ["x"]), min_size=1, max_size=3))
        form = draw(st.sampled_from(["mm", "gate", "affine"]))
        if form == "mm" or "x" in operands:
            body = f"{fn}(A{e} @ [{', '.join(operands)}] + b{e})"
        elif form == "gate":
            body = " * ".join(operands) if len(operands) > 1 else f"p{e} * {operands[0]}"
        else:
            body = f"(1 - {fn}({operands[0]})) * 0.5"
        lines.append(f"e{e} = {body}")
        vectors.append(f"e{e}")
    used = " + ".join(vectors[n_states:])          # every equation reaches a state update
    for k in range(n_states):
        lines.append(f"s{k}' = {used} + tanh(U{k} @ s{k})")
    lines.append("output s0'")
    return "\n".join(lines)


@given(cell_texts())
def test_random_wellformed_cells_parse_get_shapes_and_run(text):
    cell = gl.parse(text)
    sizes = {"n_in": 2, "n": 3}
    params = cell.init_params(sizes)
    xs = np.random.default_rng(0).standard_normal((3, 2, 2))
    ys, _ = gl.compile(cell).forward(params, xs)
    assert ys["s0"].shape == (3, 2, 3) and np.isfinite(ys["s0"]).all()


@given(st.text(max_size=200))
def test_random_text_raises_only_spec_error(text):
    try:
        gl.parse(text)
    except gl.SpecError as e:
        assert e.line is None or e.line >= 1
