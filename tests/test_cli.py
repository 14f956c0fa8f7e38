"""The `graphlstm` command: every command, its --help, and one-line errors (no tracebacks)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import graphlstm as gl
from graphlstm import cli

COMMANDS = ["render", "codegen", "check", "equations", "zoo", "demo"]
BAD_CELL = "cell bad\ninput x[n_in]\nstate h[n]\nh' = tanh(W @ [x, h] + b) + x\noutput h'\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_exit(capsys, *argv: str) -> tuple[int, str, str]:
    """For argparse paths that exit (--help, usage errors)."""
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def has_render() -> bool:
    try:
        cli.renderer()
    except cli.CLIError:
        return False
    return True


needs_render = pytest.mark.skipif(not has_render(), reason="graphlstm.render not available")


def assert_one_error_line(err: str) -> None:
    assert err.startswith("graphlstm: error: ") and "Traceback" not in err


# -- help and usage ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_exit(capsys, command, "--help")
    assert code == 0 and "example" in out and f"graphlstm {command}" in out


def test_top_level_help_lists_the_commands(capsys):
    code, out, _ = run_exit(capsys, "--help")
    assert code == 0 and all(c in out for c in COMMANDS)


@pytest.mark.parametrize("argv", [[], ["bogus"], ["check"], ["check", "rnn", "--T", "x"],
                                  ["codegen", "lstm", "--backward", "--forward-only"]])
def test_usage_errors_are_one_line(capsys, argv):
    code, _, err = run_exit(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert_one_error_line(err)


# -- zoo, equations -----------------------------------------------------------------------------
def test_zoo_lists_every_cell_with_a_description(capsys):
    code, out, _ = run(capsys, "zoo")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == list(gl.zoo.names())
    assert all(len(line.split()) > 2 for line in lines)
    assert "Elman RNN" in out


@pytest.mark.parametrize("text, expected", [
    ("Peephole LSTM (Gers 2000), as seed 003 writes it: the gates read the",
     "Peephole LSTM (Gers 2000), as seed 003 writes it"),
    ("LSTM (seeds 002, 003; Greff et al. 2017):", "LSTM (seeds 002, 003; Greff et al. 2017)"),
    ("Seed 000's LSTM: one memory m. The input is", "Seed 000's LSTM: one memory m."),
    ("Complete.", "Complete."),
])
def test_one_line_descriptions_end_on_a_finished_clause(text, expected):
    assert cli.one_line(text) == expected


def test_equations_plain(capsys):
    code, out, _ = run(capsys, "equations", "gru")
    assert code == 0
    assert out.splitlines() == ["z = sigmoid(W_z @ [h, x] + b_z)", "r = sigmoid(W_r @ [h, x] + b_r)",
                                "h_tilde = tanh(W @ [r * h, x] + b)", "h' = (1 - z) * h + z * h_tilde"]


def test_equations_of_a_file_include_output_expressions(capsys, tmp_path):
    path = tmp_path / "ro.cell"
    path.write_text(gl.zoo.source("rnn") + "param W_y[1, n]\noutput y = W_y @ h' + b_y\n")
    code, out, _ = run(capsys, "equations", str(path))
    assert code == 0 and out.splitlines()[-1] == "y = W_y @ h' + b_y"


def test_equations_of_a_built_cell_are_printed_back():
    b = gl.CellBuilder("built")
    x, h = b.input("x", "n_in"), b.state("h", "n")
    b.update(h, gl.tanh(b.param("W") @ gl.concat(x, h) + b.param("b")))
    b.output(h)
    assert cli.equation_lines(b.build()) == ["h' = tanh(W @ [x, h] + b)"]


def test_equations_latex(capsys):
    code, out, err = run(capsys, "equations", "lstm", "--latex")
    if not has_render():
        assert code == 1 and "rendering is not available" in err
    else:
        assert code == 0 and "\\sigma" in out or "sigma" in out


# -- codegen ----------------------------------------------------------------------------------
def import_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_codegen_prints_the_module(capsys):
    code, out, _ = run(capsys, "codegen", "lstm")
    assert code == 0 and out == gl.compile(gl.zoo.get("lstm")).source
    code, out, _ = run(capsys, "codegen", "lstm", "--backward", "--no-optimize")
    assert out == gl.compile(gl.zoo.get("lstm"), optimize=False).source


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_sl"])
@pytest.mark.parametrize("optimize", [True, False])
def test_codegen_forward_only_runs_standalone(capsys, tmp_path, name, optimize):
    path = tmp_path / f"{name}_fwd.py"
    argv = ["codegen", name, "--forward-only", "-o", str(path)] + ([] if optimize else ["--no-optimize"])
    code, _, err = run(capsys, *argv)
    assert code == 0 and str(path) in err
    module = import_module(path)
    assert not hasattr(module, "backward") and "backward(" not in path.read_text().split('"""')[1]
    assert "_flat" not in path.read_text()
    cell = gl.zoo.get(name)
    params, xs, state0, _, _ = gl.testing.random_problem(cell, {s: 3 for s in cell.sizes}, T=3, B=2)
    ours = module.forward(params, xs, state0)
    ref = gl.compile(cell).forward(params, xs, state0)
    for got, want in zip(ours, ref):
        assert all(np.allclose(got[k], want[k]) for k in want)


# -- check ------------------------------------------------------------------------------------
def test_check_passes_and_prints_the_table(capsys):
    code, out, _ = run(capsys, "check", "rnn", "--sizes", "n_in=2,n=3", "--T", "3", "--B", "2")
    assert code == 0 and "PASS" in out and "n_in': 2" in out


