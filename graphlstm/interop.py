"""PyTorch in and out.

    model, params = gl.interop.from_torch(nn.LSTM(3, 5, num_layers=2))   # a stacked cell
    module = gl.interop.to_torch(model, params)                           # and back
    gl.compile(cell, backend="torch")                                     # any cell, as nn.Module

`from_torch` maps PyTorch's recurrences onto cells of the same equations: `nn.RNN` (tanh,
relu) -> `rnn` / `rnn_relu`, `nn.LSTM` -> `lstm`, `nn.GRU` -> `gru_torch` (and the
`*Cell` modules). `num_layers = k` gives `gl.stack` of k cells (`l1.`, ..., 1-based: `l1.`
is PyTorch's `_l0`), `bidirectional=True` a `gl.bidirectional` model (`fwd.` / `rev.`,
PyTorch's `_reverse`). Weights follow `nn.Linear` in both, so the mapping is slicing:
the LSTM's rows are gates i, f, g, o; `W_f = [W_if | W_hf]` and `b_f = b_if + b_hf` (the
two biases only ever appear summed, so one bias is exact). GRU keeps PyTorch's six
biases. The `*_from_torch` / `*_to_torch` helpers move states and gradients between
the layouts (`h0` is `[layers * directions, B, H]` there, a dict of `[B, H]` here).

graphlstm is time-major (`[T, B, size]`); for a `batch_first` module pass
`time_major(x)` in and `batch_major(ys)` out. Dropout between layers is not applied
(graphlstm computes the module as in `eval()` mode).

Torch is imported only by the functions that need it; everything else in graphlstm
works without it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np

from .cell import Cell
from .compose import Bidirectional, bidirectional, stack

INSTALL = "pip install torch"
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

RNN_RELU = """\
# Elman RNN with a rectifier, as torch.nn.RNN(nonlinearity="relu").
#   h_t = relu(W [x_t, h_{t-1}] + b)
cell rnn_relu
input x[n_in]
state h[n]

h' = relu(W @ [x, h] + b)
output h'
"""


def require_torch(what: str = "this"):
    """Import torch, or say clearly what to install."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{what} needs PyTorch, which is not installed: {INSTALL}") from e
    return torch


@lru_cache(maxsize=None)
def rnn_relu() -> Cell:
    """The Elman RNN with a ReLU (PyTorch's `nn.RNN(nonlinearity="relu")`)."""
    from .lang import parse
    return parse(RNN_RELU, name="rnn_relu")


# ---------------------------------------------------------------------------------------
# The recurrences PyTorch has


@dataclass(frozen=True)
class Kind:
    """One PyTorch recurrence and the cell with its equations. `gates` are the row blocks
    of PyTorch's stacked weights, in PyTorch's order; a fused kind's cell has one matrix
    per gate acting on [x, h] and one bias (`W_f`, `b_f`; `W`, `b` for the gate "")."""

    cell_name: str
    module: str                 # "RNN", "LSTM", "GRU"
    gates: tuple[str, ...]
    fused: bool
    nonlinearity: str | None = None

    def cell(self) -> Cell:
        from . import zoo
        return rnn_relu() if self.cell_name == "rnn_relu" else zoo.get(self.cell_name)

    def names(self, gate: str) -> tuple[str, str]:
        return ("W", "b") if not gate else (f"W_{gate}", f"b_{gate}")


KINDS = (Kind("rnn", "RNN", ("",), True, "tanh"), Kind("rnn_relu", "RNN", ("",), True, "relu"),
         Kind("lstm", "LSTM", ("i", "f", "g", "o"), True), Kind("gru_torch", "GRU", ("r", "z", "n"), False))


def _unit_from_torch(kind: Kind, w_ih, w_hh, b_ih, b_hh) -> dict[str, np.ndarray]:
    """One layer and direction's PyTorch weights -> the cell's parameters."""
    H = w_hh.shape[1]
    out = {}
    for k, g in enumerate(kind.gates):
        rows = slice(k * H, (k + 1) * H)
        if kind.fused:
            W, b = kind.names(g)
            out[W] = np.concatenate([w_ih[rows], w_hh[rows]], axis=1)
            out[b] = b_ih[rows] + b_hh[rows]
        else:
            out.update({f"W_i{g}": w_ih[rows], f"W_h{g}": w_hh[rows],
                        f"b_i{g}": b_ih[rows], f"b_h{g}": b_hh[rows]})
    return out


