"""Properties: the segment index never changes the answer, and our priority order is Kong's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forecourt.routing import RouteMatch, Router, RouteSpec
from forecourt.routing.compiled import CompiledRoute, compile_spec
from forecourt.routing.hosts import split_host_port

_PATHS = [
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/ab",
    "/abc/",
    "/b/c",
    r"~/a/\d+",
    r"~/(a|b)/x",
    "~/a.*",
    r"~/b/(?<n>\w+)",
    "~.*",
]
_HOSTS = ["a.com", "*.a.com", "a.*", "b.com:8000"]


@st.composite
def route_specs(draw: st.DrawFn) -> list[RouteSpec]:
    count = draw(st.integers(min_value=0, max_value=8))
    specs = []
    for i in range(count):
        specs.append(
            RouteSpec(
                name=f"r{i}",
                paths=tuple(draw(st.lists(st.sampled_from(_PATHS), max_size=3, unique=True))),
                hosts=tuple(draw(st.lists(st.sampled_from(_HOSTS), max_size=2, unique=True))),
                methods=tuple(draw(st.lists(st.sampled_from(["GET", "POST"]), max_size=1))),
                headers=draw(st.sampled_from([{}, {"x-v": ("1",)}, {"x-v": ("1",), "x-w": ("~*.",)}])),
                regex_priority=draw(st.integers(min_value=-2, max_value=2)),
                order=draw(st.integers(min_value=0, max_value=3)),
            )
        )
    return specs


def _linear_resolve(
    router: Router, method: str, host: str | None, path: str, headers: tuple[tuple[bytes, bytes], ...]
) -> RouteMatch | None:
    """Reference: try every compiled group in priority order, no index."""
    host_name, host_port = split_host_port(host) if host is not None else (None, None)
    values: dict[bytes, list[str]] = {}
    for name, value in headers:
        values.setdefault(name, []).append(value.decode("latin-1"))
    for route in router._routes:
        if not route.accepts(method, host_name, host_port, values, False, None):
            continue
        for prefix, match, _ in route.prefixes:
            if path.startswith(prefix):
                return match
        for regex in route.regexes:
            found = regex.pattern.match(path)
            if found is not None:
                return route.regex_match(regex, found, False)
        if not route.prefixes and not route.regexes:
            return route.no_path_match[0]
    return None


@settings(max_examples=400)
@given(
    route_specs(),
    st.sampled_from(["/", "/a", "/a/", "/a/1", "/ab", "/abc/x", "/b/c", "/a/x", "/b/x", "/c", "/b/zz"]),
    st.sampled_from(["a.com", "x.a.com", "a.org", "b.com:8000", "b.com", None]),
    st.sampled_from(["GET", "POST"]),
    st.sampled_from([(), ((b"x-v", b"1"),), ((b"x-v", b"1"), (b"x-w", b"z"))]),
)
def test_index_agrees_with_a_linear_scan(
    specs: list[RouteSpec],
    path: str,
    host: str | None,
    method: str,
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    router = Router(specs)
    expected = _linear_resolve(router, method, host, path, headers)
    found = router.resolve(method, host, path, headers, "https")
    assert (found and (found.spec.name, found.matched_path, found.uri_captures)) == (
        expected and (expected.spec.name, expected.matched_path, expected.uri_captures)
    )


def _kong_priority(route: CompiledRoute) -> int:
    """Kong's 64-bit priority (kong/router/compat.lua get_priority), for non-negative regex_priority."""
    spec = route.spec
    weight = sum(1 for c in (spec.snis, spec.methods, spec.hosts, spec.headers, spec.paths) if c)
    plain = bool(spec.hosts) and not any("*" in h for h in spec.hosts)
    regex = bool(route.regexes)
    length = len(route.prefixes[0][0]) if route.prefixes else 0
    return (
        weight << 61
        | int(plain) << 60
        | min(len(spec.headers), 255) << 52
        | int(regex) << 51
        | (spec.regex_priority if regex else 0) << 19
        | (length & 0x7FFFF)
    )


@given(route_specs())
def test_priority_order_is_kongs(specs: list[RouteSpec]) -> None:
    routes = [r for i, s in enumerate(specs) if s.regex_priority >= 0 for r in compile_spec(s, i)]
    routes.sort(key=lambda r: r.key)
    priorities = [_kong_priority(r) for r in routes]
    assert priorities == sorted(priorities, reverse=True)


def test_many_routes_index_finds_each() -> None:
    specs = [RouteSpec(f"svc{i}", paths=(f"/svc{i}",), order=i) for i in range(300)]
    specs += [RouteSpec(f"rx{i}", paths=(rf"~/rx{i}/\d+",), order=i) for i in range(50)]
    router = Router(specs)
    for i in (0, 1, 10, 100, 299):
        found = router.resolve("GET", None, f"/svc{i}/x", ())
        assert found is not None
        assert found.spec.name == f"svc{i}"  # not svc1 for svc10: longest prefix wins
    found = router.resolve("GET", None, "/rx7/1", ())
    assert found is not None
    assert found.spec.name == "rx7"
    assert router.resolve("GET", None, "/nothing", ()) is None
