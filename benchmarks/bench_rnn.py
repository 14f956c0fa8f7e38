"""Forward + backward through time: graphlstm's generated code against PyTorch and NumPy.

    python benchmarks/bench_rnn.py            # the full table (several minutes)
    python benchmarks/bench_rnn.py --quick    # small and medium, float32, under a minute

NumPy's OpenBLAS runs the kernels it picks for the CPU: a machine that pins them (our
machines set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE on AVX-512 CPUs) has the
benchmark rerun itself without the pins (`--blas as-set` keeps them); the header says which
kernels ran, and checks graphlstm's gradients against torch's with them.

For each config (small, medium, large) and dtype, every contender below runs one forward and
backward through time of the same sequence, all in this one process, interleaved: each round
times every contender once, right after an untimed run of the same contender (the order
rotates), after a warm-up round; the table shows the median over the rounds (at least
`--repeat`, more while a round is cheap).

  cell                contenders (the peer the ratios divide by is marked)
  lstm                graphlstm compiled, torch nn.LSTM (peer), torch eager loop,
                      numpy hand-fused (numpy_lstm.py), GEMM roofline
  gru_torch           graphlstm compiled, torch nn.GRU (peer), torch eager loop, GEMM roofline
  lstm_peephole_diag  graphlstm compiled, torch eager loop (peer), GEMM roofline
  mgu                 graphlstm compiled, torch eager loop (peer), GEMM roofline

"Forward + backward" is one vector-Jacobian product of the whole sequence with random `dys`
and `dstate_T`: graphlstm's and the NumPy LSTM's `backward(params, xs, state0, dys, dstate_T)`
(which runs its own forward sweep), and for torch `torch.autograd.backward([ys, *state_T],
[dys, *dstate_T])` (the same product, the cotangents given as they are), with gradients for
the parameters, the inputs and state0 alike.
The GEMM roofline times only the matrix products a fused implementation of the cell must do
(numpy matmuls into preallocated outputs, same shapes and FLOPs): its time over a
contender's is the "roofline" column. torch runs on as many threads as numpy's BLAS.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Callable

import numpy as np
import torch

import graphlstm as gl
import numpy_lstm
import torch_cells

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Config:
    """One benchmark size: sequence length T, batch B, input and hidden sizes."""
    name: str
    T: int
    B: int
    n_in: int
    n: int

    def __str__(self) -> str:
        return f"{self.name}: T={self.T}, B={self.B}, n_in={self.n_in}, n={self.n}"


CONFIGS = {c.name: c for c in (Config("small", T=200, B=1, n_in=32, n=32),
                               Config("medium", T=100, B=32, n_in=128, n=128),
                               Config("large", T=100, B=64, n_in=512, n=512))}
DTYPES = ("float32", "float64")
CELLS = ("lstm", "gru_torch", "lstm_peephole_diag", "mgu")
PEER = {"lstm": "nn", "gru_torch": "nn", "lstm_peephole_diag": "eager", "mgu": "eager"}
NN_MODULE = {"lstm": torch_cells.nn_lstm, "gru_torch": torch_cells.nn_gru}
# (gate blocks of n rows, recurrent GEMMs in sequence per step): an LSTM stacks 4 gates into
# one [B, n] @ [n, 4n]; MGU needs f before W_h @ [f * h, x], so two [B, n] @ [n, n] per step.
GEMM_SHAPE = {"lstm": (4, 1), "lstm_peephole_diag": (4, 1), "gru_torch": (3, 1), "mgu": (2, 2)}
POOL = {"graphlstm": "numpy", "numpy": "numpy", "roofline": "numpy",  # whose threads run it
        "nn": "torch", "eager": "torch"}
SWITCH_PAUSE_S = 0.25  # idle time between a NumPy and a torch contender (see _round)
WARMUP_ROUNDS = 1
NOISY = 1.2  # a median this many times the fastest run is flagged in the table
MAX_ROUNDS = 50
Gemm = tuple[int, int, int, int]  # (count, m, k, n): `count` products [m, k] @ [k, n]


@dataclass
class Problem:
    """One cell's parameters and sequence at one config and dtype, shared by its contenders."""
    cell: str
    config: Config
    params: dict[str, np.ndarray]
    x: np.ndarray
    state0: dict[str, np.ndarray]
    dys: np.ndarray
    dstate_T: dict[str, np.ndarray]


