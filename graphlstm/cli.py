"""The `graphlstm` command (filled in by the CLI issue)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("graphlstm: commands come with the CLI issue", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
