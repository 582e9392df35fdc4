"""The one exception a bad configuration raises."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """A configuration problem, located as precisely as the source allows.

    str() reads `<path>:<line>: <key>: <message>`, leaving out the parts that are unknown, so an
    editor or a terminal can jump straight to the line.
    """

    def __init__(
        self,
        message: str,
        path: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        # Passing every field to Exception keeps the error picklable (multiprocessing, pytest-xdist).
        super().__init__(message, path, line, key)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
        elif self.line is not None:
            where = f"line {self.line}"
        parts = [p for p in (where, self.key) if p]
        return ": ".join([*parts, self.message])
