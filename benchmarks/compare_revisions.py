"""The generated code of another git revision against this checkout's, forward + backward.

    python benchmarks/compare_revisions.py 573d003                      # every cell, small
    python benchmarks/compare_revisions.py HEAD~3 --cells mgu,lstm --configs small,medium

For each zoo cell, config and dtype, both revisions' compiled modules run the same
`backward(params, xs, state0, dys, dstate_T)` (which runs its own forward sweep) on the same
arrays, interleaved round by round, each timed run after an untimed run of itself (as in
bench_rnn.py). The table gives medians, the ratio new / old (below 1: this checkout is
faster) and the largest difference between the two revisions' gradients. The other
revision is checked out into a temporary git worktree, removed at the end. NumPy only: the
modules need no graphlstm to run, so both import the same NumPy in this one process. Like
bench_rnn.py, it runs itself again without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unless given
`--blas as-set` (see benchmarks/README.md, "BLAS kernels").
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_rnn import CELLS, CONFIGS, blas_kernels, make_problem, unpin_blas  # noqa: E402


def sources(root: Path, cells: list[str]) -> dict[str, str]:
    """Each cell's generated module as the graphlstm at `root` writes it (in a subprocess, so
    the two revisions' packages never meet in one interpreter)."""
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import graphlstm as gl; "
              "print(json.dumps({c: gl.compile(gl.zoo.get(c)).source for c in sys.argv[2:]}))")
    out = subprocess.run([sys.executable, "-c", script, str(root), *cells],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def load(source: str, name: str) -> types.ModuleType:
    """A generated module's source, imported under `name`."""
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)          # noqa: S102 - generated here
    return module


def compare(old: types.ModuleType, new: types.ModuleType, cell: str, config: str, dtype: str,
            rounds: int) -> tuple[float, float, float]:
    """(old ms, new ms, largest gradient difference), medians over interleaved rounds."""
    p = make_problem(cell, CONFIGS[config], dtype)
    runs = [lambda m=m: m.backward(p.params, {"x": p.x}, p.state0, {"h": p.dys}, p.dstate_T)
            for m in (old, new)]
    a, b = runs[0](), runs[1]()
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    inner = {"small": 20, "medium": 5}.get(config, 1)
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for k in ((0, 1) if r % 2 else (1, 0)):
            runs[k]()                                            # untimed: the run before
            gc.disable()
            start = time.perf_counter()
            for _ in range(inner):
                runs[k]()
            times[k].append((time.perf_counter() - start) / inner)
            gc.enable()
    return 1e3 * median(times[0]), 1e3 * median(times[1]), diff


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("revision", help="the git revision to compare this checkout with")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--configs", default="small")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--blas", choices=("native", "as-set"), default="native",
                    help="native: run without the OpenBLAS pins; as-set: keep them")
    args = ap.parse_args(argv)
    if args.blas == "native":
        unpin_blas(argv, __file__)
    cells = args.cells.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree),
                        args.revision], check=True)
        try:
            old_sources = sources(worktree, cells)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           check=True)
    new_sources = sources(ROOT, cells)
    print(f"{args.revision} (old) against this checkout (new): one forward + backward, ms")
    print(blas_kernels())
    print(f"  {'cell':<20}{'config':<8}{'dtype':<9}{'old':>10}{'new':>10}{'new/old':>9}"
          f"{'max |diff|':>12}")
    for cell in cells:
        old, new = load(old_sources[cell], f"old_{cell}"), load(new_sources[cell], f"new_{cell}")
        for config in args.configs.split(","):
            for dtype in args.dtypes.split(","):
                t_old, t_new, diff = compare(old, new, cell, config, dtype, args.rounds)
                print(f"  {cell:<20}{config:<8}{dtype:<9}{t_old:>10.3f}{t_new:>10.3f}"
                      f"{t_new / t_old:>8.3f}x{diff:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
