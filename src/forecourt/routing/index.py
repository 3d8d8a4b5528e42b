"""Candidate lookup: which compiled routes can possibly match a request, found cheaply.

Built once per router:

- Prefix paths are plain string prefixes in Kong (`/api` matches `/apiary`), so the prefix groups
  that match a path are exactly those stored under `path[:n]` for some prefix length `n`: one dict
  lookup per distinct length, and only the lengths in use under the request's first segment.
- Regex and path-less groups cannot be looked up that way; they are listed per first segment,
  using a regex's literal leading text (`~/api/v\\d+` → `/api/v`) when it has one, and listed for
  every segment when it has none (`~/(a|b)`, `~.*`, no paths).
- Within each of those lists, groups whose hosts are all exact names without a port are also
  filed by host name, so a table of many host-routed tenants costs one more dict lookup, not a
  scan. Every list stays in priority order; the router takes the best of the two it looks at.

A prefix pins the request's first segment exactly when it has a second `/` (`/api/orders` →
segment `api`), otherwise only the segment's start (`/api` → segments starting with `api`). Each
known segment gets a precomputed `Bucket`; an unknown segment uses the bucket of the longest
"starts with" key that prefixes it, or the catch-all bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from forecourt.routing.compiled import CompiledRoute
from forecourt.routing.match import RouteMatch

__all__ = ["Bucket", "Candidates", "PrefixEntry", "RouteIndex"]

#: A prefix group plus its shared matches for secure and insecure requests.
PrefixEntry = tuple[CompiledRoute, RouteMatch, RouteMatch]

T = TypeVar("T")


class Candidates(Generic[T]):
    """Items in priority order, split into those filed by exact host name and the rest."""

    __slots__ = ("by_host", "rest")

    def __init__(self, items: Iterable[T], route_of: Callable[[T], CompiledRoute]) -> None:
        ordered = sorted({id(item): item for item in items}.values(), key=lambda item: route_of(item).rank)
        by_host: dict[str, list[T]] = {}
        rest: list[T] = []
        for item in ordered:
            route = route_of(item)
            if route.host_names and route.host_matcher is None:
                for name in route.host_names:
                    by_host.setdefault(name, []).append(item)
            else:
                rest.append(item)
        self.by_host: dict[str, tuple[T, ...]] = {name: tuple(items) for name, items in by_host.items()}
        self.rest: tuple[T, ...] = tuple(rest)


def _route_of_entry(entry: PrefixEntry) -> CompiledRoute:
    return entry[0]


def _route_itself(route: CompiledRoute) -> CompiledRoute:
    return route


class Bucket:
    """What to try for one first segment: prefix lengths to look up (longest first), and the
    regex/path-less groups."""

    __slots__ = ("lengths", "others")

    def __init__(self, lengths: Iterable[int], others: Iterable[CompiledRoute]) -> None:
        self.lengths = tuple(sorted(set(lengths), reverse=True))
        self.others = Candidates(others, _route_itself)


class RouteIndex:
    """Maps a request path's first segment to its `Bucket`; holds the prefix table."""

    __slots__ = ("_by_segment", "_catch_all", "_start_lengths", "by_prefix")

    def __init__(self, routes: Sequence[CompiledRoute]) -> None:
        by_prefix: dict[str, list[PrefixEntry]] = {}
        everywhere: list[CompiledRoute] = []
        # key -> (prefix lengths, other routes); "=seg" pins the segment, "^seg" its start
        exact: dict[str, tuple[list[int], list[CompiledRoute]]] = {}
        starts: dict[str, tuple[list[int], list[CompiledRoute]]] = {}
        for route in routes:
            for prefix, secure, insecure in route.prefixes:
                by_prefix.setdefault(prefix, []).append((route, secure, insecure))
            keys = set(route.index_keys())
            if None in keys:
                everywhere.append(route)
                continue
            for key in keys:
                assert key is not None
                table = exact if key[0] == "=" else starts
                lengths, others = table.setdefault(key[1:], ([], []))
                if route.prefixes:
                    lengths.append(len(route.prefixes[0][0]))
                else:
                    others.append(route)

        def bucket_for(segment: str) -> Bucket:
            lengths: list[int] = []
            others: list[CompiledRoute] = list(everywhere)
            found = [exact.get(segment)] + [starts.get(segment[:n]) for n in range(len(segment) + 1)]
            for entry in found:
                if entry is not None:
                    lengths.extend(entry[0])
                    others.extend(entry[1])
            return Bucket(lengths, others)

        self.by_prefix: dict[str, Candidates[PrefixEntry]] = {
            prefix: Candidates(entries, _route_of_entry) for prefix, entries in by_prefix.items()
        }
        self._by_segment = {segment: bucket_for(segment) for segment in {*exact, *starts}}
        self._catch_all = Bucket((), everywhere)
        self._start_lengths = tuple(sorted({len(s) for s in starts}, reverse=True))

    def bucket(self, segment: str) -> Bucket:
        """The bucket for a path whose first segment is `segment`."""
        found = self._by_segment.get(segment)
        if found is not None:
            return found
        size = len(segment)
        for length in self._start_lengths:
            if length < size:
                found = self._by_segment.get(segment[:length])
                if found is not None:
                    return found
        return self._catch_all
