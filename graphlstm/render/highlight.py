"""`highlight=`: which boxes and wires a picture emphasises, everything else greyed.

The step-by-step figures of seed 002 show one gate at a time: `highlight="f"` draws the
forget gate's path (its inputs, its layer and the wire into the cell state) in full colour
and fades the rest. Names are equation names (`f`, `c'`), leaf names (`x`, `W_f`) or state
names (`c` means the state and its update `c'`).
"""
from __future__ import annotations

from typing import Iterable

from .style import emphasised, faded
from .view import Box

Highlight = str | Iterable[str] | None


def requested(highlight: Highlight) -> list[str]:
    """The names asked for: one name, a comma-separated string, or a list of names."""
    if highlight is None:
        return []
    if isinstance(highlight, str):
        return [part.strip() for part in highlight.split(",") if part.strip()]
    names = list(highlight)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"highlight= takes an equation name or a list of names, got {highlight!r}")
    return names


def resolve(highlight: Highlight, equations: Iterable[str], leaves: Iterable[str],
            states: Iterable[str] = ()) -> frozenset[str]:
    """The set of equation and leaf names to emphasise; an unknown name is a ValueError
    that lists the names the picture has."""
    names = requested(highlight)
    equations, leaves, states = list(equations), list(leaves), list(states)
    known = equations + [n for n in leaves if n not in equations]
    out: set[str] = set()
    for name in names:
        if name not in known:
            raise ValueError(f"highlight: no equation or value named {name!r}; "
                             f"this picture has: {', '.join(known)}")
        out.add(name)
        if name in states:
            out.add(name + "'")
    return frozenset(out)


class Emphasis:
    """Decides the style of each box and wire once the emphasised names are known."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    @property
    def active(self) -> bool:
        return bool(self.names)

    def marks(self, box: Box) -> bool:
        return box.eq in self.names

    def node(self, box: Box, attrs: dict, touched: bool) -> dict:
        """Emphasised boxes are outlined, boxes a highlighted wire reaches are kept as they
        are, the rest are faded."""
        if not self.active or (touched and not self.marks(box)):
            return attrs
        return emphasised(attrs) if self.marks(box) else faded(attrs)

    def edge(self, attrs: dict, tail: Box | None, head: Box | None) -> dict:
        if not self.active:
            return attrs
        on_path = any(b is not None and self.marks(b) for b in (tail, head))
        return emphasised(attrs, edge=True) if on_path else faded(attrs)

    def touches(self, tail: Box | None, head: Box | None) -> bool:
        return any(b is not None and self.marks(b) for b in (tail, head))