@dataclass
class Contender:
    """Something to time: `run()` does one forward + backward through time."""
    cell: str
    key: str  # graphlstm, nn, eager, numpy or roofline
    label: str
    run: Callable[[], object]
    leaves: list[torch.Tensor] = field(default_factory=list)  # torch tensors that get .grad


@dataclass
class Result:
    """Median (and fastest) milliseconds per (cell, contender key) at one config and dtype."""
    config: Config
    dtype: str
    rounds: int
    labels: dict[tuple[str, str], str]
    ms: dict[tuple[str, str], float]
    min_ms: dict[tuple[str, str], float]
    wins: dict[tuple[str, str], int]      # rounds in which the cell's graphlstm run was faster


def make_problem(cell_name: str, cfg: Config, dtype: str, seed: int = 0) -> Problem:
    """Parameters from the zoo cell's initialiser and standard normal x, state0, dys, dstate_T.

    Every state of the benchmarked cells has size n."""
    cell = gl.zoo.get(cell_name)
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=dtype)

    return Problem(cell_name, cfg, cell.init_params({"n_in": cfg.n_in, "n": cfg.n}, seed, dtype),
                   normal(cfg.T, cfg.B, cfg.n_in), {s: normal(cfg.B, cfg.n) for s in cell.states},
                   normal(cfg.T, cfg.B, cfg.n), {s: normal(cfg.B, cfg.n) for s in cell.states})


# Contenders ----------------------------------------------------------------------------------

def graphlstm_contender(p: Problem) -> Contender:
    """The cell compiled by graphlstm (default optimisations)."""
    prog = gl.compile(gl.zoo.get(p.cell))
    xs, dys = {"x": p.x}, {"h": p.dys}
    return Contender(p.cell, "graphlstm", "graphlstm compiled",
                     lambda: prog.backward(p.params, xs, p.state0, dys, p.dstate_T))


def numpy_contender(p: Problem) -> Contender:
    """The hand-fused NumPy LSTM of numpy_lstm.py."""
    return Contender(p.cell, "numpy", "numpy hand-fused",
                     lambda: numpy_lstm.backward(p.params, p.x, p.state0, p.dys, p.dstate_T))


def nn_contender(p: Problem) -> Contender:
    """torch.nn.LSTM or torch.nn.GRU holding the same parameters."""
    module = NN_MODULE[p.cell](p.params, p.config.n_in)
    x, state0 = torch.tensor(p.x, requires_grad=True), torch_cells.tensors(p.state0, True)
    leaves = [*module.parameters(), x, *state0.values()]
    return _torch_contender(p, "nn", f"torch nn.{type(module).__name__}",
                            lambda: torch_cells.nn_forward(module, x, state0), leaves)


def eager_contender(p: Problem) -> Contender:
    """The cell's equations as a Python loop over time of torch ops, with autograd."""
    params = torch_cells.tensors(p.params, True)
    x, state0 = torch.tensor(p.x, requires_grad=True), torch_cells.tensors(p.state0, True)
    leaves = [*params.values(), x, *state0.values()]
    return _torch_contender(p, "eager", "torch eager loop",
                            lambda: torch_cells.eager_forward(p.cell, params, x, state0), leaves)


def _torch_contender(p: Problem, key: str, label: str, forward: Callable,
                     leaves: list[torch.Tensor]) -> Contender:
    """Wrap a torch forward into a timed forward + backward."""
    run = torch_cells.vjp_runner(forward, leaves, torch.tensor(p.dys),
                                 torch_cells.tensors(p.dstate_T))
    return Contender(p.cell, key, label, run, leaves)


