"""The look of the diagrams: colours, node shapes per kind, and names typeset as papers do.

The visual grammar follows the seed explainers: learned layers are yellow boxes, pointwise
operations pink circles and boxes, the state lines dark and heavy, concatenation a junction
of lines. Every style is a plain dict of Graphviz attributes, so a reader can change the
look in one place.
"""
from __future__ import annotations

import re

import sympy

from ..nonlin import U, Nonlinearity
from .dot import Html, escape_html

FONT = "Helvetica,Arial,sans-serif"
INK = "#2b2b2b"
WIRE = "#4a4a4a"
LABEL_INK = "#1f5aa6"
COTANGENT = "#c62828"
FORWARD_GREY = "#9e9e9e"
FADED = "#c9c9c9"
FADED_FILL = "#f1f1f1"
EMPHASIS = "#e4572e"

GRAPH = {"rankdir": "BT", "newrank": True, "remincross": False, "splines": "spline", "nodesep": 0.22,
         "ranksep": 0.28, "fontname": FONT, "bgcolor": "white", "pad": 0.12}
NODE = {"fontname": FONT, "fontsize": 12, "color": INK, "fontcolor": INK, "penwidth": 1.1}
EDGE = {"arrowhead": "normal", "arrowtail": "normal",   # declared first: see cell.emit_link
        "fontname": FONT, "fontsize": 11, "color": WIRE, "fontcolor": LABEL_INK,
        "arrowsize": 0.6, "penwidth": 1.1}
CELL_BOX = {"style": "rounded,filled", "fillcolor": "#f3f5fa", "color": "#9aa6bf",
            "penwidth": 1.2, "label": "", "margin": 10}
LAYER_BOX = {"style": "rounded,dashed", "color": "#9aa6bf", "fontcolor": "#6b7690",
             "fontsize": 11, "labeljust": "l", "margin": 8}
HIGHWAY = {"penwidth": 2.4, "color": INK, "weight": 20}

_CIRCLE = {"shape": "circle", "fixedsize": True, "width": 0.3, "fontsize": 15,
           "style": "filled", "fillcolor": "#f7c4cf", "color": "#a8425d"}
_TERMINAL = {"shape": "plaintext", "fontsize": 14, "margin": 0.02, "height": 0.2, "width": 0.2}

NODE_STYLES: dict[str, dict] = {
    "input": _TERMINAL,
    "state": _TERMINAL,
    "output": _TERMINAL,
    "param": {"shape": "plaintext", "fontsize": 11, "fontcolor": "#7a5c00",
              "margin": 0.02, "height": 0.2, "width": 0.2},
    "junction": {"shape": "point", "width": 0.07, "height": 0.07, "color": INK},
    "matmul": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fff3cf",
               "color": "#c79a1e", "height": 0.3, "margin": "0.08,0.03"},
    "diag": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fff3cf",
             "color": "#c79a1e", "height": 0.3, "margin": "0.06,0.03"},
    "layer": {"shape": "box", "style": "filled", "fillcolor": "#ffd166", "color": "#a87b00",
              "height": 0.32, "width": 0.5, "fontsize": 13, "margin": "0.08,0.03"},
    "pointwise": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f7c4cf",
                  "color": "#a8425d", "height": 0.3, "width": 0.45, "fontsize": 12,
                  "margin": "0.06,0.03"},
    "affine": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f7c4cf",
               "color": "#a8425d", "height": 0.26, "width": 0.3, "fontsize": 11,
               "margin": "0.04,0.02"},
    "gate": _CIRCLE,
    "sum": _CIRCLE,
    # the adjoint ops, which only backward graphs contain
    "slice": {"shape": "box", "style": "rounded", "fontsize": 10, "height": 0.24,
              "margin": "0.04,0.02"},
    "outer": {"shape": "circle", "fixedsize": True, "width": 0.3, "fontsize": 14},
    "bsum": {"shape": "box", "style": "rounded", "fontsize": 11, "height": 0.24,
             "margin": "0.04,0.02"},
    "zeros": {"shape": "plaintext", "fontsize": 11},
}

NONLIN_SYMBOLS = {"sigmoid": "σ", "tanh": "tanh", "identity": "id", "hard_sigmoid": "hard σ"}
GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ",
         "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
         "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ",
         "chi": "χ", "psi": "ψ", "omega": "ω"}
ACCENTS = {"tilde": "\u0303", "hat": "\u0302", "bar": "\u0304", "dot": "\u0307"}
PRIME = "\u2032"
MINUS = "\u2212"


