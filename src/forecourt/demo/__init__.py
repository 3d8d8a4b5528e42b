"""Demo services and the `forecourt demo` tour."""

from forecourt.demo.service import DemoService

__all__ = ["DemoService"]
