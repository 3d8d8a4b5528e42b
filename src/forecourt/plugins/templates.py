"""Kong's `$(...)` value templates, compiled once at config load.

Kong evaluates the inside of `$(...)` as a Lua expression over read-only tables of the request.
Forecourt does not run Lua: it compiles the documented accessor forms into a small tuple of
parts, and refuses anything else at load time with a message naming what is supported:

* `$(headers.x_custom_header)`, `$(headers["X-Custom-Header"])` — request header (case-insensitive;
  in the dotted form `_` also matches `-`, as OpenResty's header table does). Repeated headers
  render joined by ", ".
* `$(query_params.page)`, `$(query_params["page-size"])` — query argument (the first one).
* `$(uri_captures.user_id)`, `$(uri_captures["user-id"])`, `$(uri_captures[1])` — route regex
  captures, named or numbered.
* `$(shared.key)` — a value another plugin put on the request context (`ctx.shared`).
* `$(consumer.username)`, `$(consumer.id)`, `$(consumer.custom_id)` — the authenticated consumer.
* `$(jwt.sub)`, `$(jwt["claim-name"])` — a claim of the verified JWT (top level only).
* `a or b or "default"` — the first of the alternatives that has a value; string literals in
  single or double quotes (Kong's escape `$('$(literal)')` is this form).
* `$(backends.user.body.id)` — aggregation only (`PATH_NAMESPACES`, allowed when a caller passes
  it in `namespaces`): a dotted path of any depth, handed to the source as one key `"user.body.id"`
  (`[0]` and `["a-b"]` steps join the same way).

A value that is absent renders as the empty string. Not supported: any other Lua (function calls,
arithmetic, `..` concatenation, `and`/`not`, lambdas, nested tables such as `jwt.a.b`).

The compiled form is independent of the plugin pipeline: it renders against any `TemplateSource`
(one method), so other features (aggregation paths and headers) reuse it with their own source.
`ContextSource` is the source for a plugin `Context`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from forecourt.pipeline.context import Context

__all__ = [
    "NAMESPACES",
    "PATH_NAMESPACES",
    "ContextSource",
    "Template",
    "TemplateError",
    "TemplateSource",
    "compile_template",
    "parse_query",
]

NAMESPACES: frozenset[str] = frozenset(
    {"headers", "query_params", "uri_captures", "shared", "consumer", "jwt"}
)
PATH_NAMESPACES: frozenset[str] = frozenset({"backends"})
"""Namespaces whose key is a dotted path of any depth (only where a caller allows them)."""
_SUPPORTED = (
    "supported: headers.<name>, query_params.<name>, uri_captures.<name>, shared.<name>, "
    'consumer.username|id|custom_id, jwt.<claim> (or the ["name"] form), string literals, '
    "and 'or' between them"
)
_CONSUMER_FIELDS = frozenset({"username", "id", "custom_id"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>\d+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[.\[\]])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


class TemplateError(ValueError):
    """A template that cannot be compiled (raised at config load)."""


class TemplateSource(Protocol):
    """Where a template's values come from: `value("headers", "x-user")` → "alice" or None."""

    def value(self, namespace: str, key: str) -> str | None: ...


class _Lookup:
    """One accessor: a namespace and the key(s) to try in it (the first present one wins)."""

    __slots__ = ("keys", "namespace")

    def __init__(self, namespace: str, keys: tuple[str, ...]) -> None:
        self.namespace = namespace
        self.keys = keys

    def __repr__(self) -> str:
        return f"{self.namespace}[{self.keys[0]!r}]"


_Alternative = _Lookup | str  # a lookup, or a string literal
_Part = str | tuple[_Alternative, ...]  # literal text, or the alternatives of one `$(...)`


class Template:
    """A compiled template; `render(source)` fills in the placeholders."""

    __slots__ = ("namespaces", "parts", "static", "text")

    def __init__(self, text: str, parts: tuple[_Part, ...]) -> None:
        self.text = text
        self.parts = parts
        self.static: str | None = (
            "".join(p for p in parts if isinstance(p, str))
            if all(isinstance(p, str) for p in parts)
            else None
        )
        self.namespaces = frozenset(
            alt.namespace for p in parts if not isinstance(p, str) for alt in p if isinstance(alt, _Lookup)
        )

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def render(self, source: TemplateSource | None) -> str:
        if self.static is not None:
            return self.static
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            out.append(_first_value(part, source))
        return "".join(out)


