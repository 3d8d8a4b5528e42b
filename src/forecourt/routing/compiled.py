"""One route path group compiled for matching: everything `Router.resolve` needs, precomputed.

A `RouteSpec` becomes one `CompiledRoute` per path group (Kong's split: all regex paths, then one
group per prefix length; a route without paths is one group). Each group has its own priority and
its own index keys, so `/api` and `~/api/v\\d+` of the same route sort and index independently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from forecourt.routing.errors import InvalidPath, InvalidRoutePattern
from forecourt.routing.headers import HeaderCondition
from forecourt.routing.hosts import HostMatcher
from forecourt.routing.match import EMPTY_CAPTURES, RouteMatch
from forecourt.routing.normalize import normalize_path
from forecourt.routing.patterns import compile_kong_regex, is_regex_path, literal_prefix
from forecourt.routing.priority import PriorityKey, priority_key
from forecourt.routing.spec import RouteSpec

__all__ = ["HTTP_PROTOCOLS", "CompiledRoute", "RegexPath", "compile_spec", "normalize_sni"]

HTTP_PROTOCOLS = frozenset({"http", "https", "grpc", "grpcs", "ws", "wss"})
_PLAIN_SECURE_PAIRS = (("http", "https"), ("grpc", "grpcs"), ("ws", "wss"))


class RegexPath:
    """A compiled regex path plus what building its captures needs."""

    __slots__ = ("groups", "literal", "names", "pattern")

    def __init__(self, body: str) -> None:
        self.pattern = compile_kong_regex(body)
        self.groups = self.pattern.groups
        self.names: tuple[tuple[str, int], ...] = tuple(self.pattern.groupindex.items())
        self.literal = literal_prefix(body)

    def captures(self, found: re.Match[str]) -> dict[str, str]:
        """Kong's `uri_captures`: numbered groups as strings, plus named groups."""
        if not self.groups:
            return EMPTY_CAPTURES
        captures = {"0": found.group(0)}
        for index, value in enumerate(found.groups(), start=1):
            if value is not None:
                captures[str(index)] = value
        for name, index in self.names:
            value = found.group(index)
            if value is not None:
                captures[name] = value
        return captures


