"""Losses for training cells with the generated code: each returns `(loss, dys)`.

`dys` holds a cotangent for every output of the cell (zeros for the outputs the loss does
not read), shaped like `ys`, so it goes straight into `prog.backward`:

    ys, _ = prog.forward(params, xs)
    loss, dys = gl.mse_loss(ys, target, output="y")     # target [B, k]: last step only
    grads = prog.backward(params, xs, None, dys)

A target with a time axis (`[T, B, k]`, labels `[T, B]`) scores every step; without one
(`[B, k]`, labels `[B]`) only the last step, the usual set-up for sequence-to-one tasks.
Losses are means over every scored element, as PyTorch's defaults are.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


def mse_loss(ys: Arrays, target: np.ndarray, output: str | None = None) -> tuple[float, dict]:
    """Mean squared error of one output against `target` ([T, B, k] or last step [B, k])."""
    name, y = _output(ys, output)
    y_scored = _scored(y, np.ndim(target) + 1 == y.ndim, name)
    target = np.asarray(target, dtype=y.dtype)
    _same_shape(y_scored, target, name, "target")
    diff = y_scored - target
    grad = (2.0 / diff.size) * diff
    return float(np.mean(diff * diff)), _cotangents(ys, name, grad)


def softmax_cross_entropy(ys: Arrays, labels: np.ndarray,
                          output: str | None = None) -> tuple[float, dict]:
    """Cross-entropy of softmax(output) against integer class `labels` ([T, B] or last
    step [B]); the output's last axis holds one logit per class."""
    name, y = _output(ys, output)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    logits = _scored(y, labels.ndim + 2 == y.ndim, name)
    _same_shape(logits[..., 0], labels, name, "labels")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[-1]}) for output '{name}'")
    logp = log_softmax(logits)
    picked = np.take_along_axis(logp, labels[..., None], axis=-1)
    grad = np.exp(logp) - _one_hot(labels, logits.shape[-1], y.dtype)
    return float(-np.mean(picked)), _cotangents(ys, name, grad / labels.size)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max so that exp never overflows."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _one_hot(labels: np.ndarray, k: int, dtype) -> np.ndarray:
    """[..., k] with a one at each label: the softmax gradient's target."""
    return (labels[..., None] == np.arange(k)).astype(dtype)


def _output(ys: Arrays, output: str | None) -> tuple[str, np.ndarray]:
    """The output the loss reads: named, or the only one."""
    if output is None:
        if len(ys) != 1:
            raise ValueError(f"the cell has outputs {list(ys)}: say which with output=...")
        output = next(iter(ys))
    if output not in ys:
        raise ValueError(f"no output '{output}'; the outputs are {list(ys)}")
    return output, ys[output]


def _scored(y: np.ndarray, last_only: bool, name: str) -> np.ndarray:
    """The scored part of an output [T, B, k]: the last step, or all of it."""
    if y.ndim != 3:
        raise ValueError(f"output '{name}' must be [T, B, size], got shape {y.shape}")
    return y[-1] if last_only else y


def _same_shape(y: np.ndarray, target: np.ndarray, name: str, what: str) -> None:
    if y.shape != target.shape:
        raise ValueError(f"{what} has shape {target.shape}; output '{name}' gives {y.shape} "
                         f"(with a time axis: every step; without: the last step)")


def _cotangents(ys: Arrays, name: str, grad: np.ndarray) -> dict[str, np.ndarray]:
    """dys for backward: `grad` at the scored steps of `name`, zeros everywhere else."""
    dys = {k: np.zeros_like(v) for k, v in ys.items()}
    if grad.ndim == dys[name].ndim:
        dys[name][...] = grad
    else:
        dys[name][-1] = grad
    return dys
