"""`compression`: compress responses with gzip, Brotli or Zstandard (a Forecourt extension).

Kong has no bundled compression plugin; this one is configured in the same style. The algorithm
is the client's best by `Accept-Encoding` q-value among `algorithms` (ties go to the order of
`algorithms`; `q=0` excludes; `*` stands for the ones not listed; an `identity` preferred to all
of them means no compression). A response is compressed only when all of these hold:

* the request is not HEAD and the status has a body that is not partial (not 1xx, 204, 206, 304);
* the upstream did not encode it already (`Content-Encoding` absent or `identity`), and it does not
  say `Cache-Control: no-transform`;
* its `Content-Type` is one of `types` (`type/subtype`, `type/*`, or `type/*+suffix`);
* it has at least `min_size` bytes. With a `Content-Length` (and no other body filter before this
  one) that is known at once; otherwise the head is held back and up to `min_size` bytes are
  buffered before deciding.

Compressible responses always get `Vary: Accept-Encoding`, whichever encoding the client got. When
compressing, `Content-Length` and `Accept-Ranges` are dropped and a strong `ETag` is made weak (the
bytes differ from the upstream's). The body streams through a compressor object fed chunk by chunk,
flushed after each upstream read so that event streams keep flowing.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Literal, Protocol

import brotli  # type: ignore[import-untyped]
import zstandard
from pydantic import Field, field_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, ResponseHead
from forecourt.plugins.cors import add_vary

Algorithm = Literal["zstd", "br", "gzip"]
DEFAULT_ALGORITHMS: list[Algorithm] = ["zstd", "br", "gzip"]
DEFAULT_TYPES = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "application/x-www-form-urlencoded",
    "image/svg+xml",
]
_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/(\*|\*\+[a-z0-9!#$&^_.-]+|[a-z0-9!#$&^_.+-]+)$")
_STATE = "compression"  # ctx.shared key
_UNCOMPRESSED_STATUSES = frozenset({204, 206, 304})
_AE_CACHE_LIMIT = 256


class Levels(PluginConfig):
    gzip: int = Field(6, ge=1, le=9, description="gzip (zlib) level, 1 fastest .. 9 smallest.")
    br: int = Field(4, ge=0, le=11, description="Brotli quality, 0 fastest .. 11 smallest.")
    zstd: int = Field(3, ge=1, le=19, description="Zstandard level, 1 fastest .. 19 smallest.")


class CompressionConfig(PluginConfig):
    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        min_length=1,
        description="Encodings offered, in order of preference when the client likes several equally.",
    )
    level: Levels = Field(default_factory=Levels, description="Compression level per algorithm.")
    min_size: int = Field(860, ge=0, description="Smallest body, in bytes, worth compressing.")
    types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TYPES), min_length=1, description="Content types to compress."
    )

    @field_validator("types")
    @classmethod
    def _valid_types(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _TYPE.match(entry.strip().lower()):
                raise ValueError(f"'{entry}' is not a media type (type/subtype, type/* or type/*+suffix)")
        return value

    @field_validator("algorithms")
    @classmethod
    def _unique(cls, value: list[Algorithm]) -> list[Algorithm]:
        if len(set(value)) != len(value):
            raise ValueError("algorithms must not repeat")
        return value


# ---------------------------------------------------------------------- compressors
class Compressor(Protocol):
    """A streaming encoder: `feed` returns all that can be sent now, `end` the last data and trailer."""

    def feed(self, data: bytes) -> bytes: ...

    def end(self, data: bytes) -> bytes: ...


class GzipCompressor:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_FINISH)


class BrotliCompressor:
    __slots__ = ("_c",)

    def __init__(self, quality: int) -> None:
        # A 512 KiB window keeps memory per response bounded; API bodies rarely gain from more.
        self._c = brotli.Compressor(quality=quality, lgwin=19)

    def feed(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.flush()
        return out

    def end(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.finish()
        return out


class ZstdCompressor:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        # One compression context per response: a context must not serve interleaved streams.
        self._c = zstandard.ZstdCompressor(level=level).compressobj()

    def feed(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def end(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


# ---------------------------------------------------------------------- negotiation
def parse_accept_encoding(value: str) -> dict[str, float]:
    """`gzip;q=0.5, br, *;q=0` → {"gzip": 0.5, "br": 1.0, "*": 0.0} (malformed q-values count as 0)."""
    weights: dict[str, float] = {}
    for item in value.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(number.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        weights[coding] = max(q, weights.get(coding, 0.0)) if coding in weights else q
    return weights


def choose_encoding(accept: str, algorithms: tuple[str, ...]) -> str | None:
    """The algorithm to use for a request's Accept-Encoding, or None for no compression."""
    weights = parse_accept_encoding(accept)
    wildcard = weights.get("*")
    best: str | None = None
    best_q = 0.0
    for algorithm in algorithms:  # in preference order: ties keep the earlier one
        q = weights.get(algorithm, wildcard if wildcard is not None else 0.0)
        if q > best_q:
            best, best_q = algorithm, q
    if best is None:
        return None
    identity = weights.get("identity")
    if identity is not None and identity > best_q:
        return None
    return best


# ---------------------------------------------------------------------- per-response state
class _Pending:
    """Deciding: the head is held and bytes are buffered until `min_size` or the end."""

    __slots__ = ("algorithm", "buffered", "size")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.buffered: list[bytes] = []
        self.size = 0


