"""What the optimisation passes do to the generated code, as a unified diff.

`gl.compile(cell, optimize=False)` writes the graph as it is drawn: every matmul and
concatenation inside the time loop. The default runs the passes first (split
concatenations, fuse the matmuls that share an operand, hoist everything that does not
read the state out of the loop and batch it over all steps, fold the backward's padding).
This script prints the two modules' difference, checks that both compute the same
numbers, and times them (the plot: forward and backward, plain against optimised).

    python examples/codegen_tour.py               # the GRU
    python examples/codegen_tour.py --cell lstm   # any zoo cell or .cell file
    python examples/codegen_tour.py --quick       # smaller timing run, for the tests
"""
from __future__ import annotations

import argparse
import difflib
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # timings that do not depend on other jobs
import numpy as np  # noqa: E402

import graphlstm as gl  # noqa: E402


def load(name: str) -> gl.Cell:
    return gl.load(name) if name.endswith(".cell") else gl.zoo.get(name)


def show_passes() -> None:
    """The passes in the order they run, each with the first line of its docstring."""
    from graphlstm import passes
    for title, group in (("forward step", passes.FORWARD_PASSES),
                         ("backward step", passes.BACKWARD_PASSES)):
        print(f"passes on the {title}:")
        for p in group:
            print(f"  {p.__name__:<14} {(p.__doc__ or '').strip().splitlines()[0]}")


def diff(cell: gl.Cell) -> str:
    """The unified diff from the plain module to the optimised one."""
    plain = gl.compile(cell, optimize=False).source.splitlines()
    tuned = gl.compile(cell).source.splitlines()
    return "\n".join(difflib.unified_diff(plain, tuned, f"{cell.name} (optimize=False)",
                                          f"{cell.name} (optimize=True)", lineterm="", n=2))


def problem(cell: gl.Cell, T: int, B: int, n: int, seed: int = 0):
    """Random parameters, inputs and output cotangents, every size n."""
    sizes = {s: n for s in cell.sizes}
    params, xs, _, dys, _ = gl.testing.random_problem(cell, sizes, T, B, seed)
    return params, xs, dys


def best_of(fn, repeat: int) -> float:
    """The fastest of `repeat` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def compare(cell: gl.Cell, T: int, B: int, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Check plain and optimised agree; time forward and backward of each."""
    params, xs, dys = problem(cell, T, B, n)
    runs, timings = {}, {}
    for label, optimize in (("plain", False), ("optimised", True)):
        prog = gl.compile(cell, optimize=optimize)
        runs[label] = prog.backward(params, xs, None, dys)
        timings[label] = (best_of(lambda: prog.forward(params, xs), repeat),
                          best_of(lambda: prog.backward(params, xs, None, dys), repeat))
    worst = max(np.max(np.abs(runs["plain"][k] - runs["optimised"][k])) for k in runs["plain"])
    print(f"same numbers: the largest difference between the two backward passes is {worst:.1e}")
    return timings


def plot(timings: dict[str, tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(2)
    for i, (label, (fwd, bwd)) in enumerate(timings.items()):
        ax.bar(x + 0.38 * i, [fwd, bwd], width=0.38, label=label)
    ax.set_xticks(x + 0.19, ["forward", "backward (BPTT)"])
    ax.set(ylabel="milliseconds (best of runs)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="gru", help="a zoo name or .cell file (default gru)")
    parser.add_argument("--quick", action="store_true", help="a small timing run (for the tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output",
                        help="where the PNG goes (default examples/output)")
    args = parser.parse_args(argv)
    cell = load(args.cell)
    show_passes()
    print(diff(cell))
    T, B, n, repeat = (5, 2, 4, 2) if args.quick else (100, 32, 64, 5)
    timings = compare(cell, T, B, n, repeat)
    for label, (fwd, bwd) in timings.items():
        print(f"  {label:<9}  forward {fwd:7.2f} ms   backward {bwd:7.2f} ms")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "codegen_tour.png"
    plot(timings, path, f"{cell.name}: T={T}, B={B}, sizes {n}")
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