def gemm_plan(cell_name: str, cfg: Config) -> list[Gemm]:
    """The matrix products of a fused forward + backward through time of the cell.

    G = gates * n stacked gate rows, r = G / chain columns per recurrent GEMM."""
    gates, chain = GEMM_SHAPE[cell_name]
    T, B, n_in, n = cfg.T, cfg.B, cfg.n_in, cfg.n
    G = gates * n
    r = G // chain
    return [(1, T * B, n_in, G),      # forward: input projection of all steps
            (T * chain, B, n, r),     # forward: recurrent, per step
            (T * chain, B, r, n),     # backward: gradient of h, per step
            (1, G, T * B, n_in),      # backward: input weights, all steps
            (1, G, T * B, n),         # backward: recurrent weights, all steps
            (1, T * B, G, n_in)]      # backward: gradient of x, all steps


def gemm_flops(plan: list[Gemm]) -> int:
    """Floating-point operations of a GEMM plan (2 m k n per product)."""
    return sum(2 * count * m * k * n for count, m, k, n in plan)


def roofline_contender(cell_name: str, cfg: Config, dtype: str) -> Contender:
    """Only the GEMMs: numpy matmuls of the plan's shapes into preallocated outputs."""
    plan = gemm_plan(cell_name, cfg)
    rng = np.random.default_rng(0)
    operands = [(count, rng.standard_normal((m, k), dtype=dtype),
                 rng.standard_normal((k, n), dtype=dtype), np.empty((m, n), dtype))
                for count, m, k, n in plan]

    def run() -> None:
        for count, a, b, out in operands:
            for _ in range(count):
                np.matmul(a, b, out=out)

    return Contender(cell_name, "roofline", f"GEMM roofline {gemm_flops(plan) / 1e9:.2g} GF",
                     run)


def lstm_contender(key: str, p: Problem) -> Contender:
    """One LSTM contender by key (used by peak_memory.py)."""
    builders = {"graphlstm": graphlstm_contender, "nn": nn_contender, "eager": eager_contender,
                "numpy": numpy_contender}
    return builders[key](p)


def contenders_for(cell_name: str, cfg: Config, dtype: str) -> list[Contender]:
    """Every contender of one cell, in table order."""
    p = make_problem(cell_name, cfg, dtype)
    found = [graphlstm_contender(p)]
    if cell_name in NN_MODULE:
        found.append(nn_contender(p))
    found.append(eager_contender(p))
    if cell_name == "lstm":
        found.append(numpy_contender(p))
    return found + [roofline_contender(cell_name, cfg, dtype)]


# Timing ---------------------------------------------------------------------------------------

def measure(contenders: list[Contender], min_repeats: int, budget_s: float) -> list[list[float]]:
    """Interleaved timing: a warm-up round, then rounds that each time every contender once
    (after an untimed run of the same contender, see `_round`).

    Within a round the NumPy contenders run together and the torch ones together, with a
    pause at each switch. From round to round both the group that starts and the order
    inside each group rotate, so slow drifts of the machine hit all contenders alike. Runs
    at least `min_repeats` rounds, more (up to MAX_ROUNDS) while their run time fits in
    `budget_s`. Returns the seconds of every timed run, per contender, in the order given."""
    pools = sorted({POOL[c.key] for c in contenders})
    groups = [[k for k in range(len(contenders)) if POOL[contenders[k].key] == p] for p in pools]
    pool = ""
    warm: list[float] = []
    for shift in range(WARMUP_ROUNDS):
        warm, pool = _round(contenders, _order(groups, shift), pool)
    round_s = 2 * sum(warm)                    # every contender runs twice a round
    rounds = max(min_repeats, min(MAX_ROUNDS, math.ceil(budget_s / max(round_s, 1e-9))))
    times: list[list[float]] = [[] for _ in contenders]
    for shift in range(rounds):
        seconds, pool = _round(contenders, _order(groups, shift), pool)
        for k, s in enumerate(seconds):
            times[k].append(s)
    return times


def _order(groups: list[list[int]], shift: int) -> list[int]:
    """Round `shift`'s running order: the groups rotated every round, each group's members
    every len(groups) rounds (so that each member also leads when its group follows a switch)."""
    turn = shift // len(groups)
    turned = [g[turn % len(g):] + g[:turn % len(g)] for g in groups]
    first = shift % len(turned)
    return [k for g in turned[first:] + turned[:first] for k in g]


