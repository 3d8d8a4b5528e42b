"""The router: a route table compiled once per config snapshot, resolved per request.

`Router(specs)` does all the work that does not depend on the request — splitting routes into
path groups, ranking them by Kong's priority (see `forecourt.routing.priority`), compiling
regexes, parsing host patterns, building the first-segment index. `resolve` then looks up the
prefix groups whose prefix the path starts with (one dict lookup per prefix length in use under
the request's first segment), then the regex and path-less groups of that segment in priority
order while they still outrank the best prefix group. The answer is the highest-priority group
whose every condition holds, as in Kong 3.x's `traditional_compatible` router.

Condition semantics (all of a route's conditions must hold; any one value of each suffices):

- paths: prefixes are plain string prefixes of the normalised path (`/api/orders` matches
  `/api/orders/1` and also `/api/ordersX`, as in Kong); `~` paths are anchored regexes.
- hosts: see `forecourt.routing.hosts`; a request without Host never matches a route with hosts.
- methods: exact, upper-case.
- headers: see `forecourt.routing.headers`; request headers are scanned only when some route
  has header conditions, and then only for the names routes test.
- snis: checked only for `https` requests (Kong ignores SNI conditions on plain HTTP).
- protocols: not a match condition, as in Kong; see `RouteMatch.https_required`.
"""

from __future__ import annotations

from collections.abc import Sequence

from forecourt.routing.compiled import CompiledRoute, compile_spec
from forecourt.routing.hosts import split_host_port
from forecourt.routing.index import RouteIndex
from forecourt.routing.match import RouteMatch
from forecourt.routing.spec import RouteSpec

__all__ = ["Router"]


class Router:
    """An immutable, compiled route table."""

    __slots__ = ("_by_prefix", "_header_names", "_index", "_no_rank", "_routes", "_uses_hosts", "specs")

    def __init__(self, specs: Sequence[RouteSpec]) -> None:
        self.specs: tuple[RouteSpec, ...] = tuple(specs)
        routes = [route for i, spec in enumerate(self.specs) for route in compile_spec(spec, i)]
        routes.sort(key=lambda route: route.key)
        for rank, route in enumerate(routes):
            route.rank = rank
        self._routes: tuple[CompiledRoute, ...] = tuple(routes)
        self._header_names = frozenset(h.name for route in routes for h in route.headers)
        self._uses_hosts = any(route.host_names is not None for route in routes)
        self._index = RouteIndex(routes)
        self._by_prefix = self._index.by_prefix
        self._no_rank = len(routes)  # worse than every real rank

    def __len__(self) -> int:
        """The number of compiled path groups (at least one per HTTP route)."""
        return len(self._routes)

    def resolve(
        self,
        method: str,
        host: str | None,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        scheme: str = "http",
        sni: str | None = None,
    ) -> RouteMatch | None:
        """The highest-priority route matching the request, or None (the server answers 404).

        `path` must already be normalised (`normalize_path`); `host` is the raw Host header;
        `headers` are (name, raw value) pairs as received, names in any case; `scheme` is the
        request's scheme as Kong sees it (`X-Forwarded-Proto` from a trusted proxy, else the
        listener's).
        """
        end = path.find("/", 1)
        bucket = self._index.bucket(path[1:end] if end != -1 else path[1:])
        https = scheme == "https"
        host_name: str | None = None
        host_port: int | None = None
        if host is not None and self._uses_hosts:
            host_name, host_port = split_host_port(host)
        header_values = self._collect_headers(headers) if self._header_names else None

        # Prefix groups: exact lookups by length; keep the best-ranked one that accepts.
        best_rank = self._no_rank
        best_match: RouteMatch | None = None
        size = len(path)
        for length in bucket.lengths:
            if length > size:
                continue
            slot = self._by_prefix.get(path[:length])
            if slot is None:
                continue
            if host_name and slot.by_host:
                for route, secure_match, insecure_match in slot.by_host.get(host_name, ()):
                    if route.rank > best_rank:
                        break
                    if route.accepts(method, host_name, host_port, header_values, https, sni):
                        best_rank = route.rank
                        best_match = secure_match if https else insecure_match
                        break
            for route, secure_match, insecure_match in slot.rest:
                if route.rank > best_rank:
                    break
                if route.unconditional or route.accepts(
                    method, host_name, host_port, header_values, https, sni
                ):
                    best_rank = route.rank
                    best_match = secure_match if https else insecure_match
                    break

        # Regex and path-less groups, in priority order, only while they outrank the best so far.
        others = bucket.others
        if host_name and others.by_host:
            by_host = others.by_host.get(host_name)
            if by_host is not None:
                best_rank, best_match = self._scan_others(
                    by_host,
                    best_rank,
                    best_match,
                    method,
                    host_name,
                    host_port,
                    path,
                    header_values,
                    https,
                    sni,
                )
        if others.rest:
            best_rank, best_match = self._scan_others(
                others.rest,
                best_rank,
                best_match,
                method,
                host_name,
                host_port,
                path,
                header_values,
                https,
                sni,
            )
        return best_match

    @staticmethod
    def _scan_others(
        routes: tuple[CompiledRoute, ...],
        best_rank: int,
        best_match: RouteMatch | None,
        method: str,
        host_name: str | None,
        host_port: int | None,
        path: str,
        header_values: dict[bytes, list[str]] | None,
        https: bool,
        sni: str | None,
    ) -> tuple[int, RouteMatch | None]:
        """The first regex/path-less group that fully matches and outranks `best_rank`, if any."""
        for route in routes:
            if route.rank > best_rank:
                break
            if not (
                route.unconditional or route.accepts(method, host_name, host_port, header_values, https, sni)
            ):
                continue
            if not route.regexes:
                return route.rank, route.no_path_match[0 if https else 1]
            for regex in route.regexes:
                found = regex.pattern.match(path)
                if found is not None:
                    return route.rank, route.regex_match(regex, found, not https)
        return best_rank, best_match

    def _collect_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, list[str]]:
        """Gather the values of the header names some route tests; values decode as latin-1."""
        wanted = self._header_names
        values: dict[bytes, list[str]] = {}
        for raw_name, value in headers:
            name = raw_name.lower()
            if name in wanted:
                values.setdefault(name, []).append(value.strip(b" \t").decode("latin-1"))
        return values
