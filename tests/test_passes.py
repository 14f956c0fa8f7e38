"""The optimisation passes one at a time: each rewrite keeps the step's values (checked with
the reference interpreter on random inputs) and does what its docstring says."""
from __future__ import annotations

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import reference
from graphlstm.autodiff import vjp
from graphlstm.ir import Function, Op, concrete_shape
from graphlstm.passes import optimize_step
from graphlstm.passes.algebra import factor_products, group_free_factors, interpolate
from graphlstm.passes.fold import fold_pads
from graphlstm.testing import default_sizes

from conftest import ALL_CELLS, corpus_cell


def random_values(fn: Function, sizes: dict[str, int], B: int = 3, seed: int = 0) -> dict:
    """A random array for every leaf of a step (batched leaves are [B, ...])."""
    rng = np.random.default_rng(seed)
    return {leaf.arg: rng.standard_normal(((B,) if leaf.batched else ())
                                          + concrete_shape(fn.shapes[leaf], sizes))
            for leaf in fn.leaves}


def assert_same_values(before: Function, after: Function, sizes: dict[str, int]) -> None:
    values = random_values(before, sizes)
    want, got = reference.run(before, values, sizes), reference.run(after, values, sizes)
    assert set(want) == set(got)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)


def shared_factors(fn: Function) -> list:
    """Sums with two single-use products (or negated products) that share a factor."""
    from graphlstm.passes.algebra import _product, _shared_factor
    from graphlstm.passes.rebuild import users
    table = users(fn)
    found = []
    for node in fn.nodes():
        if node.op is Op.SUM:
            products = [p for p in (_product(t, t, table) for t in node.src) if p is not None]
            if _shared_factor(products) is not None:
                found.append(node)
    return found


def backward_of(name: str) -> tuple[Function, dict[str, int]]:
    cell = corpus_cell(name)
    return fold_pads(vjp(optimize_step(cell.step))), default_sizes(cell)


def gradient_products(fn: Function) -> list:
    """Products `(d * a) * b` of a gradient d and two factors that depend on the forward
    sweep only, with `d * a` used there alone (what group_free_factors regroups)."""
    from graphlstm.passes.rebuild import users
    seeds, table, free = set(fn.meta["seeds"].values()), users(fn), set()
    for node in fn.nodes():
        if node not in seeds and all(s in free for s in node.src):
            free.add(node)
    return [node for node in fn.nodes() if node.op is Op.GATE and len(node.src) == 2 and any(
        inner.op is Op.GATE and len(table.get(inner, [])) == 1 and other in free
        and len(inner.src) == 2 and sum(s in free for s in inner.src) == 1
        for inner, other in (node.src, node.src[::-1]))]


def test_free_factors_are_multiplied_once_per_chunk():
    """The LSTM's `d_g = d_c' * i * (1 - g**2)` and `d_c' += d_h' * o * (1 - tanh(c')**2)`
    multiply the gradient once a step: the factors' products come from the chunk."""
    src = gl.compile(gl.zoo.get("lstm")).source
    assert gradient_products(backward_of("lstm")[0]) != []
    assert "i_g_deriv_steps" in src and "o_h_new_act_deriv_steps" in src
    loop = src[src.index("for t in range(stop - 1"):src.index("# After the loop")]
    assert "multiply(d_c_new_, i_g_deriv, d_g_gated)" in loop
    assert "square(" not in loop and "subtract(one" not in loop


@pytest.mark.parametrize("rewrite, leftovers", [(factor_products, shared_factors),
                                                 (group_free_factors, gradient_products)],
                         ids=["factor_products", "group_free_factors"])
@pytest.mark.parametrize("name", ALL_CELLS)
def test_backward_algebra_keeps_the_values(name, rewrite, leftovers):
    """Each algebra pass of the backward step keeps its values and leaves nothing it would
    rewrite again."""
    bwd, sizes = backward_of(name)
    rewritten = rewrite(bwd)
    assert_same_values(bwd, rewritten, sizes)
    assert leftovers(rewritten) == []


