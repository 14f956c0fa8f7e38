"""The cell diagram: one step drawn the way the seed explainers draw a gated cell.

Graphviz lays the picture out bottom to top (`rankdir=BT`): inputs enter from below, the
layers sit in a row, and each state with an elementwise path to its own update (the LSTM's
cell state, the GRU's hidden state) is a *highway*: one rank of its own (`rank=same`),
drawn as a straight heavy line across the top of the cell. What a highway update feeds
(the LSTM's `tanh(c')` and `h'`) *hangs* below it: those edges are written reversed
(`dir=back`) so they rank downwards, and the wiring never crosses the highway. Other
states run along the bottom, entering at the left and leaving at the right.

    c_{t-1} ──×──────+──── c_t          (a highway row)
              │      │ ╲
              f    i×g  tanh─×── h_t    (hanging from it)
    h_{t-1} ─•───────────────────•─ h_t (the bottom row)
             x_t

`CellLayout` decides rows, edge modes and labels once; `emit_cell` writes them into a DOT block
with an id prefix and time subscripts, so the unrolled picture reuses it per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Function, Op
from . import dot
from .dot import Html
from .highlight import Emphasis
from .style import (CELL_BOX, EDGE, GRAPH, HIGHWAY, LAYER_BOX, NODE, NODE_STYLES, name_html,
                    small_subscripts)
from .view import Box, fold

ELEMENTWISE_KINDS = frozenset({"gate", "sum", "affine", "pointwise", "diag"})
STATE_LINE = {"penwidth": 1.8, "color": "#333333"}


@dataclass
class Link:
    """A drawn edge and how it ranks: `up` (the normal flow), `hang` (ranked downwards,
    written reversed), `free` (no rank constraint), `flat` (along a row) or `order`
    (invisible, only to order a row) or `lift` (invisible, only to rank a node above)."""

    tail: str
    head: str
    mode: str = "up"
    label: Html | None = None
    style: dict = field(default_factory=dict)
    port: str | None = None   # the cell of the head box the wire enters


@dataclass
class Terminal:
    """A value entering or leaving the cell: an input, a state, an output, a next state."""

    id: str
    kind: str
    name: str
    later: bool   # subscript t (True) or t-1 (False)


class CellLayout:
    """The layout decisions for one step Function (see the module docstring)."""

    def __init__(self, fn: Function, outputs_above: bool = False) -> None:
        self.fn = fn
        self.outputs_above = outputs_above   # a row of their own, above the highways
        self.pic = fold(fn)
        self.state_names = [leaf.arg for leaf in fn.leaves_of(Op.STATE)]
        self.updates = {s: fn.result(s + "'") for s in self.state_names if _has(fn, s + "'")}
        self.chains = self._highways()
        self.chain_of = {box: s for s, chain in self.chains.items() for box in chain}
        self.hanging = self._hanging()
        self.roots = {self.pic.box_of[node]: name for name, node in fn.equations
                      if self.pic.boxes[self.pic.box_of[node]].kind not in ("input", "state", "param")}
        self.terminals: list[Terminal] = []
        self.links: list[Link] = []
        self.bottom: list[str] = [self.pic.box_of[fn.leaf(s)] for s in self.state_names
                                  if s not in self.chains]
        self.top: list[str] = []
        self.junctions: dict[str, str] = {}   # junctions the layout adds -> their equation
        self._link_wires()
        self._link_results()
        self._join_bottom_junctions()
        self._input_junctions()

    # -- highways and what hangs from them ----------------------------------------------
    def _highways(self) -> dict[str, list[str]]:
        """For each state, the shortest elementwise path from it to its update, if any;
        a box belongs to one highway at most."""
        chains: dict[str, list[str]] = {}
        taken: set[str] = set()
        for state, update in self.updates.items():
            start = self.pic.box_of[self.fn.leaf(state)]
            goal = self.pic.box_of.get(update)
            path = self._elementwise_path(start, goal)
            if path and not taken.intersection(path):
                chains[state] = path
                taken.update(path)
        return chains

    def _elementwise_path(self, start: str, goal: str | None) -> list[str] | None:
        """Breadth-first search through elementwise boxes, in the picture's stable order."""
        if goal is None or goal == start or self.pic.boxes[goal].kind not in ELEMENTWISE_KINDS:
            return None
        previous: dict[str, str] = {start: start}
        frontier = [start]
        while frontier and goal not in previous:
            following = []
            for box in frontier:
                for user in self.pic.users_of(box):
                    if user not in previous and self.pic.boxes[user].kind in ELEMENTWISE_KINDS:
                        previous[user] = box
                        following.append(user)
            frontier = following
        if goal not in previous:
            return None
        path = [goal]
        while path[-1] != start:
            path.append(previous[path[-1]])
        return path[::-1]

    def _hanging(self) -> set[str]:
        """Boxes fed by a highway's update that lead back to no highway: drawn below it.
        A linear layer reading the update (a peephole `p_o * c'`) stays in its row, the
        state dropping into it, as seed 002 draws peepholes."""
        chain_boxes = set(self.chain_of)
        ends = [chain[-1] for chain in self.chains.values()]

        def users(box: str) -> list[str]:
            return [u for u in self.pic.users_of(box) if self.pic.boxes[u].kind not in ("matmul", "diag")]

        below = _reach(ends, users) - chain_boxes
        feeding = _reach(sorted(chain_boxes), self.pic.inputs_of)
        return below - feeding

    # -- links ----------------------------------------------------------------------------
    def _link_wires(self) -> None:
        for wire in self.pic.wires:
            mode = self._mode(wire.tail, wire.head)
            tail = self._tap(wire.tail) if mode == "free" and self._is_highway_state(wire.tail) else wire.tail
            self.links.append(Link(tail, wire.head, "up" if tail != wire.tail else mode,
                                   self._eq_label(wire.tail), self._style(wire.tail, wire.head),
                                   wire.port))

    def _is_highway_state(self, box: str) -> bool:
        return self.pic.boxes[box].kind == "state" and box in self.chain_of

    def _tap(self, state_box: str) -> str:
        """Where a highway state feeds the rest of the cell: one line down the left side to
        a junction on the bottom row (the GRU picture of seed 002), not a fan of wires
        across the cell."""
        tap = f"tap:{self.chain_of[state_box]}"
        if tap not in self.junctions:
            self.junctions[tap] = self.pic.boxes[state_box].eq
            self.bottom.insert(0, tap)
            self.links.append(Link(state_box, tap, "hang", style={**STATE_LINE, "arrowhead": "none"}))
        return tap

    def _mode(self, tail: str, head: str) -> str:
        """Along a highway: flat; into what hangs below it: hang; from a highway to
        anything else: free (a drop); otherwise the upward flow."""
        chain = self.chains.get(self.chain_of.get(tail, ""), [])
        if tail in chain and chain.index(tail) + 1 < len(chain) and chain[chain.index(tail) + 1] == head:
            return "flat"
        if head in self.hanging:
            return "up" if tail not in self.hanging and tail not in self.chain_of else "hang"
        return "free" if tail in self.chain_of else "up"

    def _style(self, tail: str, head: str) -> dict:
        """Highways heavy, state lines a little heavier, no arrowheads into junctions."""
        style: dict = {}
        if self._mode(tail, head) == "flat":
            style.update(HIGHWAY)
        elif self.pic.boxes[tail].kind == "state":
            style.update(STATE_LINE)
        if self.pic.boxes[head].kind == "junction":
            style["arrowhead"] = "none"
        return style

    def _eq_label(self, box: str) -> Html | None:
        """Wires leaving an equation's box carry its name (f, i, c')."""
        eq = self.roots.get(box)
        return name_html(eq) if eq is not None else None

    # -- results: next states and outputs -------------------------------------------------
    def _link_results(self) -> None:
        outputs = [(name, node) for name, node in self.fn.results if not self._is_update(name)]
        for state, update in self.updates.items():
            shared = [name for name, node in outputs if node is update]
            self._link_update(state, self.pic.box_of[update], shared)
            outputs = [(name, node) for name, node in outputs if name not in shared]
        for name, node in outputs:
            self._add_output(name, self.pic.box_of[node], "up")

    def _is_update(self, name: str) -> bool:
        return name.endswith("'") and name[:-1] in self.updates

    def _link_update(self, state: str, box: str, outputs: list[str]) -> None:
        """A highway continues to the right; another state goes down to the bottom row,
        through a junction when it is also an output (which leaves at the top)."""
        nxt = f"next:{state}"
        if state in self.chains:
            self.terminals.append(Terminal(nxt, "state", state, True))
            self.links.append(Link(box, nxt, "flat", style=dict(HIGHWAY)))
            self.chains[state].append(nxt)
            for name in outputs:   # straight up from the highway
                self._add_output(name, box, "up", in_row=False)
            return
        self.terminals.append(Terminal(nxt, "state", state, True))
        self.bottom.append(nxt)
        if not outputs:
            self.links.append(Link(box, nxt, "hang", self._eq_label(box), dict(STATE_LINE)))
            return
        split = f"split:{state}"
        self.junctions[split] = state + "'"
        self.bottom.insert(len(self.bottom) - 1, split)
        self.links.append(Link(box, split, "hang", self._eq_label(box),
                               {**STATE_LINE, "arrowhead": "none"}))
        self.links.append(Link(split, nxt, "flat", style=dict(STATE_LINE)))
        for name in outputs:
            self._add_output(name, split, "up")
            self.links.append(Link(box, f"out:{name}", "lift"))

    def _add_output(self, name: str, source: str, mode: str, in_row: bool = True) -> None:
        """An output terminal; `in_row`: on the top row, right of the top highway."""
        out = f"out:{name}"
        self.terminals.append(Terminal(out, "output", name, True))
        if in_row:
            self.top.append(out)
        self.links.append(Link(source, out, mode))

    def _join_bottom_junctions(self) -> None:
        """A concat fed by a bottom-row state sits on that row, so the state line runs
        straight into it and the input joins it from below (seed 001's picture)."""
        states = [b for b in self.bottom if b.startswith("tap:") or (
            b in self.pic.boxes and self.pic.boxes[b].kind == "state")]
        joined = [link.head for link in self.links if link.tail in states and link.mode == "up"
                  and self.pic.boxes.get(link.head) and self.pic.boxes[link.head].kind == "junction"]
        for box in reversed(list(dict.fromkeys(joined))):
            self.bottom.insert(len(states), box)
        for link in self.links:
            if link.tail in states and link.head in joined:
                link.mode = "flat"

    def _input_junctions(self) -> None:
        """An input feeding boxes above the bottom row enters the cell at a junction on
        that row and fans out from there: a wire from below the cell that skipped the row
        would have to go round the cell's border. Boxes on the row it feeds directly."""
        for x in self.input_row():
            above = [link for link in self.links if link.tail == x and link.mode == "up"
                     and link.head not in self.bottom]
            if not above:
                continue
            entry = f"in:{x}"
            self.junctions[entry] = self.pic.boxes[x].eq
            ends = [b for b in self.bottom if b.startswith(("split:", "next:"))]
            self.bottom.insert(len(self.bottom) - len(ends), entry)
            for link in above:
                link.tail = entry
            self.links.append(Link(x, entry, "up", style={"arrowhead": "none"}))

    # -- rows -----------------------------------------------------------------------------
    def rank_rows(self) -> list[tuple[str, list[str]]]:
        """`rank=same` groups: each highway, the bottom row, the layers of equal depth; the
        inputs at the bottom; outputs with the top highway (or at the top)."""
        beside = self._top_chain() if self.chains and not self.outputs_above else []
        rows = [("same", chain + (self.top if chain is beside else [])) for chain in self.chains.values()]
        rows += [("same", row) for row in self.bottom_rows()]
        rows += [("same", group) for group in self._layer_groups() if len(group) > 1]
        if self.top and not beside:
            rows.append(("same" if self.chains else "max", self.top))
        return rows

    def input_row(self) -> list[str]:
        """The inputs, entering from below."""
        return [self.pic.box_of[leaf] for leaf in self.fn.leaves_of(Op.INPUT) if leaf in self.pic.box_of]

    def _top_chain(self) -> list[str]:
        """The highway drawn highest: the one whose update comes last."""
        order = list(self.pic.boxes)
        return max(self.chains.values(), key=lambda chain: order.index(chain[-2]) if len(chain) > 1 else -1)

    def order_links(self) -> list[Link]:
        """Invisible flat edges that order rows left to right: outputs right of the top
        highway's end, the bottom row in its order (states in, junctions, states out)."""
        links = [Link(a, b, "order") for row in self.bottom_rows() for a, b in zip(row, row[1:])
                 if not self._linked(a, b)]
        if self.top and self.chains and not self.outputs_above:
            sequence = [self._top_chain()[-1]] + self.top
            links += [Link(a, b, "order") for a, b in zip(sequence, sequence[1:])]
        elif self.top and self.chains:   # above the highways
            links += [Link(self._top_chain()[-2], out, "lift") for out in self.top]
        inputs = self.input_row()
        if inputs and self.bottom:   # the inputs rank below the bottom row, free to centre
            links.append(Link(inputs[0], self.bottom[0], "lift"))
        return links

    def bottom_rows(self) -> list[list[str]]:
        """The bottom row, one per layer of a stacked cell (so layers stack upwards)."""
        rows: dict[str, list[str]] = {}
        for box in self.bottom:
            rows.setdefault(self.layer_of(box), []).append(box)
        return list(rows.values())

    def layer_of(self, box: str) -> str:
        """The layer prefix (`l1.`) of a box or terminal in a stacked cell, else ""."""
        name = self.pic.boxes[box].eq if box in self.pic.boxes else box.partition(":")[2]
        prefixes = [p for p, _ in self.fn.meta.get("layers") or () if (name or "").startswith(p)]
        return max(prefixes, key=len, default="")

    def _linked(self, a: str, b: str) -> bool:
        return any({link.tail, link.head} == {a, b} for link in self.links)

    def _layer_groups(self) -> list[list[str]]:
        """Boxes of one kind at the same depth share a row: the matmuls reading the inputs,
        the learned layers (σ, tanh) after them."""
        depth = self._depths()
        groups: dict[tuple[str, int], list[str]] = {}
        for box in self.pic.boxes.values():
            if box.kind in ("matmul", "layer") and box.id not in self.hanging:
                groups.setdefault((box.kind, depth[box.id]), []).append(box.id)
        return [groups[key] for key in sorted(groups, key=lambda k: (k[1], k[0]))]

    def _depths(self) -> dict[str, int]:
        """Longest path from the leaves along upward links (the picture's ranks)."""
        depth = {box: 0 for box in self.pic.boxes}
        for box in self.pic.boxes:   # boxes are in topological order
            for link in self.links:
                if link.head == box and link.mode == "up" and link.tail in depth:
                    depth[box] = max(depth[box], depth[link.tail] + 1)
        return depth


