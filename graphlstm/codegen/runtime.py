"""Helpers copied verbatim into every generated module (the module imports numpy only)."""

HELPERS = {
    "_sigmoid": '''
def _sigmoid(x):
    """The logistic function as 0.5 * tanh(x / 2) + 0.5: one transcendental, never overflows."""
    y = np.multiply(x, 0.5)
    np.tanh(y, out=y)
    y *= 0.5
    y += 0.5
    return y
''',
    "_flat": '''
def _flat(a):
    """[T, B, n] -> [T*B, n], so one GEMM sums over every step and example."""
    return a.reshape(-1, a.shape[-1])
''',
}

VALIDATION = '''
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


def _array(what, value, rank, dtype, expected):
    """A NumPy array of the given rank and dtype, or ValueError naming it and the shape."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be a NumPy array of shape {expected}, got {type(value).__name__}")
    if dtype is None and value.dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} has dtype {value.dtype}; expected float32 or float64 (shape {expected})")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{what} has dtype {value.dtype}; expected {dtype} like the inputs (shape {expected})")
    if value.ndim != rank:
        raise ValueError(f"{what} has shape {value.shape}; expected {expected}")
    return value


def _expect(what, value, shape, expected):
    """Check a shape, naming the array and the shape expected."""
    if value.shape != shape:
        raise ValueError(f"{what} has shape {value.shape}; expected {expected} = {shape}")
'''
