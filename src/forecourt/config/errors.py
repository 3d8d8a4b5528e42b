"""Load errors that point at the file, line and key path of the offending value.

Every stage of loading (YAML parsing, schema validation, reference resolution, and later compile
stages owned by other packages) reports problems as `ConfigIssue` values and raises one
`ConfigError` carrying all of them, so `forecourt check` can print every problem in a single run
instead of making the user fix them one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

KeyPath = tuple[str | int, ...]
"""A position in the document: mapping keys and list indexes from the top level down."""


def format_path(path: KeyPath) -> str:
    """Render a key path the way users write it: `services[0].routes[1].paths[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file.

    `line` is 1-based; when the offending value has no line of its own (a missing field, say) it is
    the line of the nearest enclosing node, so the user always lands somewhere useful.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A config file cannot be used; `issues` lists every problem found, in file order."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
