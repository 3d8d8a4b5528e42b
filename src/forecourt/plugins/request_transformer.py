"""`request-transformer`: change the upstream request (Kong's request-transformer plugin).

Each of `remove`, `rename`, `replace`, `add`, `append` lists changes to `headers`, `querystring`
and `body`, applied in that order of operations; `replace.uri` sets the upstream path and
`http_method` the upstream method. Entries are `name` (remove) or `name:value` (`old:new` for
rename), split at the first colon as Kong does. Values may be `$(...)` templates
(`forecourt.plugins.templates`), rendered from the request as it was before any change.

Order within a request, as Kong 3.x: uri, method, headers, body, querystring.

* Body changes apply to `application/json` (a JSON object) and
  `application/x-www-form-urlencoded` bodies, and only on routes that buffer request bodies (the
  default); multipart bodies pass unchanged (Kong edits them too).
* Headers the proxy rebuilds itself (Host, Content-Length, X-Forwarded-*, Via, hop-by-hop) cannot
  be set; such entries are refused at load. Removing them drops the client's values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import orjson
from pydantic import AfterValidator, Field, field_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope
from forecourt.plugins.templates import ContextSource, Template, TemplateError, compile_template, parse_query

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the proxy writes itself: a value set here would never reach the upstream.
UNSETTABLE_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "via",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-real-ip",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "TRACE"})


# ---------------------------------------------------------------------- shared rule parsing
def split_pair(entry: str) -> tuple[str, str]:
    """Kong's `^([^:]+):*(.-)$`: the name up to the first colon, the value after all colons there."""
    name, _, rest = entry.partition(":")
    return name, rest.lstrip(":")


def check_pair(entry: str) -> None:
    if not re.match(r"^[^:]+:.*$", entry):
        raise ValueError(f"'{entry}' is not a name:value pair")


def check_header_name(name: str) -> None:
    if not _TOKEN.match(name):
        raise ValueError(f"'{name}' is not a valid header")


def check_template(value: str) -> None:
    try:
        compile_template(value)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None


def append_value(current: Any, value: Any) -> list[Any]:
    """Kong's append: a string becomes a list of both, a list grows, anything else is replaced."""
    if isinstance(current, str):
        return [current, value]
    if isinstance(current, list):
        return [*current, value]
    return [value]


class NameRule:
    """A compiled `name` or `name:value` entry (the value a template)."""

    __slots__ = ("lower", "name", "value")

    def __init__(self, entry: str, *, pair: bool) -> None:
        if pair:
            name, value = split_pair(entry)
            self.value: Template | None = compile_template(value)
        else:
            name, self.value = entry, None
        self.name = name
        self.lower = name.lower()

    def render(self, source: TemplateSource | None) -> str:
        return self.value.render(source) if self.value is not None else ""


def compile_rules(entries: Sequence[str], *, pair: bool) -> tuple[NameRule, ...]:
    return tuple(NameRule(e, pair=pair) for e in entries)


def _needs_source(*groups: Sequence[NameRule]) -> bool:
    return any(r.value is not None and r.value.static is None for g in groups for r in g)


# ---------------------------------------------------------------------- config
def _settable(name: str) -> None:
    if name.lower() in UNSETTABLE_REQUEST_HEADERS:
        raise ValueError(f"'{name}' is set by the proxy itself and cannot be set by request-transformer")


def _header_name(entry: str) -> str:
    check_header_name(entry)
    return entry


def header_pair_validator(settable: Callable[[str], None]) -> Callable[[str], str]:
    """`Name:value` entries: a valid header name the plugin may set, a valid template value.

    Shared with response-transformer, which differs only in which names it may set.
    """

    def validate(entry: str) -> str:
        check_pair(entry)
        name, value = split_pair(entry)
        check_header_name(name)
        settable(name)
        check_template(value)
        return entry

    return validate


def header_rename_validator(settable: Callable[[str], None]) -> Callable[[str], str]:
    """`old:new` header renames: both valid names, and the new one settable by the plugin."""

    def validate(entry: str) -> str:
        check_pair(entry)
        old, new = split_pair(entry)
        check_header_name(old)
        check_header_name(new)
        settable(new)
        return entry

    return validate


def _arg_pair(entry: str) -> str:
    check_pair(entry)
    check_template(split_pair(entry)[1])
    return entry


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderPair = Annotated[str, AfterValidator(header_pair_validator(_settable))]
HeaderRename = Annotated[str, AfterValidator(header_rename_validator(_settable))]
ArgPair = Annotated[str, AfterValidator(_arg_pair)]


class RemoveRules(PluginConfig):
    body: list[str] = Field(default_factory=list, description="Body parameters to remove.")
    headers: list[HeaderName] = Field(default_factory=list, description="Headers to remove.")
    querystring: list[str] = Field(default_factory=list, description="Query arguments to remove.")


class RenameRules(PluginConfig):
    body: list[ArgPair] = Field(default_factory=list, description="old:new body parameter names.")
    headers: list[HeaderRename] = Field(default_factory=list, description="old:new header names.")
    querystring: list[ArgPair] = Field(default_factory=list, description="old:new query argument names.")


