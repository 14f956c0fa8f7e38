"""The one error a cell definition can raise: `SpecError`, with the line, column and a caret."""
from __future__ import annotations

WIDTH = 200     # the most characters of a line a message shows


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
        shown, padding = window(self.text, self.col or 1)
        return f"{where}\n    {shown}\n    {padding}^"

    def at(self, line: int, col: int, text: str) -> "SpecError":
        """The same error, placed at a position (kept if it already has one)."""
        if self.line is not None:
            return self
        return SpecError(self.message, line, col, text)


def window(text: str, col: int) -> tuple[str, str]:
    """The part of a line a message shows, and the padding that puts a caret under `col`.

    A line longer than WIDTH is cut to WIDTH characters around the column, `...` marking each
    cut, so the offending place is on screen however far right it is. Tabs before the column
    are copied into the padding: a terminal then draws both lines' tabs to the same stops and
    the caret lines up, while `.col` still counts a tab as one character.
    """
    index = min(max(col, 1) - 1, len(text))     # past the end: just after the last character
    start = 0
    if len(text) > WIDTH:
        start = max(0, min(index - WIDTH // 2, len(text) - WIDTH))
    end = min(len(text), start + WIDTH)
    head = "... " if start > 0 else ""
    tail = " ..." if end < len(text) else ""
    padding = " " * len(head) + "".join("\t" if ch == "\t" else " " for ch in text[start:index])
    return head + text[start:end] + tail, padding
