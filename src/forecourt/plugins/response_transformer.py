"""`response-transformer`: change response headers and JSON bodies (Kong's plugin).

Headers: remove, rename, replace (only if present), add (only if absent), append (another value),
in that order, on every response of the route, gateway-made ones included. JSON bodies (a
`Content-Type` of `application/json` or `application/*+json`, holding a JSON object): remove,
rename, replace, add, append on top-level keys, values typed by `json_types` (`string` by default,
`number`, `boolean`). The body is buffered whole for this; other bodies stream through untouched.

Differences from Kong: values may be `$(...)` templates rendered from the request (Kong's
response-transformer takes values literally); bodies with a `Content-Encoding` are passed through
unchanged; a body that is not a JSON object is left as it is (Kong logs a warning, too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, ConfigDict, Field

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, ResponseHead
from forecourt.plugins.request_transformer import (
    ArgPair as JsonPair,
)
from forecourt.plugins.request_transformer import (
    HeaderName,
    NameRule,
    append_value,
    compile_rules,
    header_pair_validator,
    header_rename_validator,
)
from forecourt.plugins.templates import ContextSource

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

JsonType = Literal["boolean", "number", "string"]
# Framing headers the proxy relies on while it relays the body.
_FRAMING = frozenset({"transfer-encoding", "connection", "content-length"})
_BUFFER = "response-transformer.body"  # ctx.shared key: body chunks while buffering, or None


def _settable_header(name: str) -> None:
    if name.lower() in _FRAMING:
        raise ValueError(f"'{name}' frames the response and cannot be set by response-transformer")


HeaderPair = Annotated[str, AfterValidator(header_pair_validator(_settable_header))]
HeaderRename = Annotated[str, AfterValidator(header_rename_validator(_settable_header))]


class RemoveRules(PluginConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    headers: list[HeaderName] = Field(default_factory=list, description="Headers to remove.")
    json_: list[str] = Field(default_factory=list, alias="json", description="Top-level JSON keys to remove.")


class RenameRules(PluginConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    headers: list[HeaderRename] = Field(default_factory=list, description="old:new header names.")
    json_: list[JsonPair] = Field(default_factory=list, alias="json", description="old:new JSON keys.")


class TypedRules(PluginConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    headers: list[HeaderPair] = Field(default_factory=list, description="name:value headers.")
    json_: list[JsonPair] = Field(
        default_factory=list, alias="json", description="key:value JSON properties."
    )
    json_types: list[JsonType] = Field(
        default_factory=list, description="Type of each json value, by position (default string)."
    )


class ResponseTransformerConfig(PluginConfig):
    remove: RemoveRules = Field(default_factory=RemoveRules)
    rename: RenameRules = Field(default_factory=RenameRules)
    replace: TypedRules = Field(default_factory=TypedRules)
    add: TypedRules = Field(default_factory=TypedRules)
    append: TypedRules = Field(default_factory=TypedRules)


def cast_json(value: str, json_type: str) -> Any:
    """Kong's cast of a configured value: `number` (None if not one), `boolean` ("true"), `string`."""
    if json_type == "number":
        try:
            number = float(value)
        except ValueError:
            return None
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    if json_type == "boolean":
        return value == "true"
    return value


class _TypedRule:
    __slots__ = ("rule", "type")

    def __init__(self, rule: NameRule, json_type: str) -> None:
        self.rule = rule
        self.type = json_type

    def value(self, source: TemplateSource | None) -> Any:
        return cast_json(self.rule.render(source), self.type)


def _typed(entries: list[str], types: list[JsonType]) -> tuple[_TypedRule, ...]:
    rules = compile_rules(entries, pair=True)
    return tuple(_TypedRule(r, types[i] if i < len(types) else "string") for i, r in enumerate(rules))


def is_json_content_type(value: bytes | None) -> bool:
    """`application/json`, or a `+json` structured syntax type, in any of the listed types."""
    if value is None:
        return False
    for part in value.split(b","):
        media = part.split(b";", 1)[0].strip().lower()
        if media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json")):
            return True
    return False