def test_check_fails_with_exit_1(capsys, monkeypatch):
    report = gl.testing.GradCheck("x", {"W": 0.5}, 1e-7)
    monkeypatch.setattr(gl.testing, "check_grads", lambda *a, **k: report)
    code, out, _ = run(capsys, "check", "rnn")
    assert code == 1 and "FAIL" in out


@pytest.mark.parametrize("argv, message", [
    (["check", "rnn", "--sizes", "n_in=2,n=x"], "name=integer"),
    (["check", "rnn", "--sizes", "n_in=2"], "missing ['n']"),
    (["check", "rnn", "--T", "0"], "positive"),
])
def test_check_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 1 and message in err
    assert_one_error_line(err)


# -- errors -----------------------------------------------------------------------------------
def test_unknown_cell_lists_the_zoo(capsys):
    code, _, err = run(capsys, "equations", "lsmt")
    assert code == 1 and "'lsmt' is neither" in err and "lstm" in err
    assert_one_error_line(err)
    assert len(err.splitlines()) == 1


def test_missing_file(capsys):
    code, _, err = run(capsys, "codegen", "no/such.cell")
    assert code == 1 and "no such file: no/such.cell" in err


def test_a_size_given_twice_is_refused(capsys):
    code, _, err = run(capsys, "check", "rnn", "--sizes", "n_in=2,n=3,n=4")
    assert code == 1 and "n twice" in err


def test_codegen_to_dash_writes_standard_output(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "codegen", "rnn", "-o", "-")
    assert code == 0 and out == gl.compile(gl.zoo.get("rnn")).source
    assert not (tmp_path / "-").exists()


def test_a_directory_is_not_a_cell(capsys, tmp_path):
    folder = tmp_path / "cells.cell"
    folder.mkdir()
    code, _, err = run(capsys, "equations", str(folder))
    assert code == 1 and "is a directory" in err and len(err.strip().splitlines()) == 1


def test_spec_error_shows_the_line_and_caret(capsys, tmp_path):
    path = tmp_path / "bad.cell"
    path.write_text(BAD_CELL)
    code, _, err = run(capsys, "check", str(path))
    assert code == 1 and err.startswith("graphlstm: error: line 4") and "^" in err
    assert "Traceback" not in err


def test_unwritable_output_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "codegen", "rnn", "-o", str(tmp_path / "missing" / "x.py"))
    assert code == 1 and "No such file or directory" in err
    assert_one_error_line(err)


def test_interrupt_and_internal_errors_never_show_a_traceback(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_zoo", interrupted)
    assert run(capsys, "zoo")[0] == 130
    monkeypatch.setattr(cli, "cmd_zoo", broken)
    code, _, err = run(capsys, "zoo")
    assert code == 1 and "internal error (RuntimeError" in err and "boom" in err


# -- render and demo --------------------------------------------------------------------------
def test_render_without_renderer_says_so(capsys, monkeypatch):
    def missing():
        raise cli.CLIError("rendering is not available in this installation (test)")
    monkeypatch.setattr(cli, "renderer", missing)
    code, _, err = run(capsys, "render", "lstm", "-o", "x.svg")
    assert code == 1 and "rendering is not available" in err


@needs_render
@pytest.mark.parametrize("extra, suffix", [([], "svg"), (["--unroll", "2"], "svg"),
                                           (["--backward"], "svg"), (["--format", "dot"], "gv")])
def test_render_writes_files(capsys, tmp_path, extra, suffix):
    path = tmp_path / f"out.{suffix}"
    code, _, err = run(capsys, "render", "rnn", "-o", str(path), *extra)
    assert code == 0 and path.exists() and path.stat().st_size > 0


@needs_render
def test_render_unrolled_backward_draws_backprop_through_time(capsys, tmp_path):
    path = tmp_path / "bptt.svg"
    code, _, _ = run(capsys, "render", "rnn", "--unroll", "2", "--backward", "-o", str(path))
    text = path.read_text()
    assert code == 0 and "∂x@0" in text and "∂x@1" in text and "∂h@0" in text


@needs_render
def test_render_to_stdout_and_highlight(capsys):
    code, out, _ = run(capsys, "render", "rnn", "--highlight", "h")
    assert code == 0 and "<svg" in out
    code, _, err = run(capsys, "render", "rnn", "--format", "png")
    assert code == 1 and "-o FILE" in err


def test_render_rejects_unknown_suffix_and_bad_unroll(capsys):
    if has_render():
        assert "cannot tell the format" in run(capsys, "render", "rnn", "-o", "x.bmp")[2]
        assert "positive" in run(capsys, "render", "rnn", "--unroll", "0")[2]


def test_demo_writes_everything(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "-o", str(out_dir))
    assert code == 0
    for name in ("lstm.cell", "lstm_np.py", "gradcheck.txt"):
        assert (out_dir / name).exists() and str(out_dir / name) in out
    assert "PASS" in (out_dir / "gradcheck.txt").read_text()
    module = import_module(out_dir / "lstm_np.py")
    assert hasattr(module, "forward") and hasattr(module, "backward")
    if has_render():
        for name in ("lstm.svg", "lstm_unrolled.svg", "lstm_backward.svg"):
            assert (out_dir / name).read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        assert "no diagrams" in out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "graphlstm", "zoo"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "lstm" in result.stdout
