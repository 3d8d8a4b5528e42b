"""Kong 3.x route priority (router flavor `traditional_compatible`, the 3.x default).

Kong splits a route with several paths into one matcher per path group — all regex paths
together, and one group per distinct prefix length — and gives each matcher its own priority
(`kong/router/compat.lua`, `get_priority` and `split_routes_and_services_by_path`; described at
https://developer.konghq.com/gateway/routing/traditional/ under "Matching priorities"). Matchers
are tried from the highest priority down and the first whose every condition holds wins. The
priority compares, most significant first:

1. match weight: how many of `snis`, `methods`, `hosts`, `headers`, `paths` the route sets;
2. plain hosts: the route has hosts and none of them is a wildcard;
3. header count: how many header names the route sets (capped at 255, as Kong does);
4. regex path: the group's paths are regexes (regex beats prefix when everything above ties);
5. `regex_priority` (regex groups only; prefix groups count as 0), higher first;
6. prefix length (prefix groups only), longer first;
7. then, where Kong leaves the order undefined, `RouteSpec.order` (older first, as Kong's docs say
   for `created_at`), then the position of the path group in the route.

Deviation: Kong packs `regex_priority` into an unsigned bit field, so a negative value wraps
around and outranks everything; here it is an ordinary signed number, below 0 as one expects.
"""

from __future__ import annotations

from forecourt.routing.spec import RouteSpec

__all__ = ["MAX_HEADER_COUNT", "PriorityKey", "priority_key"]

MAX_HEADER_COUNT = 255

#: Sorts ascending into Kong's descending priority order.
PriorityKey = tuple[int, int, int, int, int, int, int, int, int]


def priority_key(
    spec: RouteSpec,
    *,
    regex: bool,
    prefix_length: int,
    spec_index: int,
    group_index: int,
) -> PriorityKey:
    """The sort key of one path group of `spec` (pass `regex=False, prefix_length=0` for none)."""
    weight = sum(
        1 for condition in (spec.snis, spec.methods, spec.hosts, spec.headers, spec.paths) if condition
    )
    plain_hosts = bool(spec.hosts) and not any("*" in host for host in spec.hosts)
    header_count = min(len(spec.headers), MAX_HEADER_COUNT)
    regex_priority = spec.regex_priority if regex else 0
    return (
        -weight,
        -int(plain_hosts),
        -header_count,
        -int(regex),
        -regex_priority,
        -prefix_length,
        spec.order,
        spec_index,
        group_index,
    )
