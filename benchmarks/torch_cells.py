"""PyTorch peers for the benchmark: fused `nn.LSTM` / `nn.GRU`, and eager loops of torch ops.

Parameters come in graphlstm's layout (dicts by name, weights [out, in] like nn.Linear):
- `nn_lstm` maps the `lstm` zoo cell onto torch.nn.LSTM. PyTorch stacks the gates as i, f, g, o;
  `weight_ih_l0` holds the x columns W[:, :n_in] of each gate, `weight_hh_l0` the h columns
  W[:, n_in:], `bias_ih_l0` the biases and `bias_hh_l0` is zero.
- `nn_gru` maps the `gru_torch` zoo cell onto torch.nn.GRU (gates r, z, n; input and recurrent
  weights and biases are already separate in that cell).
- `EAGER_STEPS` holds one step of `lstm`, `gru_torch`, `lstm_peephole_diag` and `mgu`, written
  directly from the equations in graphlstm/zoo/*.cell; `eager_forward` loops one over time
  with plain torch ops and autograd, the way a user would write a custom cell in PyTorch.

Everything is time-major: x is [T, B, n_in], states are [B, n].
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Arrays = dict[str, np.ndarray]
Tensors = dict[str, Tensor]
Step = Callable[[Tensors, Tensor, Tensors], Tensors]

LSTM_TORCH_ORDER = ("i", "f", "g", "o")
GRU_TORCH_ORDER = ("r", "z", "n")


def tensors(arrays: Arrays, requires_grad: bool = False) -> Tensors:
    """NumPy arrays -> torch leaf tensors (copies), optionally requiring grad."""
    return {k: torch.tensor(v, requires_grad=requires_grad) for k, v in arrays.items()}


# Fused modules -------------------------------------------------------------------------------

def nn_lstm(params: Arrays, n_in: int) -> torch.nn.LSTM:
    """A one-layer torch.nn.LSTM computing graphlstm's `lstm` cell with these parameters."""
    n = params["b_f"].shape[0]
    dtype = torch.from_numpy(params["b_f"]).dtype
    lstm = torch.nn.LSTM(n_in, n, dtype=dtype)
    W = [params[f"W_{gate}"] for gate in LSTM_TORCH_ORDER]
    b = [params[f"b_{gate}"] for gate in LSTM_TORCH_ORDER]
    _load(lstm, np.concatenate([w[:, :n_in] for w in W]), np.concatenate([w[:, n_in:] for w in W]),
          np.concatenate(b), np.zeros(4 * n, b[0].dtype))
    return lstm


def nn_lstm_grads(lstm: torch.nn.LSTM, n_in: int) -> Arrays:
    """The parameter gradients of `nn_lstm`'s module, back in graphlstm's names and layout.

    graphlstm's b is bias_ih_l0 (bias_hh_l0, held at zero, has no counterpart)."""
    n = lstm.hidden_size
    W = torch.cat([lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad], dim=1).numpy()
    b = lstm.bias_ih_l0.grad.numpy()
    grads = {}
    for k, gate in enumerate(LSTM_TORCH_ORDER):
        grads[f"W_{gate}"] = W[k * n:(k + 1) * n]
        grads[f"b_{gate}"] = b[k * n:(k + 1) * n]
    return grads


def nn_gru(params: Arrays, n_in: int) -> torch.nn.GRU:
    """A one-layer torch.nn.GRU computing graphlstm's `gru_torch` cell with these parameters."""
    n = params["b_ir"].shape[0]
    dtype = torch.from_numpy(params["b_ir"]).dtype
    gru = torch.nn.GRU(n_in, n, dtype=dtype)
    _load(gru, *(np.concatenate([params[f"{kind}{gate}"] for gate in GRU_TORCH_ORDER])
                 for kind in ("W_i", "W_h", "b_i", "b_h")))
    return gru


def _load(module: torch.nn.Module, w_ih: np.ndarray, w_hh: np.ndarray,
          b_ih: np.ndarray, b_hh: np.ndarray) -> None:
    """Copy stacked weights into a one-layer torch RNN module."""
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                               (w_ih, w_hh, b_ih, b_hh)):
            getattr(module, name).copy_(torch.from_numpy(value))


# Eager loops, one step per cell, from the .cell equations -------------------------------------

