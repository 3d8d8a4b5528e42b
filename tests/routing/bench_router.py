"""Micro-benchmark of Router.resolve (and normalize_path): ns per call for 1 and 1,000 routes.

Not collected by pytest (no `test_` prefix). Run: `.venv/bin/python tests/routing/bench_router.py`.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from forecourt.routing import Router, RouteSpec, normalize_path

HEADERS = ((b"host", b"api.example.com"), (b"accept", b"*/*"), (b"user-agent", b"bench"))


def per_call_ns(func: Callable[[], object], number: int = 200_000) -> float:
    best = min(timeit.repeat(func, number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    one = Router([RouteSpec("orders", paths=("/api/orders",))])
    ns = per_call_ns(lambda: one.resolve("GET", "api.example.com", "/api/orders/123", HEADERS))
    print(f"1 prefix route:                            {ns:7.0f} ns/resolve")

    mixed = [RouteSpec(f"svc{i}", paths=(f"/svc{i}",), order=i) for i in range(700)]
    mixed += [RouteSpec(f"api{i}", paths=(f"/api/v1/res{i}",), methods=("GET",), order=i) for i in range(200)]
    mixed += [RouteSpec(f"rx{i}", paths=(rf"~/rx{i}/(?<id>\d+)$",), order=i) for i in range(50)]
    mixed += [RouteSpec(f"host{i}", hosts=(f"h{i}.example.com",), paths=("/",), order=i) for i in range(50)]
    big = Router(mixed)
    assert len(mixed) == 1000
    cases = {
        "prefix, first segment": ("GET", "api.example.com", "/svc512/items/7"),
        "prefix under shared segment": ("GET", "api.example.com", "/api/v1/res150/x"),
        "regex with captures": ("GET", "api.example.com", "/rx42/1234"),
        "host route": ("GET", "h17.example.com", "/anything"),
        "no match (404)": ("GET", "api.example.com", "/nothing/here"),
    }
    for label, (method, host, path) in cases.items():

        def call(m: str = method, h: str = host, p: str = path) -> object:
            return big.resolve(m, h, p, HEADERS)

        ns = per_call_ns(call)
        print(f"1,000 routes, {label:<29} {ns:7.0f} ns/resolve")

    fast = per_call_ns(lambda: normalize_path("/api/orders/123"))
    slow = per_call_ns(lambda: normalize_path("/api/%2e%2e/orders//1"))
    print(f"normalize_path, fast path:                 {fast:7.0f} ns")
    print(f"normalize_path, slow path:                 {slow:7.0f} ns")


if __name__ == "__main__":
    main()
