"""The convolutional LSTM (zoo `convlstm`): graphlstm's generated NumPy against a PyTorch
eager ConvLSTM written with F.conv2d, forward + backward through time.

    python benchmarks/bench_convlstm.py [--quick]

Both are timed in this process, interleaved, median of the runs after a warm-up.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import graphlstm as gl

CONFIGS = {"small": dict(T=8, B=4, n_in=4, n=16, H=16, W=16),
           "medium": dict(T=10, B=8, n_in=8, n=32, H=32, W=32)}


def problem(cfg: dict, dtype: str, seed: int = 0):
    """Parameters and arrays for one configuration."""
    cell = gl.zoo.get("convlstm")
    sizes = {k: cfg[k] for k in ("n_in", "n", "H", "W")}
    rng = np.random.default_rng(seed)
    params = cell.init_params(sizes, seed=seed, dtype=dtype)
    xs = rng.standard_normal((cfg["T"], cfg["B"], cfg["n_in"], cfg["H"], cfg["W"])).astype(dtype)
    dys = rng.standard_normal((cfg["T"], cfg["B"], cfg["n"], cfg["H"], cfg["W"])).astype(dtype)
    return cell, params, xs, dys


def torch_step_runner(params: dict, xs: np.ndarray, dys: np.ndarray):
    """A closure running the eager PyTorch ConvLSTM forward and backward once."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x, dy = torch.tensor(xs, requires_grad=True), torch.tensor(dys)

    def conv(w, v):
        return F.conv2d(v, w, padding=(w.shape[2] // 2, w.shape[3] // 2))

    def run():
        h = torch.zeros_like(dy[0])
        c = torch.zeros_like(dy[0])
        hs = []
        for t in range(x.shape[0]):
            xh = torch.cat([x[t], h], 1)
            i = torch.sigmoid(conv(p["W_i"], xh) + p["p_i"] * c + p["b_i"])
            f = torch.sigmoid(conv(p["W_f"], xh) + p["p_f"] * c + p["b_f"])
            c = f * c + i * torch.tanh(conv(p["W_c"], xh) + p["b_c"])
            o = torch.sigmoid(conv(p["W_o"], xh) + p["p_o"] * c + p["b_o"])
            h = o * torch.tanh(c)
            hs.append(h)
        torch.autograd.backward(hs, list(dy))           # dy[t]: the cotangent of step t's h
    return run


def median_ms(runs: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each runner, interleaved, after one warm-up."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small config, float32, 3 runs")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"convlstm forward + backward, ms (median); torch threads {torch.get_num_threads()}")
    print(f"  {'config':8} {'dtype':8} {'graphlstm':>10} {'torch eager':>12} {'speed-up':>9}")
    configs = ["small"] if args.quick else list(CONFIGS)
    for name in configs:
        for dtype in (["float32"] if args.quick else ["float32", "float64"]):
            cell, params, xs, dys = problem(CONFIGS[name], dtype)
            prog = gl.compile(cell)
            ours = lambda: prog.backward(params, xs, None, {"h": dys})  # noqa: E731
            ms = median_ms({"graphlstm": ours, "torch": torch_step_runner(params, xs, dys)},
                           3 if args.quick else 7)
            print(f"  {name:8} {dtype:8} {ms['graphlstm']:10.1f} {ms['torch']:12.1f} "
                  f"{ms['torch'] / ms['graphlstm']:8.2f}x")


if __name__ == "__main__":
    main()
