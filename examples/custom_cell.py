"""Your own cell in ten lines: its diagram, its LaTeX, its derivative code, its gradient check.

The cell below is new (it is not in the zoo): a forget gate f mixes the old state with a
candidate g, whose nonlinearity, swish, is declared in the file itself. graphlstm infers
every parameter's shape, differentiates swish with SymPy, writes the backward pass
through time as NumPy code, and checks it against finite differences. The plot compares
how far back the new cell carries gradient at initialisation with a plain RNN's.

    python examples/custom_cell.py            # also writes examples/output/swish_gate.*
    python examples/custom_cell.py --quick    # smaller sizes, for the tests
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np

import graphlstm as gl

CELL = """\
# A gated cell of our own: one gate mixes the old state with a swish candidate
cell swish_gate
input x[n_in]
state h[n]
nonlinearity swish(u) = u / (1 + exp(-u))
f = sigmoid(W_f @ [x, h] + b_f)
r = sigmoid(W_r @ [x, h] + b_r)
g = swish(W_g @ [x, r * h] + b_g)
h' = f * h + (1 - f) * g
output h'
"""


def function_source(module: str, name: str) -> str:
    """One top-level function of a generated module, exactly as generated."""
    for node in ast.parse(module).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return "\n".join(module.splitlines()[node.lineno - 1:node.end_lineno])
    raise KeyError(name)


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def diagram(cell: gl.Cell, out: Path) -> None:
    """The cell's diagram as SVG, when this installation can render."""
    render = getattr(gl, "render", None)
    if render is None:
        print("(rendering is not available in this installation)")
        return
    print(f"diagram: {render(cell, out / 'swish_gate.svg')}")
    latex = getattr(gl, "latex", None)
    if latex is not None:
        heading("LaTeX")
        print(latex(cell))


def flow_plot(cell: gl.Cell, path: Path, T: int, n: int) -> None:
    """Gradient norm against lag at initialisation: the new cell against an RNN."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = np.random.default_rng(0).standard_normal((T, 8, 3))
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in (cell, gl.zoo.get("rnn")):
        flow = gl.gradient_flow(c, c.init_params({"n_in": 3, "n": n}, seed=0), xs)
        ax.plot(np.sqrt(sum(v ** 2 for v in flow.values())), label=c.name)
    ax.set(yscale="log", xlabel="lag k", ylabel="‖∂L/∂h‖", title="Gradient flow at initialisation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for the tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output",
                        help="where files go (default examples/output)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cell = gl.parse(CELL)
    heading("the cell")
    print(CELL.rstrip())
    print(f"\n{cell}\nparameter shapes at n_in=3, n=5: {cell.param_shapes({'n_in': 3, 'n': 5})}")
    heading("diagram")
    diagram(cell, args.out)
    prog = gl.compile(cell)
    heading("the derivative: generated backward through time")
    print(function_source(prog.source, "backward"))
    print(f"\nwhole module (forward, backward, checks; imports only NumPy): "
          f"{prog.save(args.out / 'swish_gate_np.py')}")
    heading("gradient check against finite differences")
    report = gl.testing.check_grads(cell, strict=False, T=3 if args.quick else 6)
    print(report)
    T, n = (10, 4) if args.quick else (60, 32)
    flow_plot(cell, args.out / "custom_cell.png", T, n)
    print(f"\nplot: {args.out / 'custom_cell.png'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
