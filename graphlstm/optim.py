"""Optimisers that update a params dict in place from a grads dict, as PyTorch's do.

    opt = gl.optim.Adam(params, lr=1e-2)
    grads = prog.backward(params, xs, None, dys)
    gl.optim.clip_grad_norm(grads, 1.0, names=params)
    opt.step(grads)

`grads` may hold more than the parameters (backward also returns input and state
gradients); the optimisers read only the names in `params`. Updates follow
`torch.optim.SGD` and `torch.optim.Adam` step for step, so results can be compared.
"""
from __future__ import annotations

from typing import Iterable, MutableMapping

import numpy as np

Params = MutableMapping[str, np.ndarray]


class Optimizer:
    """Holds the params dict; `step(grads)` updates every array in it in place."""

    def __init__(self, params: Params, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.params, self.lr = params, lr

    def step(self, grads: MutableMapping[str, np.ndarray]) -> None:
        """One update of every parameter from its gradient."""
        for name, p in self.params.items():
            self.update(name, p, _grad_for(grads, name, p))

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent, with optional (heavy-ball) momentum: `v = m v + g; p -= lr v`."""

    def __init__(self, params: Params, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = momentum
        self.velocity: dict[str, np.ndarray] = {}

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.momentum:
            v = self.velocity.get(name)
            v = g.copy() if v is None else self.momentum * v + g
            self.velocity[name] = g = v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): steps scaled by running first and second moments."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: MutableMapping[str, np.ndarray]) -> None:
        self.t += 1
        super().step(grads)

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        m, v = self.m[name], self.v[name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2 ** self.t)) + self.eps
        p -= (self.lr / (1 - b1 ** self.t)) * m / denom


def clip_grad_norm(grads: MutableMapping[str, np.ndarray], max_norm: float,
                   names: Iterable[str] | None = None) -> float:
    """Scale the gradients (those in `names`, default all) so their global L2 norm is at
    most `max_norm`; returns the norm before clipping. Entries are replaced, never written
    into, since generated code may return views of one buffer."""
    keys = list(grads if names is None else names)
    total = float(np.sqrt(sum(np.sum(np.square(grads[k], dtype=np.float64)) for k in keys)))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for k in keys:
            grads[k] = grads[k] * grads[k].dtype.type(scale)
    return total


def _grad_for(grads, name: str, p: np.ndarray) -> np.ndarray:
    """The gradient of one parameter, checked against its shape."""
    if name not in grads:
        raise ValueError(f"no gradient for parameter '{name}'")
    g = grads[name]
    if np.shape(g) != p.shape:
        raise ValueError(f"gradient of '{name}' has shape {np.shape(g)}; expected {p.shape}")
    return g
