"""Every example runs with --quick, exits 0, prints its story and saves its PNG."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "custom_cell": ("custom_cell.png", ["def backward(", "PASS", "nonlinearity swish"]),
    "adding_problem": ("adding_problem.png", ["lstm: final test MSE", "rnn: final test MSE",
                                              "wall time"]),
    "gradient_flow": ("gradient_flow.png", ["rnn", "lstm, forget bias 1", "gru"]),
    "codegen_tour": ("codegen_tour.png", ["--- gru (optimize=False)", "+++ gru (optimize=True)",
                                          "same numbers"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_quick(name, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    png, phrases = EXPECTED[name]
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for phrase in phrases:
        assert phrase in result.stdout


def test_codegen_tour_diff_shows_the_hoisted_loop():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import codegen_tour
    finally:
        sys.path.remove(str(EXAMPLES))
    import graphlstm as gl
    text = codegen_tour.diff(gl.zoo.get("lstm"))
    assert text.startswith("--- lstm (optimize=False)") and "\n+" in text and "\n-" in text


@pytest.mark.parametrize("placement, first_below, second_range", [
    ("halves", 50, (50, 100)), ("1997", 10, (1, 50))])
def test_adding_problem_data(placement, first_below, second_range):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import adding_problem as ap
    finally:
        sys.path.remove(str(EXAMPLES))
    import numpy as np
    xs, targets = ap.adding_batch(np.random.default_rng(0), 100, 500, placement)
    markers = xs[..., 1]
    assert xs.shape == (100, 500, 2) and targets.shape == (500, 1)
    assert np.all(markers.sum(axis=0) == 2)
    first, second = np.sort(np.nonzero(markers.T)[1].reshape(500, 2), axis=1).T
    assert first.max() < first_below and np.all(first < second)
    assert second_range[0] <= second.min() and second.max() < second_range[1]
    assert np.allclose(targets[:, 0], (xs[..., 0] * markers).sum(axis=0))
    assert abs(np.mean((targets - 1) ** 2) - 1 / 6) < 0.03
