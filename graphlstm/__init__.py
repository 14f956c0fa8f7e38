"""graphlstm: recurrent cells from four primitives, as papers draw and write them.

The public API, in pipeline order: the language and the builder make a `Cell`; `grad`
differentiates it, `unroll` unrolls it; `compile` makes standalone NumPy code; `render`
and `latex` draw and write it.
"""
from .errors import SpecError
from .builder import (CellBuilder, Value, apply, concat, hard_sigmoid, identity, relu,
                      sigmoid, softplus, softsign, tanh)
from .cell import Cell
from .lang import parse, load
from . import zoo
from .autodiff import grad
from .unroll import unroll
from .codegen import Program, compile
from .render import render, latex
from .compose import stack, bidirectional
from . import interop
from . import testing
from . import optim
from .train import mse_loss, softmax_cross_entropy
from .flow import gradient_flow


__all__ = ["SpecError", "CellBuilder", "Value", "concat", "apply", "sigmoid", "tanh", "relu",
           "identity", "softplus", "softsign", "hard_sigmoid", "Cell", "parse", "load", "zoo", "grad",
           "unroll", "compile", "Program", "stack", "bidirectional", "interop", "testing", "optim",
           "mse_loss", "softmax_cross_entropy",
           "gradient_flow"]
__all__ += ["render", "latex"]
__version__ = "0.1.0"