def lstm_step(p: Tensors, x: Tensor, s: Tensors) -> Tensors:
    """graphlstm/zoo/lstm.cell"""
    h, c = s["h"], s["c"]
    xh = torch.cat([x, h], dim=1)
    f = torch.sigmoid(F.linear(xh, p["W_f"], p["b_f"]))
    i = torch.sigmoid(F.linear(xh, p["W_i"], p["b_i"]))
    o = torch.sigmoid(F.linear(xh, p["W_o"], p["b_o"]))
    g = torch.tanh(F.linear(xh, p["W_g"], p["b_g"]))
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return {"h": h_new, "c": c_new}


def gru_torch_step(p: Tensors, x: Tensor, s: Tensors) -> Tensors:
    """graphlstm/zoo/gru_torch.cell"""
    h = s["h"]
    r = torch.sigmoid(F.linear(x, p["W_ir"], p["b_ir"]) + F.linear(h, p["W_hr"], p["b_hr"]))
    z = torch.sigmoid(F.linear(x, p["W_iz"], p["b_iz"]) + F.linear(h, p["W_hz"], p["b_hz"]))
    n = torch.tanh(F.linear(x, p["W_in"], p["b_in"]) + r * F.linear(h, p["W_hn"], p["b_hn"]))
    h_new = (1 - z) * n + z * h
    return {"h": h_new}


def lstm_peephole_diag_step(p: Tensors, x: Tensor, s: Tensors) -> Tensors:
    """graphlstm/zoo/lstm_peephole_diag.cell"""
    h, c = s["h"], s["c"]
    xh = torch.cat([x, h], dim=1)
    f = torch.sigmoid(F.linear(xh, p["W_f"], p["b_f"]) + p["p_f"] * c)
    i = torch.sigmoid(F.linear(xh, p["W_i"], p["b_i"]) + p["p_i"] * c)
    g = torch.tanh(F.linear(xh, p["W_g"], p["b_g"]))
    c_new = f * c + i * g
    o = torch.sigmoid(F.linear(xh, p["W_o"], p["b_o"]) + p["p_o"] * c_new)
    h_new = o * torch.tanh(c_new)
    return {"h": h_new, "c": c_new}


def mgu_step(p: Tensors, x: Tensor, s: Tensors) -> Tensors:
    """graphlstm/zoo/mgu.cell"""
    h = s["h"]
    f = torch.sigmoid(F.linear(torch.cat([h, x], dim=1), p["W_f"], p["b_f"]))
    h_tilde = torch.tanh(F.linear(torch.cat([f * h, x], dim=1), p["W_h"], p["b_h"]))
    h_new = (1 - f) * h + f * h_tilde
    return {"h": h_new}


EAGER_STEPS: dict[str, Step] = {
    "lstm": lstm_step,
    "gru_torch": gru_torch_step,
    "lstm_peephole_diag": lstm_peephole_diag_step,
    "mgu": mgu_step,
}


def eager_forward(cell: str, params: Tensors, x: Tensor, state0: Tensors
                  ) -> tuple[Tensor, Tensors]:
    """Loop one step of `cell` over time: (ys [T, B, n], state_T). Every cell outputs h'."""
    step = EAGER_STEPS[cell]
    state, ys = state0, []
    for t in range(x.shape[0]):
        state = step(params, x[t], state)
        ys.append(state["h"])
    return torch.stack(ys), state


def nn_forward(module: torch.nn.LSTM | torch.nn.GRU, x: Tensor, state0: Tensors
               ) -> tuple[Tensor, Tensors]:
    """Run a one-layer nn.LSTM or nn.GRU with states as dicts of [B, n]: (ys, state_T)."""
    if isinstance(module, torch.nn.LSTM):
        ys, (h, c) = module(x, (state0["h"][None], state0["c"][None]))
        return ys, {"h": h[0], "c": c[0]}
    ys, h = module(x, state0["h"][None])
    return ys, {"h": h[0]}


def vjp_runner(forward: Callable[[], tuple[Tensor, Tensors]], leaves: list[Tensor],
               dys: Tensor, dstate_T: Tensors) -> Callable[[], None]:
    """A function running forward + backward through time, like graphlstm's `backward`.

    `dys` and `dstate_T` go to autograd as the outputs' cotangents (`grad_tensors`): the
    vector-Jacobian product of sum(ys * dys) + sum(state_T * dstate_T), with nothing computed
    for a loss (building that sum and its gradient costs torch a few ms at the large size that
    graphlstm does not spend). Gradients land in `leaf.grad` (reset to None on every call).
    """
    def run() -> None:
        for leaf in leaves:
            leaf.grad = None
        ys, state_T = forward()
        names = list(dstate_T)
        torch.autograd.backward([ys, *(state_T[name] for name in names)],
                                [dys, *(dstate_T[name] for name in names)])
    return run
