"""What the router needs to know about a route, independent of how the config spelled it.

The compile step turns each validated config route into a `RouteSpec`; the router never sees the
config models, so it can be tested (and reasoned about) on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route's match conditions and path handling, in Kong 3.x semantics.

    `payload` is opaque to the router: the compiled route object the proxy forwards with.
    `order` is the route's position in the config; Kong breaks remaining ties by creation time, and
    a declarative file's order is the closest equivalent.
    """

    name: str
    payload: Any = None
    paths: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snis: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ("http", "https")
    regex_priority: int = 0
    strip_path: bool = True
    preserve_host: bool = False
    path_handling: str = "v0"
    order: int = 0
