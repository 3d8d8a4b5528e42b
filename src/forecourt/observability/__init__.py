"""Access log, metrics and tracing."""

from forecourt.observability.access_log import AccessLog

__all__ = ["AccessLog"]
