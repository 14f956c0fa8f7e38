"""`Cell`: a recurrent step with its declarations, as users see it."""
from __future__ import annotations

import re
from typing import Mapping

import networkx as nx
import numpy as np

from .ir import Function, Node, Op, concrete_shape


def check_model_name(name: str) -> str:
    """A cell's (or model's) name reaches generated code (docstrings, module names), so it
    must be plain: letters, digits, '_' and '.'."""
    from .errors import SpecError
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        raise SpecError(f"bad cell name {name!r}: letters, digits, '_' and '.' only")
    return name


class Cell:
    """A recurrent cell: inputs and previous states in, outputs and new states out.

    `step` is the pure `Function` of one step; the attributes below are names in
    declaration order. Build one with `gl.parse`, `gl.load`, `gl.zoo.get` or `CellBuilder`.
    """

    def __init__(self, step: Function, source: str | None = None) -> None:
        check_model_name(step.name)
        self.step = step
        self.source = source
        self.name = step.name
        self.inputs = tuple(n.arg for n in step.leaves_of(Op.INPUT))
        self.states = tuple(n.arg for n in step.leaves_of(Op.STATE))
        self.params = tuple(n.arg for n in step.leaves_of(Op.PARAM))
        self.outputs = tuple(name for name, _ in step.results if not name.endswith("'"))
        self.sizes = step.sizes
        self._graph: nx.DiGraph | None = None

    # -- shapes and parameters ----------------------------------------------------------
    def shape(self, name: str) -> tuple:
        """The symbolic shape of a leaf, an equation or an output, by name."""
        for leaf in self.step.leaves:
            if leaf.arg == name:
                return self.step.shapes[leaf]
        for eq, node in self.step.equations + self.step.results:
            if eq == name:
                return self.step.shapes[node]
        raise KeyError(name)

    def param_shapes(self, sizes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        """Concrete parameter shapes: `{"W_f": (5, 8), "b_f": (5,), ...}`."""
        self._check_sizes(sizes)
        return {p: concrete_shape(self.shape(p), sizes) for p in self.params}

    def init_params(self, sizes: Mapping[str, int], seed: int = 0,
                    dtype="float64") -> dict[str, np.ndarray]:
        """Random parameters, uniform in ±1/sqrt(fan-in) as PyTorch initialises RNNs, in
        float32 or float64: the dtypes compiled programs run in."""
        try:
            ok = np.dtype(dtype) in (np.float32, np.float64)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.param_shapes(sizes).items():
            fan_in = shape[-1]
            bound = 1.0 / np.sqrt(max(fan_in, 1))
            out[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
        return out

    def _check_sizes(self, sizes: Mapping[str, int]) -> None:
        missing = [s for s in self.sizes if s not in sizes]
        unknown = [s for s in sizes if s not in self.sizes]
        if missing or unknown:
            raise ValueError(f"sizes {dict(sizes)} do not match the cell's sizes {self.sizes}"
                             + (f": missing {missing}" if missing else "")
                             + (f": unknown {unknown}" if unknown else ""))
        for k, v in sizes.items():
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"size {k} must be a non-negative integer, got {v!r}")

    # -- views -----------------------------------------------------------------------------
    @property
    def graph(self) -> nx.DiGraph:
        """The step as a networkx DiGraph; nodes carry op, shape, equation and label."""
        if self._graph is None:
            self._graph = to_networkx(self.step)
            self._graph.graph["cell"] = self
        return self._graph

    @property
    def equations(self) -> tuple[tuple[str, Node], ...]:
        return self.step.equations

    def text(self) -> str:
        """The cell in the language (the source it was parsed from, or a rendering)."""
        from .lang import to_text
        return self.source if self.source is not None else to_text(self)

    def _repr_svg_(self) -> str:
        from .render import render
        return render(self)

    def __repr__(self) -> str:
        return (f"<Cell {self.name}: inputs {list(self.inputs)}, states {list(self.states)}, "
                f"outputs {list(self.outputs)}, {len(self.params)} params>")


def node_names(fn: Function) -> dict[Node, str]:
    """Stable, readable node ids: leaves and equations by name, the rest by equation and
    position (`f.1`, `f.2`), in the stable topological order."""
    names: dict[Node, str] = {}
    taken: set[str] = set()
    for leaf in fn.leaves:
        names[leaf] = leaf.arg
        taken.add(leaf.arg)
    for name, node in fn.equations:
        if node not in names:
            names[node] = name
            taken.add(name)
    counters: dict[str, int] = {}
    for node in fn.nodes():
        if node in names:
            continue
        base = fn.labels.get(node) or node.op.value
        counters[base] = counters.get(base, 0) + 1
        name = f"{base}.{counters[base]}"
        while name in taken:
            counters[base] += 1
            name = f"{base}.{counters[base]}"
        names[node] = name
        taken.add(name)
    return names


def to_networkx(fn: Function) -> nx.DiGraph:
    """A Function as a DiGraph: one node per operation, edges operand -> user (with the
    operand position as `index`), deterministic insertion order."""
    graph = nx.DiGraph(kind=fn.kind, name=fn.name, function=fn)
    names = node_names(fn)
    results = {}
    for rname, node in fn.results:
        results.setdefault(node, []).append(rname)
    for node in fn.nodes():
        graph.add_node(names[node], op=node.op.value, shape=tuple(str(d) for d in fn.shapes[node]),
                       eq=fn.labels.get(node, names[node] if node.op.is_leaf else None),
                       label=_label(node), batched=node.batched,
                       results=tuple(results.get(node, ())), node=node)
    for node in fn.nodes():
        for i, src in enumerate(node.src):
            if graph.has_edge(names[src], names[node]):
                graph.edges[names[src], names[node]]["index"] += (i,)
            else:
                graph.add_edge(names[src], names[node], index=(i,))
    return graph


def _label(node: Node) -> str:
    if node.op in (Op.INPUT, Op.STATE, Op.PARAM):
        return node.arg
    if node.op is Op.NONLIN:
        return repr(node.arg)
    return node.op.value
