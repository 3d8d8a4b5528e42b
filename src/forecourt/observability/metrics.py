"""The metric registry: counters and histograms updated on the request path, summed across workers.

Per-request cost is the point of this design. A plugin binds the series it will touch once (per
route, status, consumer) and then updates plain Python slots: a counter is `cell.value += n`, a
histogram is one `bisect` and two adds. Nothing is locked, formatted or written per request
(prometheus_client's multiprocess mode pays a lock and an mmap write per value, about 12 µs for the
six updates of one request against about 1 µs here; see docs/plugins/observability.md).

Aggregation across the worker processes of a node: each worker publishes a JSON snapshot of its
registry every `PUBLISH_INTERVAL` seconds (only when it changed) to `worker-<pid>.json` in the
run's metrics directory (`<state_dir>/metrics`), written to a temporary name and renamed, so a
reader never sees half a file. A scrape sums the answering worker's live registry with every other
worker's latest snapshot, so other workers' numbers are at most one interval old. Counters and
histograms are cumulative, so the snapshot of a worker that died still counts (Prometheus' counter
semantics: totals never go back); when a worker starts it folds the snapshots of dead workers into
`retired.json`, which keeps the directory small across restarts. Gauges are not published: they are
computed by the answering worker at scrape time (`ScrapeSources`).

Without a metrics directory (a single process, no supervisor) a scrape reports this process alone.
The registry does not depend on the directory, so metrics may be created before or after
`configure` (unlike prometheus_client's multiprocess mode, which must be set up before import).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from forecourt.plan import Plan

__all__ = [
    "CONTENT_TYPE",
    "PUBLISH_INTERVAL",
    "REGISTRY",
    "CounterValue",
    "Family",
    "HistogramValue",
    "MetricsPublisher",
    "MetricsRegistry",
    "MetricsStore",
    "ScrapeSources",
    "configure",
    "render_metrics",
]

log = logging.getLogger("forecourt.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PUBLISH_INTERVAL = 0.25
_WORKER_PREFIX = "worker-"
_RETIRED = "retired.json"
_LOCK = ".lock"

LabelValues = tuple[str, ...]


class CounterValue:
    """One counter series: callers add to `value` directly (ints for counts and bytes)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | float = 0


class HistogramValue:
    """One histogram series: per-bucket (non-cumulative) counts, the last one for +Inf, and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # `le` is inclusive: bisect_left finds the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Family:
    """A metric name with its type, help, label names and (histograms) bucket bounds."""

    __slots__ = ("buckets", "help", "kind", "labelnames", "name", "series")

    def __init__(
        self, name: str, kind: str, help: str, labelnames: Sequence[str], buckets: Sequence[float] = ()
    ) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(float(b) for b in buckets)
        self.series: dict[LabelValues, Any] = {}

    def labels(self, *values: str) -> Any:
        """The series for `values` (created on first use); bind it once, update it per request."""
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            series = HistogramValue(self.buckets) if self.kind == "histogram" else CounterValue()
            self.series[values] = series
        return series

    def counter(self, *values: str) -> CounterValue:
        assert self.kind == "counter"
        value: CounterValue = self.labels(*values)
        return value

    def histogram(self, *values: str) -> HistogramValue:
        assert self.kind == "histogram"
        value: HistogramValue = self.labels(*values)
        return value

    def definition(self) -> tuple[str, str, tuple[str, ...], tuple[float, ...]]:
        return (self.kind, self.help, self.labelnames, self.buckets)


class MetricsRegistry:
    """This process's metric families. Declaring a family twice with the same shape returns it."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.pid = os.getpid()
        # Scrape-time switches plugins turn on while a plan that uses them is live (refcounts).
        self.features: dict[str, int] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str]) -> Family:
        return self._declare(Family(name, "counter", help, labelnames))

    def histogram(self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]) -> Family:
        if list(buckets) != sorted(buckets) or any(math.isinf(b) for b in buckets):
            raise ValueError(f"{name}: buckets must be finite and ascending")
        return self._declare(Family(name, "histogram", help, labelnames, buckets))

    def _declare(self, family: Family) -> Family:
        existing = self.families.get(family.name)
        if existing is not None:
            if existing.definition() != family.definition():
                raise ValueError(f"metric {family.name} is already declared differently")
            return existing
        self.families[family.name] = family
        return family

    def enable(self, feature: str) -> None:
        self.features[feature] = self.features.get(feature, 0) + 1

    def disable(self, feature: str) -> None:
        count = self.features.get(feature, 0) - 1
        if count > 0:
            self.features[feature] = count
        else:
            self.features.pop(feature, None)

    def enabled(self, feature: str) -> bool:
        return self.features.get(feature, 0) > 0

    def reset_after_fork(self) -> None:
        """A forked worker must not report the values its parent had counted."""
        if self.pid != os.getpid():
            self.pid = os.getpid()
            for family in self.families.values():
                family.series.clear()

    def snapshot(self) -> dict[str, Any]:
        """The registry as JSON-able data (what a worker publishes)."""
        families = []
        for family in self.families.values():
            if not family.series:
                continue
            if family.kind == "histogram":
                series = [[list(k), [*v.counts, v.sum]] for k, v in family.series.items()]
            else:
                series = [[list(k), v.value] for k, v in family.series.items()]
            families.append(
                {
                    "name": family.name,
                    "type": family.kind,
                    "help": family.help,
                    "labels": list(family.labelnames),
                    "buckets": list(family.buckets),
                    "series": series,
                }
            )
        return {"pid": self.pid, "families": families}


