"""The one error a cell definition can raise: `SpecError`, with the line, column and a caret."""
from __future__ import annotations


class SpecError(ValueError):
    """A cell definition is wrong; `.line` and `.col` are 1-based (None when unknown).

    The message shows the offending line with a caret under the column, the way
    Python's own SyntaxError does, so that a user finds the mistake without a traceback.
    """

    def __init__(self, message: str, line: int | None = None, col: int | None = None,
                 text: str | None = None) -> None:
        self.message, self.line, self.col, self.text = message, line, col, text
        super().__init__(self._format())

    def _format(self) -> str:
        if self.line is None:
            return self.message
        where = f"line {self.line}, column {self.col}: {self.message}"
        if self.text is None:
            return where
        shown = self.text if len(self.text) <= 200 else self.text[:200] + " ..."
        caret = " " * (min(self.col or 1, 201) - 1) + "^"
        return f"{where}\n    {shown}\n    {caret}"

    def at(self, line: int, col: int, text: str) -> "SpecError":
        """The same error, placed at a position (kept if it already has one)."""
        if self.line is not None:
            return self
        return SpecError(self.message, line, col, text)
