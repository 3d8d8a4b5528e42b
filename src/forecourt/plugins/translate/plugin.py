"""`translate`: the anti-corruption layer as configuration (a Forecourt extension).

The declarative `Translator`: `schema.py` is the config, `mapping.py` the body mappings,
`problem.py` the error mapping. Per request, in the access phase (order of operations): method,
path and its query, query rules, headers, body. In the response phase: header rules on every
legacy answer, then, for an answer whose body is needed (an error rule may match its status, or
its status is one of `response.statuses` and there is a body mapping), the whole body: error rules
first (first match wins), then the body mapping.

Templates (`$(uri_captures.productId)`) render from the client's request as it reached this
plugin, in both directions. Query values are decoded text (a `%XX` in a path capture included)
and are encoded once when the legacy query is written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from forecourt.pipeline import Context, Plugin, PluginEnv, PluginScope, Response, ResponseHead
from forecourt.plugins.templates import Template, compile_template
from forecourt.plugins.translate.expressions import EvaluationError
from forecourt.plugins.translate.mapping import Node, compile_mapping
from forecourt.plugins.translate.problem import (
    PROBLEM_CONTENT_TYPE,
    ErrorMapping,
    StatusSet,
    error_document,
)
from forecourt.plugins.translate.schema import (
    RequestHeaderRules,
    ResponseHeaderRules,
    TranslateConfig,
    split_outside_placeholders,
)
from forecourt.plugins.translate.translator import (
    OutboundRequest,
    TranslatedResponse,
    Translator,
    UpstreamResponse,
    problem_response,
)

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

__all__ = ["TranslatePlugin"]

log = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _DecodedCaptures:
    """A template source whose path captures are decoded (they keep the path's `%XX` escapes)."""

    __slots__ = ("_source",)

    def __init__(self, source: TemplateSource) -> None:
        self._source = source

    def value(self, namespace: str, key: str) -> str | None:
        found = self._source.value(namespace, key)
        return unquote(found) if found is not None and namespace == "uri_captures" else found


class _HeaderPlan:
    """Compiled rename / remove / set rules for one direction."""

    __slots__ = ("remove", "rename", "set")

    def __init__(self, rules: RequestHeaderRules | ResponseHeaderRules) -> None:
        self.rename = tuple(
            (old.lower().encode("latin-1"), new.encode("latin-1")) for old, new in rules.rename.items()
        )
        self.remove = frozenset(name.lower().encode("latin-1") for name in rules.remove)
        self.set = tuple(
            (name.encode("latin-1"), compile_template(value)) for name, value in rules.set.items()
        )

    def __bool__(self) -> bool:
        return bool(self.rename or self.remove or self.set)

    def apply(self, headers: list[tuple[bytes, bytes]], source: TemplateSource) -> list[tuple[bytes, bytes]]:
        if self.remove:
            headers = [(n, v) for n, v in headers if n.lower() not in self.remove]
        for old, new in self.rename:
            moved = [v for n, v in headers if n.lower() == old]
            if moved:
                new_lower = new.lower()
                headers = [(n, v) for n, v in headers if n.lower() not in (old, new_lower)]
                headers.extend((new, v) for v in moved)
        for name, template in self.set:
            lower = name.lower()
            headers = [(n, v) for n, v in headers if n.lower() != lower]
            headers.append((name, template.render(source).encode("latin-1", "replace")))
        return headers


class TranslatePlugin(Translator[TranslateConfig]):
    """Maps a clean API onto a legacy one and back, as configured."""

    name = "translate"
    Config = TranslateConfig

    def __new__(cls, config: TranslateConfig, scope: PluginScope, env: PluginEnv) -> TranslatePlugin:
        # Without a body mapping or error rules nothing is buffered: no body filter on the route.
        buffering = config.response.body is not None or bool(config.errors)
        chosen = _HeadersOnlyTranslatePlugin if cls is TranslatePlugin and not buffering else cls
        return super().__new__(chosen)

    def __init__(self, config: TranslateConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        request, response = config.request, config.response
        self._method = request.method
        self._path: Template | None = None
        self._path_query: tuple[tuple[str, Template], ...] = ()
        if request.path is not None:
            path, *rest = split_outside_placeholders(request.path, "?")
            self._path = compile_template(path)
            arguments = split_outside_placeholders("?".join(rest), "&") if rest else []
            self._path_query = tuple(
                (name, compile_template(value))
                for name, _, value in (argument.partition("=") for argument in arguments if argument)
            )
        rules = request.query
        self._query_rename = dict(rules.rename)
        self._query_remove = frozenset(rules.remove)
        self._query_set = tuple((name, compile_template(value)) for name, value in rules.set.items())
        self._query_forward = rules.forward_unmapped
        self._rewrites_query = (
            bool(self._path_query or self._query_rename or self._query_remove or self._query_set)
            or not self._query_forward
        )
        self._request_headers = _HeaderPlan(request.headers)
        self._request_body: Node | None = _mapping(
            request.body, request.types, request.defaults, request.drop_nulls
        )
        self._response_body: Node | None = _mapping(
            response.body, response.types, response.defaults, response.drop_nulls
        )
        self._body_statuses = StatusSet(list(response.statuses))
        self._content_type = response.content_type.encode("latin-1")
        self._response_headers = _HeaderPlan(response.headers)
        self._pass_invalid = response.on_invalid == "pass"
        self._errors = tuple(ErrorMapping(rule) for rule in config.errors)
        self.max_body_size = response.max_body_size
        self.translates_responses = self._response_body is not None or bool(self._errors)

    # ------------------------------------------------------------------ request
    def to_upstream(self, request: OutboundRequest) -> Response | None:
        ctx = request.ctx
        source = request.source
        if self._method is not None:
            request.method = self._method
        if self._path is not None:
            request.path = self._path.render(source)
        if self._rewrites_query:
            request.query = self._legacy_query(request, _DecodedCaptures(source))
        if self._request_headers:
            ctx.req.headers = self._request_headers.apply(ctx.req.headers, source)
        if self._request_body is not None:
            return self._map_request_body(request)
        return None

    def _legacy_query(self, request: OutboundRequest, source: TemplateSource) -> list[tuple[str, str | None]]:
        fixed: list[tuple[str, str | None]] = [(n, t.render(source)) for n, t in self._path_query]
        setting = [(n, t.render(source)) for n, t in self._query_set]
        taken = {n for n, _ in fixed} | {n for n, _ in setting}
        forwarded: list[tuple[str, str | None]] = []
        for name, value in request.query:
            if name in self._query_remove:
                continue
            legacy = self._query_rename.get(name)
            if legacy is None and not self._query_forward:
                continue
            legacy = legacy or name
            if legacy not in taken:
                forwarded.append((legacy, value))
        return [*fixed, *forwarded, *setting]

    def _map_request_body(self, request: OutboundRequest) -> Response | None:
        assert self._request_body is not None
        if not request.buffered:
            log.warning(
                "translate: route %s: request body mapping needs request_buffering", request.ctx.route.name
            )
            return problem_response(500, "Internal Server Error", "The request body could not be translated.")
        has_body = bool(request.ctx.req.body_bytes)
        if not has_body and request.method not in _BODY_METHODS:
            return None
        try:
            document = request.json()
        except ValueError:
            return problem_response(400, "Bad Request", "The request body is not valid JSON.")
        try:
            mapped = self._request_body.evaluate(document, request.source)
        except EvaluationError as exc:
            return problem_response(400, "Bad Request", f"The request body could not be translated: {exc}")
        request.set_json(mapped)
        return None

    # ------------------------------------------------------------------ response
    def response(self, ctx: Context, head: ResponseHead) -> None:
        if self._response_headers:
            state = ctx.shared.get(self._state_key)
            if state is not None and not state.answered:
                head.headers = self._response_headers.apply(head.headers, state.source)
        super().response(ctx, head)

    def wants_body(self, ctx: Context, head: ResponseHead) -> bool:
        status = head.status
        if self._response_body is not None and status in self._body_statuses:
            return True
        return any(rule.applies_to(status) for rule in self._errors)

    def from_upstream(self, ctx: Context, response: UpstreamResponse) -> TranslatedResponse | None:
        status = response.status
        document: dict[str, Any] | None = None
        for rule in self._errors:
            if not rule.applies_to(status):
                continue
            if document is None:
                document = error_document(status, response.body)
            if rule.matches(document):
                clean_status, problem = rule.problem(document, response.source)
                return TranslatedResponse(clean_status, orjson.dumps(problem), PROBLEM_CONTENT_TYPE)
        if self._response_body is None or status not in self._body_statuses:
            return None
        try:
            legacy = response.json()
        except ValueError:
            return self._untranslatable(ctx, response, "the upstream body is not JSON")
        try:
            clean = self._response_body.evaluate(legacy, response.source)
        except EvaluationError as exc:
            return self._untranslatable(ctx, response, f"a mapping expression failed: {exc}")
        return TranslatedResponse(status, orjson.dumps(clean), self._content_type)

    def _untranslatable(
        self, ctx: Context, response: UpstreamResponse, reason: str
    ) -> TranslatedResponse | None:
        action = "passed through untranslated" if self._pass_invalid else "answered 502"
        log.warning(
            "translate: route %s: upstream answer %d not translated (%s): %s",
            ctx.route.name,
            response.status,
            reason,
            action,
        )
        if self._pass_invalid:
            return None
        return TranslatedResponse.problem(502, "Bad Gateway", "The upstream answer could not be translated.")


class _HeadersOnlyTranslatePlugin(TranslatePlugin):
    """The plugin when nothing needs a body: the route keeps its streaming, length-framed bodies."""

    body = Plugin.body


def _mapping(spec: Any, types: dict[str, str], defaults: dict[str, Any], drop_nulls: bool) -> Node | None:
    if spec is None:
        return None
    return compile_mapping(spec, types, defaults, drop_nulls=drop_nulls)