def _unit_to_torch(kind: Kind, p: Mapping[str, np.ndarray], grads: bool = False) -> tuple:
    """The cell's parameters (or their gradients) -> PyTorch's four arrays. A fused bias
    goes to bias_ih (bias_hh = 0); its gradient is both biases' gradient."""
    if not kind.fused:
        cat = lambda what: np.concatenate([p[what.format(g)] for g in kind.gates])  # noqa: E731
        return cat("W_i{}"), cat("W_h{}"), cat("b_i{}"), cat("b_h{}")
    H = p[kind.names(kind.gates[0])[1]].shape[0]
    W = [p[kind.names(g)[0]] for g in kind.gates]
    b = np.concatenate([p[kind.names(g)[1]] for g in kind.gates])
    n_in = W[0].shape[1] - H
    w_ih = np.concatenate([w[:, :n_in] for w in W])
    w_hh = np.concatenate([w[:, n_in:] for w in W])
    return w_ih, w_hh, b, (b.copy() if grads else np.zeros_like(b))


def kind_of(cell: Cell) -> Kind:
    """The PyTorch recurrence a cell computes (same equations, names and shapes)."""
    for kind in KINDS:
        ref = kind.cell()
        if (cell.inputs, cell.states, cell.params) == (ref.inputs, ref.states, ref.params) \
                and len(cell.step.results) == len(ref.step.results) \
                and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(cell.step.results, ref.step.results)):
            return kind
    raise ValueError(f"PyTorch has no module for the cell {cell.name}: it has nn.RNN (cells rnn, "
                     f"rnn_relu), nn.LSTM (lstm) and nn.GRU (gru_torch). For any cell, "
                     f"gl.compile(cell, backend='torch') writes an nn.Module.")


@dataclass(frozen=True)
class Layout:
    """How a model's layers and directions line up with PyTorch's: one unit per layer and
    direction, in PyTorch's order, each with its graphlstm prefix and PyTorch suffix."""

    kind: Kind
    layers: int
    bidirectional: bool

    def units(self) -> list[tuple[str, str]]:
        out = []
        for k in range(self.layers):
            for d in ((0, 1) if self.bidirectional else (0,)):
                prefix = (f"l{k + 1}." if self.layers > 1 else "") + \
                    (("fwd.", "rev.")[d] if self.bidirectional else "")
                out.append((prefix, f"_l{k}" + ("_reverse" if d else "")))
        return out

    def model(self):
        base = self.kind.cell()
        if self.bidirectional:
            return bidirectional(base, self.layers)
        return stack(*[base] * self.layers) if self.layers > 1 else base


def layout_of(model) -> Layout:
    """The PyTorch layout of a graphlstm model (a cell, a stack of one kind, or a
    bidirectional model); ValueError for models PyTorch has no module for."""
    if isinstance(model, Bidirectional):
        return Layout(kind_of(model.cell), model.layers, True)
    if not isinstance(model, Cell):
        raise TypeError(f"expected a Cell or a bidirectional model, got {type(model).__name__}")
    cells = model.step.meta.get("layer_cells")
    if not cells:
        return Layout(kind_of(model), 1, False)
    kinds = {kind_of(c) for c in cells}
    if len(kinds) != 1:
        raise ValueError(f"PyTorch's modules stack one kind of layer; {model.name} mixes "
                         f"{sorted(c.name for c in cells)}")
    return Layout(kinds.pop(), len(cells), False)


# ---------------------------------------------------------------------------------------
# PyTorch in


def from_torch(module):
    """`(model, params)` computing the same as a PyTorch recurrent module.

    `nn.RNN` (tanh, relu), `nn.LSTM`, `nn.GRU` with any `num_layers`, `bidirectional`,
    `bias` and `batch_first`, and `nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`. The model
    is the cell (one layer), a `gl.stack` (`l1.W_f`, ...) or a `gl.bidirectional` model
    (`fwd.W_f`, `rev.W_f`; compile it with `model.compile()`); params keep the module's
    dtype. Inputs stay time-major: pass `time_major(x)` for a batch_first module.
    """
    torch = require_torch("from_torch")
    layout, suffix = _layout_of_module(torch, module)
    params: dict[str, np.ndarray] = {}
    for prefix, unit in layout.units():
        arrays = [_numpy(getattr(module, w + (unit if suffix else ""), None)) for w in WEIGHTS]
        arrays[2:] = [b if b is not None else np.zeros(arrays[0].shape[0], arrays[0].dtype)
                      for b in arrays[2:]]
        params.update({prefix + k: v for k, v in _unit_from_torch(layout.kind, *arrays).items()})
    return layout.model(), params


