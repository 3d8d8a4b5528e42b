"""W3C trace context (`traceparent`/`tracestate`), spans, and a small OTLP/HTTP JSON exporter.

* `parse_traceparent` follows the W3C Trace Context rules (level 1): version `00` is exactly
  `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower-case, ids not all zero; a later
  version may append fields after a `-`; version `ff` is invalid. An invalid header is ignored
  (the gateway starts a new trace) and so is the `tracestate` that came with it.
* `RatioSampler` decides from the trace id (the lower 64 bits against `rate * 2**64`), so every
  gateway that sees the same trace and uses the same rate agrees, as OpenTelemetry's
  TraceIdRatioBased sampler does.
* `OtlpExporter` queues finished spans and posts them in batches, as OTLP/HTTP JSON
  (`application/json`, `/v1/traces` payloads), from one background task. `submit` never blocks and
  never fails: past `max_entries` queued spans new ones are dropped and counted; a failed post is
  retried with exponential backoff for up to `max_retry_time`, then dropped and logged. Only
  429/502/503/504 and connection errors are retried (the OTLP spec's retryable outcomes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from forecourt import __version__

__all__ = [
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_SERVER",
    "TRACEPARENT",
    "TRACESTATE",
    "ExportError",
    "OtlpExporter",
    "RatioSampler",
    "Span",
    "TraceParent",
    "encode_otlp_json",
    "format_traceparent",
    "new_span_id",
    "new_span_ids",
    "new_trace_id",
    "parse_traceparent",
    "post",
]

log = logging.getLogger("forecourt.tracing")

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_ERROR = 2

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_RETRYABLE = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid incoming `traceparent`: the caller's trace id, its span id and the trace flags."""

    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def _is_hex(text: str) -> bool:
    return all(c in _HEX for c in text)


def parse_traceparent(value: bytes | str) -> TraceParent | None:
    """The trace context in a `traceparent` header value, or None when it is not valid."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if len(text) < 55:
        return None
    version = text[:2]
    if not _is_hex(version) or version == "ff":
        return None
    if version == "00" and len(text) != 55:
        return None
    if len(text) > 55 and text[55] != "-":
        return None
    if text[2] != "-" or text[35] != "-" or text[52] != "-":
        return None
    trace_id, parent_id, flags = text[3:35], text[36:52], text[53:55]
    if not (_is_hex(trace_id) and _is_hex(parent_id) and _is_hex(flags)):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> bytes:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}".encode("ascii")


_random = random.Random()


def new_trace_id() -> str:
    """32 random hex digits, never all zero."""
    return f"{_random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 random hex digits, never all zero."""
    return f"{_random.getrandbits(64) or 1:016x}"


def new_span_ids() -> tuple[str, str]:
    """Two span ids from one draw (a request needs its own span's and the upstream call's)."""
    bits = f"{_random.getrandbits(128):032x}"
    first, second = bits[:16], bits[16:]
    return (first if first != _ZERO_SPAN else new_span_id()), (
        second if second != _ZERO_SPAN else new_span_id()
    )


class RatioSampler:
    """Samples a fraction `rate` of traces, decided by the trace id."""

    __slots__ = ("bound", "rate")

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sampling rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self.bound = round(rate * 2**64)

    def sample(self, trace_id: str) -> bool:
        if self.rate >= 1.0:
            return True
        if self.rate <= 0.0:
            return False
        return int(trace_id[16:], 16) < self.bound


# ---------------------------------------------------------------------------------------------- spans
Attribute = str | bool | int | float


@dataclass(slots=True)
class Span:
    """A finished span, times in Unix nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    error: bool = False


def _attribute(key: str, value: Attribute) -> dict[str, object]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _span_json(span: Span) -> dict[str, object]:
    item: dict[str, object] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": [_attribute(k, v) for k, v in span.attributes.items()],
        "status": {"code": STATUS_ERROR if span.error else STATUS_UNSET},
    }
    if span.parent_span_id:
        item["parentSpanId"] = span.parent_span_id
    return item


def encode_otlp_json(spans: Sequence[Span], resource: Mapping[str, Attribute]) -> bytes:
    """An OTLP `ExportTraceServiceRequest` in the protobuf JSON mapping (ids as hex, as OTLP says)."""
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attribute(k, v) for k, v in resource.items()]},
                "scopeSpans": [
                    {
                        "scope": {"name": "forecourt", "version": __version__},
                        "spans": [_span_json(span) for span in spans],
                    }
                ],
            }
        ]
    }
    return orjson.dumps(document)


# ---------------------------------------------------------------------------------------------- export
class ExportError(Exception):
    """A batch could not be delivered; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


