"""`Translator`: the base of plugins that translate between a clean API and a legacy one.

A translator is an ordinary plugin (ARCHITECTURE.md §6) with the request/response plumbing done:
subclass it and override the hooks you need.

* `to_upstream(request)` — in the access phase: change the `OutboundRequest` (method, path,
  query, headers, JSON body) so it speaks the legacy API, or return a `Response` to answer now.
* `wants_body(ctx, head)` — at the response head: whether `from_upstream` should see this answer
  (default: every answer that has a body). Only those are buffered.
* `from_upstream(ctx, response)` — with the legacy `UpstreamResponse` (status, headers, whole
  body): return a `TranslatedResponse` to send instead, or None to pass the answer on unchanged.

How the plumbing works: the head of an answer `from_upstream` will see is held
(`ResponseHead.hold`) and its body buffered up to `max_body_size` bytes; at the end of the body the
hook runs and its result replaces status, Content-Type and body (the proxy re-frames the body; a
stale `Content-Length`, `Content-Encoding` or `ETag` is dropped). A body over `max_body_size`, or a
hook that raises, becomes a 502 problem details answer, logged. `Accept-Encoding` is kept from the
legacy side so bodies arrive uncompressed, and put back for the plugins after this one
(`compression` compresses the translated body). HEAD requests and answers made at the gateway are
left alone.

Priority 790: after authentication and request-/response-transformer (801/800), which therefore
see the clean request and the legacy response; before proxy-cache (100), which stores the
translated answer, and compression (5).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote

import orjson
from pydantic import BaseModel

from forecourt.pipeline import Context, Plugin, PluginEnv, PluginScope, Response, ResponseHead
from forecourt.plugins.request_transformer import encode_query
from forecourt.plugins.templates import ContextSource, parse_query
from forecourt.plugins.translate.problem import PROBLEM_CONTENT_TYPE, problem_body

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

__all__ = [
    "DEFAULT_PRIORITY",
    "OutboundRequest",
    "TranslatedResponse",
    "Translator",
    "UpstreamResponse",
    "problem_response",
]

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 790
_JSON = b"application/json"
_BODYLESS_STATUSES = frozenset({204, 304})
# Headers that describe the legacy body's bytes, wrong once the body is replaced.
_STALE_HEADERS = (
    b"content-length",
    b"content-encoding",
    b"etag",
    b"content-md5",
    b"digest",
    b"content-range",
    b"accept-ranges",
)
# Characters kept as they are in a path set by a translator (an existing %XX escape included).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class OutboundRequest:
    """The request on its way to the legacy side, as a translator reads and changes it."""

    __slots__ = ("ctx", "source")

    def __init__(self, ctx: Context, source: TemplateSource) -> None:
        self.ctx = ctx
        self.source = source  # template values: the client's request as it arrived

    # ------------------------------------------------------------------ line
    @property
    def method(self) -> str:
        return self.ctx.req.method

    @method.setter
    def method(self, value: str) -> None:
        self.ctx.req.method = value

    @property
    def path(self) -> str:
        """The upstream path once set; until then the client's (normalized) path."""
        ctx = self.ctx
        return ctx.upstream_path if ctx.upstream_path is not None else ctx.req.path

    @path.setter
    def path(self, value: str) -> None:
        """Set the whole upstream path (the service's path is not prepended, as Kong's set_path)."""
        self.ctx.upstream_path = quote(value, safe=_PATH_SAFE)

    @property
    def query(self) -> list[tuple[str, str | None]]:
        """Decoded arguments (None: an argument without `=`)."""
        return parse_query(self.ctx.req.query)

    @query.setter
    def query(self, arguments: list[tuple[str, str | None]] | Mapping[str, str]) -> None:
        pairs = list(arguments.items()) if isinstance(arguments, Mapping) else arguments
        encoded = encode_query(pairs)
        self.ctx.req.query = ("?" + encoded).encode("latin-1") if encoded else b""

    @property
    def uri_captures(self) -> Mapping[str, str]:
        match = self.ctx.req.match
        return match.uri_captures if match is not None else {}

    # ------------------------------------------------------------------ headers
    def header(self, name: str) -> str | None:
        value = self.ctx.header(name.encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    def set_header(self, name: str, value: str) -> None:
        self.ctx.set_header(name.encode("latin-1"), value.encode("latin-1"))

    def remove_header(self, name: str) -> None:
        self.ctx.remove_header(name.encode("latin-1"))

    # ------------------------------------------------------------------ body
    @property
    def buffered(self) -> bool:
        """Whether the whole body is here (false on routes with `request_buffering: false`)."""
        return self.ctx.req.complete

    @property
    def body(self) -> bytes:
        return b"".join(self.ctx.req.body)

    def json(self) -> Any:
        """The body as JSON (None when empty); ValueError when it is not JSON."""
        raw = self.body
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the request body is not JSON: {exc}") from None

    def set_body(self, data: bytes, content_type: bytes | None = None) -> None:
        """Replace a buffered body (Content-Length follows)."""
        req = self.ctx.req
        if not req.complete:
            raise RuntimeError("the request body is streamed (request_buffering off); it cannot be replaced")
        req.body = [data] if data else []
        req.body_bytes = len(data)
        req.content_length = len(data)
        if content_type is not None:
            self.ctx.set_header(b"Content-Type", content_type)

    def set_json(self, document: Any) -> None:
        self.set_body(orjson.dumps(document), _JSON)


class UpstreamResponse:
    """A legacy answer, whole: status, headers and body."""

    __slots__ = ("body", "head", "source", "status")

    def __init__(self, head: ResponseHead, body: bytes, source: TemplateSource) -> None:
        self.head = head
        self.status = head.status
        self.body = body
        self.source = source  # template values: the client's request as it arrived

    def header(self, name: str) -> str | None:
        value = self.head.get(name.encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON (an empty body is not)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the upstream body is not JSON: {exc}") from None


class TranslatedResponse:
    """What the client gets instead of the legacy answer."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes | None = _JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []

    @classmethod
    def json(cls, status: int, document: Any, content_type: bytes = _JSON) -> TranslatedResponse:
        return cls(status, orjson.dumps(document), content_type)

    @classmethod
    def problem(
        cls, status: int, title: str, detail: str | None = None, **members: Any
    ) -> TranslatedResponse:
        """RFC 9457 problem details (`application/problem+json`)."""
        return cls(status, problem_body(status, title, detail, **members), PROBLEM_CONTENT_TYPE)


def problem_response(status: int, title: str, detail: str | None = None) -> Response:
    """A problem details answer made in the access phase."""
    body = problem_body(status, title, detail)
    return Response(status, body, [(b"Content-Type", PROBLEM_CONTENT_TYPE)])


class _Exchange:
    """One request's translation state (on `ctx.shared`)."""

    __slots__ = ("accept_encoding", "answered", "buffer", "method", "size", "source", "too_large")

    def __init__(self, method: str, source: TemplateSource) -> None:
        self.method = method
        self.source = source
        self.accept_encoding: list[bytes] = []
        self.answered = False
        self.buffer: list[bytes] | None = None
        self.size = 0
        self.too_large = False


class Translator(Plugin[ConfigT]):
    """Base class of translating plugins; see the module docstring for the hooks."""

    priority: ClassVar[int] = DEFAULT_PRIORITY
    # Whether from_upstream may want bodies: if not, Accept-Encoding is left alone.
    translates_responses: bool = True
    max_body_size: int = 8 * 1024 * 1024

    def __init__(self, config: ConfigT, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._state_key = f"translate:{self.name}"

    # ------------------------------------------------------------------ hooks
    def to_upstream(self, request: OutboundRequest) -> Response | None:
        return None

    def wants_body(self, ctx: Context, head: ResponseHead) -> bool:
        return True

    def from_upstream(self, ctx: Context, response: UpstreamResponse) -> TranslatedResponse | None:
        return None

    # ------------------------------------------------------------------ phases
    def access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        state = _Exchange(ctx.req.method, ContextSource(ctx))
        ctx.shared[self._state_key] = state
        if self.translates_responses:
            state.accept_encoding = ctx.header_values(b"accept-encoding")
            if state.accept_encoding:
                ctx.remove_header(b"accept-encoding")
        answer = self.to_upstream(OutboundRequest(ctx, state.source))
        if answer is not None:
            state.answered = True
        return answer

    def response(self, ctx: Context, head: ResponseHead) -> None:
        state: _Exchange | None = ctx.shared.get(self._state_key)
        if state is None or state.answered:
            return  # answered at the gateway: not a legacy answer
        for value in state.accept_encoding:
            ctx.add_header(b"Accept-Encoding", value)  # what later plugins (compression) read
        status = head.status
        if state.method == "HEAD" or status < 200 or status in _BODYLESS_STATUSES:
            return
        if self.wants_body(ctx, head):
            head.hold = True
            state.buffer = []

    def body(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        state: _Exchange | None = ctx.shared.get(self._state_key)
        if state is None or state.buffer is None:
            return chunk
        if chunk and not state.too_large:
            state.size += len(chunk)
            if state.size > self.max_body_size:
                state.too_large = True
                state.buffer.clear()
            else:
                state.buffer.append(chunk)
        if not last:
            return b""
        raw = b"".join(state.buffer)
        state.buffer = None
        head = ctx.response_head
        assert head is not None
        translated = self._translate(ctx, head, raw, state)
        if translated is None:
            return raw
        head.status = translated.status
        for name in _STALE_HEADERS:
            head.remove(name)
        if translated.content_type is not None:
            head.set(b"Content-Type", translated.content_type)
        for name, value in translated.headers:
            head.set(name, value)
        return translated.body

    def _translate(
        self, ctx: Context, head: ResponseHead, raw: bytes, state: _Exchange
    ) -> TranslatedResponse | None:
        route = ctx.route.name
        if state.too_large:
            log.warning(
                "%s: route %s: the upstream answer (%d bytes and more) is over max_body_size (%d)",
                self.name,
                route,
                state.size,
                self.max_body_size,
            )
            return TranslatedResponse.problem(
                502, "Bad Gateway", "The upstream answer is too large to translate."
            )
        try:
            return self.from_upstream(ctx, UpstreamResponse(head, raw, state.source))
        except Exception:
            log.exception("%s: route %s: translating the upstream answer failed", self.name, route)
            return TranslatedResponse.problem(
                502, "Bad Gateway", "The upstream answer could not be translated."
            )