def _has(fn: Function, name: str) -> bool:
    """Whether the Function has a result of that name (a state may have no update)."""
    return any(n == name for n, _ in fn.results)


def _reach(starts: list[str], step) -> set[str]:
    """All boxes reachable from `starts` (inclusive) following `step`."""
    seen = set(starts)
    stack = list(starts)
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


# ---------------------------------------------------------------------------------------
# Emitting DOT


@dataclass
class Copy:
    """How one copy of the cell is written: an id prefix, its two time subscripts, a title,
    the terminals left out and links sent to another copy (for the unrolled picture)."""

    prefix: str = ""
    before: str = "t\u22121"
    after: str = "t"
    title: str = ""
    drop: frozenset[str] = frozenset()
    retarget: dict[str, str] = field(default_factory=dict)

    def id(self, box: str) -> str:
        return self.retarget.get(box, self.prefix + box)


def terminal_attrs(term: Terminal, copy: Copy, tooltip: str) -> dict:
    """A terminal's attributes: its name with the copy's time subscript."""
    time = copy.after if term.later else copy.before
    return {**NODE_STYLES[term.kind], "label": name_html(term.name, time),
            "tooltip": tooltip, "id": copy.id(term.id)}


def box_attrs(box: Box, copy: Copy) -> dict:
    """A box's Graphviz attributes (a box with cells becomes a table in `with_cells`)."""
    attrs = {**NODE_STYLES[box.kind], "tooltip": box.tooltip, "id": copy.id(box.id)}
    if box.kind == "state":
        attrs["label"] = name_html(box.eq, copy.before)
    elif box.kind == "input":
        attrs["label"] = name_html(box.eq, copy.after)
    elif box.kind != "junction":
        attrs["label"] = box.label
    return attrs


