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
from graphlstm.passes.factor import factor_products
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
    from graphlstm.passes.factor import _product, _shared_factor
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


@pytest.mark.parametrize("name", ALL_CELLS)
def test_factor_products_keeps_the_values(name):
    bwd, sizes = backward_of(name)
    factored = factor_products(bwd)
    assert_same_values(bwd, factored, sizes)
    assert shared_factors(factored) == []


@pytest.mark.parametrize("name,line", [("mgu", "subtract(h_tilde, h_, d_f_gated)"),
                                       ("gru_torch", "subtract(h_, n_, d_z)"),
                                       ("lstm_coupled", "subtract(g, c_, d_i)")])
def test_a_gated_update_gives_its_gate_one_product(name, line):
    """`(1 - f) * h + f * h~` gives f the cotangent `d_h * h~ - d_h * h`: factored, one
    multiplication fewer per step, and the difference is one `subtract` in the loop."""
    bwd, _ = backward_of(name)
    assert shared_factors(bwd), "the pattern is there before the pass"
    products = lambda fn: sum(n.op is Op.GATE for n in fn.nodes())  # noqa: E731
    assert products(factor_products(bwd)) == products(bwd) - 1
    src = gl.compile(gl.zoo.get(name)).source
    assert line in src[src.index("for t in range(T - 1"):src.index("# After the loop")]