def test_products_sharing_a_factor_share_one_multiplication():
    """`d_q` reaches p through the nonlinearities of `q = relu(p) + softplus(p) - ...`:
    `d_q * relu'(p) + d_q * softplus'(p) + d_q * hard_sigmoid'(p)` becomes
    `d_q * (relu'(p) + softplus'(p) + hard_sigmoid'(p))`, two multiplications fewer per step
    (softsign's term is a product with -d_q)."""
    bwd, _ = backward_of("all_builtins")
    assert shared_factors(bwd), "the pattern is there before the pass"
    products = lambda fn: sum(n.op is Op.GATE for n in fn.nodes())  # noqa: E731
    assert products(factor_products(bwd)) == products(bwd) - 2


@pytest.mark.parametrize("name", ALL_CELLS)
def test_interpolate_keeps_the_values(name):
    cell = corpus_cell(name)
    assert_same_values(cell.step, interpolate(cell.step), default_sizes(cell))


def one_minus(fn: Function) -> list:
    """The `1 - z` nodes of a step."""
    return [n for n in fn.nodes() if n.op is Op.NONLIN and not n.arg.name
            and str(n.arg.expr) == "1 - u"]


@pytest.mark.parametrize("name,lines", [
    ("mgu", ["subtract(h_tilde, h, h_new)", "multiply(h_new, f, h_new)", "add(h_new, h, h_new)"]),
    ("gru", ["subtract(h_tilde, h, h_new)", "multiply(h_new, z, h_new)", "add(h_new, h, h_new)"]),
    ("gru_torch", ["subtract(h, n_, h_new)", "multiply(h_new, z, h_new)", "add(h_new, n_, h_new)"]),
    ("lstm_coupled", ["subtract(g, c, c_new)", "multiply(c_new, i, c_new)", "add(c_new, c, c_new)"]),
])
def test_a_gated_interpolation_is_one_product(name, lines):
    """`(1 - z) * a + z * b` is computed as `a + z * (b - a)`: three calls in the loop, not
    four, and no `1 - z`."""
    step = gl.zoo.get(name).step
    products = lambda fn: sum(n.op is Op.GATE for n in fn.nodes())  # noqa: E731
    assert one_minus(step) and not one_minus(interpolate(step))
    assert products(interpolate(step)) == products(step) - 1
    src = gl.compile(gl.zoo.get(name)).source
    loop = src[src.index("    for t in range(T)"):src.index("def backward(")]
    text = "\n".join(line.strip() for line in loop.splitlines())
    assert "\n".join(lines) in text


def test_a_shared_cotangent_is_added_once():
    """h' = h + f * (h~ - h) passes the cotangent of h' on to h through the sum: it is one
    term of h's cotangent (added once), not its terms added again."""
    src = gl.compile(gl.zoo.get("mgu")).source
    loop = src[src.index("# Backward through time"):src.index("# After the loop")]
    assert loop.count("dys_h[t]") == 1 and "add(grad_h, d_h_new_, grad_h)" in loop


def bias_sums(fn: Function, sizes: dict[str, int]) -> list[tuple]:
    """(product, first column, end column) of every sum that adds parameters to a matrix
    product (or to a slice of its columns) and nothing else batched."""
    found = []
    for node in fn.nodes():
        batched = [s for s in node.src if s.batched]
        if node.op is not Op.SUM or len(batched) != 1 or len(node.src) < 2:
            continue
        term, lo, hi = batched[0], 0, concrete_shape(fn.shapes[batched[0]], sizes)[0]
        if term.op is Op.SLICE and term.arg[0] == 0:
            lo, hi = concrete_shape(term.arg[1:], sizes)
            term = term.src[0]
        if term.op is Op.MATMUL:
            found.append((term, lo, hi))
    return found


@pytest.mark.parametrize("name", ALL_CELLS)
def test_each_column_of_a_product_gets_its_bias_once(name):
    """fuse_slices builds a fused node from the nodes of the step it rewrites; a node another
    fusion of the same round replaces must wait for the next round, or the old node comes back
    beside its replacement (gru added b_z, b_r to its z and r columns in one array and b_z,
    b_r, b to all three in another)."""
    cell = corpus_cell(name)
    sizes = default_sizes(cell)
    sums = bias_sums(optimize_step(cell.step), sizes)
    for k, (product, lo, hi) in enumerate(sums):
        for other, lo2, hi2 in sums[k + 1:]:
            assert other is not product or hi <= lo2 or hi2 <= lo, (lo, hi, lo2, hi2)
