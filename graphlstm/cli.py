"""The `graphlstm` command: render, codegen, check, equations, zoo and demo.

Every command takes a CELL, a `.cell` path or a zoo name. Errors are one readable line on
stderr (a `SpecError` adds its line and caret) and a non-zero exit, never a traceback:
a newcomer's first typo should teach them the language, not Python's stack.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from .errors import SpecError

PROG = "graphlstm"
FORMATS = ("svg", "png", "pdf", "dot")


class CLIError(Exception):
    """A user-facing failure: its message is printed after `graphlstm: error:`."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (and a pointer to --help) instead of two."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# -- loading cells ----------------------------------------------------------------------------
def load_cell(spec: str):
    """A `.cell` file if `spec` names one, else the zoo cell of that name."""
    import graphlstm as gl
    path = Path(spec)
    if path.is_file():
        return gl.load(path)
    if spec in gl.zoo.names():
        return gl.zoo.get(spec)
    if path.is_dir():
        raise CLIError(f"{spec} is a directory; give a .cell file or a zoo name")
    if spec.endswith(".cell") or "/" in spec or "\\" in spec:
        raise CLIError(f"no such file: {spec}")
    raise CLIError(f"'{spec}' is neither a .cell file nor a zoo cell; "
                   f"the zoo has: {', '.join(gl.zoo.names())}")


def parse_sizes(text: str | None) -> dict[str, int] | None:
    """`"n_in=3,n=5"` -> `{"n_in": 3, "n": 5}`; a readable error on anything else."""
    if not text:
        return None
    sizes = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip().isdigit():
            raise CLIError(f"--sizes wants name=integer pairs like n_in=3,n=5; got '{item}'")
        if name.strip() in sizes:
            raise CLIError(f"--sizes gives {name.strip()} twice")
        sizes[name.strip()] = int(value)
    return sizes


def renderer() -> tuple[Callable, Callable]:
    """`(render, latex)` from graphlstm.render, or a CLIError saying rendering is missing."""
    try:
        from .render import latex, render
    except ImportError as e:
        raise CLIError(f"rendering is not available in this installation ({e})") from None
    return render, latex


def draw(target, path: str | Path | None, fmt: str, highlight=None):
    """`render`, with a missing Graphviz turned into a one-line error with its install hint."""
    render, _ = renderer()
    try:
        return render(target, path, format=fmt, highlight=highlight)
    except RuntimeError as e:
        if type(e).__name__ == "GraphvizNotFound":
            raise CLIError(str(e)) from None
        raise


# -- render -----------------------------------------------------------------------------------
def render_target(cell, unroll: int | None, backward: bool):
    """What to draw: the cell, its unrolled graph, its backward step, or both flags:
    backprop through T steps (the backward graph of the unrolled one)."""
    import graphlstm as gl
    target = cell if unroll is None else gl.unroll(cell, unroll)
    return gl.grad(target) if backward else target


def output_format(output: str | None, fmt: str | None) -> str:
    """The format from --format, else from the file's suffix, else SVG."""
    if fmt:
        return fmt
    suffix = Path(output).suffix.lstrip(".").lower() if output else ""
    if output and suffix not in FORMATS:
        raise CLIError(f"cannot tell the format of '{output}' from its suffix; "
                       f"use --format {{{','.join(FORMATS)}}}")
    return suffix or "svg"


def cmd_render(args) -> int:
    renderer()
    if args.unroll is not None and args.unroll < 1:
        raise CLIError(f"--unroll wants a positive number of steps, got {args.unroll}")
    target = render_target(load_cell(args.cell), args.unroll, args.backward)
    fmt = output_format(args.output, args.format)
    highlight = args.highlight or None
    if args.output:
        path = draw(target, args.output, fmt, highlight)
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if fmt in ("png", "pdf"):
        raise CLIError(f"{fmt} is binary: give a file with -o FILE")
    sys.stdout.write(draw(target, None, fmt, highlight))
    return 0