def _first_value(alternatives: tuple[_Alternative, ...], source: TemplateSource | None) -> str:
    for alt in alternatives:
        if isinstance(alt, str):
            return alt
        if source is None:
            continue
        for key in alt.keys:
            found = source.value(alt.namespace, key)
            if found is not None:
                return found
    return ""


def compile_template(text: str, namespaces: Iterable[str] = NAMESPACES) -> Template:
    """Compile `text`; raise `TemplateError` naming the offending placeholder when unsupported."""
    allowed = frozenset(namespaces)
    parts: list[_Part] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        start = text.find("$(", i)
        if start < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:start])
        end = closing_paren(text, start + 2)
        if end < 0:
            raise TemplateError(f"unterminated template placeholder in {text!r}")
        expression = text[start + 2 : end]
        if literal:
            joined = "".join(literal)
            if joined:
                parts.append(joined)
            literal = []
        parts.append(_compile_expression(expression, allowed))
        i = end + 1
    joined = "".join(literal)
    if joined:
        parts.append(joined)
    return Template(text, tuple(parts))


def closing_paren(text: str, i: int, quotes: str = "\"'") -> int:
    """Index of the `)` closing a placeholder whose content starts at `i`, skipping text quoted
    with any of `quotes` (JMESPath callers add the backtick of its literals); -1 when unclosed."""
    depth = 0
    quote = ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in quotes:
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _tokens(expression: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    stripped = expression.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            break
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unsupported(expression: str, why: str) -> TemplateError:
    return TemplateError(f"unsupported template expression $({expression}): {why}; {_SUPPORTED}")


def _compile_expression(expression: str, allowed: frozenset[str]) -> tuple[_Alternative, ...]:
    tokens = _tokens(expression)
    if not tokens:
        raise _unsupported(expression, "empty placeholder")
    alternatives: list[_Alternative] = []
    pos = 0
    while True:
        alt, pos = _alternative(expression, tokens, pos, allowed)
        alternatives.append(alt)
        if pos == len(tokens):
            break
        if tokens[pos] != ("name", "or"):
            raise _unsupported(expression, f"unexpected {tokens[pos][1]!r}")
        pos += 1
        if pos == len(tokens):
            raise _unsupported(expression, "nothing after 'or'")
    return tuple(alternatives)


def _alternative(
    expression: str, tokens: list[tuple[str, str]], pos: int, allowed: frozenset[str]
) -> tuple[_Alternative, int]:
    kind, value = tokens[pos]
    if kind == "string":
        return _ESCAPE.sub(r"\1", value[1:-1]), pos + 1
    if kind == "number":
        return value, pos + 1
    if kind != "name" or value == "or":
        raise _unsupported(expression, f"unexpected {value!r}")
    namespace = value
    if namespace not in allowed:
        raise _unsupported(expression, f"unknown name {namespace!r}")
    pos += 1
    if pos >= len(tokens):
        raise _unsupported(expression, f"{namespace} needs a key, as in {namespace}.name")
    kind, value = tokens[pos]
    dotted = False
    if (kind, value) == ("punct", "."):
        if pos + 1 >= len(tokens) or tokens[pos + 1][0] != "name":
            raise _unsupported(expression, f"a name must follow '{namespace}.'")
        key = tokens[pos + 1][1]
        dotted = True
        pos += 2
    elif (kind, value) == ("punct", "["):
        if pos + 2 >= len(tokens) or tokens[pos + 2] != ("punct", "]"):
            raise _unsupported(expression, f'expected {namespace}["name"]')
        key_kind, key = tokens[pos + 1]
        if key_kind == "string":
            key = _ESCAPE.sub(r"\1", key[1:-1])
        elif key_kind != "number":
            raise _unsupported(expression, f"expected a quoted key or a number in {namespace}[...]")
        pos += 3
    else:
        raise _unsupported(expression, f"{namespace} needs a key, as in {namespace}.name")
    if namespace in PATH_NAMESPACES:
        steps = [key]
        while pos < len(tokens) and tokens[pos][0] == "punct":
            step, pos = _path_step(expression, tokens, pos, namespace)
            steps.append(step)
        return _Lookup(namespace, (".".join(steps),)), pos
    if pos < len(tokens) and tokens[pos][0] == "punct":
        if tokens[pos : pos + 2] == [("punct", "."), ("punct", ".")]:
            raise _unsupported(expression, "'..' concatenation is not supported (write text outside $(...))")
        raise _unsupported(expression, "nested lookups are not supported")
    if namespace == "consumer" and key not in _CONSUMER_FIELDS:
        raise _unsupported(expression, f"consumer has no field {key!r} (username, id, custom_id)")
    return _Lookup(namespace, _keys(namespace, key, dotted)), pos


def _path_step(expression: str, tokens: list[tuple[str, str]], pos: int, namespace: str) -> tuple[str, int]:
    """One `.name`, `[0]` or `["name"]` step of a path namespace's key."""
    if tokens[pos] == ("punct", ".") and pos + 1 < len(tokens) and tokens[pos + 1][0] in ("name", "number"):
        return tokens[pos + 1][1], pos + 2
    if tokens[pos] == ("punct", "[") and pos + 2 < len(tokens) and tokens[pos + 2] == ("punct", "]"):
        kind, value = tokens[pos + 1]
        if kind == "string":
            return _ESCAPE.sub(r"\1", value[1:-1]), pos + 3
        if kind == "number":
            return value, pos + 3
    raise _unsupported(expression, f'expected .name, [0] or ["name"] in the {namespace} path')


def _keys(namespace: str, key: str, dotted: bool) -> tuple[str, ...]:
    if namespace != "headers":
        return (key,)
    lowered = key.lower()
    hyphenated = lowered.replace("_", "-")
    return (lowered,) if hyphenated == lowered else (lowered, hyphenated)


# ---------------------------------------------------------------------- the plugin-context source
class ContextSource:
    """Template values from a request's plugin `Context`, as they were when this was created.

    Kong renders from a read-only snapshot taken before a transformation starts, so later changes
    to headers or the query do not show in templates; the header and query tables are copied here
    (lazily, on first use) from the values at creation.
    """

    __slots__ = ("_ctx", "_headers", "_query", "_raw_headers", "_raw_query")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._raw_headers = tuple(ctx.req.headers)
        self._raw_query = ctx.req.query
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def value(self, namespace: str, key: str) -> str | None:
        getter = _GETTERS.get(namespace)
        return getter(self, key) if getter is not None else None

    def _header(self, key: str) -> str | None:
        table = self._headers
        if table is None:
            table = {}
            for name, value in self._raw_headers:
                lname = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                table[lname] = f"{table[lname]}, {text}" if lname in table else text
            self._headers = table
        return table.get(key)

    def _query_param(self, key: str) -> str | None:
        table = self._query
        if table is None:
            table = {}
            for name, value in parse_query(self._raw_query):
                table.setdefault(name, "" if value is None else value)
            self._query = table
        return table.get(key)

    def _uri_capture(self, key: str) -> str | None:
        match = self._ctx.req.match
        return match.uri_captures.get(key) if match is not None else None

    def _shared(self, key: str) -> str | None:
        return _text(self._ctx.shared.get(key))

    def _consumer(self, key: str) -> str | None:
        consumer = self._ctx.consumer
        if consumer is None:
            return None
        return _text(getattr(consumer, key, None))

    def _jwt(self, key: str) -> str | None:
        claims = self._ctx.jwt_claims
        return _text(claims.get(key)) if claims else None


_GETTERS: dict[str, Callable[[ContextSource, str], str | None]] = {
    "headers": ContextSource._header,
    "query_params": ContextSource._query_param,
    "uri_captures": ContextSource._uri_capture,
    "shared": ContextSource._shared,
    "consumer": ContextSource._consumer,
    "jwt": ContextSource._jwt,
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def parse_query(raw: bytes) -> list[tuple[str, str | None]]:
    """`?a=1&b&c=%20` → [("a", "1"), ("b", None), ("c", " ")] (None: an argument without `=`)."""
    text = raw[1:] if raw[:1] == b"?" else raw
    out: list[tuple[str, str | None]] = []
    if not text:
        return out
    for piece in text.decode("latin-1").split("&"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        out.append((unquote_plus(name), unquote_plus(value) if eq else None))
    return out
