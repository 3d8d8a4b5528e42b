"""Where each value of a loaded document came from, kept for error messages after validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from forecourt.config.errors import ConfigIssue, KeyPath, format_path


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The file name and a key path → line map of one loaded document.

    Compile stages that run after loading (route regexes, TLS certificates) use it to point their
    own errors at the line the user wrote.
    """

    file: str
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest enclosing node when it has none of its own."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        """A `ConfigIssue` for `path` in this file."""
        return ConfigIssue(self.file, self.line_of(path), format_path(path), message)
