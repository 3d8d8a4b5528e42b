"""The routing package's exceptions, in one small tree.

    ValueError
    ├── InvalidPath          a request path that cannot be routed safely; the server answers 400
    └── InvalidRoutePattern  a route condition that cannot be compiled; the config compile stage
                             reports it as a config error naming the route

Both subclass `ValueError` so callers that only care about "bad input" can catch one type, while
the server and the config loader each catch the one that belongs to their boundary.
"""

from __future__ import annotations


class InvalidPath(ValueError):
    """The request path is malformed or unsafe to route (bad escape, control byte, not absolute)."""


class InvalidRoutePattern(ValueError):
    """A route's path, host, header or SNI condition cannot be compiled."""
