"""The zoo: the seed cells, shipped as .cell files with their sources in the header."""
from __future__ import annotations

import pytest

import graphlstm as gl

REQUIRED = {"rnn", "lstm", "lstm_peephole", "lstm_peephole_diag", "lstm_coupled", "gru", "gru_torch",
            "lstm_memory", "lstm_sl", "mgu"}


def test_zoo_has_the_seed_cells():
    assert REQUIRED <= set(gl.zoo.names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_header_comment_gives_source_and_equations(name):
    text = gl.zoo.source(name)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert len(header) >= 2
    assert any(ch.isdigit() for ch in "".join(header))           # a year or a seed number
    assert gl.zoo.describe(name) and gl.zoo.get(name).name == name


def test_unknown_name_lists_the_zoo():
    with pytest.raises(KeyError, match="lstm"):
        gl.zoo.source("nope")


def test_peephole_cell_reads_c_not_h():
    cell = gl.zoo.get("lstm_peephole")
    g = cell.graph
    assert not any(u == "h" for u, _ in g.edges)        # h is produced, never read
    assert cell.param_shapes({"n_in": 2, "n": 3})["U_f"] == (3, 3)


def test_coupled_forget_gate_is_one_minus_i():
    cell = gl.zoo.get("lstm_coupled")
    assert "W_f" not in cell.params
    assert any(d["label"] == "1 - u" for _, d in cell.graph.nodes(data=True))
