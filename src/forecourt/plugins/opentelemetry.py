"""`opentelemetry`: W3C trace context for every request, span timings in the access log, OTLP export.

Per request (Kong's config fields and defaults; `propagation` or the older `header_type`):

* access phase: a valid incoming `traceparent` is continued (same trace id, its span is the
  gateway span's parent, its sampled flag is kept); otherwise a new trace starts, sampled with
  probability `sampling_rate` (default 1), and any incoming `tracestate` is dropped as W3C requires.
  The upstream request carries `traceparent: 00-<trace id>-<upstream span id>-<flags>`; the
  upstream span is the gateway's child span for the call to the upstream. `tracestate` of a
  continued trace passes through unchanged. `propagation.clear` headers are removed.
* response phase (only when `http_response_header_for_traceid` is set): that header carries the
  trace id.
* log phase: the access-log line gets a `trace` object (ids, sampled, span start times and
  durations; see docs/plugins/observability.md) through `ctx.shared["log_fields"]`; sampled spans
  are queued for the OTLP/HTTP JSON exporter when `traces_endpoint` is set (a background task;
  nothing on the request path waits for it).

Forecourt implements the `w3c` format only: other formats Kong knows (b3, jaeger, datadog, ...) are
config errors naming the format, never silently ignored.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from forecourt import __version__
from forecourt.config.fields import Int, TimeoutMs
from forecourt.observability.access_log import LOG_FIELDS
from forecourt.observability.tracing import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    TRACEPARENT,
    TRACESTATE,
    ExportSettings,
    OtlpExporter,
    RatioSampler,
    Span,
    format_traceparent,
    new_span_ids,
    new_trace_id,
    parse_traceparent,
)
from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, ResponseHead

__all__ = ["TRACE", "OpenTelemetryConfig", "OpenTelemetryPlugin", "RequestTrace"]

TRACE = "trace"
"""`ctx.shared` key of this request's `RequestTrace`."""

KONG_FORMATS = ("w3c", "b3", "b3-single", "jaeger", "ot", "aws", "gcp", "datadog", "instana")
SUPPORTED_FORMATS = ("w3c",)


def _url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


Url = Annotated[str, AfterValidator(_url)]


def _formats(values: tuple[str, ...] | None, *, allow_preserve: bool) -> tuple[str, ...] | None:
    if values is None:
        return None
    for value in values:
        if value == "preserve" and allow_preserve:
            continue
        if value not in KONG_FORMATS:
            raise ValueError(f"unknown propagation format {value!r}")
        if value not in SUPPORTED_FORMATS:
            raise ValueError(f"propagation format {value!r} is not implemented in Forecourt (only w3c)")
    return values