class _Compressing:
    __slots__ = ("compressor", "remaining")

    def __init__(self, compressor: Compressor, remaining: int | None) -> None:
        self.compressor = compressor
        self.remaining = remaining  # body bytes still to come when the length is known


class CompressionPlugin(Plugin[CompressionConfig]):
    """Compresses response bodies the client accepts in an encoding, chosen by Accept-Encoding."""

    name = "compression"
    priority = 5  # after every other body filter (response-transformer 800, proxy-cache 100)
    Config = CompressionConfig

    def __init__(self, config: CompressionConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._algorithms = tuple(config.algorithms)
        self.min_size = config.min_size
        levels = config.level
        self._factories: dict[str, Callable[[], Compressor]] = {
            "gzip": lambda: GzipCompressor(levels.gzip),
            "br": lambda: BrotliCompressor(levels.br),
            "zstd": lambda: ZstdCompressor(levels.zstd),
        }
        exact: set[bytes] = set()
        families: set[bytes] = set()
        suffixes: set[bytes] = set()
        for entry in config.types:
            media = entry.strip().lower().encode()
            kind, _, subtype = media.partition(b"/")
            if subtype == b"*":
                families.add(kind)
            elif subtype.startswith(b"*+"):
                suffixes.add(kind + b"/" + subtype[1:])  # b"application/+json"
            else:
                exact.add(media)
        self._exact = frozenset(exact)
        self._families = frozenset(families)
        self._suffixes = tuple(suffixes)
        self._choices: dict[bytes, str | None] = {}

    # ------------------------------------------------------------------ decisions
    def _compressible_type(self, content_type: bytes | None) -> bool:
        if content_type is None:
            return False
        media = content_type.split(b";", 1)[0].strip().lower()
        if media in self._exact:
            return True
        kind, _, subtype = media.partition(b"/")
        if kind in self._families:
            return True
        plus = subtype.rfind(b"+")
        return plus >= 0 and (kind + b"/" + subtype[plus:]) in self._suffixes

    def _choose(self, ctx: Context) -> str | None:
        values = ctx.header_values(b"accept-encoding")
        if not values:
            return None
        accept = values[0] if len(values) == 1 else b", ".join(values)
        choice = self._choices.get(accept, "")
        if choice == "":
            choice = choose_encoding(accept.decode("latin-1"), self._algorithms)
            if len(self._choices) >= _AE_CACHE_LIMIT:
                self._choices.clear()
            self._choices[accept] = choice
        return choice

    def response(self, ctx: Context, head: ResponseHead) -> None:
        status = head.status
        if ctx.req.method == "HEAD" or status < 200 or status in _UNCOMPRESSED_STATUSES:
            return
        encoding = head.get(b"content-encoding")
        if encoding is not None and encoding.strip().lower() != b"identity":
            return  # never compress twice
        cache_control = head.get(b"cache-control")
        if cache_control is not None and b"no-transform" in cache_control.lower():
            return
        if not self._compressible_type(head.get(b"content-type")):
            return
        add_vary(head, b"Accept-Encoding")
        algorithm = self._choose(ctx)
        if algorithm is None:
            return
        length = _content_length(head)
        if length is not None and ctx.chain.body[0] is self:
            # The length is the body this filter will see: decide now, nothing to hold.
            if length >= self.min_size and length > 0:
                self._start(ctx, head, algorithm, length)
            return
        if self.min_size == 0:
            self._start(ctx, head, algorithm, None)
            return
        head.hold = True
        ctx.shared[_STATE] = _Pending(algorithm)

    def _start(self, ctx: Context, head: ResponseHead, algorithm: str, length: int | None) -> _Compressing:
        head.set(b"Content-Encoding", algorithm.encode())
        head.remove(b"content-length")
        head.remove(b"accept-ranges")
        etag = head.get(b"etag")
        if etag is not None and not etag.startswith(b"W/"):
            head.set(b"ETag", b"W/" + etag)
        state = _Compressing(self._factories[algorithm](), length)
        ctx.shared[_STATE] = state
        return state

    # ------------------------------------------------------------------ body
    def body(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        state = ctx.shared.get(_STATE)
        if state is None:
            return chunk
        if state is _FINISHED:
            return b""
        if isinstance(state, _Pending):
            return self._decide(ctx, state, chunk, last)
        return self._compress(ctx, state, chunk, last)

    def _decide(self, ctx: Context, pending: _Pending, chunk: bytes, last: bool) -> bytes:
        if chunk:
            pending.buffered.append(chunk)
            pending.size += len(chunk)
        if pending.size < self.min_size:
            if not last:
                return b""
            ctx.shared[_STATE] = None  # too small: send it as it is
            return b"".join(pending.buffered)
        head = ctx.response_head
        assert head is not None
        state = self._start(ctx, head, pending.algorithm, None)
        return self._compress(ctx, state, b"".join(pending.buffered), last)

    def _compress(self, ctx: Context, state: _Compressing, chunk: bytes, last: bool) -> bytes:
        if state.remaining is not None:
            state.remaining -= len(chunk)
            # The whole declared body is here: end the stream now, in the same write.
            last = last or state.remaining <= 0
        if last:
            ctx.shared[_STATE] = _FINISHED
            return state.compressor.end(chunk)
        return state.compressor.feed(chunk) if chunk else b""


_FINISHED = object()  # the compressed stream is complete


def _content_length(head: ResponseHead) -> int | None:
    value = head.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