def _base(text: str) -> str:
    """A name without subscript: Greek names become letters, accents combine."""
    head, _, accent = text.partition("_")
    if accent in ACCENTS:
        return escape_html(GREEK.get(head, head)) + ACCENTS[accent]
    return escape_html(GREEK.get(text, text))


def name_html(name: str, time: str | None = None) -> Html:
    """A name typeset as papers do: `W_f` -> W<sub>f</sub>, `h_tilde` -> h̃, `c'` -> c′,
    `d_h'` -> d<sub>h′</sub>, with an optional time subscript (`t`, `t−1`, `3`) joined
    to any subscript the name has."""
    name = name.rpartition(".")[2]   # a stacked cell's layer prefix: its cluster says it
    primes = PRIME * (len(name) - len(name.rstrip("'")))
    stem = name.rstrip("'")
    match = re.fullmatch(r"(.+?)_(?!(?:tilde|hat|bar|dot)$)(.+)", stem)
    base, sub = (match.group(1), match.group(2)) if match else (stem, "")
    text = _base(base) + ("" if sub else primes)
    subs = [escape_html(s.replace("_", ",")) for s in (sub + (primes if sub else ""), time) if s]
    if subs:
        text += f"<SUB>{','.join(subs)}</SUB>"
    return Html(text)


def small_subscripts(attrs: dict, default_size: float) -> dict:
    """Subscripts at 3/4 of the label's size. Graphviz writes `<SUB>` as SVG text with
    `baseline-shift="sub"` at full size, which browsers draw large and low."""
    label = attrs.get("label")
    if not isinstance(label, Html) or "<SUB>" not in label:
        return attrs
    size = round(0.75 * float(attrs.get("fontsize", default_size)), 1)
    label = label.replace("<SUB>", f'<SUB><FONT POINT-SIZE="{size:g}">').replace("</SUB>", "</FONT></SUB>")
    return {**attrs, "label": Html(label)}


def nonlinearity_label(fn: Nonlinearity) -> Html:
    """σ, tanh, a custom name, a derivative (`d_tanh` -> tanh′), or an affine map with a
    dot for its operand: `1 − ·`."""
    if fn.name.startswith("d_"):
        base = fn.name[2:]
        return Html(escape_html(NONLIN_SYMBOLS.get(base, base)) + PRIME)
    if fn.name:
        return Html(escape_html(NONLIN_SYMBOLS.get(fn.name, fn.name)))
    return Html(escape_html(affine_text(fn.expr)))


def affine_text(expr: sympy.Expr) -> str:
    """An affine map of `u` as text with `·` for its operand, written the way people
    write it: 1 - u -> `1 − ·`, u - 1 -> `· − 1`, u/2 -> `·/2`, 2u + 3 -> `2· + 3`."""
    expr = sympy.expand(expr)
    slope, const = sympy.diff(expr, U), expr.xreplace({U: 0})
    term = _scaled_dot(abs(slope))
    if const == 0:
        return (MINUS if slope < 0 else "") + term
    if slope < 0:
        return f"{_number(const)} {MINUS} {term}"
    return f"{term} {'+' if const > 0 else MINUS} {_number(abs(const))}"


def _scaled_dot(factor: sympy.Expr) -> str:
    """`·`, `2·`, `·/2`, `3·/4` or `0.5·` for a positive factor."""
    if factor == 1:
        return "·"
    if factor.is_Rational and not factor.is_Integer:
        numerator = "" if factor.p == 1 else str(factor.p)
        return f"{numerator}·/{factor.q}"
    return f"{_number(factor)}·"


def _number(value: sympy.Expr) -> str:
    text = f"{float(value):g}" if value.is_Float else sympy.sstr(value)
    return text.replace("-", MINUS)


def faded(attrs: dict) -> dict:
    """The greyed-out version of a node or edge style (for `highlight=`)."""
    out = dict(attrs)
    out["color"] = FADED
    out["fontcolor"] = FADED
    if "filled" in str(out.get("style", "")):
        out["fillcolor"] = FADED_FILL
    if out.get("shape") == "point":
        out["fillcolor"] = FADED
    out["penwidth"] = min(float(out.get("penwidth", 1.0)), 1.0)
    return out


def emphasised(attrs: dict, edge: bool = False) -> dict:
    """A node or edge on the highlighted path: its colours kept, its outline strong."""
    out = dict(attrs)
    out["penwidth"] = max(float(out.get("penwidth", 1.0)), 2.2 if edge else 2.0)
    out["color"] = EMPHASIS
    return out