def _round(contenders: list[Contender], order: list[int], pool: str) -> tuple[list[float], str]:
    """Run each contender twice in a row, in `order`, and time the second run: (seconds per
    contender, the last pool).

    The timed run follows a run of the same contender, as in a program that trains a cell:
    how fast a run is depends on what ran just before (the memory it gave back, what is left
    in the caches; at the large config on our VMs the first NumPy run after torch, or after
    another cell's, was up to 40% slower), and that should be the contender itself, not
    whichever neighbour the running order gives it. Before a contender whose thread pool
    (NumPy's BLAS or torch's OpenMP) differs from the previous one's, sleep SWITCH_PAUSE_S:
    worker threads keep spinning for a while after their library's last call (OpenBLAS
    ~2^28 cycles, libgomp its spin count), and on two cores a spinning pool slows the other
    library's next run by up to 10x. The garbage collector runs before the round and is off
    during it."""
    seconds = [0.0] * len(contenders)
    gc.collect()
    gc.disable()
    try:
        for k in order:
            if POOL[contenders[k].key] != pool:
                time.sleep(SWITCH_PAUSE_S)
                pool = POOL[contenders[k].key]
            contenders[k].run()                    # untimed: the run before, itself
            start = time.perf_counter()
            contenders[k].run()
            seconds[k] = time.perf_counter() - start
    finally:
        gc.enable()
    return seconds, pool


def run_config(cfg: Config, dtype: str, min_repeats: int, budget_s: float,
               cells: tuple[str, ...] = CELLS) -> Result:
    """Build and time every contender of every cell at one config and dtype."""
    contenders = [c for cell in cells for c in contenders_for(cell, cfg, dtype)]
    times = measure(contenders, min_repeats, budget_s)
    ours = {c.cell: t for c, t in zip(contenders, times) if c.key == "graphlstm"}
    return Result(cfg, dtype, len(times[0]),
                  {(c.cell, c.key): c.label for c in contenders},
                  {(c.cell, c.key): 1e3 * median(t) for c, t in zip(contenders, times)},
                  {(c.cell, c.key): 1e3 * min(t) for c, t in zip(contenders, times)},
                  {(c.cell, c.key): sum(g < s for g, s in zip(ours[c.cell], t))
                   for c, t in zip(contenders, times)})


# Tables ---------------------------------------------------------------------------------------

def print_results(result: Result) -> None:
    """One table: median ms (and the fastest run), ratio to the cell's peer and fraction of
    the cell's GEMM roofline, both from the medians, and in how many rounds graphlstm's run
    was faster than the contender's (a paired count: both ran in the same round, so it is
    less sensitive to the machine's drifts than a ratio of medians near 1). A '~' flags a
    noisy row, whose median is more than NOISY times its fastest run."""
    print(f"\n{result.config} · {result.dtype} · median of {result.rounds} interleaved runs")
    print(f"  {'cell':<20}{'contender':<28}{'ms':>10}{'min':>10}{'vs peer':>10}{'roofline':>10}"
          f"{'gl faster':>11}")
    cell_seen, noisy = "", False
    for (cell, key), ms in result.ms.items():
        peer = result.ms[cell, PEER[cell]]
        label = result.labels[cell, key] + (" [peer]" if key == PEER[cell] else "")
        fastest = result.min_ms[cell, key]
        flag = "~" if ms > NOISY * fastest else " "
        noisy |= flag == "~"
        wins = "" if key in ("graphlstm", "roofline") else f"{result.wins[cell, key]}/{result.rounds}"
        print(f"  {cell if cell != cell_seen else '':<20}{label:<28}{ms:>10.2f}{flag}"
              f"{fastest:>9.2f}{ms / peer:>9.2f}x{result.ms[cell, 'roofline'] / ms:>9.0%}"
              f"{wins:>11}")
        cell_seen = cell
    if noisy:
        print(f"  ~ median > {NOISY}x the fastest run: the machine was busy, read with care")


