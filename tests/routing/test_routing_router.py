"""Router.resolve against Kong 3.x semantics: conditions, priorities, captures."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from forecourt.routing import (
    EMPTY_CAPTURES,
    InvalidRoutePattern,
    RouteMatch,
    Router,
    RouteSpec,
    normalize_path,
)

Headers = Sequence[tuple[bytes, bytes]]


def resolve(
    router: Router,
    path: str,
    *,
    method: str = "GET",
    host: str | None = "example.com",
    headers: Headers = (),
    scheme: str = "http",
    sni: str | None = None,
) -> RouteMatch | None:
    return router.resolve(method, host, normalize_path(path), headers, scheme, sni)


def winner(specs: Sequence[RouteSpec], path: str, **kwargs: Any) -> str | None:
    found = resolve(Router(specs), path, **kwargs)
    return None if found is None else found.spec.name


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("/api/orders", True),
        ("/api/orders/", True),
        ("/api/orders/1", True),
        ("/api/ordersX", True),  # Kong prefixes are plain string prefixes
        ("/api/order", False),
        ("/api", False),
        ("/API/orders", False),
        ("/x/api/orders", False),
    ],
)
def test_prefix_path(path: str, matches: bool) -> None:
    assert (winner([RouteSpec("orders", paths=("/api/orders",))], path) == "orders") is matches


def test_traversal_does_not_reach_a_route_it_does_not_match() -> None:
    specs = [RouteSpec("orders", paths=("/api/orders",))]
    for path in ("/api/orders/../admin", "/api/orders/%2e%2e/admin", "/api/orders/.%2E/admin"):
        assert winner(specs, path) is None


def test_traversal_lands_on_the_route_of_the_resolved_path() -> None:
    specs = [RouteSpec("orders", paths=("/api/orders",)), RouteSpec("admin", paths=("/api/admin",))]
    assert winner(specs, "/api/orders/../admin") == "admin"


def test_encoded_slash_is_not_a_separator() -> None:
    specs = [RouteSpec("ab", paths=("/a/b",)), RouteSpec("a", paths=("/a",))]
    assert winner(specs, "/a%2Fb") == "a"
    assert winner(specs, "/a/b") == "ab"


def test_route_prefixes_are_normalised_too() -> None:
    specs = [RouteSpec("tilde", paths=("/%7Euser//docs",))]
    assert winner(specs, "/~user/docs/x") == "tilde"


def test_longest_prefix_wins_regardless_of_order() -> None:
    specs = [
        RouteSpec("short", paths=("/api",), order=0),
        RouteSpec("long", paths=("/api/orders",), order=1),
    ]
    assert winner(specs, "/api/orders/1") == "long"
    assert winner(specs, "/api/users") == "short"


def test_regex_path_is_anchored_and_matches_normalised_path() -> None:
    specs = [RouteSpec("rx", paths=(r"~/orders/\d+$",))]
    assert winner(specs, "/orders/12") == "rx"
    assert winner(specs, "/orders/12/x") is None
    assert winner(specs, "/api/orders/12") is None
    assert winner(specs, "/orders/%31%32") == "rx"


def test_no_route_at_all() -> None:
    assert winner([], "/") is None


# --- Kong priorities -----------------------------------------------------------------------------


def test_regex_beats_prefix_when_other_conditions_tie() -> None:
    specs = [
        RouteSpec("prefix", paths=("/api/orders/special",), order=0),
        RouteSpec("regex", paths=(r"~/api/orders/\w+",), order=1),
    ]
    assert winner(specs, "/api/orders/special") == "regex"


def test_more_condition_categories_beat_regex() -> None:
    specs = [
        RouteSpec("regex", paths=(r"~/api/.*",), regex_priority=100),
        RouteSpec("prefix+method", paths=("/api",), methods=("GET",)),
    ]
    assert winner(specs, "/api/x") == "prefix+method"
    assert winner(specs, "/api/x", method="POST") == "regex"


def test_host_and_path_beat_longer_path_alone() -> None:
    specs = [
        RouteSpec("path", paths=("/api/orders/items",)),
        RouteSpec("host+path", paths=("/",), hosts=("example.com",)),
    ]
    assert winner(specs, "/api/orders/items") == "host+path"


def test_regex_priority_orders_regexes_then_config_order() -> None:
    specs = [
        RouteSpec("low", paths=(r"~/v\d+/status",), regex_priority=0, order=0),
        RouteSpec("high", paths=(r"~/v1/.*",), regex_priority=5, order=1),
        RouteSpec("high-later", paths=(r"~/v\d/.*",), regex_priority=5, order=2),
    ]
    assert winner(specs, "/v1/status") == "high"
    assert winner(specs, "/v2/status") == "high-later"
    assert winner(specs, "/v10/status") == "low"


def test_regex_priority_does_not_apply_to_prefixes() -> None:
    # Kong issue #7687: regex_priority on prefix routes must not beat a longer prefix.
    specs = [
        RouteSpec("root", paths=("/",), hosts=("foo.com",), regex_priority=1),
        RouteSpec("v1", paths=("/v1",), hosts=("foo.com",)),
        RouteSpec("other", paths=(r"~/.*",), hosts=("bar.com",)),
    ]
    assert winner(specs, "/v1/x", host="foo.com") == "v1"


def test_negative_regex_priority_sorts_last() -> None:
    specs = [
        RouteSpec("neg", paths=(r"~/a",), regex_priority=-1, order=0),
        RouteSpec("zero", paths=(r"~/a",), order=1),
    ]
    assert winner(specs, "/a") == "zero"


def test_equal_priority_falls_back_to_order_not_list_position() -> None:
    specs = [
        RouteSpec("second", paths=("/api",), order=2),
        RouteSpec("first", paths=("/api",), order=1),
    ]
    assert winner(specs, "/api") == "first"


def test_exact_host_beats_wildcard_host() -> None:
    specs = [
        RouteSpec("wild", hosts=("*.example.com",), paths=("/api/long/prefix",)),
        RouteSpec("exact", hosts=("api.example.com",), paths=("/",)),
    ]
    assert winner(specs, "/api/long/prefix", host="api.example.com") == "exact"
    assert winner(specs, "/api/long/prefix", host="www.example.com") == "wild"


def test_more_headers_beat_fewer() -> None:
    specs = [
        RouteSpec("one", paths=("/a/longer",), headers={"x-a": ("1",)}),
        RouteSpec("two", paths=("/a",), headers={"x-a": ("1",), "x-b": ("2",)}),
    ]
    both = [(b"x-a", b"1"), (b"x-b", b"2")]
    assert winner(specs, "/a/longer", headers=both) == "two"
    assert winner(specs, "/a/longer", headers=both[:1]) == "one"


def test_route_paths_are_split_and_prioritised_separately() -> None:
    # One route with a regex and a short prefix; another with a longer prefix.
    specs = [
        RouteSpec("mixed", paths=("/a", r"~/a/b/\d+"), order=0),
        RouteSpec("long", paths=("/a/b",), order=1),
    ]
    assert winner(specs, "/a/b/1") == "mixed"  # its regex group outranks every prefix
    assert winner(specs, "/a/b/x") == "long"  # its short prefix loses to the longer one
    assert winner(specs, "/a/c") == "mixed"


# --- hosts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route_host", "request_host", "matches"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com", True),
        ("Example.COM", "example.com", True),
        ("example.com", "example.com:8000", True),  # no port in the route: any port
        ("example.com:8000", "example.com:8000", True),
        ("example.com:8000", "example.com:9000", False),
        ("example.com:8000", "example.com", False),
        ("example.com", "www.example.com", False),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "api.example.com:8443", True),
        ("*.example.com:8443", "api.example.com:8443", True),
        ("*.example.com:8443", "api.example.com", False),
        ("example.*", "example.org", True),
        ("example.*", "example.co.uk:80", True),
        ("example.*", "www.example.org", False),
        ("[::1]:8000", "[::1]:8000", True),
        ("[::1]", "[::1]:8000", True),
        ("127.0.0.1", "127.0.0.1:8000", True),
    ],
)
def test_hosts(route_host: str, request_host: str, matches: bool) -> None:
    specs = [RouteSpec("r", hosts=(route_host,))]
    assert (winner(specs, "/", host=request_host) == "r") is matches


def test_request_without_host_never_matches_a_host_route() -> None:
    specs = [RouteSpec("hosted", hosts=("example.com",)), RouteSpec("any", paths=("/",))]
    assert winner(specs, "/", host=None) == "any"


@pytest.mark.parametrize("bad", ["a.*.com", "*.example.*", "*", "exa*mple.com", "", "example.com:70000"])
def test_invalid_host_pattern(bad: str) -> None:
    with pytest.raises(InvalidRoutePattern, match="'bad-host'"):
        Router([RouteSpec("bad-host", hosts=(bad,))])


# --- methods, headers, snis, protocols -------------------------------------------------------------


def test_methods() -> None:
    specs = [RouteSpec("read", paths=("/",), methods=("GET", "head"))]
    assert winner(specs, "/", method="GET") == "read"
    assert winner(specs, "/", method="HEAD") == "read"
    assert winner(specs, "/", method="POST") is None


@pytest.mark.parametrize(
    ("values", "request_headers", "matches"),
    [
        (("Beta",), [(b"x-version", b"beta")], True),
        (("beta",), [(b"x-version", b" BETA ")], True),
        (("beta",), [(b"x-version", b"alpha")], False),
        (("beta",), [(b"x-version", b"alpha"), (b"x-version", b"beta")], True),
        (("beta",), [(b"x-other", b"beta")], False),
        (("beta",), [], False),
        (("a", "b"), [(b"x-version", b"b")], True),
        (("~*^v\\d+$",), [(b"x-version", b"V12")], True),
        (("~*v\\d",), [(b"x-version", b"prefix-v1-suffix")], True),  # unanchored search
        (("~*^v\\d+$",), [(b"x-version", b"v12x")], False),
        (("~*\\D",), [(b"x-version", b"123")], False),  # not Kong's lower-cased `\d`
    ],
)
def test_header_values(values: tuple[str, ...], request_headers: Headers, matches: bool) -> None:
    specs = [RouteSpec("h", headers={"X-Version": values})]
    assert (winner(specs, "/", headers=request_headers) == "h") is matches


def test_every_header_name_must_match() -> None:
    specs = [RouteSpec("h", headers={"x-a": ("1",), "x_b": ("2",)})]
    assert winner(specs, "/", headers=[(b"x-a", b"1"), (b"x-b", b"2")]) == "h"
    assert winner(specs, "/", headers=[(b"x-a", b"1")]) is None


def test_headers_are_not_scanned_when_no_route_uses_them() -> None:
    class Untouchable(Sequence[tuple[bytes, bytes]]):
        def __len__(self) -> int:
            raise AssertionError("headers scanned")

        def __getitem__(self, index: Any) -> Any:
            raise AssertionError("headers scanned")

        def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
            raise AssertionError("headers scanned")

    router = Router([RouteSpec("a", paths=("/a",), hosts=("example.com",))])
    assert resolve(router, "/a", headers=Untouchable()) is not None


def test_host_header_condition_is_rejected() -> None:
    with pytest.raises(InvalidRoutePattern, match="hosts"):
        Router([RouteSpec("h", headers={"Host": ("example.com",)})])


def test_bad_header_regex_names_the_route() -> None:
    with pytest.raises(InvalidRoutePattern, match="'hr'"):
        Router([RouteSpec("hr", headers={"x": ("~*(",)})])


def test_snis_only_apply_to_https() -> None:
    specs = [RouteSpec("tls", paths=("/",), snis=("api.example.com.",), protocols=("http", "https"))]
    assert winner(specs, "/", scheme="https", sni="API.example.com") == "tls"
    assert winner(specs, "/", scheme="https", sni="other.example.com") is None
    assert winner(specs, "/", scheme="https", sni=None) is None
    assert winner(specs, "/", scheme="http") == "tls"


def test_https_only_route_matches_plain_http_but_flags_it() -> None:
    router = Router([RouteSpec("secure", paths=("/",), protocols=("https",))])
    plain = resolve(router, "/x", scheme="http")
    secure = resolve(router, "/x", scheme="https")
    assert plain is not None
    assert plain.https_required
    assert secure is not None
    assert not secure.https_required


def test_http_only_route_over_https_is_served() -> None:
    found = resolve(Router([RouteSpec("plain", paths=("/",), protocols=("http",))]), "/", scheme="https")
    assert found is not None
    assert not found.https_required


def test_stream_routes_are_ignored() -> None:
    assert winner([RouteSpec("tcp", snis=("a",), protocols=("tcp", "tls"))], "/") is None


# --- the match object ------------------------------------------------------------------------------


def test_prefix_match_object() -> None:
    payload = object()
    router = Router([RouteSpec("p", payload=payload, paths=("/api",))])
    found = resolve(router, "/api/x")
    assert found is not None
    assert found.payload is payload
    assert found.uri_captures is EMPTY_CAPTURES
    assert found.matched_path == "/api"
    assert found.strip_len == len("/api")
    assert resolve(router, "/api/y") is found  # shared: no allocation per request


def test_regex_captures_numbered_and_named() -> None:
    router = Router([RouteSpec("rx", paths=(r"~/users/(?<id>\d+)(/(?<tab>\w+))?",))])
    found = resolve(router, "/users/42/posts/rest")
    assert found is not None
    assert found.uri_captures == {
        "0": "/users/42/posts",
        "1": "42",
        "2": "/posts",
        "3": "posts",
        "id": "42",
        "tab": "posts",
    }
    assert found.matched_path == "/users/42/posts"
    assert found.strip_len == len("/users/42/posts")
    bare = resolve(router, "/users/7")
    assert bare is not None
    assert bare.uri_captures == {"0": "/users/7", "1": "7", "id": "7"}


def test_regex_without_groups_has_no_captures() -> None:
    found = resolve(Router([RouteSpec("rx", paths=(r"~/a\d",))]), "/a1")
    assert found is not None
    assert found.uri_captures is EMPTY_CAPTURES


def test_strip_len_without_strip_or_without_paths() -> None:
    no_strip = resolve(Router([RouteSpec("n", paths=("/api",), strip_path=False)]), "/api/x")
    no_paths = resolve(Router([RouteSpec("h", hosts=("example.com",))]), "/api/x")
    assert no_strip is not None
    assert no_strip.strip_len == 1
    assert no_paths is not None
    assert no_paths.strip_len == 1
    assert no_paths.matched_path == ""


def test_invalid_regex_path_names_the_route() -> None:
    with pytest.raises(InvalidRoutePattern, match="'broken'"):
        Router([RouteSpec("broken", paths=("~/(",))])


def test_relative_path_is_rejected() -> None:
    with pytest.raises(InvalidRoutePattern, match="must start with"):
        Router([RouteSpec("rel", paths=("api",))])