class CompiledRoute:
    """One path group of one route. Attributes are read directly by `Router.resolve` (hot path)."""

    __slots__ = (
        "headers",
        "host_matcher",
        "host_names",
        "https_only",
        "key",
        "methods",
        "no_path_match",
        "prefixes",
        "rank",
        "regexes",
        "snis",
        "spec",
        "unconditional",
    )

    def __init__(
        self,
        spec: RouteSpec,
        key: PriorityKey,
        prefixes: tuple[str, ...],
        regexes: tuple[RegexPath, ...],
    ) -> None:
        self.spec = spec
        self.key = key
        self.rank = 0
        self.methods = frozenset(m.upper() for m in spec.methods) if spec.methods else None
        hosts = HostMatcher(spec.hosts, spec.name) if spec.hosts else None
        # Exact any-port names are tested inline; the matcher only when ports or wildcards need it.
        self.host_names = None if hosts is None else hosts.any_port
        self.host_matcher = hosts if hosts is not None and hosts.needs_full_check else None
        self.snis = frozenset(normalize_sni(s) for s in spec.snis) if spec.snis else None
        self.headers = tuple(HeaderCondition(n, v, spec.name) for n, v in spec.headers.items())
        self.https_only = _https_only(spec.protocols)
        #: Only a path condition (or none): `accepts` would be True, so the router skips the call.
        self.unconditional = not (self.methods or self.host_names is not None or self.snis or self.headers)
        self.regexes = regexes
        strip = spec.strip_path
        # Prefix matches carry nothing request-specific: build them once, share them per request.
        self.prefixes: tuple[tuple[str, RouteMatch, RouteMatch], ...] = tuple(
            (p, *self._shared_matches(p, len(p) if strip else 1)) for p in prefixes
        )
        self.no_path_match = self._shared_matches("", 1)

    def accepts(
        self,
        method: str,
        host_name: str | None,
        host_port: int | None,
        header_values: dict[bytes, list[str]] | None,
        https: bool,
        sni: str | None,
    ) -> bool:
        """Whether every condition other than the path holds for the request."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.host_names is not None:
            if host_name is None:
                return False
            if host_name not in self.host_names and (
                self.host_matcher is None or not self.host_matcher.matches(host_name, host_port)
            ):
                return False
        if self.snis is not None and https and (sni is None or normalize_sni(sni) not in self.snis):
            return False
        if self.headers:
            if header_values is None:
                return False
            for condition in self.headers:
                if not condition.matches(header_values.get(condition.name)):
                    return False
        return True

    def _shared_matches(self, matched: str, strip_len: int) -> tuple[RouteMatch, RouteMatch]:
        secure = RouteMatch(self.spec, EMPTY_CAPTURES, matched, strip_len, False)
        insecure = (
            RouteMatch(self.spec, EMPTY_CAPTURES, matched, strip_len, True) if self.https_only else secure
        )
        return secure, insecure

    def regex_match(self, regex: RegexPath, found: re.Match[str], insecure: bool) -> RouteMatch:
        """Build the (per-request) match for a regex path."""
        return RouteMatch(
            self.spec,
            regex.captures(found),
            found.group(0),
            found.end() if self.spec.strip_path else 1,
            insecure and self.https_only,
        )

    def index_keys(self) -> Iterator[str | None]:
        """Keys for the first-segment index: `"=seg"` (request's first segment is exactly `seg`),
        `"^seg"` (it starts with `seg`), or None (any request)."""
        literals = [p for p, _, _ in self.prefixes] or [r.literal for r in self.regexes]
        if not literals or not all(lit.startswith("/") for lit in literals):
            yield None
            return
        for literal in literals:
            end = literal.find("/", 1)
            yield "=" + literal[1:end] if end != -1 else "^" + literal[1:]


def normalize_sni(sni: str) -> str:
    """SNIs compare case-insensitively and without a final FQDN dot, as Kong strips it."""
    sni = sni.lower()
    return sni[:-1] if len(sni) > 1 and sni.endswith(".") else sni


def _https_only(protocols: tuple[str, ...]) -> bool:
    """Kong answers 426 when a route allows `https` but not `http` (or `grpcs` but not `grpc`)."""
    allowed = set(protocols)
    return any(secure in allowed and plain not in allowed for plain, secure in _PLAIN_SECURE_PAIRS)


def compile_spec(spec: RouteSpec, spec_index: int) -> list[CompiledRoute]:
    """Compile one route into its path groups; raise `InvalidRoutePattern` naming the route."""
    if not HTTP_PROTOCOLS.intersection(spec.protocols):
        return []  # a stream (tcp/tls/udp) route: not the HTTP router's business
    regex_bodies = [p[1:] for p in spec.paths if is_regex_path(p)]
    by_length: dict[int, list[str]] = {}
    for path in spec.paths:
        if is_regex_path(path):
            continue
        if not path.startswith("/"):
            raise InvalidRoutePattern(f"route {spec.name!r}: path must start with '/' or '~': {path!r}")
        try:
            prefix = normalize_path(path)
        except InvalidPath as exc:
            raise InvalidRoutePattern(f"route {spec.name!r}: invalid path {path!r}: {exc}") from exc
        group = by_length.setdefault(len(prefix), [])
        if prefix not in group:
            group.append(prefix)
    try:
        regexes = tuple(RegexPath(body) for body in regex_bodies)
    except InvalidRoutePattern as exc:
        raise InvalidRoutePattern(f"route {spec.name!r}: {exc}") from exc

    compiled: list[CompiledRoute] = []
    if regexes:
        key = priority_key(spec, regex=True, prefix_length=0, spec_index=spec_index, group_index=0)
        compiled.append(CompiledRoute(spec, key, (), regexes))
    for group_index, (length, prefixes) in enumerate(by_length.items(), start=1):
        key = priority_key(
            spec, regex=False, prefix_length=length, spec_index=spec_index, group_index=group_index
        )
        compiled.append(CompiledRoute(spec, key, tuple(prefixes), ()))
    if not spec.paths:
        key = priority_key(spec, regex=False, prefix_length=0, spec_index=spec_index, group_index=0)
        compiled.append(CompiledRoute(spec, key, (), ()))
    return compiled