REGISTRY = MetricsRegistry()
"""The process-wide registry that plugins and the core update."""


# ---------------------------------------------------------------------------------------------- merging
@dataclass(slots=True)
class MergedFamily:
    name: str
    kind: str
    help: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...]
    series: dict[LabelValues, Any] = field(default_factory=dict)


class Merged:
    """Snapshots summed family by family, series by series."""

    def __init__(self) -> None:
        self.families: dict[str, MergedFamily] = {}

    def add(self, snapshot: Mapping[str, Any]) -> None:
        for item in snapshot.get("families", ()):
            try:
                self._add_family(item)
            except (KeyError, TypeError, ValueError):
                log.warning("metrics: ignoring a malformed family in a worker snapshot")

    def _add_family(self, item: Mapping[str, Any]) -> None:
        name = item["name"]
        kind = item["type"]
        labelnames = tuple(item["labels"])
        buckets = tuple(float(b) for b in item["buckets"])
        family = self.families.get(name)
        if family is None:
            family = MergedFamily(name, kind, item["help"], labelnames, buckets)
            self.families[name] = family
        elif (family.kind, family.labelnames, family.buckets) != (kind, labelnames, buckets):
            return  # a worker running other code declared it differently; keep the first shape
        series = family.series
        for labels, value in item["series"]:
            key = tuple(labels)
            if kind == "histogram":
                current = series.get(key)
                if current is None:
                    series[key] = list(value)
                elif len(current) == len(value):
                    for index, amount in enumerate(value):
                        current[index] += amount
            else:
                series[key] = series.get(key, 0) + value

    def gauge(self, name: str, help: str, labelnames: Sequence[str]) -> MergedFamily:
        family = self.families.get(name)
        if family is None:
            family = MergedFamily(name, "gauge", help, tuple(labelnames), ())
            self.families[name] = family
        return family


# ---------------------------------------------------------------------------------------------- store
def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_of(path: Path) -> int:
    try:
        return int(path.stem.removeprefix(_WORKER_PREFIX))
    except ValueError:
        return 0


