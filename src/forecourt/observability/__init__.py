"""Access log, metrics and tracing."""

from forecourt.observability.access_log import LOG_FIELDS, AccessLog
from forecourt.observability.metrics import REGISTRY, MetricsRegistry, ScrapeSources, render_metrics
from forecourt.observability.tracing import OtlpExporter, TraceParent, format_traceparent, parse_traceparent

__all__ = [
    "LOG_FIELDS",
    "REGISTRY",
    "AccessLog",
    "MetricsRegistry",
    "OtlpExporter",
    "ScrapeSources",
    "TraceParent",
    "format_traceparent",
    "parse_traceparent",
    "render_metrics",
]