def _layout_of_module(torch, module) -> tuple[Layout, bool]:
    """(layout, whether weight names carry the `_l0` suffix) of a PyTorch module."""
    nn = torch.nn
    by_type = {nn.LSTM: "lstm", nn.GRU: "gru_torch", nn.LSTMCell: "lstm", nn.GRUCell: "gru_torch"}
    name = next((v for t, v in by_type.items() if isinstance(module, t)), None)
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        name = {"tanh": "rnn", "relu": "rnn_relu"}[module.nonlinearity]
    if name is None:
        raise TypeError(f"from_torch takes nn.RNN, nn.LSTM, nn.GRU (or their *Cell), "
                        f"got {type(module).__name__}")
    kind = next(k for k in KINDS if k.cell_name == name)
    if not isinstance(module, nn.RNNBase):
        return Layout(kind, 1, False), False
    if getattr(module, "proj_size", 0):
        raise NotImplementedError("nn.LSTM with proj_size > 0 has no graphlstm cell yet")
    if module.num_layers > 1 and module.dropout:
        warnings.warn("from_torch: dropout between layers is not applied (graphlstm computes "
                      "the module as in eval mode)", stacklevel=3)
    return Layout(kind, module.num_layers, module.bidirectional), True


def _numpy(tensor) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().numpy().copy()


# ---------------------------------------------------------------------------------------
# PyTorch out


def to_torch(model, params: Mapping[str, np.ndarray]):
    """The PyTorch module (`nn.RNN`, `nn.LSTM` or `nn.GRU`) computing a model, with its
    weights: for the cells PyTorch has (rnn, rnn_relu, lstm, gru_torch), stacks of one of
    them with equal hidden sizes, and bidirectional models of them. Other cells:
    `gl.compile(cell, backend="torch")`."""
    torch = require_torch("to_torch")
    layout = layout_of(model)
    units = [(s, _unit_to_torch(layout.kind, _part(params, p))) for p, s in layout.units()]
    hidden = {w_hh.shape[1] for _, (_, w_hh, _, _) in units}
    if len(hidden) != 1:
        raise ValueError(f"PyTorch's modules need one hidden size for every layer; "
                         f"{getattr(model, 'name', model)} has {sorted(hidden)}")
    w_ih0 = units[0][1][0]
    kwargs = {"nonlinearity": layout.kind.nonlinearity} if layout.kind.module == "RNN" else {}
    module = getattr(torch.nn, layout.kind.module)(
        w_ih0.shape[1], hidden.pop(), num_layers=layout.layers,
        bidirectional=layout.bidirectional, dtype=_torch_dtype(torch, w_ih0.dtype), **kwargs)
    with torch.no_grad():
        for suffix, arrays in units:
            for name, array in zip(WEIGHTS, arrays):
                getattr(module, name + suffix).copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return module


def _torch_dtype(torch, dtype):
    return {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}.get(
        np.dtype(dtype), torch.float32)


def _part(mapping: Mapping, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------
# States, gradients and layouts between the two


def grads_to_torch(model, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parameter gradients from `backward` under PyTorch's names (`weight_ih_l0`, ...), as
    `param.grad` of the module `to_torch` / `from_torch` pair with the model."""
    layout = layout_of(model)
    out = {}
    for prefix, suffix in layout.units():
        arrays = _unit_to_torch(layout.kind, _part(grads, prefix), grads=True)
        out.update({name + suffix: a for name, a in zip(WEIGHTS, arrays)})
    return out


def state_from_torch(model, h0, c0=None) -> dict[str, np.ndarray]:
    """PyTorch's initial state(s) `[layers * directions, B, H]` -> the model's `state0`."""
    layout = layout_of(model)
    stacked = {"h": np.asarray(h0)} | ({} if c0 is None else {"c": np.asarray(c0)})
    names = layout.kind.cell().states
    if set(names) != set(stacked):
        raise ValueError(f"{layout.kind.module} takes states {list(names)}")
    return {prefix + s: stacked[s][k] for k, (prefix, _) in enumerate(layout.units()) for s in names}


def state_to_torch(model, state: Mapping[str, np.ndarray]):
    """The model's final state (or state gradients) -> PyTorch's `h_n` (LSTM: `(h_n, c_n)`)."""
    layout = layout_of(model)
    out = tuple(np.stack([state[prefix + s] for prefix, _ in layout.units()])
                for s in layout.kind.cell().states)
    return out[0] if len(out) == 1 else out


def time_major(x):
    """`[B, T, ...]` -> `[T, B, ...]` (an array, or each array of a dict): what a
    batch_first module reads, as graphlstm reads it."""
    if isinstance(x, Mapping):
        return {k: np.swapaxes(v, 0, 1) for k, v in x.items()}
    return np.swapaxes(x, 0, 1)


def batch_major(x):
    """`[T, B, ...]` -> `[B, T, ...]`: graphlstm's outputs as a batch_first module gives them."""
    return time_major(x)


# ---------------------------------------------------------------------------------------
# Backends


def compile_backend(model, backend: str, optimize: bool = True):
    """`gl.compile(model, backend=...)` for backends other than NumPy."""
    if backend == "torch":
        require_torch("the torch backend (gl.compile(cell, backend='torch'))")
        from .codegen.torch_backend import compile_torch
        return compile_torch(model, optimize)
    raise ValueError(f"unknown backend {backend!r}: choose 'numpy' or 'torch'")
