"""A hand-fused NumPy LSTM: forward and backprop through time, written as well as a person can.

This is the yardstick graphlstm's generated code is measured against (issue 4). It uses the
parameter layout of graphlstm's `lstm` zoo cell and the same calling convention as a compiled
program (SPEC section 2), so the two can be compared number for number:

    f = sigmoid(W_f @ [x, h] + b_f)      c' = f * c + i * g
    i = sigmoid(W_i @ [x, h] + b_i)      h' = o * tanh(c')
    o = sigmoid(W_o @ [x, h] + b_o)
    g = tanh(W_g @ [x, h] + b_g)         each W is [n, n_in + n], acting on [x, h]

What makes it fast:
- the four gate weights are stacked once per call into W_x [4n, n_in] and W_h [4n, n]
  (gate order f, i, o, g: the three sigmoid gates are one contiguous block);
- the input projection x @ W_x.T + b of all T steps is one GEMM before the time loop, so the
  loop does one [B, n] @ [n, 4n] GEMM per step;
- the three sigmoids are one call, computed as 0.5 * tanh(0.5 * z) + 0.5 (never overflows);
- every buffer is allocated before the loops and written with `out=`; the backward overwrites
  each step's gate activations with that step's gate gradients, in place;
- the backward loop does one [B, 4n] @ [4n, n] GEMM per step; weight gradients and input
  gradients for all steps are three GEMMs over all T * B rows after the loop.
"""
from __future__ import annotations

import numpy as np

GATES = ("f", "i", "o", "g")  # stacking order: sigmoid, sigmoid, sigmoid, tanh

Arrays = dict[str, np.ndarray]


def forward(params: Arrays, xs: Arrays | np.ndarray, state0: Arrays | None = None
            ) -> tuple[Arrays, Arrays]:
    """Run the LSTM over a sequence: ({"h": ys}, {"h": h_T, "c": c_T}), time-major."""
    x, h0, c0 = _inputs(params, xs, state0)
    W_x, W_h, b = pack(params, x.shape[2])
    gates, cs, hs, _ = _sweep(W_x, W_h, b, x, h0, c0)
    return {"h": hs[1:]}, {"h": hs[-1].copy(), "c": cs[-1].copy()}


def backward(params: Arrays, xs: Arrays | np.ndarray, state0: Arrays | None,
             dys: Arrays | np.ndarray, dstate_T: Arrays | None = None) -> Arrays:
    """Backprop through time: gradients of sum(ys * dys) + sum(state_T * dstate_T).

    Returns one dict with a gradient for every parameter, for the input `x` ([T, B, n_in])
    and for the initial states `h` and `c`, like graphlstm's `Program.backward`.
    """
    x, h0, c0 = _inputs(params, xs, state0)
    dy = dys["h"] if isinstance(dys, dict) else dys
    dh_T, dc_T = _final_grads(dstate_T, h0)
    n_in = x.shape[2]
    W_x, W_h, b = pack(params, n_in)
    gates, cs, hs, tanh_cs = _sweep(W_x, W_h, b, x, h0, c0)
    dgates, dh0, dc0 = _backward_sweep(W_h, gates, cs, tanh_cs, dy, dh_T, dc_T)
    grads = _weight_grads(dgates, x, hs[:-1], W_x)
    grads.update(h=dh0, c=dc0)
    return grads