def with_cells(box: Box, attrs: dict) -> dict:
    """`W_f | U_f, b_f`: one rounded box, a cell (and port `p0`, `p1`, ...) per term."""
    if not box.cells:
        return attrs
    cells = [small_subscripts({"label": cell}, attrs.get("fontsize", NODE["fontsize"]))["label"]
             for cell in box.cells]
    row = "<VR/>".join(f'<TD PORT="p{i}">{cell}</TD>' for i, cell in enumerate(cells))
    border = 2 if float(attrs.get("penwidth", 1)) >= 2 else 1
    table = (f'<TABLE BORDER="{border}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" '
             f'STYLE="rounded" BGCOLOR="{attrs["fillcolor"]}" COLOR="{attrs["color"]}">'
             f"<TR>{row}</TR></TABLE>")
    out = {k: v for k, v in attrs.items() if k not in ("style", "fillcolor", "height", "label")}
    return {**out, "shape": "plaintext", "margin": 0, "label": Html(table)}


def _swap_end(key: str) -> str:
    """The attribute name for the other end of an edge written reversed."""
    swaps = {"arrowhead": "arrowtail", "arrowtail": "arrowhead", "headport": "tailport",
             "tailport": "headport"}
    return swaps.get(key, key)


def emit_link(block: dot.Block, link: Link, copy: Copy, style: dict) -> None:
    """One link with its rank mode: `hang` is written head-to-tail with `dir=back`."""
    tail, head = copy.id(link.tail), copy.id(link.head)
    if link.mode in ("order", "lift"):
        block.edge(tail, head, {"style": "invis", "weight": 5 if link.mode == "order" else 0})
        return
    attrs = dict(style)
    if link.label is not None:
        attrs = small_subscripts({**attrs, "label": link.label}, EDGE["fontsize"])
    if link.port is not None:   # enter the cell from the side the wire comes from
        attrs["headport"] = f"{link.port}:{'n' if link.mode in ('hang', 'free') else 's'}"
    if link.mode == "hang":
        block.edge(head, tail, {**{_swap_end(k): v for k, v in attrs.items()}, "dir": "back"})
    elif link.mode == "free":
        block.edge(tail, head, {**attrs, "constraint": False})
    elif link.mode == "flat" and link.head in copy.retarget:
        # into the next copy: side to side, as Graphviz 2.43 draws a flat edge between
        # two clusters twice (with ports, the two drawings coincide)
        block.edge(tail, head, {"tailport": "e", "headport": "w", **attrs})
    else:
        block.edge(tail, head, attrs)


