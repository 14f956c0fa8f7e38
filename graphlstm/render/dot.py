"""A small DOT writer: statements in the order they are added, attributes in the order given.

We write DOT text ourselves rather than through `graphviz.Digraph` so that every byte is
under our control: the same cell must give the same DOT (and so the same SVG) every time,
and the golden tests compare it exactly. Values that are `Html` go out as `<...>` labels.
"""
from __future__ import annotations

from typing import Iterator, Mapping

Attrs = Mapping[str, object]


class Html(str):
    """A Graphviz HTML-like label (written `<...>`, not quoted)."""


def escape_html(text: str) -> str:
    """Text safe inside an HTML-like label."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def quote(value: object) -> str:
    """A DOT value: HTML labels in angle brackets, everything else a quoted string."""
    if isinstance(value, Html):
        return f"<{value}>"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def attr_list(attrs: Attrs) -> str:
    """` [a="1", b="2"]`, or nothing for no attributes."""
    if not attrs:
        return ""
    return " [" + ", ".join(f"{key}={quote(value)}" for key, value in attrs.items()) + "]"


class Block:
    """A graph or subgraph body: an ordered list of DOT statements."""

    def __init__(self, header: str, depth: int = 0) -> None:
        self.header = header
        self.depth = depth
        self.items: list["str | Block"] = []

    def _line(self, text: str) -> None:
        self.items.append("  " * (self.depth + 1) + text)

    def set(self, kind: str, attrs: Attrs) -> None:
        """Default attributes: `kind` is "graph", "node" or "edge"."""
        if attrs:
            self._line(f"{kind}{attr_list(attrs)};")

    def attr(self, key: str, value: object) -> None:
        """One graph attribute of this block, e.g. `rank=same`."""
        self._line(f"{key}={quote(value)};")

    def node(self, node_id: str, attrs: Attrs = {}) -> None:
        self._line(f"{quote(node_id)}{attr_list(attrs)};")

    def edge(self, tail: str, head: str, attrs: Attrs = {}) -> None:
        self._line(f"{quote(tail)} -> {quote(head)}{attr_list(attrs)};")

    def subgraph(self, name: str = "") -> "Block":
        """A nested subgraph (a cluster when its name starts with `cluster`)."""
        header = f"subgraph {quote(name)}" if name else "subgraph"
        block = Block(header, self.depth + 1)
        self.items.append(block)
        return block

    def rank(self, kind: str, node_ids: list[str]) -> None:
        """Pin nodes to one rank (`same`, `min`, `max`, `source`, `sink`)."""
        if node_ids:
            block = self.subgraph()
            block.attr("rank", kind)
            for node_id in node_ids:
                block._line(f"{quote(node_id)};")

    def lines(self) -> Iterator[str]:
        yield "  " * self.depth + self.header + " {"
        for item in self.items:
            if isinstance(item, Block):
                yield from item.lines()
            else:
                yield item
        yield "  " * self.depth + "}"


def digraph(name: str) -> Block:
    """A top-level directed graph."""
    return Block(f"digraph {quote(name)}")


def source(graph: Block) -> str:
    """The DOT text of a graph, ending in a newline."""
    return "\n".join(graph.lines()) + "\n"
