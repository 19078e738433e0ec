"""Errors the simulator's input layer raises, carrying what a user needs to fix the input.

A bad trace file is a user mistake, not a bug: the message names the file, the line (1-based,
the header is line 1) and what was expected, so nobody has to read a traceback to fix it.
"""

from __future__ import annotations


class TraceFormatError(ValueError):
    """A trace file that cannot be read as the format asked for (or detected).

    ``str(e)`` is ``"{path}:{line}: {why}"``, or ``"{path}: {why}"`` when no line applies (a
    missing file, an empty file, an id that no row has), the shape compilers and linters use so
    editors can jump to the spot.
    """

    def __init__(self, path: str, line: int | None, why: str) -> None:
        self.path = str(path)
        self.line = line
        self.why = why
        super().__init__(self._render())

    def _render(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.why}"
        return f"{self.path}:{self.line}: {self.why}"

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[type[TraceFormatError], tuple[str, int | None, str]]:
        # Exceptions pickle through their args; ours has three named fields instead.
        return (type(self), (self.path, self.line, self.why))


class FetchError(RuntimeError):
    """Downloading or unpacking a public trace failed (HTTP error, checksum mismatch, bad archive).

    ``str(e)`` is ``"{url}: {why}"`` so the user sees which address failed and how.
    """

    def __init__(self, url: str, why: str) -> None:
        self.url = url
        self.why = why
        super().__init__(f"{url}: {why}")

    def __reduce__(self) -> tuple[type[FetchError], tuple[str, str]]:
        return (type(self), (self.url, self.why))
