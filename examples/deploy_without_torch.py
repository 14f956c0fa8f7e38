"""Train in PyTorch, deploy without it: an nn.LSTM as a standalone NumPy module.

1. Train a small two-layer, batch_first `nn.LSTM` with a linear readout for a few steps
   in PyTorch (predict the next value of a noisy sine wave).
2. `gl.interop.from_torch(lstm)` gives the stacked cell (`l1.W_f`, ..., `l2.b_o`) and its
   weights; `gl.compile(cell).save(...)` writes the generated module (it imports NumPy
   only); the weights and a test batch go to an .npz file.
3. A fresh Python process in which `import torch` (and `import graphlstm`) fail loads the
   saved module and computes the predictions.
4. Back here, PyTorch computes the same predictions; the script prints the largest
   difference (float64 throughout, so it is at rounding level: ~1e-16).

    python examples/deploy_without_torch.py            # a few seconds
    python examples/deploy_without_torch.py --quick    # a tiny run, for the tests
    python examples/deploy_without_torch.py --out DIR  # keep the deployed files in DIR
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import graphlstm as gl

# What runs on the deployment side: no torch, no graphlstm, just NumPy and the saved module.
DEPLOY = """
import sys
sys.modules["torch"] = None       # make sure nothing can fall back to PyTorch
sys.modules["graphlstm"] = None   # nor to graphlstm: the saved module is all there is
import numpy as np
import lstm_np

data = np.load("deploy.npz")
params = {name: data["param:" + name] for name in lstm_np.PARAMS}
xs = data["x"].swapaxes(0, 1)                       # batch_first [B, T, 1] -> time-major
ys, _ = lstm_np.forward(params, xs)
pred = ys["h"].swapaxes(0, 1) @ data["W_y"].T + data["b_y"]
np.save("pred_numpy.npy", pred)
try:
    import torch
    print("deployment process: torch importable (unexpected)")
except ImportError:
    print("deployment process: torch is not importable; NumPy", np.__version__)
"""


class Forecaster(nn.Module):
    """Two LSTM layers and a linear readout: the next value of the series at every step."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=2, batch_first=True, dtype=torch.float64)
        self.readout = nn.Linear(hidden, 1, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.lstm(x)[0])


def sine_batches(rng: np.random.Generator, batch: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine waves with random phase and frequency, [B, T+1, 1]: inputs and next values."""
    t = np.arange(steps + 1)
    phase = rng.uniform(0, 2 * np.pi, (batch, 1))
    freq = rng.uniform(0.1, 0.3, (batch, 1))
    wave = np.sin(freq * t + phase) + 0.05 * rng.standard_normal((batch, steps + 1))
    return wave[:, :-1, None], wave[:, 1:, None]


def train(model: Forecaster, iterations: int, batch: int, steps: int, seed: int) -> list[float]:
    """A few Adam steps on the MSE of the next-value prediction."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(iterations):
        x, y = (torch.from_numpy(a) for a in sine_batches(rng, batch, steps))
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def deploy(model: Forecaster, x: np.ndarray, out: Path) -> Path:
    """The standalone NumPy module and its weights (the LSTM through graphlstm; the
    readout is one matrix product, written into the deployment script)."""
    cell, params = gl.interop.from_torch(model.lstm)
    path = gl.compile(cell).save(out / "lstm_np.py")
    np.savez(out / "deploy.npz", x=x, W_y=model.readout.weight.detach().numpy(),
             b_y=model.readout.bias.detach().numpy(),
             **{f"param:{name}": value for name, value in params.items()})
    print(f"imported {cell.name}: {len(cell.params)} parameters ({', '.join(cell.params[:3])}, ...)")
    print(f"saved {path.name} ({len(path.read_text().splitlines())} lines, imports NumPy only)")
    return path


def run_without_torch(out: Path) -> np.ndarray:
    """Run the deployment script in a new process where torch cannot be imported."""
    result = subprocess.run([sys.executable, "-c", DEPLOY], cwd=out, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the deployment process failed:\n{result.stderr}")
    print(result.stdout.strip())
    return np.load(out / "pred_numpy.npy")


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for the tests")
    parser.add_argument("--out", type=Path,
                        help="where to write the deployed files (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    iterations, steps, hidden = (5, 12, 8) if args.quick else (40, 30, 16)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)   # a model this small only loses time to thread hand-offs
    model = Forecaster(hidden)
    start = time.perf_counter()
    losses = train(model, iterations, batch=16, steps=steps, seed=args.seed)
    print(f"trained nn.LSTM(1, {hidden}, num_layers=2) for {iterations} steps in "
          f"{time.perf_counter() - start:.2f} s: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    x, _ = sine_batches(np.random.default_rng(args.seed + 1), 4, steps)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        deploy(model, x, out)
        pred_numpy = run_without_torch(out)
    with torch.no_grad():
        pred_torch = model(torch.from_numpy(x)).numpy()
    diff = float(np.max(np.abs(pred_numpy - pred_torch)))
    print(f"predictions {pred_numpy.shape}: max abs difference NumPy (no torch) vs PyTorch = {diff:.1e}")
    return diff


if __name__ == "__main__":
    sys.exit(0 if main() < 1e-10 else 1)
