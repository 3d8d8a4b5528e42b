"""Forecourt: an API gateway and service-integration platform configured in Kong's declarative format."""

__version__ = "0.1.0"

__all__ = ["__version__"]
