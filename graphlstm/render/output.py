"""From DOT text to the requested format, through Graphviz's `dot` program.

`format="dot"` needs nothing but Python. The other formats run `dot`; when it is missing
the error says which package provides it, instead of a bare `ExecutableNotFound`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import graphviz

FORMATS = ("svg", "png", "pdf", "dot")
TEXT_FORMATS = ("svg", "dot")
INSTALL_HINT = ("Graphviz's `dot` program is needed to draw {fmt}; install the Graphviz package "
                "(Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`; "
                "conda: `conda install graphviz`). format='dot' works without it.")


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` executable is not installed (or not on PATH)."""


def choose_format(path: str | Path | None, fmt: str | None) -> str:
    """`format=` if given, else the file's extension, else SVG."""
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower() if path is not None else "svg"
        fmt = fmt or "svg"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot render to {fmt!r}: formats are {', '.join(FORMATS)} "
                         f"(from the file extension or format=)")
    return fmt


def layout(source: str, fmt: str) -> bytes:
    """Run `dot -T<fmt>` on DOT text; DOT itself is returned as is."""
    if fmt == "dot":
        return source.encode("utf-8")
    if shutil.which("dot") is None:
        raise GraphvizNotFound(INSTALL_HINT.format(fmt=fmt))
    try:
        return graphviz.pipe("dot", fmt, source.encode("utf-8"))
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFound(INSTALL_HINT.format(fmt=fmt)) from None


def deliver(source: str, path: str | Path | None, fmt: str | None):
    """Text (svg, dot) or bytes (png, pdf) when `path` is None, else write and return the Path."""
    fmt = choose_format(path, fmt)
    data = layout(source, fmt)
    if path is None:
        return data.decode("utf-8") if fmt in TEXT_FORMATS else data
    path = Path(path)
    path.write_bytes(data)
    return path
