"""Seed 001's vanishing-gradient argument, measured: gradient norm against lag.

For each cell, at initialisation, `gl.gradient_flow` gives the norm of the gradient of a
loss on the last step with respect to the state k steps earlier. A tanh RNN multiplies by
one Jacobian per step and the norm falls geometrically. The LSTM's cell state is updated
additively, `c' = f * c + i * g`, so its Jacobian along c is just the forget gate: the
decay per step is f, which training can push towards 1. At PyTorch's initialisation the
gates sit near 0.5, so every cell still attenuates; a forget-gate bias of 1 (Gers et al.
2000; Jozefowicz et al. 2015) already carries the gradient across 100 steps many orders
of magnitude better than the RNN.

    python examples/gradient_flow.py            # T = 100, n = 32
    python examples/gradient_flow.py --quick    # a tiny run, for the tests
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import graphlstm as gl

CELLS = ["rnn", "lstm", "gru"]


def flow_at_init(name: str, T: int, n: int, n_in: int, B: int, forget_bias: float | None = None,
                 seed: int = 0) -> np.ndarray:
    """Norm of d(last-step loss)/d(state k steps back), over all states, for k = 0..T-1."""
    cell = gl.zoo.get(name)
    params = cell.init_params({"n_in": n_in, "n": n}, seed=seed)
    if forget_bias is not None:
        params["b_f"][:] = forget_bias
    xs = np.random.default_rng(seed).standard_normal((T, B, n_in))
    flows = gl.gradient_flow(cell, params, xs)
    return np.sqrt(sum(v ** 2 for v in flows.values()))


def plot(curves: dict[str, np.ndarray], path: Path, T: int, n: int) -> None:
    """All curves on one log-scale plot against the lag."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, norms in curves.items():
        ax.plot(np.arange(len(norms)), norms, ls="--" if "bias" in label else "-", label=label)
    ax.set(yscale="log", xlabel="lag k (steps between the state and the loss)",
           ylabel="‖∂L/∂state‖", title=f"Gradient flow at initialisation (n = {n}, T = {T})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (for the tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output",
                        help="where the PNG goes (default examples/output)")
    args = parser.parse_args(argv)
    T, n, n_in, B = (10, 4, 2, 2) if args.quick else (100, 32, 8, 16)
    curves = {name: flow_at_init(name, T, n, n_in, B) for name in CELLS}
    curves["lstm, forget bias 1"] = flow_at_init("lstm", T, n, n_in, B, forget_bias=1.0)
    print(f"gradient norm at lag k, relative to lag 0 (T = {T}, n = {n}, at initialisation)")
    lags = sorted({1, T // 10, T // 2, T - 1})
    print(f"  {'cell':<20}" + "".join(f"{'k=' + str(k):>10}" for k in lags))
    for label, norms in curves.items():
        print(f"  {label:<20}" + "".join(f"{norms[k] / norms[0]:>10.1e}" for k in lags))
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curves, args.out / "gradient_flow.png", T, n)
    print(f"plot: {args.out / 'gradient_flow.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
