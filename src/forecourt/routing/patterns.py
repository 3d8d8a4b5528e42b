"""Kong regex paths: PCRE spelling in, Python `re` out.

A Kong path starting with `~` is a regular expression in PCRE syntax, matched against the
normalised request path and anchored at its start (Kong's traditional router used PCRE's anchored
flag; the 3.x ATC router prepends `^`). We anchor with `Pattern.match`, which anchors every
alternative; Kong 3.x's textual `^` only anchors the first one of a top-level `a|b`, which we treat
as a Kong bug rather than semantics to copy.

Translation covers the PCRE spellings Kong users write that Python spells differently: named
groups `(?<name>...)` and `(?'name'...)`, named back-references `\\k<name>`, `\\k'name'`,
`\\k{name}`, and `\\Q...\\E` quoting. Lookbehinds `(?<=` / `(?<!` are left alone (Kong's own
`?<` → `?P<` rewrite breaks them). PCRE features Python lacks (recursion, `\\h`, `\\R`, branch reset,
`\\p{...}`) surface as `InvalidRoutePattern` with Python's reason.
"""

from __future__ import annotations

import re

from forecourt.routing.errors import InvalidRoutePattern

__all__ = ["REGEX_MARK", "compile_kong_regex", "is_regex_path", "literal_prefix"]

REGEX_MARK = "~"
_META = frozenset("\\^$.|?*+()[]{}")
_QUANTIFIERS = frozenset("?*+{")


def is_regex_path(path: str) -> bool:
    """Kong's rule: a route path is a regex exactly when it starts with `~`."""
    return path.startswith(REGEX_MARK)


def compile_kong_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Kong (PCRE) path regex, given as the route path (`~/users/\\d+`) or its body.

    Use `.match(path)` on the result: that is what anchors it at the start of the path.
    """
    pattern = pattern.removeprefix(REGEX_MARK)
    try:
        translated = _translate(pattern)
        return re.compile(translated)
    except (re.error, ValueError) as exc:
        raise InvalidRoutePattern(f"invalid regex path {REGEX_MARK + pattern!r}: {exc}") from exc


def _read_name(text: str, start: int, close: str) -> tuple[str, int]:
    """Read a group name ending at `close`; return it and the index after `close`."""
    end = text.find(close, start)
    if end == -1:
        raise ValueError(f"unterminated group name at position {start}")
    return text[start:end], end + 1


def _translate(body: str) -> str:
    """Rewrite PCRE-only syntax into Python's, respecting escapes and character classes."""
    out: list[str] = []
    i, n = 0, len(body)
    in_class = False
    while i < n:
        char = body[i]
        if char == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt == "Q":
                end = body.find("\\E", i + 2)
                stop = n if end == -1 else end
                out.append(re.escape(body[i + 2 : stop]))
                i = n if end == -1 else end + 2
                continue
            if nxt == "k" and not in_class and body[i + 2 : i + 3] in ("<", "'", "{"):
                close = {"<": ">", "'": "'", "{": "}"}[body[i + 2]]
                name, i = _read_name(body, i + 3, close)
                out.append(f"(?P={name})")
                continue
            out.append(body[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
            out.append(char)
            i += 1
            continue
        if char == "[":
            # A `]` right after `[` or `[^` is a literal in both PCRE and Python.
            start = i + 2 if body.startswith("[^", i) else i + 1
            if body[start : start + 1] == "]":
                start += 1
            out.append(body[i:start])
            i = start
            in_class = True
            continue
        if body.startswith("(?<", i) and body[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        if body.startswith("(?'", i):
            name, i = _read_name(body, i + 3, "'")
            out.append(f"(?P<{name}>")
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _has_top_level_alternation(body: str) -> bool:
    depth, i, n = 0, 0, len(body)
    in_class = False
    while i < n:
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 2 if body.startswith("[^", i) else 1
            i += 1 if body[i : i + 1] == "]" else 0
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


def literal_prefix(body: str) -> str:
    """The literal text every match of the anchored regex must start with ("" if unknown).

    Used only to index regex routes next to prefix routes; an empty answer is always safe.
    """
    if _has_top_level_alternation(body):
        return ""
    i = 1 if body.startswith("^") else 0
    n = len(body)
    literal: list[str] = []
    while i < n:
        char = body[i]
        step = 1
        if char == "\\":
            nxt = body[i + 1 : i + 2]
            if not nxt or nxt.isalnum() or not nxt.isascii():
                break
            char, step = nxt, 2
        elif char in _META:
            break
        if body[i + step : i + step + 1] in _QUANTIFIERS and i + step < n:
            break
        literal.append(char)
        i += step
    return "".join(literal)