def emit_cell(block: dot.Block, layout: CellLayout, copy: Copy, emphasis: Emphasis) -> dot.Block:
    """Write one copy of the cell: inputs below (declared first, which keeps rows in
    order), everything else inside a cluster, then the links. Returns the cluster."""
    boxes = all_boxes(layout)
    lit, reached = emphasis.spread(boxes.values(), [(link.tail, link.head) for link in layout.links])

    def draw(target: dot.Block, box_id: str, attrs: dict) -> None:
        box = boxes[box_id]
        styled = small_subscripts(emphasis.node(box, attrs, box_id in reached), NODE["fontsize"])
        target.node(attrs["id"], with_cells(box, styled))

    for box in layout.pic.boxes.values():
        if box.kind == "input":
            draw(block, box.id, box_attrs(box, copy))
    cluster = block.subgraph(f"cluster_{copy.prefix}cell")
    for key, value in {**CELL_BOX, "label": copy.title}.items():
        cluster.attr(key, value)
    layers = _layer_blocks(cluster, layout, copy)
    for box_id, attrs in _inner_nodes(layout, copy):
        draw(layers[layout.layer_of(box_id)], box_id, attrs)
    for link in layout.links + layout.order_links():
        dropped = {link.tail, link.head} & copy.drop
        if dropped and (link.mode in ("order", "lift") or dropped - set(copy.retarget)):
            continue
        emit_link(block, link, copy, emphasis.edge(link.style, (link.tail, link.head) in lit))
    return cluster