def print_targets(results: list[Result]) -> None:
    """graphlstm against the targets of issue 4, item 4 (for the cells that were run)."""
    print("\nTargets (issue 4, item 4): lstm / numpy <= 1.05 everywhere; lstm / nn.LSTM <= 1.00"
          " at large;\nspeed-up over the torch eager loop >= 8x at small, >= 2x at medium"
          " and large")
    cells = [c for c in CELLS if any((c, "graphlstm") in r.ms for r in results)]
    lstm = "lstm" in cells
    print(f"  {'config':<8}{'dtype':<9}" + (f"{'lstm/numpy':>12}{'lstm/nn':>13}" if lstm else "")
          + "".join(f"{c:>20}" for c in cells))
    for r in results:
        row = ""
        if lstm:
            g = r.ms["lstm", "graphlstm"]
            row += f"{_mark(g / r.ms['lstm', 'numpy'], 1.05, below=True):>12}"
            row += f"{_mark(g / r.ms['lstm', 'nn'], 1.0 if r.config.name == 'large' else None, True):>13}"
        need = 8.0 if r.config.name == "small" else 2.0
        row += "".join(f"{_mark(r.ms[c, 'eager'] / r.ms[c, 'graphlstm'], need, below=False):>20}"
                       for c in cells)
        print(f"  {r.config.name:<8}{r.dtype:<9}" + row)


def _mark(ratio: float, limit: float | None, below: bool) -> str:
    """'1.23x ok' or '1.23x MISS' against a limit (no mark without one)."""
    if limit is None:
        return f"{ratio:.2f}x   "
    ok = ratio <= limit if below else ratio >= limit
    return f"{ratio:.2f}x {'ok  ' if ok else 'MISS'}"


# Memory ---------------------------------------------------------------------------------------

MEMORY_CONTENDERS = ("graphlstm", "nn", "numpy", "eager")


def peak_memory(key: str, cfg: Config, dtype: str) -> dict:
    """Run peak_memory.py for one LSTM contender in a fresh process; its JSON result.

    glibc's mmap threshold is pinned at 64 KiB in that process, so every large array is its
    own mapping, returned to the system when freed: resident memory follows live arrays."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, str(HERE / "peak_memory.py"), key, dtype, cfg.name],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def print_memory(cfg: Config, dtypes: tuple[str, ...]) -> None:
    """Peak memory above the process baseline of one LSTM forward + backward, per contender,
    and graphlstm against the target of issue 4, item 6 (no more than nn.LSTM)."""
    print(f"\nPeak memory of lstm forward + backward, {cfg}, MB above the process baseline"
          "\n(fresh process each: peak RSS (VmHWM) - RSS before; numpy: also tracemalloc's peak)")
    print(f"  {'contender':<20}" + "".join(f"{d + ' RSS':>15}{'traced':>9}" for d in dtypes))
    found = {(key, dtype): peak_memory(key, cfg, dtype)
             for key in MEMORY_CONTENDERS for dtype in dtypes}
    for key in MEMORY_CONTENDERS:
        cells = [found[key, dtype] for dtype in dtypes]
        print(f"  {cells[0]['label']:<20}" + "".join(
            f"{m['rss_mb']:>15.0f}{'-' if m['traced_mb'] is None else round(m['traced_mb']):>9}"
            for m in cells))
    marks = [f"{d} {_mark(found['graphlstm', d]['rss_mb'] / found['nn', d]['rss_mb'], 1.0, True)}"
             for d in dtypes]
    print("Target (issue 4, item 6): graphlstm / nn.LSTM <= 1.00:  " + ",  ".join(marks))


# Main -----------------------------------------------------------------------------------------

def numpy_threads() -> int:
    """The threads numpy's BLAS uses (threadpoolctl if installed, else the CPU count)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    mine = [i for i in blas if "numpy" in i["filepath"]] or blas
    return max((i["num_threads"] for i in mine), default=os.cpu_count() or 1)


#: Variables some machines set to pin OpenBLAS's kernels (ours: Haswell, AVX2, on CPUs with
#: AVX-512), since older OpenBLAS builds computed wrong results or crashed on those CPUs.
BLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
UNPINNED = "GRAPHLSTM_BENCH_UNPINNED"   # what a re-run without the pins removed (for the header)