def pack(params: Arrays, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack the gate weights once: W_x [4n, n_in], W_h [4n, n] and the bias [4n]."""
    W = np.concatenate([params[f"W_{gate}"] for gate in GATES])
    b = np.concatenate([params[f"b_{gate}"] for gate in GATES])
    return np.ascontiguousarray(W[:, :n_in]), np.ascontiguousarray(W[:, n_in:]), b


def _inputs(params: Arrays, xs: Arrays | np.ndarray, state0: Arrays | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input sequence and the initial states (zeros when not given)."""
    x = xs["x"] if isinstance(xs, dict) else xs
    if state0 is not None:
        return x, state0["h"], state0["c"]
    zeros = np.zeros((x.shape[1], params["b_f"].shape[0]), x.dtype)
    return x, zeros, zeros


def _final_grads(dstate_T: Arrays | None, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The incoming gradients of the final states (zeros when not given)."""
    if dstate_T is None:
        return np.zeros_like(h0), np.zeros_like(h0)
    return dstate_T["h"], dstate_T["c"]


def _sweep(W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray, x: np.ndarray,
           h0: np.ndarray, c0: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The forward sweep, keeping what the backward reads.

    Returns the gate activations [T, B, 4n] (f, i, o, g), the cell states cs [T+1, B, n]
    and hidden states hs [T+1, B, n] (index 0 is the initial state) and tanh(c_t) [T, B, n].
    """
    T, B, n_in = x.shape
    n = W_h.shape[1]
    gates = np.matmul(x.reshape(T * B, n_in), W_x.T).reshape(T, B, 4 * n)  # hoisted
    gates += b
    cs, hs, tanh_cs = _empty((T + 1, B, n), x.dtype, 2) + [np.empty((T, B, n), x.dtype)]
    cs[0], hs[0] = c0, h0
    recurrent = np.empty((B, 4 * n), x.dtype)
    for t in range(T):
        z = gates[t]
        np.matmul(hs[t], W_h.T, out=recurrent)
        z += recurrent
        _lstm_step(z, n, cs[t], cs[t + 1], tanh_cs[t], hs[t + 1])
    return gates, cs, hs, tanh_cs


def _lstm_step(z: np.ndarray, n: int, c: np.ndarray, c_new: np.ndarray,
               tanh_c_new: np.ndarray, h_new: np.ndarray) -> None:
    """One step's elementwise work: activate the gates in place, then c' and h'."""
    sig = z[:, :3 * n]
    np.multiply(sig, 0.5, out=sig)  # sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5
    np.tanh(sig, out=sig)
    sig *= 0.5
    sig += 0.5
    f, i, o, g = (z[:, k * n:(k + 1) * n] for k in range(4))
    np.tanh(g, out=g)
    np.multiply(f, c, out=c_new)          # c' = f * c + i * g
    np.multiply(i, g, out=tanh_c_new)     # (scratch)
    c_new += tanh_c_new
    np.tanh(c_new, out=tanh_c_new)        # h' = o * tanh(c')
    np.multiply(o, tanh_c_new, out=h_new)


def _backward_sweep(W_h: np.ndarray, gates: np.ndarray, cs: np.ndarray, tanh_cs: np.ndarray,
                    dy: np.ndarray, dh_T: np.ndarray, dc_T: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backprop through time, overwriting gates[t] with the pre-activation gradient of step t.

    Returns the gate gradients [T, B, 4n] and the gradients of h0 and c0.
    """
    T, B, n = tanh_cs.shape
    dh_rec, dc = dh_T.copy(), dc_T.copy()
    dh = np.empty((B, n), dy.dtype)
    upstream, sig_slope = _empty((B, 3 * n), dy.dtype, 2)
    for t in range(T - 1, -1, -1):
        np.add(dy[t], dh_rec, out=dh)
        _lstm_step_grad(gates[t], n, cs[t], tanh_cs[t], dh, dc, upstream, sig_slope)
        np.matmul(gates[t], W_h, out=dh_rec)
    return gates, dh_rec, dc


def _lstm_step_grad(z: np.ndarray, n: int, c: np.ndarray, tanh_c_new: np.ndarray,
                    dh: np.ndarray, dc: np.ndarray, upstream: np.ndarray,
                    sig_slope: np.ndarray) -> None:
    """One step's elementwise gradient: z (activations) becomes d z (pre-activations) in place,
    dc (the gradient of c') becomes the gradient of c. `upstream`, `sig_slope` are scratch."""
    f, i, o, g = (z[:, k * n:(k + 1) * n] for k in range(4))
    d_f, d_i, d_o = (upstream[:, k * n:(k + 1) * n] for k in range(3))
    np.multiply(tanh_c_new, tanh_c_new, out=d_f)   # dc' += dh * o * (1 - tanh(c')^2)
    np.subtract(1.0, d_f, out=d_f)
    d_f *= o
    d_f *= dh
    dc += d_f
    np.multiply(dc, c, out=d_f)                     # d f = dc' * c
    np.multiply(dc, g, out=d_i)                     # d i = dc' * g
    np.multiply(dh, tanh_c_new, out=d_o)            # d o = dh * tanh(c')
    np.multiply(g, g, out=g)                        # d g_pre = dc' * i * (1 - g^2)
    np.subtract(1.0, g, out=g)
    g *= i
    g *= dc
    dc *= f                                         # dc = dc' * f
    sig = z[:, :3 * n]                              # d sig_pre = d sig * s * (1 - s)
    np.subtract(1.0, sig, out=sig_slope)
    sig_slope *= sig
    np.multiply(upstream, sig_slope, out=sig)


def _weight_grads(dgates: np.ndarray, x: np.ndarray, h_prev: np.ndarray, W_x: np.ndarray
                  ) -> Arrays:
    """Weight, bias and input gradients of all steps at once: three GEMMs over T * B rows."""
    T, B, n_in = x.shape
    n = h_prev.shape[2]
    dz = dgates.reshape(T * B, 4 * n)
    dW = np.empty((4 * n, n_in + n), x.dtype)
    np.matmul(dz.T, x.reshape(T * B, n_in), out=dW[:, :n_in])
    np.matmul(dz.T, h_prev.reshape(T * B, n), out=dW[:, n_in:])
    db = dz.sum(axis=0)
    grads = {"x": np.matmul(dz, W_x).reshape(T, B, n_in)}
    for k, gate in enumerate(GATES):
        grads[f"W_{gate}"] = dW[k * n:(k + 1) * n]
        grads[f"b_{gate}"] = db[k * n:(k + 1) * n]
    return grads


def _empty(shape: tuple[int, ...], dtype: np.dtype, count: int) -> list[np.ndarray]:
    """`count` uninitialised arrays of one shape and dtype."""
    return [np.empty(shape, dtype) for _ in range(count)]
