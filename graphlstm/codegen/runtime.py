"""Helpers copied verbatim into every generated module (the module imports numpy only; the
NumPy functions a helper calls by name are imported with the rest, see program.imports)."""

HELPERS = {
    "_windows": '''
def _windows(x, kh, kw):
    """[..., C, H, W] -> [..., H, W, C, kh, kw]: every kh x kw patch (same padding), a view."""
    pad = [(0, 0)] * (x.ndim - 2) + [(kh // 2, kh // 2), (kw // 2, kw // 2)]
    patches = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad), (kh, kw), axis=(-2, -1))
    return np.moveaxis(patches, -5, -3)
''',
    "_conv": '''
def _conv(x, w):
    """Same-padded 2-D convolution of maps x [..., C, H, W] with w [O, C, kh, kw]: im2col + one GEMM."""
    o, c, kh, kw = w.shape
    cols = _windows(x, kh, kw).reshape(-1, c * kh * kw)
    y = cols @ w.reshape(o, -1).T
    return np.moveaxis(y.reshape(x.shape[:-3] + x.shape[-2:] + (o,)), -1, -3)
''',
    "_conv_transpose": '''
def _conv_transpose(y, w):
    """The adjoint of _conv in its input: a convolution with the flipped, transposed kernel."""
    return _conv(y, np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]))
''',
    "_conv_weights": '''
def _conv_weights(g, x, kh, kw):
    """The gradient of _conv's kernel: Σ over batch and space of g ⊗ patches of x, one GEMM."""
    o, c = g.shape[-3], x.shape[-3]
    cols = _windows(x, kh, kw).reshape(-1, c * kh * kw)
    return (np.moveaxis(g, -3, -1).reshape(-1, o).T @ cols).reshape(o, c, kh, kw)
''',
    "_sigmoid": '''
def _sigmoid(x, half=0.5, out=None):
    """The logistic function as 0.5 * tanh(x / 2) + 0.5: one transcendental, never overflows.
    `half`: 0.5 as a 0-d array of x's dtype (faster than a Python float on small arrays).
    `out`: the array to write (it may be x), passed on positionally like the generated code's."""
    y = multiply(x, half, out)
    tanh(y, y)
    multiply(y, half, y)
    add(y, half, y)
    return y
''',
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)), with exp never asked for a value below
    the smallest normal float (the term is below it too): no overflow, no underflow."""
    t = -np.abs(x)
    small = t < np.log(np.finfo(t.dtype).tiny)
    return np.maximum(x, 0) + np.where(small, 0, np.log1p(np.exp(np.where(small, 0, t))))
''',
    "_dot": '''
def _dot(a, b, out=None):
    """a @ b over every leading axis of a as one GEMM ([T, B, n] @ [n, m]); NumPy's stacked
    matmul would make T smaller ones, several times slower. `out`: a contiguous array."""
    rows = int(np.prod(a.shape[:-1]))       # counted, not inferred with -1: a size may be 0
    flat = None if out is None else out.reshape(rows, b.shape[-1])
    return np.matmul(a.reshape(rows, a.shape[-1]), b, out=flat).reshape(a.shape[:-1] + (b.shape[-1],))
''',
    "_transpose": '''
def _transpose(a):
    """a.T as a new C-ordered array, copied 32 rows of a at a time (the band stays in cache;
    np.ascontiguousarray(a.T) is 3-6x slower on a 4 MB matrix). Made once per call for the
    loop's products `h @ W_T`: OpenBLAS is 10-25% faster on it than on the view W.T."""
    out = np.empty(a.shape[::-1], a.dtype)
    for i in range(0, a.shape[0], 32):
        out[:, i:i + 32] = a[i:i + 32].T
    return out
''',
    "_chunk_steps": '''
def _chunk_steps(T, per_step, budget=65536):
    """How many steps the backward computes its values no gradient flows into for at once:
    all T when the arrays are small (B=1: a few large NumPy calls instead of many tiny ones),
    fewer as they grow, so a chunk holds about `budget` numbers and stays in cache."""
    return max(1, min(T, budget // max(per_step, 1)))
''',
    "_flat": '''
def _flat(a):
    """[T, B, n] -> [T*B, n], so one GEMM sums over every step and example (rows counted,
    not inferred with -1: any size may be 0)."""
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])
''',
}

MAPPING = '''
def _mapping(what, value, names):
    """A dict holding exactly `names`, or ValueError saying what is missing or extra."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict with keys {list(names)}, got {type(value).__name__}")
    missing = [k for k in names if k not in value]
    unknown = [k for k in value if k not in names]
    if missing or unknown:
        raise ValueError(f"{what} must have keys {list(names)}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {unknown}" if unknown else ""))
    return value
'''

VALIDATION = MAPPING + '''

def _array(what, value, rank, dtype, expected):
    """A NumPy array of the given rank and dtype, or ValueError naming it and the shape."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be a NumPy array of shape {expected}, got {type(value).__name__}")
    if isinstance(value, (np.matrix, np.ma.MaskedArray)):
        raise ValueError(f"{what} is a {type(value).__name__}; pass a plain NumPy array of shape {expected}")
    if dtype is None and value.dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} has dtype {value.dtype}; expected float32 or float64 (shape {expected})")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{what} has dtype {value.dtype}; expected {dtype} like the inputs (shape {expected})")
    if value.ndim != rank:
        raise ValueError(f"{what} has shape {value.shape}; expected {expected}")
    return value


def _size(what, value, axis, known, expected):
    """A size read off an array dimension, less the sizes already known in it; never negative."""
    size = value.shape[axis] - known
    if size < 0:
        raise ValueError(f"{what} has shape {value.shape}; expected {expected}")
    return size


def _expect(what, value, shape, expected, sizes=""):
    """Check a shape, naming the array, the shape expected and where its sizes were read."""
    if value.shape != shape:
        raise ValueError(f"{what} has shape {value.shape}; expected {expected} = {shape}"
                         + (f" ({sizes})" if sizes else ""))
'''