class MetricsStore:
    """The run's metrics directory: one snapshot file per worker, plus the retired workers' sum."""

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_WORKER_PREFIX}{self.pid}.json"
        self._tmp = directory / f".{_WORKER_PREFIX}{self.pid}.tmp"
        self._last: bytes = b""

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def retire_dead(self) -> None:
        """Fold the snapshots of dead workers (and a stale one with our own pid) into `retired.json`."""
        with self._locked(fcntl.LOCK_EX):
            dead = [
                p
                for p in self.directory.glob(f"{_WORKER_PREFIX}*.json")
                if _pid_of(p) == self.pid or not _alive(_pid_of(p))
            ]
            if not dead:
                return
            merged = Merged()
            retired = self.directory / _RETIRED
            for path in [retired, *dead]:
                snapshot = _read(path)
                if snapshot is not None:
                    merged.add(snapshot)
            tmp = self.directory / f".{_RETIRED}.tmp"
            tmp.write_bytes(orjson.dumps(_as_snapshot(merged, pid=0)))
            os.replace(tmp, retired)
            for path in dead:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def publish(self, snapshot: Mapping[str, Any]) -> bool:
        """Write this worker's snapshot if it changed; True when a file was written."""
        data = orjson.dumps(snapshot)
        if data == self._last:
            return False
        self._tmp.write_bytes(data)
        os.replace(self._tmp, self.path)
        self._last = data
        return True

    def others(self) -> list[dict[str, Any]]:
        """Every snapshot but this worker's own: live and dead workers, and the retired sum."""
        found = []
        with self._locked(fcntl.LOCK_SH):
            paths = [self.directory / _RETIRED, *self.directory.glob(f"{_WORKER_PREFIX}*.json")]
            for path in paths:
                if path == self.path:
                    continue
                snapshot = _read(path)
                if snapshot is not None:
                    found.append(snapshot)
        return found

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError):
        log.warning("metrics: cannot read %s; skipping it", path)
        return None
    return data if isinstance(data, dict) else None


def _as_snapshot(merged: Merged, pid: int) -> dict[str, Any]:
    families = []
    for family in merged.families.values():
        if family.kind == "gauge":
            continue
        families.append(
            {
                "name": family.name,
                "type": family.kind,
                "help": family.help,
                "labels": list(family.labelnames),
                "buckets": list(family.buckets),
                "series": [[list(k), v] for k, v in family.series.items()],
            }
        )
    return {"pid": pid, "families": families}


