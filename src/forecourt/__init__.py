"""Forecourt: an API gateway and service-integration platform configured in Kong's declarative format."""

from forecourt import _native  # first: decides whether the compiled modules may load (see _native)

__version__ = "0.1.0"
NATIVE_STATUS = _native.STATUS

__all__ = ["NATIVE_STATUS", "__version__"]