def _inner_nodes(layout: CellLayout, copy: Copy):
    """(id, attributes) of everything inside the cell box: boxes, terminals, junctions."""
    for box in layout.pic.boxes.values():
        if box.kind != "input":
            yield box.id, box_attrs(box, copy)
    for term in layout.terminals:
        if term.id not in copy.drop:
            yield term.id, terminal_attrs(term, copy, _describe(term))
    for junction, eq in layout.junctions.items():
        yield junction, {**NODE_STYLES["junction"], "id": copy.id(junction), "tooltip": eq}


def _describe(term: Terminal) -> str:
    """A terminal's tooltip: `next state c`, `output h`."""
    kinds = {"next": "next state", "out": "output"}
    return f"{kinds.get(term.id.split(':')[0], term.kind)} {term.name}"


def emit_rows(block: dot.Block, rows: list[tuple[str, list[str]]]) -> None:
    """The rank groups, as `{rank=same; ...}` subgraphs."""
    for kind, ids in rows:
        block.rank(kind, ids)


def _layer_blocks(cluster: dot.Block, layout: CellLayout, copy: Copy) -> dict[str, dot.Block]:
    """For a stacked cell (`meta["layers"]`), one dashed cluster per layer prefix; the
    cell's own cluster for everything outside the layers (prefix "")."""
    blocks = {"": cluster}
    for index, (prefix, cell_name) in enumerate(layout.fn.meta.get("layers") or ()):
        sub = cluster.subgraph(f"cluster_{copy.prefix}layer{index}")
        for key, value in {**LAYER_BOX, "label": f"{prefix.rstrip('.')} {cell_name}".strip()}.items():
            sub.attr(key, value)
        blocks[prefix] = sub
    return blocks