def unpin_blas(argv: list[str] | None, script: str | None = None) -> None:
    """Run this benchmark (or `script`) again in a process without the BLAS pins (`--blas
    native`, the default): OpenBLAS then picks the kernels for the CPU, as it does on a machine
    that sets neither. The pins only take effect when NumPy loads, hence a new process. The
    header says what was removed, and `check_agreement` checks the kernels' results against
    PyTorch."""
    pinned = {k: os.environ[k] for k in BLAS_PINS if k in os.environ}
    if not pinned:
        return
    env = {k: v for k, v in os.environ.items() if k not in BLAS_PINS}
    env[UNPINNED] = " ".join(f"{k}={v}" for k, v in pinned.items())
    sys.stdout.flush()
    args = sys.argv[1:] if argv is None else argv
    script = str(Path(script or __file__).resolve())
    os.execve(sys.executable, [sys.executable, script, *args], env)


def blas_kernels() -> str:
    """Which kernels numpy's OpenBLAS runs (threadpoolctl's `architecture`), the pins this
    run removed or keeps, and a note when the kernels are AVX2 ones on a CPU that has AVX-512
    (a pin, or a CPU model OpenBLAS does not know): the AVX-512 ones run float32 GEMMs about
    2x faster. All NumPy contenders use the same."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "  numpy BLAS kernels: unknown (pip install threadpoolctl to see them)"
    arch = next((i.get("architecture") for i in threadpool_info()
                 if i["user_api"] == "blas" and i.get("architecture")), None)
    if arch is None:
        return ""
    line = f"  numpy BLAS kernels: {arch}"
    kept = " ".join(f"{k}={os.environ[k]}" for k in BLAS_PINS if k in os.environ)
    if os.environ.get(UNPINNED):
        line += f" (OpenBLAS's choice; this run unset {os.environ[UNPINNED]})"
    elif kept:
        line += f" (pinned: {kept})"
    try:
        avx512 = " avx512f " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        avx512 = False
    if avx512 and arch in ("Haswell", "Zen", "SandyBridge"):
        line += ("  NOTE: AVX2 kernels on a CPU with AVX-512"
                 + ("; run with --blas native for the AVX-512 ones" if kept else
                    "; OPENBLAS_CORETYPE=SkylakeX selects the AVX-512 ones")
                 + " (see benchmarks/README.md)")
    return line


def check_agreement() -> float:
    """graphlstm's LSTM gradients against torch.nn.LSTM's (its own BLAS) on a small problem in
    float64, with the kernels this run uses: the largest difference. The pins exist because
    some OpenBLAS builds computed wrong results on some CPUs; a timing table of wrong results
    would mean nothing, so `main` stops above 1e-9."""
    cfg = Config("check", T=5, B=3, n_in=7, n=9)
    p = make_problem("lstm", cfg, "float64", seed=3)
    want = gl.compile(gl.zoo.get("lstm")).backward(p.params, {"x": p.x}, p.state0, {"h": p.dys},
                                                   p.dstate_T)
    module = torch_cells.nn_lstm(p.params, cfg.n_in)
    x, state0 = torch.tensor(p.x, requires_grad=True), torch_cells.tensors(p.state0, True)
    torch_cells.vjp_runner(lambda: torch_cells.nn_forward(module, x, state0),
                           [*module.parameters(), x, *state0.values()], torch.tensor(p.dys),
                           torch_cells.tensors(p.dstate_T))()
    got = torch_cells.nn_lstm_grads(module, cfg.n_in)
    got.update(x=x.grad.numpy(), h=state0["h"].grad.numpy(), c=state0["c"].grad.numpy())
    return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def print_header(threads: int) -> None:
    """Versions, threads and compile times, so a table can be read on its own."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    print(f"graphlstm {gl.__version__}{_git_revision()} · numpy {np.__version__} ({blas})"
          f" · torch {torch.__version__} · python {platform.python_version()}"
          f" · {threads} threads (numpy BLAS and torch) · {os.cpu_count()} CPUs")
    kernels = blas_kernels()
    if kernels:
        print(kernels)
    for cell in CELLS:
        start = time.perf_counter()
        gl.compile(gl.zoo.get(cell))
        print(f"  gl.compile({cell}): {time.perf_counter() - start:.3f} s", end="")
    error = check_agreement()
    print(f"\n  check: graphlstm's lstm gradients == torch nn.LSTM's to {error:.0e} (float64)",
          end="")
    if error > 1e-9:
        sys.exit(f"\nthe BLAS kernels of this run give wrong results (off by {error:.1e}): "
                 "rerun with --blas as-set")
    print("\nTimes: one forward + backward through time, ms (see benchmarks/README.md)")
    print_load()