class QueueConfig(PluginConfig):
    """Kong's plugin queue (`typedefs.queue`), as the span exporter uses it."""

    max_batch_size: Int = Field(200, ge=1, le=1_000_000, description="Spans per export request.")
    max_coalescing_delay: float = Field(
        1, ge=0, le=3600, description="Seconds to wait for a batch to fill before sending what is queued."
    )
    max_entries: Int = Field(10_000, ge=1, le=1_000_000, description="Queued spans; more are dropped.")
    max_bytes: Int | None = Field(None, description="Not supported by Forecourt (must be null).")
    max_retry_time: float = Field(60, description="Seconds a failing batch is retried before it is dropped.")
    initial_retry_delay: float = Field(0.01, ge=0.001, le=1_000_000, description="First retry delay (s).")
    max_retry_delay: float = Field(60, ge=0.001, le=1_000_000, description="Longest retry delay (s).")
    concurrency_limit: Literal[1, -1] = Field(1, description="1: one export at a time (-1 is not supported).")

    @field_validator("max_bytes")
    @classmethod
    def _no_max_bytes(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("queue.max_bytes is not implemented in Forecourt (use max_entries)")
        return value

    @field_validator("concurrency_limit")
    @classmethod
    def _one_at_a_time(cls, value: int) -> int:
        if value != 1:
            raise ValueError("queue.concurrency_limit -1 (no queue) is not implemented in Forecourt")
        return value


class PropagationConfig(PluginConfig):
    """Kong's `propagation` record: which headers are read, written and removed."""

    extract: tuple[str, ...] | None = Field(
        None, description="Formats read from incoming requests ([] = start every trace anew)."
    )
    inject: tuple[str, ...] | None = Field(
        None, description="Formats written upstream ('preserve' = the incoming one; [] = none)."
    )
    clear: tuple[str, ...] | None = Field(None, description="Headers removed from the upstream request.")
    default_format: str = Field("w3c", description="Format injected when none was extracted.")

    @field_validator("extract")
    @classmethod
    def _extract(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _formats(value, allow_preserve=False)

    @field_validator("inject")
    @classmethod
    def _inject(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _formats(value, allow_preserve=True)

    @field_validator("default_format")
    @classmethod
    def _default(cls, value: str) -> str:
        _formats((value,), allow_preserve=False)
        return value


class OpenTelemetryConfig(PluginConfig):
    traces_endpoint: Url | None = Field(
        None, description="OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); none = no export."
    )
    endpoint: Url | None = Field(None, description="Deprecated alias of traces_endpoint (Kong < 3.6).")
    logs_endpoint: Url | None = Field(None, description="Not supported by Forecourt (must be null).")
    headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with every export.")
    resource_attributes: dict[str, str] = Field(
        default_factory=dict, description="OTLP resource attributes (override service.name etc.)."
    )
    queue: QueueConfig = Field(default_factory=QueueConfig)
    batch_span_count: Int | None = Field(None, ge=1, description="Deprecated: queue.max_batch_size.")
    batch_flush_delay: Int | None = Field(None, ge=0, description="Deprecated: queue.max_coalescing_delay.")
    connect_timeout: TimeoutMs = Field(1000, description="Exporter connect timeout (ms).")
    send_timeout: TimeoutMs = Field(5000, description="Exporter send timeout (ms).")
    read_timeout: TimeoutMs = Field(5000, description="Exporter read timeout (ms).")
    http_response_header_for_traceid: str | None = Field(
        None, description="Response header that carries the trace id."
    )
    header_type: Literal[
        "preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog"
    ] = Field("preserve", description="Deprecated: the propagation format (preserve, ignore or w3c).")
    sampling_rate: float | None = Field(
        None, ge=0, le=1, description="Probability a new trace is sampled (default 1)."
    )
    propagation: PropagationConfig = Field(default_factory=PropagationConfig)

    @field_validator("logs_endpoint")
    @classmethod
    def _no_logs(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("log export (logs_endpoint) is not implemented in Forecourt")
        return value

    @field_validator("header_type")
    @classmethod
    def _header_type(cls, value: str) -> str:
        if value not in ("preserve", "ignore", "w3c"):
            raise ValueError(f"header_type {value!r} is not implemented in Forecourt (preserve, ignore, w3c)")
        return value

    @field_validator("resource_attributes")
    @classmethod
    def _attributes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not item:
                raise ValueError(f"resource attribute {key!r}: required field missing")
        return value


class RequestTrace:
    """This request's trace: ids and the sampling decision (on `ctx.shared[TRACE]`)."""

    __slots__ = ("parent_id", "sampled", "span_id", "trace_id", "upstream_span_id")

    def __init__(
        self, trace_id: str, span_id: str, parent_id: str | None, upstream_span_id: str, sampled: bool
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.upstream_span_id = upstream_span_id
        self.sampled = sampled


class OpenTelemetryPlugin(Plugin[OpenTelemetryConfig]):
    """Propagates or starts a W3C trace per request and records the gateway and upstream spans."""

    name = "opentelemetry"
    priority = 14
    Config = OpenTelemetryConfig

    def __new__(cls, config: OpenTelemetryConfig, scope: PluginScope, env: PluginEnv) -> OpenTelemetryPlugin:
        # The chain calls a phase only for classes that override it: the response phase (and its
        # per-request header copy) is paid only when a trace-id response header is configured.
        chosen = cls
        if cls is OpenTelemetryPlugin and config.http_response_header_for_traceid:
            chosen = _WithTraceIdHeader
        return super().__new__(chosen)

    def __init__(self, config: OpenTelemetryConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        propagation = config.propagation
        header_type = config.header_type
        extract = propagation.extract
        if extract is None:
            extract = () if header_type == "ignore" else ("w3c",)
        inject = propagation.inject
        if inject is None:
            inject = ("w3c",) if header_type in ("ignore", "w3c") else ("preserve",)
        self.extract = bool(extract)
        self.inject = bool(inject)  # 'preserve' and 'w3c' both mean w3c: the only format there is
        self.clear = tuple(h.lower().encode("latin-1") for h in propagation.clear or ())
        rate = 1.0 if config.sampling_rate is None else config.sampling_rate
        self.sampler = RatioSampler(rate)
        header = config.http_response_header_for_traceid
        self.trace_header = header.encode("latin-1") if header else b""
        self.exporter: OtlpExporter | None = None
        self._settings = self._export_settings(env)

    def _export_settings(self, env: PluginEnv) -> ExportSettings | None:
        config = self.config
        url = config.traces_endpoint or config.endpoint
        if url is None:
            return None
        queue = config.queue
        resource: dict[str, Any] = {
            "service.name": "forecourt",
            "service.version": __version__,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        }
        if env.gateway:
            resource["forecourt.gateway"] = env.gateway
        resource.update(config.resource_attributes)
        return ExportSettings(
            url=url,
            headers=dict(config.headers),
            resource=resource,
            max_batch_size=config.batch_span_count or queue.max_batch_size,
            max_coalescing_delay=float(
                queue.max_coalescing_delay if config.batch_flush_delay is None else config.batch_flush_delay
            ),
            max_entries=queue.max_entries,
            max_retry_time=queue.max_retry_time,
            initial_retry_delay=queue.initial_retry_delay,
            max_retry_delay=queue.max_retry_delay,
            connect_timeout=config.connect_timeout / 1000,
            send_timeout=config.send_timeout / 1000,
            read_timeout=config.read_timeout / 1000,
        )

    async def start(self) -> None:
        if self._settings is not None and self.exporter is None:
            self.exporter = OtlpExporter(self._settings)
            self.exporter.start()

    async def close(self) -> None:
        exporter = self.exporter
        self.exporter = None
        if exporter is not None:
            await exporter.close()

    # ------------------------------------------------------------------ access
    def access(self, ctx: Context) -> None:
        headers = ctx.req.headers
        found = 0  # traceparent headers; more than one is invalid (W3C)
        at = -1
        has_state = not self.extract  # unread state belongs to a trace we do not continue
        for index, (name, _) in enumerate(headers):
            lname = name.lower()
            if lname == TRACEPARENT:
                found += 1
                at = index
            elif lname == TRACESTATE:
                has_state = True
        incoming = parse_traceparent(headers[at][1]) if found == 1 and self.extract else None
        span_id, upstream_span_id = new_span_ids()
        if incoming is not None:
            trace = RequestTrace(
                incoming.trace_id, span_id, incoming.parent_id, upstream_span_id, incoming.sampled
            )
        else:
            trace_id = new_trace_id()
            trace = RequestTrace(trace_id, span_id, None, upstream_span_id, self.sampler.sample(trace_id))
        ctx.shared[TRACE] = trace
        rebuilt = False
        if incoming is None and has_state:
            ctx.remove_header(TRACESTATE)
            rebuilt = True
        for name in self.clear:
            ctx.remove_header(name)
            rebuilt = True
        if self.inject:
            value = format_traceparent(trace.trace_id, upstream_span_id, trace.sampled)
            if found == 0:
                ctx.req.headers.append((TRACEPARENT, value))
            elif found == 1 and not rebuilt:
                headers[at] = (TRACEPARENT, value)  # in place: no second pass over the headers
            else:
                ctx.set_header(TRACEPARENT, value)

    # ------------------------------------------------------------------ log
    def log(self, ctx: Context) -> None:
        trace = ctx.shared.get(TRACE)
        ex = ctx.exchange
        if not isinstance(trace, RequestTrace) or ex is None:
            return
        now = ex.runtime.loop.time()
        wall_ns = time.time_ns()
        # Loop times → Unix time: one clock reading per request, offsets from the loop clock.
        offset_ns = wall_ns - int(now * 1e9)
        start = ex.req.start
        start_ns = int(start * 1e9) + offset_ns
        gateway_span = {"start": start_ns / 1e9, "duration_ms": round((now - start) * 1000, 3)}
        record: dict[str, Any] = {
            "trace_id": trace.trace_id,
            "span_id": trace.span_id,
            "parent_span_id": trace.parent_id,
            "sampled": trace.sampled,
            "spans": {"gateway": gateway_span},
        }
        upstream_called = ex.bytes_sent_upstream
        sent = ex.t_sent
        upstream_end = ex.t_first_byte or now
        if upstream_called and sent:
            record["spans"]["upstream"] = {
                "span_id": trace.upstream_span_id,
                "start": (int(sent * 1e9) + offset_ns) / 1e9,
                "duration_ms": round((upstream_end - sent) * 1000, 3),
            }
        fields = ctx.shared.get(LOG_FIELDS)
        if fields is None:
            ctx.shared[LOG_FIELDS] = {"trace": record}
        else:
            fields["trace"] = record
        exporter = self.exporter
        if exporter is None or not trace.sampled:
            return
        req = ex.req
        route = ctx.route
        service = route.service.name if route.service is not None else ""
        status = ex.status
        exporter.submit(
            Span(
                trace.trace_id,
                trace.span_id,
                trace.parent_id,
                f"{req.method} {route.name}",
                SPAN_KIND_SERVER,
                start_ns,
                wall_ns,
                {
                    "http.request.method": req.method,
                    "url.path": req.raw_path,
                    "http.response.status_code": status,
                    "client.address": ctx.client_ip,
                    "forecourt.route": route.name,
                    "forecourt.service": service,
                    "forecourt.request_id": req.request_id,
                },
                error=status >= 500,
            )
        )
        if upstream_called and sent:
            endpoint = ex.endpoint
            attributes: dict[str, Any] = {"http.request.method": req.method, "forecourt.tries": ex.attempts}
            if endpoint is not None:
                attributes["server.address"] = endpoint.ip
                attributes["server.port"] = endpoint.port
                attributes["forecourt.target"] = endpoint.label
            if ex.t_first_byte:
                attributes["http.response.status_code"] = status
            exporter.submit(
                Span(
                    trace.trace_id,
                    trace.upstream_span_id,
                    trace.span_id,
                    f"upstream {service}",
                    SPAN_KIND_CLIENT,
                    int(sent * 1e9) + offset_ns,
                    int(upstream_end * 1e9) + offset_ns,
                    attributes,
                    error=not ex.t_first_byte or status >= 500,
                )
            )


class _WithTraceIdHeader(OpenTelemetryPlugin):
    """The plugin with `http_response_header_for_traceid` set: also stamps responses."""

    def response(self, ctx: Context, head: ResponseHead) -> None:
        trace = ctx.shared.get(TRACE)
        if isinstance(trace, RequestTrace):
            head.set(self.trace_header, trace.trace_id.encode("ascii"))
