"""Diagrams and LaTeX: what the pictures must show, golden DOT, determinism, layout checks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest

import graphlstm as gl
from graphlstm.render import GraphvizNotFound, output, to_dot
from graphlstm.render.cell import CellLayout
from graphlstm.render.style import EMPHASIS, FADED, COTANGENT

GOLDEN = Path(__file__).parent / "golden"
ZOO = gl.zoo.names()
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
HAVE_DOT = output.shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed")


def svg_words(svg: str) -> str:
    """Everything a reader (or a screen reader) gets from an SVG: texts, titles, tooltips."""
    root = ET.fromstring(svg)
    parts = [el.text or "" for el in root.iter() if el.tag in (SVG + "text", SVG + "title")]
    parts += [el.get(XLINK + "title", "") for el in root.iter()]
    return "\n".join(parts)


def dot_nodes(source: str) -> dict[str, str]:
    """Node id -> its attribute text, from our DOT (one statement per line)."""
    return dict(re.findall(r'^\s*"((?:[^"\\]|\\.)*)" \[(.*)\];$', source, re.M))


def layout_json(source: str) -> dict:
    return json.loads(graphviz.pipe("dot", "json", source.encode()))


# -- what every picture shows ----------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("name", ZOO)
def test_svg_parses_and_names_every_leaf_and_output(name):
    cell = gl.zoo.get(name)
    words = svg_words(gl.render(cell))
    for leaf in cell.params + cell.states + cell.inputs + cell.outputs:
        assert re.search(rf"(?<![\w.]){re.escape(leaf)}(?![\w])", words), f"{name}: {leaf} not in SVG"


@needs_dot
def test_every_corpus_cell_renders_all_three_pictures(any_cell):
    for obj in (any_cell, gl.unroll(any_cell, 2), gl.grad(any_cell)):
        root = ET.fromstring(gl.render(obj))
        assert root.tag == SVG + "svg"
    assert gl.latex(any_cell).startswith("\\begin{aligned}")


@needs_dot
def test_repr_svg_is_the_rendered_cell():
    cell = gl.zoo.get("gru")
    assert cell._repr_svg_() == gl.render(cell)


# -- golden DOT and determinism --------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_dot_matches_golden_file(name):
    produced = gl.render(gl.zoo.get(name), format="dot")
    golden = GOLDEN / f"{name}.dot"
    if os.environ.get("GRAPHLSTM_UPDATE_GOLDEN"):
        golden.write_text(produced, encoding="utf-8")
    assert produced == golden.read_text(encoding="utf-8")


@needs_dot
def test_same_output_twice():
    cell = gl.zoo.get("lstm_peephole_diag")
    assert gl.render(cell) == gl.render(cell)
    unrolled = gl.unroll(cell, 2)
    assert gl.render(unrolled, format="dot") == gl.render(gl.unroll(cell, 2), format="dot")


@needs_dot
def test_same_svg_across_hash_seeds():
    script = ("import graphlstm as gl, sys; c = gl.zoo.get('gru_torch'); "
              "sys.stdout.write(gl.render(c) + gl.render(gl.grad(c)) + gl.render(gl.unroll(c, 2)))")
    outs = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert outs[0] == outs[1] and outs[0].count("<svg") == 3


# -- highlight --------------------------------------------------------------------------------


def test_highlight_emphasises_the_gate_and_fades_the_rest():
    cell = gl.zoo.get("lstm")
    plain = dot_nodes(gl.render(cell, format="dot"))
    nodes = dot_nodes(gl.render(cell, format="dot", highlight="f"))
    for box in ("f", "f.3"):             # the forget gate's layer and its matmul box
        assert f'color="{EMPHASIS}"' in nodes[box] and nodes[box] != plain[box]
    for box in ("o", "g", "o.2", "h'.1"):  # other gates and the output path
        assert f'color="{FADED}"' in nodes[box]
    assert f'color="{FADED}"' not in nodes["c'.1"]   # the gate f feeds stays in colour


def test_highlight_takes_a_list_and_primed_names():
    cell = gl.zoo.get("lstm")
    nodes = dot_nodes(gl.render(cell, format="dot", highlight=["i", "g"]))
    assert all(f'color="{EMPHASIS}"' in nodes[b] for b in ("i", "g", "i.2", "g.2"))
    assert f'color="{FADED}"' in nodes["f"]
    update = dot_nodes(gl.render(cell, format="dot", highlight="c'"))
    assert all(f'color="{EMPHASIS}"' in update[b] for b in ("c'", "c'.1", "c'.2"))
    assert f'color="{FADED}"' in update["i.2"]   # the gates feeding c' keep colour, not their inputs


def test_highlight_of_an_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"no equation or value named 'q'.*f, i, o, g"):
        gl.render(gl.zoo.get("lstm"), format="dot", highlight="q")


# -- unrolled ---------------------------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_unrolled_has_one_copy_per_step_and_state_edges_between(name):
    cell = gl.zoo.get(name)
    counts = {}
    for T in (1, 3):
        root = ET.fromstring(gl.render(gl.unroll(cell, T)))
        ids = [g.get("id") for g in root.iter(SVG + "g") if g.get("class") == "node"]
        counts[T] = [sum(i.startswith(f"t{k}/") for i in ids) for k in range(1, T + 1)]
        clusters = [g for g in root.iter(SVG + "g") if g.get("class") == "cluster"]
        assert len(clusters) == T
    # each step is the one-step picture, less the next-state terminals it hands over
    assert counts[3][-1] == counts[1][0]
    assert counts[3][0] == counts[3][1] == counts[1][0] - len(cell.states)
    source = gl.render(gl.unroll(cell, 3), format="dot")
    for state in cell.states:
        for t in (1, 2):
            assert re.search(rf'"t{t}/[^"]*" -> "t{t + 1}/{state}"', source)


# -- backward ---------------------------------------------------------------------------------


@needs_dot
def test_backward_graph_distinguishes_cotangents():
    cell = gl.zoo.get("lstm")
    svg = gl.render(gl.grad(cell))
    root = ET.fromstring(svg)
    red_dashed = [p for p in root.iter(SVG + "path")
                  if p.get("stroke") == COTANGENT and p.get("stroke-dasharray")]
    assert len(red_dashed) > 20
    words = svg_words(svg)
    for name in cell.params + cell.inputs + cell.states:
        assert f"grad_{name}" in words          # every gradient leaves the picture
    assert "d_f: cotangent flowing back from f" in words
    source = gl.render(gl.grad(cell), format="dot")
    assert re.search(r'rank="same";\s+"f";\s+"d_f";', source)   # f and ∂f on one row


# -- LaTeX ------------------------------------------------------------------------------------


def test_latex_of_the_lstm():
    text = gl.latex(gl.zoo.get("lstm"))
    assert text.startswith("\\begin{aligned}") and text.endswith("\\end{aligned}")
    assert r"c_{t} &= f_{t} \odot c_{t-1} + i_{t} \odot g_{t}" in text
    assert r"f_{t} &= \sigma\left(W_{f} \left[x_{t}, h_{t-1}\right] + b_{f}\right)" in text
    assert r"h_{t} &= o_{t} \odot \tanh" in text


def test_latex_uses_sympy_for_names_affine_maps_and_custom_formulas():
    from cells import CORPUS
    gru = gl.latex(gl.zoo.get("gru"))
    assert r"\tilde{h}_{t}" in gru and r"\left(1 - z_{t}\right) \odot h_{t-1}" in gru
    custom = gl.latex(gl.parse(CORPUS["custom_nonlinearity"]))
    assert r"\operatorname{mysoft}(u) &= \frac{u}{\left|{u}\right| + 1}" in custom
    assert r"\frac{\operatorname{mysoft}\left(a_{t}\right)}{2}" in custom


# -- formats and a missing Graphviz -----------------------------------------------------------


@needs_dot
def test_writes_each_format_by_extension_or_format(tmp_path):
    cell = gl.zoo.get("rnn")
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph"}
    for fmt, head in magic.items():
        path = gl.render(cell, tmp_path / f"rnn.{fmt}")
        assert path == tmp_path / f"rnn.{fmt}" and path.read_bytes().startswith(head)
    forced = gl.render(cell, tmp_path / "picture", format="png")
    assert forced.read_bytes().startswith(magic["png"])
    with pytest.raises(ValueError, match="formats are svg, png, pdf, dot"):
        gl.render(cell, tmp_path / "rnn.gif")


def test_without_dot_only_the_dot_format_works(monkeypatch, tmp_path):
    monkeypatch.setattr(output.shutil, "which", lambda name: None)
    cell = gl.zoo.get("lstm")
    with pytest.raises(GraphvizNotFound, match="apt-get install graphviz"):
        gl.render(cell)
    with pytest.raises(GraphvizNotFound, match="package"):
        gl.render(cell, tmp_path / "lstm.png")
    assert gl.render(cell, format="dot").startswith('digraph "lstm"')
    assert gl.render(cell, tmp_path / "lstm.dot").read_text().startswith("digraph")


def test_graphviz_executable_not_found_is_the_same_clear_error(monkeypatch):
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))
    monkeypatch.setattr(output.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(output.graphviz, "pipe", missing)
    with pytest.raises(GraphvizNotFound, match="Graphviz"):
        gl.render(gl.zoo.get("rnn"), format="svg")


# -- stacked cells ----------------------------------------------------------------------------


def test_a_stacked_cell_gets_one_cluster_per_layer():
    stacked = gl.stack(gl.zoo.get("lstm"), gl.zoo.get("gru"))
    source = gl.render(stacked, format="dot")
    assert 'subgraph "cluster_layer0"' in source and 'label="l1 lstm"' in source
    assert 'label="l2 gru"' in source
    assert "cluster_layer" not in gl.render(gl.zoo.get("lstm"), format="dot")


# -- legibility: what Graphviz made of our DOT ------------------------------------------------


def _text_boxes(layout: dict) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(object id, text box) for every piece of text Graphviz drew."""
    boxes = []
    for obj in layout.get("objects", []) + layout.get("edges", []):
        size = 14.0
        for op in obj.get("_ldraw_", []) + obj.get("_hldraw_", []) + obj.get("_tldraw_", []):
            if op["op"] == "F":
                size = op["size"]
            elif op["op"] == "T":
                x, y = op["pt"]
                left = {"l": x, "c": x - op["width"] / 2, "r": x - op["width"]}[op["align"]]
                boxes.append((obj["_gvid"] * 2 + ("tail" in obj),
                              (left + 1, y - 0.2 * size + 1, left + op["width"] - 1, y + 0.7 * size - 1)))
    return boxes


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _curve(points: list, steps: int = 12) -> list[tuple[float, float]]:
    """Points along a piecewise cubic Bézier (Graphviz's edge splines)."""
    out = []
    for i in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[i:i + 4]
        for k in range(steps + 1):
            t = k / steps
            out.append(tuple((1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t * t * c
                             + t ** 3 * d for a, b, c, d in zip(p0, p1, p2, p3)))
    return out


def _crosses(edge: dict, y: float, x0: float, x1: float) -> bool:
    """Whether an edge's spline passes through the segment y, x0 < x < x1."""
    for op in edge.get("_draw_", []):
        if op["op"] != "b":
            continue
        points = _curve(op["points"])
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            if (ay - y) * (by - y) < 0 and x0 < ax + (bx - ax) * (y - ay) / (by - ay) < x1:
                return True
    return False


@needs_dot
@pytest.mark.parametrize("name", ZOO)
def test_zoo_diagrams_are_legible(name):
    cell = gl.zoo.get(name)
    layout = layout_json(to_dot(cell))
    boxes = _text_boxes(layout)
    clashes = [(a, b) for i, (oa, a) in enumerate(boxes) for ob, b in boxes[i + 1:]
               if oa != ob and _overlap(a, b)]
    assert not clashes, f"{name}: labels overlap"
    names = {o["_gvid"]: o["name"] for o in layout["objects"]}
    position = {o["name"]: tuple(map(float, o["pos"].split(","))) for o in layout["objects"] if "pos" in o}
    for state, chain in CellLayout(cell.step).chains.items():
        xs = [position[b][0] for b in chain]
        ys = {round(position[b][1], 1) for b in chain}
        assert xs == sorted(xs) and len(ys) == 1, f"{name}: the {state} highway is not straight"
        crossing = [(names[e["tail"]], names[e["head"]]) for e in layout.get("edges", [])
                    if not {names[e["tail"]], names[e["head"]]} & set(chain)
                    and _crosses(e, position[chain[0]][1], xs[0], xs[-1])]
        assert not crossing, f"{name}: wires cross the {state} highway: {crossing}"


@needs_dot
def test_lstm_is_under_1000_px_wide():
    width_pt = float(re.search(r'<svg width="([\d.]+)pt"', gl.render(gl.zoo.get("lstm"))).group(1))
    assert width_pt * 96 / 72 < 1000
