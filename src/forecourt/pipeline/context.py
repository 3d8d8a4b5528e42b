"""Per-request state shared by the plugins of one request.

A `Context` exists only on routes that have plugins, so a plugin-free route pays nothing for it.
Plugin instances hold immutable config; anything a plugin learns about the request lives here
(`consumer`, `credential`, `jwt_claims`, or its own entry in `shared`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from forecourt.http.response_head import header_pairs

if TYPE_CHECKING:
    from forecourt.http.request import Request
    from forecourt.http.server import ClientConnection
    from forecourt.pipeline.chain import PluginChain
    from forecourt.pipeline.consumers import Consumer, Credential
    from forecourt.plan import RoutePlan
    from forecourt.proxy.forward import Exchange


def _a_name_contains(headers: list[tuple[bytes, bytes]], fragment: bytes) -> bool:
    # A loop, not any() over a generator: compiled, the generator is an object made per call.
    for name, _ in headers:  # noqa: SIM110
        if fragment in name.lower():
            return True
    return False


# Compiled: one freed instance is kept for the next request (no allocation per request).
@mypyc_attr(free_list_len=1)
class ResponseHead:
    """The status and headers of a response while response-phase plugins may still change them.

    A response-phase plugin that needs to see the start of the body before it can settle a header
    (compression below a minimum size) sets `hold`: the head is then written only when the body
    filters first produce bytes, or at the end of the body, and body filters may still edit it.

    An upstream's head arrives as wire bytes (`wire`); its header list is parsed only when a
    plugin reads `headers` (or gets, sets or removes one). Until then `add`/`extend` only collect
    the new headers, and the proxy forwards the wire bytes with those spliced in: the cheap path
    for plugins that only add headers (rate-limiting's, an echoed correlation id).
    """

    __slots__ = ("_headers", "_lowered", "added", "hold", "reason", "status", "wire")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]] | None,
        wire: bytes | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self._headers = headers
        self.wire = wire
        self._lowered: bytes | None = None
        self.added: list[tuple[bytes, bytes]] = []  # added while `headers` was not parsed yet
        self.hold = False

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = self._headers
        if headers is None:
            assert self.wire is not None
            headers = self._headers = header_pairs(self.wire) + self.added
            self.added = []
        return headers

    @headers.setter
    def headers(self, value: list[tuple[bytes, bytes]]) -> None:
        self._headers = value
        self.added = []

    @property
    def parsed(self) -> bool:
        """Whether the header list was needed (otherwise only `added` holds changes)."""
        return self._headers is not None

    def lowered_wire(self) -> bytes | None:
        """The upstream's head in lowercase (made once: the proxy's own checks of it reuse it)."""
        lowered = self._lowered
        if lowered is None and self.wire is not None:
            lowered = self._lowered = self.wire.lower()
        return lowered

    def may_contain(self, fragment: bytes) -> bool:
        """False when no header of the head can contain `fragment` (lowercase) in its name; a
        cheap check before a plugin reads the whole list (True may be a false alarm)."""
        if self._headers is None:
            lowered = self.lowered_wire()
            if lowered is not None:
                return fragment in lowered or _a_name_contains(self.added, fragment)
        return _a_name_contains(self.headers, fragment)

    def get(self, name: bytes) -> bytes | None:
        lowered = name.lower()
        for n, v in self.headers:
            if n.lower() == lowered:
                return v
        return None

    def remove(self, name: bytes) -> None:
        lowered = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lowered]

    def set(self, name: bytes, value: bytes) -> None:
        self.remove(name)
        self.headers.append((name, value))

    def add(self, name: bytes, value: bytes) -> None:
        if self._headers is None and self.wire is not None:
            self.added.append((name, value))
        else:
            self.headers.append((name, value))

    def extend(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        if self._headers is None and self.wire is not None:
            self.added.extend(headers)
        else:
            self.headers.extend(headers)


# Compiled: one freed instance is kept for the next request (no allocation per request).
@mypyc_attr(free_list_len=1)
class Context:
    """One request's plugin state."""

    __slots__ = (
        "authenticated_groups",
        "chain",
        "client",
        "consumer",
        "credential",
        "exchange",
        "jwt_claims",
        "req",
        "response_head",
        "route",
        "shared",
        "upstream_path",
    )

    def __init__(self, req: Request, client: ClientConnection, route: RoutePlan, chain: PluginChain) -> None:
        self.req = req
        self.client = client
        self.route = route
        self.chain = chain
        self.consumer: Consumer | None = None
        self.credential: Credential | None = None
        self.authenticated_groups: tuple[str, ...] | None = None
        self.jwt_claims: dict[str, Any] | None = None
        self.shared: dict[str, Any] = {}
        self.response_head: ResponseHead | None = None
        self.upstream_path: str | None = None
        # The exchange serving this request (status, sizes, timings): what log-phase plugins read.
        self.exchange: Exchange | None = None

    def start_response(
        self, status: int, headers: list[tuple[bytes, bytes]] | None, wire: bytes | None
    ) -> ResponseHead:
        """The head response-phase plugins will see, as pairs or as an upstream's wire bytes."""
        head = ResponseHead(status, b"", headers, wire)
        self.response_head = head
        return head

    # ------------------------------------------------------------------ request headers
    @property
    def client_ip(self) -> str:
        return self.client.client_ip

    def header(self, name: bytes) -> bytes | None:
        """The first request header `name` (case-insensitive), or None."""
        lowered = name.lower()
        for n, v in self.req.headers:
            if n.lower() == lowered:
                return v
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        lowered = name.lower()
        return [v for n, v in self.req.headers if n.lower() == lowered]

    def set_header(self, name: bytes, value: bytes) -> None:
        """Replace every request header `name` with one (forwarded upstream)."""
        self.remove_header(name)
        self.req.headers.append((name, value))

    def add_header(self, name: bytes, value: bytes) -> None:
        self.req.headers.append((name, value))

    def remove_header(self, name: bytes) -> None:
        lowered = name.lower()
        self.req.headers = [(n, v) for n, v in self.req.headers if n.lower() != lowered]