class ResponseTransformerPlugin(Plugin[ResponseTransformerConfig]):
    """Edits response headers; with JSON rules, also buffers and edits JSON bodies."""

    name = "response-transformer"
    priority = 800
    Config = ResponseTransformerConfig

    def __new__(
        cls, config: ResponseTransformerConfig, scope: PluginScope, env: PluginEnv
    ) -> ResponseTransformerPlugin:
        body_rules = (
            config.remove.json_
            or config.rename.json_
            or config.replace.json_
            or config.add.json_
            or config.append.json_
        )
        chosen = _JsonResponseTransformerPlugin if cls is ResponseTransformerPlugin and body_rules else cls
        return super().__new__(chosen)

    def __init__(self, config: ResponseTransformerConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        c = config
        self._remove_headers = tuple(h.lower().encode("latin-1") for h in c.remove.headers)
        self._rename_headers = compile_rules(c.rename.headers, pair=True)
        self._replace_headers = compile_rules(c.replace.headers, pair=True)
        self._add_headers = compile_rules(c.add.headers, pair=True)
        self._append_headers = compile_rules(c.append.headers, pair=True)
        self._remove_json = tuple(c.remove.json_)
        self._rename_json = compile_rules(c.rename.json_, pair=True)
        self._replace_json = _typed(c.replace.json_, c.replace.json_types)
        self._add_json = _typed(c.add.json_, c.add.json_types)
        self._append_json = _typed(c.append.json_, c.append.json_types)
        rules = (
            *self._rename_headers,
            *self._replace_headers,
            *self._add_headers,
            *self._append_headers,
            *self._rename_json,
            *(t.rule for t in (*self._replace_json, *self._add_json, *self._append_json)),
        )
        self._dynamic = any(r.value is not None and r.value.static is None for r in rules)

    def _source(self, ctx: Context) -> TemplateSource | None:
        return ContextSource(ctx) if self._dynamic else None

    def response(self, ctx: Context, head: ResponseHead) -> None:
        source = self._source(ctx)
        for lower in self._remove_headers:
            head.remove(lower)
        for rule in self._rename_headers:
            lower = rule.lower.encode("latin-1")
            values = [v for n, v in head.headers if n.lower() == lower]
            if values:
                new = rule.render(source).encode("latin-1")
                head.remove(lower)
                head.remove(new)
                for value in values:
                    head.add(new, value)
        for rule in self._replace_headers:
            name = rule.name.encode("latin-1")
            if head.get(name) is not None:
                head.set(name, rule.render(source).encode("latin-1"))
        for rule in self._add_headers:
            name = rule.name.encode("latin-1")
            if head.get(name) is None:
                head.set(name, rule.render(source).encode("latin-1"))
        for rule in self._append_headers:
            head.add(rule.name.encode("latin-1"), rule.render(source).encode("latin-1"))

    def transform_json(self, raw: bytes, source: TemplateSource | None) -> bytes | None:
        """The transformed body, or None to leave it as it is (not a JSON object)."""
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        for key in self._remove_json:
            document.pop(key, None)
        for rule in self._rename_json:
            if rule.name in document:
                document[rule.render(source)] = document.pop(rule.name)
        for typed in self._replace_json:
            name = typed.rule.name
            value = typed.value(source)
            if _present(document, name) and value is not None:
                document[name] = value
        for typed in self._add_json:
            name = typed.rule.name
            value = typed.value(source)
            if not _present(document, name) and value is not None:
                document[name] = value
        for typed in self._append_json:
            value = typed.value(source)
            if value is not None:
                document[typed.rule.name] = append_value(document.get(typed.rule.name), value)
        return orjson.dumps(document)


def _present(document: dict[str, Any], name: str) -> bool:
    """Lua truthiness of `json_body[name]`: absent and `false` are not there; `null` is."""
    return name in document and document[name] is not False


class _JsonResponseTransformerPlugin(ResponseTransformerPlugin):
    """The plugin when JSON rules are configured: only then does it filter bodies."""

    def response(self, ctx: Context, head: ResponseHead) -> None:
        super().response(ctx, head)
        encoding = head.get(b"content-encoding")
        if is_json_content_type(head.get(b"content-type")) and (
            encoding is None or encoding.strip().lower() == b"identity"
        ):
            ctx.shared[_BUFFER] = []

    def body(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        buffered: list[bytes] | None = ctx.shared.get(_BUFFER)
        if buffered is None:
            return chunk
        if chunk:
            buffered.append(chunk)
        if not last:
            return b""
        ctx.shared[_BUFFER] = None
        raw = b"".join(buffered)
        transformed = self.transform_json(raw, self._source(ctx))
        return raw if transformed is None else transformed