async def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    send_timeout: float,
    read_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST `body` to `url` (http or https) on a new connection; the response status.

    Raises `ExportError` for connection failures, timeouts and unparsable answers.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExportError(f"unsupported URL {url!r}", retryable=False)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=(ssl_context or ssl.create_default_context()) if tls else None
            )
    except (OSError, TimeoutError) as exc:
        raise ExportError(f"cannot connect to {host}:{port}: {exc or 'timed out'}", retryable=True) from exc
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        try:
            async with asyncio.timeout(send_timeout):
                await writer.drain()
            async with asyncio.timeout(read_timeout):
                status_line = await reader.readline()
                # Read the rest so the collector sees an orderly close; the body is not needed.
                await reader.read()
        except (OSError, TimeoutError) as exc:
            raise ExportError(f"{url}: {exc or 'timed out'}", retryable=True) from exc
        fields = status_line.split(None, 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise ExportError(f"{url}: not an HTTP response", retryable=True)
        return int(fields[1])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass(slots=True)
class ExportSettings:
    """Where and how spans are exported (Kong's `opentelemetry` config, in seconds)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    resource: Mapping[str, Attribute] = field(default_factory=dict)
    max_batch_size: int = 200
    max_coalescing_delay: float = 1.0
    max_entries: int = 10_000
    max_retry_time: float = 60.0
    initial_retry_delay: float = 0.01
    max_retry_delay: float = 60.0
    connect_timeout: float = 1.0
    send_timeout: float = 5.0
    read_timeout: float = 5.0


class OtlpExporter:
    """A bounded span queue drained by one background task that posts batches."""

    def __init__(self, settings: ExportSettings) -> None:
        self.settings = settings
        self.queue: deque[Span] = deque()
        self.dropped = 0
        self.exported = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_warning = 0.0
        self._headers = {"Content-Type": "application/json", "User-Agent": f"forecourt/{__version__}"}
        self._headers.update(settings.headers)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="forecourt-otlp-export")

    def submit(self, span: Span) -> bool:
        """Queue a finished span (False when it was dropped: queue full or exporter closed)."""
        if self._closing or len(self.queue) >= self.settings.max_entries:
            self.dropped += 1
            return False
        self.queue.append(span)
        if len(self.queue) >= self.settings.max_batch_size:
            self._wake.set()
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Stop taking spans, try to send what is queued (for up to `timeout`), then stop."""
        self._closing = True
        self._wake.set()
        task = self._task
        self._task = None
        if task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.queue:
            self._warn(f"dropped {len(self.queue)} span(s) not exported before shutdown")
            self.dropped += len(self.queue)
            self.queue.clear()

    async def _run(self) -> None:
        settings = self.settings
        while True:
            if not self._closing and len(self.queue) < settings.max_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), settings.max_coalescing_delay)
            self._wake.clear()
            if not self.queue:
                if self._closing:
                    return
                continue
            count = min(len(self.queue), settings.max_batch_size)
            batch = [self.queue.popleft() for _ in range(count)]
            await self._deliver(batch)

    async def _deliver(self, batch: list[Span]) -> None:
        settings = self.settings
        body = encode_otlp_json(batch, settings.resource)
        delay = settings.initial_retry_delay
        give_up = time.monotonic() + settings.max_retry_time
        while True:
            try:
                status = await post(
                    settings.url,
                    body,
                    self._headers,
                    connect_timeout=settings.connect_timeout,
                    send_timeout=settings.send_timeout,
                    read_timeout=settings.read_timeout,
                )
            except ExportError as exc:
                error: ExportError = exc
            else:
                if 200 <= status < 300:
                    self.exported += len(batch)
                    return
                error = ExportError(f"{settings.url} answered {status}", retryable=status in _RETRYABLE)
            if not error.retryable or self._closing or time.monotonic() + delay > give_up:
                self.dropped += len(batch)
                self._warn(f"dropped {len(batch)} span(s): {error}")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.max_retry_delay)

    def _warn(self, message: str) -> None:
        # At most one warning every 10 s: a collector that is down must not flood the log.
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning("opentelemetry export: %s (%d dropped so far)", message, self.dropped)