# -- codegen ----------------------------------------------------------------------------------
def cmd_codegen(args) -> int:
    from .codegen import generate
    source = generate(load_cell(args.cell), optimize=not args.no_optimize,
                      backward=not args.forward_only)
    if args.output and args.output != "-":             # -o - : standard output, as usual
        Path(args.output).write_text(source, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


# -- check, equations, zoo --------------------------------------------------------------------
def cmd_check(args) -> int:
    from .testing import check_grads
    if args.T < 1 or args.B < 1:
        raise CLIError("--T and --B must be positive")
    report = check_grads(load_cell(args.cell), parse_sizes(args.sizes), T=args.T, B=args.B,
                         seed=args.seed, strict=False)
    print(report)
    return 0 if report.ok else 1


def equation_lines(cell) -> list[str]:
    """The equations as written (or printed back from the graph for built cells)."""
    from .lang import format_expr
    step = cell.step
    texts = dict(step.meta.get("text", {}))
    names = {leaf: leaf.arg for leaf in step.leaves}
    names.update({node: name for name, node in step.equations})
    named = [name for name, _ in step.equations]
    named += [name for name, node in step.results if name in cell.outputs and node not in names]
    nodes = dict(step.equations) | dict(step.results)
    return [texts.get(n) or f"{n} = {format_expr(step, nodes[n], names)}" for n in named]


def cmd_equations(args) -> int:
    cell = load_cell(args.cell)
    if args.latex:
        _, latex = renderer()
        print(latex(cell))
    else:
        print("\n".join(equation_lines(cell)))
    return 0


def one_line(text: str) -> str:
    """A description cut back to its last finished clause outside parentheses (a comment's
    first line often stops mid-sentence)."""
    text = text.strip()
    if text.endswith("."):
        return text
    depth, cut = 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text[i:i + 2] in (". ", ": "):
            cut = i + (ch == ".")
    return (text[:cut] if cut else text).rstrip(":;, ")


def cmd_zoo(args) -> int:
    import graphlstm as gl
    names = gl.zoo.names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {one_line(gl.zoo.describe(name))}")
    return 0


# -- demo -------------------------------------------------------------------------------------
def demo_diagrams(cell, out: Path) -> list[tuple[Path, str]]:
    """The cell, 3 steps unrolled and the backward step, as SVG files."""
    renderer()
    jobs = [(cell, "lstm.svg", "the cell, one step"),
            (render_target(cell, 3, False), "lstm_unrolled.svg", "3 steps unrolled"),
            (render_target(cell, None, True), "lstm_backward.svg", "the backward step")]
    done = []
    for obj, name, what in jobs:
        print(f"  drawing {what} ...", file=sys.stderr)
        done.append((Path(draw(obj, out / name, "svg")), what))
    return done


def cmd_demo(args) -> int:
    import graphlstm as gl
    from .testing import check_grads
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cell = gl.zoo.get("lstm")
    (out / "lstm.cell").write_text(gl.zoo.source("lstm"), encoding="utf-8")
    try:
        wrote = demo_diagrams(cell, out)
        missing = None
    except CLIError as e:
        wrote, missing = [], str(e)
    module = gl.compile(cell).save(out / "lstm_np.py")
    report = check_grads(cell, strict=False)
    (out / "gradcheck.txt").write_text(str(report) + "\n", encoding="utf-8")
    print(report, end="\n\n")
    print(demo_summary(out, wrote, module, report, missing))
    return 0 if report.ok else 1


def demo_summary(out: Path, diagrams, module: Path, report, missing: str | None) -> str:
    """What the demo wrote where, and what to do next."""
    rows = [(str(path), what) for path, what in diagrams]
    rows += [(str(out / "lstm.cell"), "the cell's source: copy it, edit it, use it as CELL"),
             (str(module), "standalone NumPy forward + backward (imports only numpy)"),
             (str(out / "gradcheck.txt"), f"gradient check: {'PASS' if report.ok else 'FAIL'}, "
                                          f"worst relative error {report.worst:.1e}")]
    width = max(len(path) for path, _ in rows)
    lines = ["graphlstm demo: the LSTM, from its equations to checked derivative code"]
    lines += [f"  {path:<{width}}  {what}" for path, what in rows]
    if missing:
        lines.append(f"  (no diagrams: {missing})")
    lines += ["Next:",
              "  open the .svg files in a web browser (xdg-open / open, or drag them in)",
              f"  cd {out} && python -c \"import lstm_np; help(lstm_np.forward)\"",
              f"  graphlstm render {out / 'lstm.cell'} --highlight c -o my.svg",
              "  graphlstm zoo; graphlstm --help"]
    return "\n".join(lines)


# -- the parser -------------------------------------------------------------------------------
COMMANDS = {
    "render": ("draw a cell, its unrolled graph or its backward step",
               "examples:\n  graphlstm render lstm -o lstm.svg\n"
               "  graphlstm render gru --unroll 3 -o gru3.png\n"
               "  graphlstm render my.cell --backward --highlight c -o back.pdf\n"
               "Without -o, SVG (or DOT) text goes to stdout."),
    "codegen": ("write the standalone NumPy module (forward and backward)",
                "examples:\n  graphlstm codegen lstm -o lstm_np.py\n"
                "  graphlstm codegen my.cell --forward-only --no-optimize\n"
                "Without -o, the module goes to stdout. It imports only NumPy."),
    "check": ("check the derivative code against finite differences",
              "example:\n  graphlstm check lstm --sizes n_in=3,n=5 --T 4 --B 3\n"
              "Prints the worst relative error per array; exits 1 on FAIL."),
    "equations": ("print a cell's equations (as text or LaTeX)",
                  "examples:\n  graphlstm equations gru\n  graphlstm equations lstm --latex"),
    "zoo": ("list the built-in cells", "example:\n  graphlstm zoo\nThen: graphlstm render NAME"),
    "demo": ("render, generate and check the LSTM into a directory",
             "example:\n  graphlstm demo -o /tmp/demo"),
}


def add_cell(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", metavar="CELL", help="a .cell file or a zoo name (see 'graphlstm zoo')")


def render_args(p: argparse.ArgumentParser) -> None:
    add_cell(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write here (format from suffix)")
    p.add_argument("--unroll", type=int, metavar="T", help="draw T steps unrolled")
    p.add_argument("--backward", action="store_true",
                   help="draw the backward step (with --unroll: backprop through T steps)")
    p.add_argument("--format", choices=FORMATS, help="svg (default), png, pdf or dot")
    p.add_argument("--highlight", nargs="+", metavar="NAME", help="names to emphasise")


def codegen_args(p: argparse.ArgumentParser) -> None:
    add_cell(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the module here")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--backward", action="store_true", help="forward and backward (the default)")
    which.add_argument("--forward-only", action="store_true", help="forward only")
    p.add_argument("--no-optimize", action="store_true",
                   help="plain code: the graph as written, no passes")


def check_args(p: argparse.ArgumentParser) -> None:
    add_cell(p)
    p.add_argument("--sizes", metavar="n_in=3,n=5", help="sizes (default: 3, 4, 5, ...)")
    p.add_argument("--T", type=int, default=4, help="sequence length (default 4)")
    p.add_argument("--B", type=int, default=3, help="batch size (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def equations_args(p: argparse.ArgumentParser) -> None:
    add_cell(p)
    p.add_argument("--latex", action="store_true", help="LaTeX instead of text")


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR", default="graphlstm_demo",
                   help="directory to write into (default ./graphlstm_demo)")


ARGUMENTS = {"render": render_args, "codegen": codegen_args, "check": check_args,
             "equations": equations_args, "zoo": lambda p: None, "demo": demo_args}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = Parser(prog=PROG, description="Recurrent cells from four primitives: diagrams, "
                    "derivative code and gradient checks.",
                    epilog="example:\n  graphlstm demo\n  graphlstm render lstm -o lstm.svg",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, (summary, epilog) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                           epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        ARGUMENTS[name](p)
        p.set_defaults(run=globals()[f"cmd_{name}"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (errors: one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (CLIError, SpecError, ValueError, KeyError, OSError) as e:
        return fail(e)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in graphlstm: still no traceback
        return fail(e, prefix=f"internal error ({type(e).__name__}, please report)")


def fail(error: BaseException, prefix: str = "") -> int:
    """Print one `graphlstm: error:` line (a SpecError keeps its caret lines); return 1."""
    if isinstance(error, BrokenPipeError):
        return 1
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.strerror}: {error.filename}"
    text = ": ".join(part for part in (prefix, message) if part)
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