def _git_revision() -> str:
    """' (git abc1234)' for the checkout graphlstm is imported from ('+' if it has local
    changes), or '' outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(Path(gl.__file__).parent), *args],
                              capture_output=True, text=True).stdout.strip()
    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = "+" if git("status", "--porcelain", "--untracked-files=no", ".") else ""
    except OSError:
        return ""
    return f" (git {rev}{dirty})" if rev else ""


def print_load(final: bool = False) -> None:
    """The system's load average, with a warning when other work competes for the CPUs
    (at the end, the load includes this benchmark's own threads)."""
    load = os.getloadavg()[0]
    busy = load > (os.cpu_count() or 1) if final else load > 0.5
    print(f"\nload average (1 min){' at the end, with this benchmark' if final else ''}:"
          f" {load:.2f} on {os.cpu_count()} CPUs"
          + ("  WARNING: other processes compete for the CPUs; multi-threaded timings"
             " (BLAS, torch) suffer most and ratios are unreliable" if busy else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small and medium in float32, 5 rounds, no memory: under a minute")
    ap.add_argument("--configs", default="small,medium,large", help="comma-separated")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated")
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated, of " + ", ".join(CELLS))
    ap.add_argument("--repeat", type=int, default=7, help="at least this many timed rounds")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    ap.add_argument("--json", help="also write the medians (ms) to this file")
    ap.add_argument("--blas", choices=("native", "as-set"), default="native",
                    help="native (default): rerun without " + " and ".join(BLAS_PINS)
                    + " if they are set, so OpenBLAS picks the kernels for this CPU; as-set: keep them")
    args = ap.parse_args(argv)
    if args.quick:
        args.configs, args.dtypes, args.repeat, args.no_memory = "small,medium", "float32", 5, True
    return args


def main(argv: list[str] | None = None) -> None:
    """Print the timing tables, the targets and the memory table."""
    args = parse_args(argv)
    if args.blas == "native":
        unpin_blas(argv)
    threads = numpy_threads()
    torch.set_num_threads(threads)
    print_header(threads)
    budget = 1.0 if args.quick else 5.0
    results = []
    for dtype in args.dtypes.split(","):
        for name in args.configs.split(","):
            results.append(run_config(CONFIGS[name], dtype, args.repeat, budget,
                                      tuple(args.cells.split(","))))
            print_results(results[-1])
            sys.stdout.flush()
    print_targets(results)
    print_load(final=True)
    if not args.no_memory:
        print_memory(CONFIGS["large"], tuple(args.dtypes.split(",")))
    if args.json:
        _write_json(args.json, results)


def _write_json(path: str, results: list[Result]) -> None:
    """The times as JSON: [{config, dtype, rounds, ms, min_ms: {"cell/contender": ms},
    graphlstm_faster_rounds: {"cell/contender": rounds}}]."""
    rows = [{"config": r.config.name, "dtype": r.dtype, "rounds": r.rounds,
             "ms": {f"{cell}/{key}": ms for (cell, key), ms in r.ms.items()},
             "min_ms": {f"{cell}/{key}": ms for (cell, key), ms in r.min_ms.items()},
             "graphlstm_faster_rounds": {f"{cell}/{key}": n for (cell, key), n in r.wins.items()
                                         if key not in ("graphlstm", "roofline")}}
            for r in results]
    Path(path).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
