"""One place decides every identifier in generated code.

Names come from the equations (`f`, `c_new` for `c'`, `d_f` for the cotangent of f);
anything that would shadow NumPy, a builtin, a keyword or a name the generated module uses
itself gets a trailing underscore, so a parameter called `np`, `range` or `forward` is
harmless.
"""
from __future__ import annotations

import builtins
import keyword
import re

#: NumPy functions the generated module imports by name (`from numpy import multiply`): the
#: ones that write into a given array, which the time loops call dozens of times a step.
NUMPY_CALLS = frozenset({
    "add", "subtract", "multiply", "divide", "negative", "square", "sqrt", "power", "tanh",
    "exp", "log", "sin", "cos", "tan", "arctan", "sinh", "cosh", "absolute", "sign",
    "maximum", "minimum", "heaviside", "copyto", "dot", "matmul", "outer",
})
# Names the generated module defines or uses at module level or as fixed locals.
MODULE_NAMES = frozenset({
    "np", "forward", "backward", "INPUTS", "STATES", "PARAMS", "OUTPUTS", "SIZES",
    "params", "xs", "state0", "dys", "dstate_T", "T", "B", "t", "dtype", "ys", "grads",
    "state_T", "tape", "first",
}) | NUMPY_CALLS
RESERVED = MODULE_NAMES | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) \
    | frozenset(dir(builtins))


def identifier(name: str) -> str:
    """A Python identifier from an equation name: `c'` -> `c_new`, `f.2` -> `f_2`."""
    name = name.replace("'", "_new").replace(".", "_")
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not name or name[0].isdigit():
        name = "v_" + name
    return name


class Namer:
    """Hands out unique identifiers; `name(base)` never returns a reserved or used one."""

    def __init__(self, reserved=RESERVED) -> None:
        self.used: set[str] = set(reserved)

    def name(self, base: str) -> str:
        candidate = identifier(base)
        if candidate.startswith("_"):
            candidate = "v" + candidate
        while candidate in self.used:
            candidate += "_"
        self.used.add(candidate)
        return candidate
