"""Peak memory of one LSTM forward + backward through time, in a fresh process.

    python benchmarks/peak_memory.py CONTENDER DTYPE [CONFIG]
    # CONTENDER: graphlstm | nn | numpy | eager;  DTYPE: float32 | float64;  CONFIG: large

Prints one JSON line: {"label", "rss_mb", "traced_mb"} in MB (10^6 bytes). bench_rnn.py runs
it once per contender and dtype, with glibc's mmap threshold pinned
(MALLOC_MMAP_THRESHOLD_=65536) so large arrays are mapped and unmapped one by one.

Method: build the inputs and the contender (imports, parameters, the compiled program or the
torch module), run it once to warm up (lazy initialisation: BLAS buffers, torch's autograd
engine and thread pools), drop its outputs, return free heap pages to the system
(malloc_trim), and read the resident set size (VmRSS) as the baseline. Reset the kernel's
peak-RSS counter (write "5" to /proc/self/clear_refs, Linux >= 4.0), run once more, and read
the peak (VmHWM). rss_mb = peak - baseline: everything the forward + backward allocates and
touches, including the gradients it returns, but not its inputs.
For the NumPy contenders, traced_mb is the peak that tracemalloc sees during a third run (NumPy
reports every array buffer to it): the same quantity counted array by array, as a cross-check.
"""
from __future__ import annotations

import ctypes
import gc
import json
import sys
import tracemalloc

import torch

import bench_rnn


def status_kb(field: str) -> int:
    """One field of /proc/self/status, in kB (VmRSS: resident now, VmHWM: peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Set the peak-RSS counter (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def clear(contender: bench_rnn.Contender) -> None:
    """Drop gradients a torch contender keeps in `.grad` and garbage, and hand free heap
    pages back to the system (glibc's malloc_trim), so the baseline holds only live data."""
    for leaf in contender.leaves:
        leaf.grad = None
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_peak_mb(contender: bench_rnn.Contender) -> float:
    """Peak RSS above the RSS before one run, MB."""
    clear(contender)
    baseline = status_kb("VmRSS")
    reset_peak()
    grads = contender.run()
    peak = status_kb("VmHWM")
    del grads
    return (peak - baseline) * 1024 / 1e6


def traced_peak_mb(contender: bench_rnn.Contender) -> float:
    """Peak of the memory tracemalloc traces during one run, MB."""
    clear(contender)
    tracemalloc.start()
    grads = contender.run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del grads
    return peak / 1e6


def main(argv: list[str]) -> None:
    """Measure one contender and print the JSON line."""
    key, dtype = argv[0], argv[1]
    cfg = bench_rnn.CONFIGS[argv[2] if len(argv) > 2 else "large"]
    torch.set_num_threads(bench_rnn.numpy_threads())
    contender = bench_rnn.lstm_contender(key, bench_rnn.make_problem("lstm", cfg, dtype))
    contender.run()
    rss = rss_peak_mb(contender)
    traced = traced_peak_mb(contender) if key in ("graphlstm", "numpy") else None
    print(json.dumps({"label": contender.label, "rss_mb": rss, "traced_mb": traced}))


if __name__ == "__main__":
    main(sys.argv[1:])
