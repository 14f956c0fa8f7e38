"""`highlight=`: which boxes and wires a picture emphasises, everything else greyed.

The step-by-step figures of seed 002 show one gate at a time: `highlight="f"` draws the
forget gate's path in full colour (the inputs it reads, its layer, the wire into the cell
state) and fades the rest. Names are equation names (`f`, `c'`), leaf names (`x`, `W_f`)
or state names (`c` means the state and its update `c'`).

A box is *marked* when its equation is named; a junction (a concat shared by every gate)
never is. A wire is *lit* when it enters or leaves a marked box, and the light runs on
upstream through junctions to the leaves, so `f` lights x and h but not the other gates.
Boxes at either end of a lit wire keep their colours; all others fade.
"""
from __future__ import annotations

from typing import Iterable

from .style import emphasised, faded
from .view import Box

Highlight = str | Iterable[str] | None
Pair = tuple[str, str]


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


def lit(pairs: list[Pair], marked: set[str], junctions: set[str]) -> set[Pair]:
    """Wires into or out of a marked box, and, upstream of those, through junctions."""
    on = {pair for pair in pairs if pair[0] in marked or pair[1] in marked}
    frontier = [tail for tail, _ in on if tail in junctions]
    while frontier:
        box = frontier.pop()
        for pair in pairs:
            if pair[1] == box and pair not in on:
                on.add(pair)
                if pair[0] in junctions:
                    frontier.append(pair[0])
    return on


class Emphasis:
    """The emphasised names, and the styles of marked, kept and faded boxes and wires."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    @property
    def active(self) -> bool:
        return bool(self.names)

    def marks(self, box: Box) -> bool:
        return box.kind != "junction" and box.eq in self.names

    def spread(self, boxes: Iterable[Box], pairs: list[Pair]) -> tuple[set[Pair], set[str]]:
        """The lit wires of a picture and the boxes they reach."""
        boxes = list(boxes)
        marked = {b.id for b in boxes if self.marks(b)}
        junctions = {b.id for b in boxes if b.kind == "junction"}
        on = lit(pairs, marked, junctions) if self.active else set()
        return on, {end for pair in on for end in pair}

    def node(self, box: Box, attrs: dict, reached: bool) -> dict:
        """Marked boxes are outlined, boxes a lit wire reaches keep their colours, the rest
        fade (with no highlight, everything is as it is)."""
        if not self.active or (reached and not self.marks(box)):
            return attrs
        return emphasised(attrs) if self.marks(box) else faded(attrs)

    def edge(self, attrs: dict, on: bool) -> dict:
        if not self.active:
            return attrs
        return emphasised(attrs, edge=True) if on else faded(attrs)