class ReplaceRules(PluginConfig):
    body: list[ArgPair] = Field(default_factory=list, description="name:value, only if the parameter exists.")
    headers: list[HeaderPair] = Field(
        default_factory=list, description="name:value, only if the header exists."
    )
    querystring: list[ArgPair] = Field(
        default_factory=list, description="name:value, only if the argument exists."
    )
    uri: str | None = Field(None, description="The upstream path (a template).")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value


class AddRules(PluginConfig):
    body: list[ArgPair] = Field(
        default_factory=list, description="name:value, only if the parameter is absent."
    )
    headers: list[HeaderPair] = Field(
        default_factory=list, description="name:value, only if the header is absent."
    )
    querystring: list[ArgPair] = Field(default_factory=list, description="name:value, only if absent.")


class AppendRules(AddRules):
    """name:value added even when the name is already present (another value)."""


class RequestTransformerConfig(PluginConfig):
    http_method: str | None = Field(None, description="The upstream method, e.g. POST.")
    remove: RemoveRules = Field(default_factory=RemoveRules)
    rename: RenameRules = Field(default_factory=RenameRules)
    replace: ReplaceRules = Field(default_factory=ReplaceRules)
    add: AddRules = Field(default_factory=AddRules)
    append: AppendRules = Field(default_factory=AppendRules)

    @field_validator("http_method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Z]+$", value):
            raise ValueError(f"invalid value: {value} (an HTTP method in upper case, e.g. POST)")
        return value


# ---------------------------------------------------------------------- query and forms
def encode_query(args: Sequence[tuple[str, str | None]]) -> str:
    """Arguments back to `a=1&b&c=%20` (RFC 3986 unreserved characters kept, like ngx.encode_args)."""
    return "&".join(
        quote(name, safe="-._~")
        if value is None
        else f"{quote(name, safe='-._~')}={quote(value, safe='-._~')}"
        for name, value in args
    )


def _has(args: list[tuple[str, str | None]], name: str) -> bool:
    return any(n == name for n, _ in args)


def transform_args(
    args: list[tuple[str, str | None]], rules: _ArgRules, source: TemplateSource | None
) -> bool:
    """Apply remove, rename, replace, add, append to decoded arguments; True if any changed."""
    changed = False
    for rule in rules.remove:
        if _has(args, rule.name):
            args[:] = [(n, v) for n, v in args if n != rule.name]
            changed = True
    for rule in rules.rename:
        if _has(args, rule.name):
            new = rule.render(source)
            args[:] = [(new if n == rule.name else n, v) for n, v in args if n != new or new == rule.name]
            changed = True
    for rule in rules.replace:
        if _has(args, rule.name):
            value = rule.render(source)
            kept = [(n, v) for n, v in args if n != rule.name]
            index = next(i for i, (n, _) in enumerate(args) if n == rule.name)
            kept.insert(min(index, len(kept)), (rule.name, value))
            args[:] = kept
            changed = True
    for rule in rules.add:
        if not _has(args, rule.name):
            args.append((rule.name, rule.render(source)))
            changed = True
    for rule in rules.append:
        args.append((rule.name, rule.render(source)))
        changed = True
    return changed


class _ArgRules:
    """One target's (query, form body or header) compiled rules, by operation."""

    __slots__ = ("add", "append", "remove", "rename", "replace")

    def __init__(
        self,
        remove: Sequence[str],
        rename: Sequence[str],
        replace: Sequence[str],
        add: Sequence[str],
        append: Sequence[str],
    ) -> None:
        self.remove = compile_rules(remove, pair=False)
        self.rename = compile_rules(rename, pair=True)
        self.replace = compile_rules(replace, pair=True)
        self.add = compile_rules(add, pair=True)
        self.append = compile_rules(append, pair=True)

    def __bool__(self) -> bool:
        return bool(self.remove or self.rename or self.replace or self.add or self.append)

    def dynamic(self) -> bool:
        return _needs_source(self.rename, self.replace, self.add, self.append)


