"""The picture model: a step `Function` folded into the boxes and wires a person draws.

Papers do not draw every node of the graph. A matrix parameter is the label of its matmul
box, a bias added to a matmul joins that label (`W_f, b_f`), a diagonal weight is the label
of its gate (`p_f ⊙`), and broadcasting is invisible. `fold` makes those choices once, so
the cell, unrolled and backward pictures all draw the same boxes:

    f = sigmoid(W_f @ [x, h] + b_f)      x, h -> •concat -> [W_f, b_f] -> [σ] --f-->

Every node of the Function belongs to exactly one box (`Picture.box_of`), which is what
`highlight=` and the tests use to find the box of an equation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..cell import node_names
from ..ir import Function, Node, Op
from ..lang import format_expr
from ..shapes import show
from .dot import Html, escape_html
from .style import name_html, nonlinearity_label

LEAF_KINDS = {Op.INPUT: "input", Op.STATE: "state", Op.PARAM: "param"}
OP_KINDS = {Op.CONCAT: "junction", Op.MATMUL: "matmul", Op.GATE: "gate", Op.SUM: "sum",
            Op.SLICE: "slice", Op.OUTER: "outer", Op.BSUM: "bsum", Op.ZEROS: "zeros"}
OP_SYMBOLS = {Op.GATE: "×", Op.SUM: "+", Op.OUTER: "⊗", Op.BSUM: "Σ<SUB>b</SUB>",
              Op.ZEROS: "0", Op.CONCAT: ""}


@dataclass
class Box:
    """One drawn node: its kind (a key of `style.NODE_STYLES`), label, equation and the
    Function nodes it stands for (the first is the one whose value leaves the box).

    A box that sums several linear terms (`W_f @ x + U_f @ h + b_f`) has one cell per
    term, `cells`, each with a port its operand's wire enters by."""

    id: str
    kind: str
    label: Html
    eq: str | None
    members: list[Node]
    tooltip: str
    cells: list[Html] = field(default_factory=list)


@dataclass
class Wire:
    """One drawn edge, from the box computing a value to a box using it (at `port`)."""

    tail: str
    head: str
    port: str | None = None


@dataclass
class Picture:
    """Boxes in a stable order, wires between them, and the box of every Function node."""

    boxes: dict[str, Box] = field(default_factory=dict)
    wires: list[Wire] = field(default_factory=list)
    box_of: dict[Node, str] = field(default_factory=dict)

    def inputs_of(self, box_id: str) -> list[str]:
        """The boxes wired into a box, in wire order."""
        return [w.tail for w in self.wires if w.head == box_id]

    def users_of(self, box_id: str) -> list[str]:
        """The boxes a box's value is wired to, each once, in wire order."""
        return list(dict.fromkeys(w.head for w in self.wires if w.tail == box_id))


def users(fn: Function) -> dict[Node, list[Node]]:
    """Each node's users, in the Function's stable order."""
    out: dict[Node, list[Node]] = {node: [] for node in fn.nodes()}
    for node in fn.nodes():
        for src in node.src:
            if node not in out[src]:
                out[src].append(node)
    return out


def fold(fn: Function) -> Picture:
    """Fold a Function into boxes and wires (see the module docstring)."""
    folding = _Folding(fn)
    folding.plan()
    return folding.picture()


