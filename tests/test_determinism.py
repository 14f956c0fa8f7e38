"""Determinism: the same cell gives the same graph (node ids, attributes, edge order), the
same backward graph and the same generated source, byte for byte, in processes with
different hash seeds (no dependence on set or dict order of hashed objects).
(SVG determinism is tested with the diagrams.)"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import graphlstm as gl
from graphlstm.codegen import generate

TESTS = Path(__file__).parent

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import test_determinism as t
print(json.dumps(t.fingerprints()))
"""


def describe_graph(graph) -> str:
    """Every node with its attributes and every edge with its data, in the graph's order."""
    lines = []
    for node, data in graph.nodes(data=True):
        attrs = {k: repr(v) for k, v in data.items() if k not in ("node", "function", "cell")}
        lines.append(f"{node} {json.dumps(attrs, sort_keys=True)}")
    for a, b, data in graph.edges(data=True):
        lines.append(f"{a} -> {b} {json.dumps({k: repr(v) for k, v in data.items()}, sort_keys=True)}")
    return "\n".join(lines)


def _cells() -> dict[str, gl.Cell]:
    sys.path.insert(0, str(TESTS))
    from cells import CORPUS
    cells = {name: gl.zoo.get(name) for name in gl.zoo.names()}
    cells.update({name: gl.parse(text, name=name) for name, text in sorted(CORPUS.items())})
    return cells


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints() -> dict[str, str]:
    """A digest of everything that must be reproducible, per cell and artefact."""
    out = {}
    for name, cell in _cells().items():
        out[f"{name}/graph"] = _digest(describe_graph(cell.graph))
        out[f"{name}/grad"] = _digest(describe_graph(gl.grad(cell)))
        out[f"{name}/unroll"] = _digest(describe_graph(gl.unroll(cell, T=2)))
        out[f"{name}/sizes"] = _digest(repr((cell.sizes, cell.params, cell.param_shapes(
            {s: 3 for s in cell.sizes}))))
        for optimize in (False, True):
            out[f"{name}/source-{optimize}"] = _digest(generate(cell, optimize=optimize))
    return out


def _run(seed: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    return subprocess.Popen([sys.executable, "-c", SCRIPT.format(tests=str(TESTS))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_graphs_and_sources_are_identical_across_hash_seeds():
    procs = [_run("0"), _run("4242")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    first, second = results
    assert first.keys() == second.keys() and len(first) > 50
    differ = [k for k in first if first[k] != second[k]]
    assert differ == []


def test_parsing_twice_gives_the_same_nodes_and_source():
    text = gl.zoo.source("lstm")
    a, b = gl.parse(text, name="lstm"), gl.parse(text, name="lstm")
    assert describe_graph(a.graph) == describe_graph(b.graph)
    assert generate(a) == generate(b)
    assert list(a.graph.nodes) == list(b.graph.nodes) and list(a.graph.edges) == list(b.graph.edges)
