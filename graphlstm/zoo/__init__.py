"""The zoo: built-in cells, written as `.cell` files shipped with the package.

    gl.zoo.names()        # ('gru', 'gru_torch', 'lstm', ...)
    gl.zoo.get("lstm")    # a Cell
    gl.zoo.source("lstm") # the file's text
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from ..errors import SpecError


def names() -> tuple[str, ...]:
    """The names of the built-in cells, sorted."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".cell")))


def source(name: str) -> str:
    """The text of a built-in cell."""
    if name not in names():
        raise KeyError(f"no cell '{name}' in the zoo; it has: {', '.join(names())}")
    return resources.files(__name__).joinpath(name + ".cell").read_text(encoding="utf-8")


def describe(name: str) -> str:
    """One line on what a built-in cell is: the first sentence of its header comment."""
    words: list[str] = []
    for line in source(name).splitlines():
        if not line.startswith("#") or line.startswith("#  "):
            break
        words += line.lstrip("# ").split()
    text = " ".join(words)
    end = re.search(r"(?<! al)\.( |$)|: ", text)         # "Cho et al. 2014" goes on
    return text[:end.start()] if end else text


@lru_cache(maxsize=None)
def get(name: str):
    """A built-in cell by name (cached: cells are immutable)."""
    from ..lang import parse
    try:
        return parse(source(name), name=name)
    except SpecError as e:  # pragma: no cover - the zoo is tested
        raise RuntimeError(f"zoo cell {name} is broken: {e}") from e