class _Folding:
    """The folding decisions for one Function: which parameters become labels, which sums
    become one box with a cell per linear term."""

    def __init__(self, fn: Function) -> None:
        self.fn = fn
        self.names = node_names(fn)
        self.users = users(fn)
        self.named = {node for _, node in fn.equations} | {node for _, node in fn.results}
        self.folded_uses: set[tuple[Node, Node]] = set()   # (param, user) drawn as a label
        self.label_params: dict[Node, list[Node]] = {}      # linear term -> its parameters
        self.cells: dict[Node, list[Node]] = {}             # sum box -> its linear terms
        self.owner: dict[Node, Node] = {}                   # node -> node whose box it joins

    # -- decisions ------------------------------------------------------------------------
    def plan(self) -> None:
        for node in self.fn.nodes():
            if node.op is Op.MATMUL and node.src[0].op is Op.PARAM:
                self._fold_param(node.src[0], node, node)
            elif node.op is Op.GATE:
                self._fold_diagonal(node)
            elif node.op is Op.BCAST:
                self.owner[node] = node.src[0]
        for node in self.fn.nodes():
            if node.op is Op.SUM:
                self._fold_sum(node)

    def _fold_param(self, param: Node, user: Node, term: Node) -> None:
        self.folded_uses.add((param, user))
        self.label_params.setdefault(term, []).append(param)

    def _fold_diagonal(self, gate: Node) -> None:
        """`p * c` with a parameter vector p: a diagonal weight, drawn as a box `p ⊙`."""
        params = [s for s in gate.src if s.op is Op.PARAM]
        if len(params) == 1 and gate.src[0] is not gate.src[1]:
            self._fold_param(params[0], gate, gate)

    def _linear_term(self, node: Node, total: Node) -> bool:
        """A matmul or diagonal weight used only by this sum, and not a named value."""
        return (node in self.label_params and node not in self.named
                and self.users[node] == [total] and total.src.count(node) == 1)

    def _fold_sum(self, total: Node) -> None:
        """`W_f @ x + U_f @ h + b_f` is one box with a cell per term (`W_f | U_f, b_f`);
        in a sum with other terms, a bias joins the label of the matmul before it."""
        terms = [s for s in total.src if s.op is not Op.PARAM]
        linear = [s for s in terms if self._linear_term(s, total)]
        biases = [s for s in total.src if s.op is Op.PARAM]
        if terms and len(linear) == len(terms):
            self.cells[total] = linear
            for term in linear:
                self.owner[term] = total
        elif not any(s.op is Op.MATMUL for s in linear):
            return
        for bias in biases:
            self._fold_param(bias, total, self._term_before(total, bias, linear))

    def _term_before(self, total: Node, bias: Node, linear: list[Node]) -> Node:
        """The matmul written just before the bias, else the first (a bias belongs with
        an affine map, `W_f, b_f`, not with a diagonal weight)."""
        linear = [t for t in linear if t.op is Op.MATMUL] or linear
        position = total.src.index(bias)
        before = [t for t in linear if total.src.index(t) < position]
        return before[-1] if before else linear[0]

    # -- the picture ----------------------------------------------------------------------
    def root(self, node: Node) -> Node:
        """The node whose box `node` is drawn in."""
        while node in self.owner:
            node = self.owner[node]
        return node

    def port(self, node: Node) -> str | None:
        """The port of a linear term's cell in its sum's box."""
        total = self.owner.get(node)
        if total in self.cells and len(self.cells[total]) > 1:
            return f"p{self.cells[total].index(node)}"
        return None

    def picture(self) -> Picture:
        pic = Picture()
        for node in self.fn.nodes():
            if self._hidden(node):
                continue
            root = self.root(node)
            box_id = self.names[root]
            if box_id not in pic.boxes:
                pic.boxes[box_id] = self._box(root, box_id)
            if node is not root:
                pic.boxes[box_id].members.append(node)
            pic.box_of[node] = box_id
        for node in self.fn.nodes():
            self._wires(node, pic)
        return pic

    def _hidden(self, node: Node) -> bool:
        """A parameter all of whose uses are labels is not drawn on its own."""
        return node.op is Op.PARAM and bool(self.users[node]) and all(
            (node, user) in self.folded_uses for user in self.users[node])

    def _wires(self, node: Node, pic: Picture) -> None:
        if node not in pic.box_of:
            return
        head, port = pic.box_of[node], self.port(node)
        for src in node.src:
            if (src, node) in self.folded_uses:
                continue
            tail = pic.box_of[src]
            if tail != head and not any((w.tail, w.head, w.port) == (tail, head, port)
                                        for w in pic.wires):
                pic.wires.append(Wire(tail, head, port))

    def _box(self, node: Node, box_id: str) -> Box:
        eq = node.arg if node.op in LEAF_KINDS else self.fn.labels.get(node)
        kind, label = self._kind_and_label(node)
        cells = [self._cell_label(term, node) for term in self.cells.get(node, [])]
        return Box(box_id, kind, label, eq, [node], self._tooltip(node, eq),
                   cells if len(cells) > 1 else [])

    def _cell_label(self, term: Node, total: Node | None = None) -> Html:
        """A linear term's parameters: `W_f, b_f`, `W_fᵀ`, `p_f ⊙`."""
        params = list(self.label_params.get(term, []))
        if total is not None and total is not term:
            params += [b for b in self.label_params.get(total, [])]
        first, *rest = params
        head = name_html(first.arg)
        if term.op is Op.GATE:
            head += " ⊙"
        elif term.op is Op.MATMUL and term.arg:
            head += "ᵀ"
        elif term.op is Op.MATMUL and len(self.fn.shapes[first]) > 2:
            head += " ∗"   # a kernel: a convolution
        return Html(head + "".join(", " + name_html(p.arg) for p in rest))

    def _kind_and_label(self, node: Node) -> tuple[str, Html]:
        if node.op in LEAF_KINDS:
            return LEAF_KINDS[node.op], name_html(node.arg)
        if node.op is Op.NONLIN:
            return self._nonlin_kind(node), nonlinearity_label(node.arg)
        if node in self.cells:
            labels = [self._cell_label(t) for t in self.cells[node]]
            return "matmul", Html(" + ".join(labels))
        if node in self.label_params:
            return ("diag" if node.op is Op.GATE else "matmul"), self._cell_label(node)
        if node.op is Op.SLICE:
            axis, lo, hi = node.arg
            return "slice", Html(escape_html(f"[{lo}:{hi}]"))
        return OP_KINDS.get(node.op, "pointwise"), Html(OP_SYMBOLS.get(node.op, escape_html(node.op.value)))

    def _nonlin_kind(self, node: Node) -> str:
        """A learned layer (σ after a matmul: yellow) or a pointwise map (pink)."""
        if not node.arg.name:
            return "affine"
        operand = self.root(node.src[0])
        if operand in self.cells or (operand in self.label_params and operand.op is Op.MATMUL):
            return "layer"
        if operand.op is Op.SUM and any(self.root(s) in self.label_params and s.op is Op.MATMUL
                                        for s in operand.src):
            return "layer"
        return "pointwise"

    def _tooltip(self, node: Node, eq: str | None) -> str:
        """What hovering shows: the equation as written, or a leaf's kind and shape."""
        shape = show(self.fn.shapes[node])
        if node.op in LEAF_KINDS:
            return f"{LEAF_KINDS[node.op]} {node.arg}{shape}"
        text = self.fn.meta.get("text", {}).get(eq) if eq else None
        if text is None and eq is not None:
            text = f"{eq} = {format_expr(self.fn, node, dict(self._names_for_text()))}"
        return f"{text}  {shape}" if text else shape

    def _names_for_text(self):
        for leaf in self.fn.leaves:
            yield leaf, leaf.arg
        for name, node in self.fn.equations:
            yield node, name