# ---------------------------------------------------------------------- the plugin
class RequestTransformerPlugin(Plugin[RequestTransformerConfig]):
    """Edits the upstream request: uri, method, headers, body, querystring."""

    name = "request-transformer"
    priority = 801
    Config = RequestTransformerConfig

    def __init__(self, config: RequestTransformerConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        c = config
        self._headers = _ArgRules(
            c.remove.headers, c.rename.headers, c.replace.headers, c.add.headers, c.append.headers
        )
        self._query = _ArgRules(
            c.remove.querystring,
            c.rename.querystring,
            c.replace.querystring,
            c.add.querystring,
            c.append.querystring,
        )
        self._body = _ArgRules(c.remove.body, c.rename.body, c.replace.body, c.add.body, c.append.body)
        self._uri: Template | None = compile_template(c.replace.uri) if c.replace.uri is not None else None
        self._method = c.http_method
        self._dynamic = (
            self._headers.dynamic()
            or self._query.dynamic()
            or self._body.dynamic()
            or (self._uri is not None and self._uri.static is None)
        )

    def access(self, ctx: Context) -> None:
        source = ContextSource(ctx) if self._dynamic else None
        req = ctx.req
        if self._uri is not None:
            ctx.upstream_path = self._uri.render(source)
        query: list[tuple[str, str | None]] | None = None
        if self._method is not None:
            query = self._transform_method(ctx)
        if self._headers:
            self._transform_headers(ctx, source)
        if self._body and req.complete:
            self._transform_body(ctx, source)
        if self._query:
            args = query if query is not None else parse_query(req.query)
            if transform_args(args, self._query, source) or query is not None:
                encoded = encode_query(args)
                req.query = ("?" + encoded).encode("latin-1") if encoded else b""
        elif query is not None:
            encoded = encode_query(query)
            req.query = ("?" + encoded).encode("latin-1") if encoded else b""

    def _transform_method(self, ctx: Context) -> list[tuple[str, str | None]] | None:
        """Set the method; a GET/HEAD/TRACE gets a form body's arguments added to its query."""
        method = self._method
        assert method is not None
        req = ctx.req
        req.method = method
        if method not in _BODYLESS_METHODS or _body_kind(ctx) != "form" or not req.complete:
            return None
        form = parse_query(b"".join(req.body))
        if not form:
            return None
        return [*parse_query(req.query), *form]

    def _transform_headers(self, ctx: Context, source: TemplateSource | None) -> None:
        rules = self._headers
        headers = list(ctx.req.headers)
        for rule in rules.remove:
            lower = rule.lower.encode("latin-1")
            headers = [(n, v) for n, v in headers if n.lower() != lower]
        for rule in rules.rename:
            lower = rule.lower.encode("latin-1")
            moved = [v for n, v in headers if n.lower() == lower]
            if moved:
                new = rule.render(source).encode("latin-1")
                new_lower = new.lower()
                headers = [(n, v) for n, v in headers if n.lower() not in (lower, new_lower)]
                headers.extend((new, v) for v in moved)
        for rule in rules.replace:
            lower = rule.lower.encode("latin-1")
            if any(n.lower() == lower for n, _ in headers):
                value = rule.render(source).encode("latin-1")
                headers = [(n, v) for n, v in headers if n.lower() != lower]
                headers.append((rule.name.encode("latin-1"), value))
        for rule in rules.add:
            lower = rule.lower.encode("latin-1")
            if not any(n.lower() == lower for n, _ in headers):
                headers.append((rule.name.encode("latin-1"), rule.render(source).encode("latin-1")))
        for rule in rules.append:
            headers.append((rule.name.encode("latin-1"), rule.render(source).encode("latin-1")))
        ctx.req.headers = headers

    def _transform_body(self, ctx: Context, source: TemplateSource | None) -> None:
        kind = _body_kind(ctx)
        if kind is None:
            return
        req = ctx.req
        raw = b"".join(req.body)
        new: bytes | None
        if kind == "json":
            new = _transform_json(raw, self._body, source)
        else:
            args = parse_query(raw)
            if not raw:
                args = []
            new = encode_query(args).encode("latin-1") if self._transform_form(args, raw, source) else None
        if new is None:
            return
        req.body = [new] if new else []
        req.body_bytes = len(new)
        if req.content_length is not None:
            req.content_length = len(new)

    def _transform_form(
        self, args: list[tuple[str, str | None]], raw: bytes, source: TemplateSource | None
    ) -> bool:
        rules = self._body
        if raw:
            return transform_args(args, rules, source)
        # An empty body: only add and append have something to do (as in Kong).
        changed = False
        for rule in rules.add:
            if not _has(args, rule.name):
                args.append((rule.name, rule.render(source)))
                changed = True
        for rule in rules.append:
            args.append((rule.name, rule.render(source)))
            changed = True
        return changed


def _body_kind(ctx: Context) -> str | None:
    content_type = ctx.header(b"content-type")
    if content_type is None:
        return None
    lowered = content_type.lower()
    if b"application/json" in lowered:
        return "json"
    if b"application/x-www-form-urlencoded" in lowered:
        return "form"
    return None


def _present(document: dict[str, Any], name: str) -> bool:
    """Lua truthiness of `parameters[name]`: absent and `false` are not there; `null` is."""
    return name in document and document[name] is not False


def _transform_json(raw: bytes, rules: _ArgRules, source: TemplateSource | None) -> bytes | None:
    """The new JSON body, or None when it is unchanged (or not a JSON object)."""
    if raw.strip():
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        has_content = True
    else:
        document = {}
        has_content = False
    changed = False
    if has_content:
        for rule in rules.remove:
            if rule.name in document:
                del document[rule.name]
                changed = True
        for rule in rules.rename:
            if rule.name in document:
                value = document.pop(rule.name)
                document[rule.render(source)] = value
                changed = True
        for rule in rules.replace:
            if _present(document, rule.name):
                document[rule.name] = rule.render(source)
                changed = True
    for rule in rules.add:
        if not _present(document, rule.name):
            document[rule.name] = rule.render(source)
            changed = True
    for rule in rules.append:
        document[rule.name] = append_value(document.get(rule.name), rule.render(source))
        changed = True
    return orjson.dumps(document) if changed else None