class MetricsPublisher:
    """Publishes this worker's registry to the store every `interval` seconds, and once at close."""

    def __init__(
        self,
        store: MetricsStore | None,
        loop: asyncio.AbstractEventLoop,
        registry: MetricsRegistry | None = None,
        interval: float = PUBLISH_INTERVAL,
    ) -> None:
        self.store = store
        self.loop = loop
        self.registry = registry if registry is not None else REGISTRY
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.store is not None and self._timer is None:
            self._tick()

    def _tick(self) -> None:
        self.publish()
        self._timer = self.loop.call_later(self.interval, self._tick)

    def publish(self) -> None:
        if self.store is None:
            return
        try:
            self.store.publish(self.registry.snapshot())
        except OSError as exc:
            log.warning("metrics: cannot publish this worker's metrics: %s", exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.publish()
        if self.store is not None:
            self.store.remove()


_STORE: MetricsStore | None = None


def configure(
    directory: Path | str | None, loop: asyncio.AbstractEventLoop | None = None
) -> MetricsPublisher:
    """Set up this worker's metrics (call once at worker start-up) and start publishing.

    `directory` is the run's metrics directory shared by its workers (`<state_dir>/metrics`), or
    None for a process that reports only itself. The returned publisher must be closed at exit.
    """
    global _STORE
    REGISTRY.reset_after_fork()
    _STORE = None
    if directory is not None:
        _STORE = MetricsStore(Path(directory))
        _STORE.retire_dead()
    publisher = MetricsPublisher(_STORE, loop or asyncio.get_running_loop())
    publisher.start()
    return publisher


# ---------------------------------------------------------------------------------------------- scraping
@dataclass(slots=True)
class ScrapeSources:
    """What the answering worker adds at scrape time (gauges nobody updates per request).

    `connections`: Kong's nginx counters for the node (`accepted`, `handled`, `total`, `active`,
    `reading`, `writing`, `waiting`), already summed across workers by the admin API's `/status`.
    `plans`: gateway name → the plan it serves, for `kong_upstream_target_health`.
    """

    node_id: str = ""
    version: str = ""
    connections: Mapping[str, int] | None = None
    plans: Mapping[str, Plan] = field(default_factory=dict)


_CONNECTION_STATES = ("accepted", "handled", "total", "active", "reading", "writing", "waiting")
_HEALTH_STATES = ("healthchecks_off", "healthy", "unhealthy", "dns_error")


def _scrape_gauges(merged: Merged, sources: ScrapeSources, registry: MetricsRegistry) -> None:
    if sources.version:
        info = merged.gauge("kong_node_info", "Kong Node metadata information", ("node_id", "version"))
        info.series[(sources.node_id, sources.version)] = 1
    reachable = merged.gauge(
        "kong_datastore_reachable", "Datastore reachable from Kong, 0 is unreachable", ()
    )
    reachable.series[()] = 1  # DB-less: the declarative config is the datastore
    if sources.connections is not None:
        connections = merged.gauge(
            "kong_nginx_connections_total",
            "Number of connections by subsystem",
            ("node_id", "subsystem", "state"),
        )
        values = dict(sources.connections)
        values.setdefault("total", values.get("total_requests", 0))
        for state in _CONNECTION_STATES:
            key = state if state in values else f"connections_{state}"
            connections.series[(sources.node_id, "http", state)] = values.get(key, 0)
        requests = merged.gauge(
            "kong_nginx_requests_total", "Number of requests total", ("node_id", "subsystem")
        )
        requests.series[(sources.node_id, "http")] = values.get("total_requests", values.get("total", 0))
    if registry.enabled("upstream_health") and sources.plans:
        health = merged.gauge(
            "kong_upstream_target_health",
            "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
            "value is 1 when state is populated.",
            ("upstream", "target", "address", "state", "subsystem"),
        )
        for upstream, target, address, state in target_health(sources.plans.values()):
            for candidate in _HEALTH_STATES:
                health.series[(upstream, target, address, candidate, "http")] = int(candidate == state)


def target_health(plans: Iterable[Plan]) -> Iterator[tuple[str, str, str, str]]:
    """(upstream, target, address, state) per resolved address, as Kong's scrape reports them.

    A target without addresses yields one row with an empty address and state `dns_error`.
    """
    from forecourt.admin.health import checks_enabled, target_status

    seen: set[tuple[str, str, str]] = set()
    for plan in plans:
        for upstream in plan.config.upstreams:
            source = plan.upstreams.get(upstream.name)
            if source is None:
                continue
            endpoints = source.balancer.endpoints
            checks_on = checks_enabled(upstream.healthchecks)
            for target in upstream.targets:
                status = target_status(target, endpoints, checks_on)
                name = f"{target.host}:{target.port}"
                if not status.endpoints:
                    rows = [("", "dns_error")]
                elif not checks_on:
                    rows = [(ep.key, "healthchecks_off") for ep in status.endpoints]
                else:  # per address, as Kong reports it
                    rows = [(ep.key, "healthy" if ep.healthy else "unhealthy") for ep in status.endpoints]
                for address, state in rows:
                    key = (upstream.name, name, address)
                    if key not in seen:
                        seen.add(key)
                        yield upstream.name, name, address, state


def render_metrics(
    sources: ScrapeSources | None = None,
    *,
    registry: MetricsRegistry | None = None,
    store: MetricsStore | None = None,
) -> tuple[str, bytes]:
    """The node's metrics in Prometheus' text format: (content type, body).

    By default: this process's registry plus every other worker's snapshot in the configured store.
    """
    if registry is None:
        registry = REGISTRY
        store = store if store is not None else _STORE
    merged = Merged()
    merged.add(registry.snapshot())
    if store is not None:
        for snapshot in store.others():
            merged.add(snapshot)
    _scrape_gauges(merged, sources if sources is not None else ScrapeSources(), registry)
    return CONTENT_TYPE, render_text(merged.families.values())


def render_text(families: Iterable[MergedFamily]) -> bytes:
    """Prometheus text exposition format 0.0.4 (families sorted by name, series by labels)."""
    lines: list[str] = []
    for family in sorted(families, key=lambda f: f.name):
        if not family.series:
            continue
        name = family.name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        names = family.labelnames
        for labels in sorted(family.series):
            value = family.series[labels]
            pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, labels, strict=False)]
            if family.kind != "histogram":
                lines.append(f"{name}{_braces(pairs)} {_number(value)}")
                continue
            cumulative = 0
            bounds = [*(_number(b) for b in family.buckets), "+Inf"]
            for bound, count in zip(bounds, value[:-1], strict=False):
                cumulative += count
                le = 'le="' + bound + '"'
                lines.append(f"{name}_bucket{_braces([*pairs, le])} {_number(cumulative)}")
            lines.append(f"{name}_sum{_braces(pairs)} {_number(value[-1])}")
            lines.append(f"{name}_count{_braces(pairs)} {_number(cumulative)}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _braces(pairs: list[str]) -> str:
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(value)
