"""Regenerate docs/gallery.md and the pictures in docs/img/ from the zoo.

    python docs/make_gallery.py

Every zoo cell gets its diagram (img/<name>.svg), its equations (`gl.latex`) and the
note its .cell file opens with (the paper it comes from). The LSTM also gets the
step-by-step figures (`highlight=`), its unrolled sequence and its backward step;
img/lstm.svg is the picture the README shows.
"""
from __future__ import annotations

from pathlib import Path

import graphlstm as gl

DOCS = Path(__file__).resolve().parent
IMG = DOCS / "img"
FIRST = ("rnn", "lstm", "gru")   # the classics first, then the zoo in its order
STEPS = [("f", "the forget gate"), (["i", "g"], "the input gate and the candidate"),
         ("c'", "the cell-state update"), ("o", "the output gate")]


def paper_note(name: str) -> str:
    """The prose comment lines a .cell file opens with (not the equations below them)."""
    lines = []
    for line in gl.zoo.source(name).splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        if text.startswith("   "):   # the indented equations: gl.latex writes them
            break
        lines.append(text.strip())
    return " ".join(lines)


def draw(obj, stem: str, **options) -> str:
    """Write img/<stem>.svg and return its path relative to docs/."""
    gl.render(obj, IMG / f"{stem}.svg", **options)
    return f"img/{stem}.svg"


def cell_section(name: str) -> str:
    cell = gl.zoo.get(name)
    image = draw(cell, name)
    return "\n".join([
        f"### {name}", "", paper_note(name), "", f"![{name}]({image})", "",
        "$$", gl.latex(cell), "$$", "",
        "<details><summary>source</summary>", "", "```", gl.zoo.source(name).rstrip(), "```",
        "", "</details>", ""])


def lstm_sections() -> str:
    """The LSTM walked through gate by gate (seed 002), unrolled, and differentiated."""
    cell = gl.zoo.get("lstm")
    steps = [(draw(cell, f"lstm_step{k}", highlight=names), what)
             for k, (names, what) in enumerate(STEPS, start=1)]
    header = "| " + " | ".join(what for _, what in steps) + " |"
    rule = "|" + "---|" * len(steps)
    row = "| " + " | ".join(f"![{what}]({image})" for image, what in steps) + " |"
    return "\n".join([
        "## The LSTM, one gate at a time", "",
        "`gl.render(cell, highlight=...)` draws one path in colour and greys the rest:", "",
        header, rule, row, "",
        "## Unrolled", "", "`gl.render(gl.unroll(cell, 3))`: the cell state runs straight through "
        "the steps, the hidden state along the bottom.", "",
        f"![lstm unrolled]({draw(gl.unroll(cell, 3), 'lstm_unrolled')})", "",
        "## The backward step", "", "`gl.render(gl.grad(cell))`: forward values in grey, "
        "cotangents in dashed red, each ∂ on the row of the value it differentiates; dotted "
        "wires show the forward values the backward step reads.", "",
        f"![lstm backward]({draw(gl.grad(cell), 'lstm_backward')})", ""])


def main() -> None:
    IMG.mkdir(exist_ok=True)
    parts = ["# Gallery", "",
             "Every diagram here is drawn by `gl.render` from the cell's definition; the "
             "equations are `gl.latex`. Regenerate with `python docs/make_gallery.py`.", "",
             lstm_sections(), "## The zoo", ""]
    names = [n for n in FIRST if n in gl.zoo.names()]
    names += [n for n in gl.zoo.names() if n not in names]
    parts += [cell_section(name) for name in names]
    (DOCS / "gallery.md").write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