def _terminal_box(term: Terminal) -> Box:
    """A stand-in Box for a terminal, so highlighting treats `next:c` as part of c'."""
    eq = term.name + "'" if term.id.startswith("next:") else term.name
    return Box(term.id, term.kind, Html(""), eq, [], "")


def all_boxes(layout: CellLayout) -> dict[str, Box]:
    """Every node of the picture as a Box: the folded boxes, terminals and junctions."""
    boxes = dict(layout.pic.boxes)
    boxes.update((t.id, _terminal_box(t)) for t in layout.terminals)
    boxes.update((j, Box(j, "junction", Html(""), eq, [], "")) for j, eq in layout.junctions.items())
    return boxes


def new_graph(name: str, **extra) -> dot.Block:
    """A digraph with the house style."""
    graph = dot.digraph(name)
    graph.set("graph", {**GRAPH, **extra})
    graph.set("node", NODE)
    graph.set("edge", EDGE)
    return graph


def cell_dot(fn: Function, emphasis: Emphasis) -> str:
    """The DOT text of a cell diagram."""
    graph = new_graph(fn.name)
    layout = CellLayout(fn)
    copy = Copy()
    cluster = emit_cell(graph, layout, copy, emphasis)
    emit_rows(cluster, [(kind, [copy.id(i) for i in ids]) for kind, ids in layout.rank_rows()])
    emit_rows(graph, [("min", [copy.id(i) for i in layout.input_row()])])
    return dot.source(graph)
