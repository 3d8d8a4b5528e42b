"""The `jwt` plugin (Kong's, plus JWKS credentials and stricter token checks)."""

from forecourt.plugins.jwt.config import JwtConfig
from forecourt.plugins.jwt.plugin import JwtPlugin

__all__ = ["JwtConfig", "JwtPlugin"]
