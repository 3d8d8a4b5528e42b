"""A route's `aggregate` record (Forecourt extension): one request fanned out to several backends.

```yaml
routes:
- name: dashboard
  paths: [/dashboard]
  aggregate:
    timeout: 800                 # ms: the deadline of the whole fan-out
    backends:
    - {name: user, service: users, path: "/users/$(headers.x-user-id)", required: true}
    - name: orders
      service: orders
      path: /orders
      query: {user: "$(backends.user.body.id)"}
      depends_on: [user]
      timeout: 300
      fallback: {cache: {max_age: 60}}
      allow: [id, total, items]
```

Field checks (types, templates that compile) run here, per field, so errors point at
`routes[0].aggregate.backends[1].path`; what spans backends or entities (duplicate names,
`depends_on` cycles, `$(backends.x...)` naming a backend that is not a dependency, the backend's
`service` existing) is `aggregate_problems`, called by the reference resolver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

from forecourt.config.circuit_breaker import CircuitBreakerConfig
from forecourt.config.errors import KeyPath
from forecourt.config.fields import Bool, EntityName, HeaderName, Method, NonEmptyStr, TimeoutMs
from forecourt.plugins.templates import (
    NAMESPACES,
    PATH_NAMESPACES,
    Template,
    TemplateError,
    compile_template,
)

__all__ = [
    "AGGREGATE_NAMESPACES",
    "Aggregate",
    "AggregateBackend",
    "Fallback",
    "FallbackCache",
    "aggregate_problems",
    "body_templates",
]

AGGREGATE_NAMESPACES: frozenset[str] = NAMESPACES | PATH_NAMESPACES
"""What aggregate templates may read: Kong's request namespaces plus earlier backends' results."""

Problems = list[tuple[KeyPath, str]]
RESERVED_KEYS = frozenset({"_errors"})
_BACKEND_PARTS = ("body", "status", "headers")


def _check_template(value: str) -> str:
    try:
        compile_template(value, AGGREGATE_NAMESPACES)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_backend_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError('must start with "/"')
    return _check_template(value)


def _check_field_path(value: str) -> str:
    if any(not part for part in value.split(".")):
        raise ValueError(f'invalid field path "{value}": expected names separated by dots, like "a.b"')
    return value


def _check_key(value: str) -> str:
    if value in RESERVED_KEYS:
        raise ValueError(f'"{value}" is reserved for the aggregate response')
    return value


def _non_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError("must not be empty: list at least one backend")
    return value


def _check_body(value: object) -> object:
    for text in body_templates(value):
        _check_template(text)
    return value


TemplateText = Annotated[str, Strict(), AfterValidator(_check_template)]
BackendPath = Annotated[str, Strict(), AfterValidator(_check_backend_path)]
FieldPath = Annotated[str, Strict(), AfterValidator(_check_field_path)]
ResultKey = Annotated[str, Strict(), Field(min_length=1), AfterValidator(_check_key)]
BackendName = Annotated[EntityName, AfterValidator(_check_key)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=86400 * 30)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FallbackCache(_Record):
    """Serve the backend's last good answer (for the same backend request) when it fails."""

    max_age: Seconds = Field(description="Seconds a good answer may be served as a fallback.")
    max_entries: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] = Field(
        1000, description="Distinct backend requests remembered (least recently used ones go first)."
    )


class Fallback(_Record):
    """What to serve in a failed backend's place: a static `body`, or the last good answer."""

    body: Any = Field(None, description="A JSON value served as the backend's result.")
    cache: FallbackCache | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Fallback:
        has_body = "body" in self.model_fields_set
        if has_body == (self.cache is not None):
            raise ValueError('set exactly one of "body" (a static answer) or "cache" (the last good one)')
        return self

    @property
    def static(self) -> bool:
        return self.cache is None


class AggregateBackend(_Record):
    """One backend call of an aggregate and how its answer appears in the response."""

    name: BackendName = Field(description="Key of this backend's result (unless `group` is set).")
    service: EntityName = Field(description="The service (by name) the call goes to.")
    method: Method = "GET"
    path: BackendPath = Field("/", description="Path template, appended to the service's path.")
    query: dict[NonEmptyStr, TemplateText] = Field(default_factory=dict)
    headers: dict[HeaderName, TemplateText] = Field(default_factory=dict)
    body: Annotated[Any, AfterValidator(_check_body)] = Field(
        None, description="Request body: a template string, or JSON whose strings are templates."
    )
    timeout: TimeoutMs | None = Field(None, description="ms for this call; the aggregate's deadline caps it.")
    required: Bool = Field(False, description="Fail the whole request when this backend fails.")
    fallback: Fallback | None = None
    allow: tuple[FieldPath, ...] = Field((), description="Keep only these fields (dotted for nesting).")
    deny: tuple[FieldPath, ...] = Field((), description="Drop these fields (dotted for nesting).")
    mapping: dict[FieldPath, ResultKey] = Field(default_factory=dict, description="Rename fields: old → new.")
    group: ResultKey | None = Field(None, description="Put the result under this key instead of `name`.")
    depends_on: tuple[EntityName, ...] = Field((), description="Backends whose results this call reads.")
    circuit_breaker: CircuitBreakerConfig | None = Field(
        None, description="This backend's breaker (the service's record shape); unset: the service's."
    )

    @property
    def result_key(self) -> str:
        return self.group or self.name


class Aggregate(_Record):
    """A route's parallel fan-out: backends called under one deadline, answers merged as JSON."""

    timeout: TimeoutMs = Field(3000, description="ms: the deadline of the whole fan-out.")
    # Not `min_length`: pydantic would report it too when one backend is invalid.
    backends: Annotated[tuple[AggregateBackend, ...], AfterValidator(_non_empty)]


def body_templates(body: object) -> Iterable[str]:
    """Every string in a backend `body` (each one is a template)."""
    if isinstance(body, str):
        yield body
    elif isinstance(body, dict):
        for value in body.values():
            yield from body_templates(value)
    elif isinstance(body, list):
        for value in body:
            yield from body_templates(value)


def _templates(backend: AggregateBackend) -> Iterable[tuple[KeyPath, Template]]:
    yield ("path",), compile_template(backend.path, AGGREGATE_NAMESPACES)
    for name, text in backend.query.items():
        yield ("query", name), compile_template(text, AGGREGATE_NAMESPACES)
    for name, text in backend.headers.items():
        yield ("headers", name), compile_template(text, AGGREGATE_NAMESPACES)
    for text in body_templates(backend.body):
        yield ("body",), compile_template(text, AGGREGATE_NAMESPACES)


def backend_references(template: Template) -> Iterable[tuple[str, str]]:
    """(backend name, rest of the key) for each `$(backends.<name>....)` in `template`."""
    for part in template.parts:
        if isinstance(part, str):
            continue
        for alternative in part:
            if not isinstance(alternative, str) and alternative.namespace == "backends":
                name, _, rest = alternative.keys[0].partition(".")
                yield name, rest


def aggregate_problems(
    aggregate: Aggregate, resolve_service: Callable[[str, KeyPath], str | None]
) -> Problems:
    """Checks across backends (paths relative to the `aggregate` record).

    `resolve_service(name, path)` reports a dangling service reference itself.
    """
    problems: Problems = []
    index_of: dict[str, int] = {}
    for index, backend in enumerate(aggregate.backends):
        path: KeyPath = ("backends", index)
        if backend.name in index_of:
            problems.append(((*path, "name"), f'duplicate backend name "{backend.name}"'))
        index_of.setdefault(backend.name, index)
        resolve_service(backend.service, (*path, "service"))
        if backend.allow and backend.deny:
            problems.append(((*path, "deny"), 'cannot be combined with "allow": list the fields to keep'))
        if backend.method in ("GET", "HEAD") and backend.body is not None:
            problems.append(((*path, "body"), f"not allowed with method {backend.method}"))
        if (
            backend.fallback is not None
            and backend.fallback.cache is not None
            and backend.method not in ("GET", "HEAD")
        ):
            problems.append(
                ((*path, "fallback", "cache"), f"only GET and HEAD answers are cached, not {backend.method}")
            )
    for index, backend in enumerate(aggregate.backends):
        for position, dependency in enumerate(backend.depends_on):
            where: KeyPath = ("backends", index, "depends_on", position)
            if dependency == backend.name:
                problems.append((where, "a backend cannot depend on itself"))
            elif dependency not in index_of:
                problems.append((where, f'no backend named "{dependency}" in this aggregate'))
    cycle = _find_cycle(aggregate)
    if cycle is not None:
        at = index_of[cycle[0]]
        problems.append((("backends", at, "depends_on"), "dependency cycle: " + " -> ".join(cycle)))
        return problems
    for index, backend in enumerate(aggregate.backends):
        reachable = _dependencies(aggregate, backend.name)
        for relative, template in _templates(backend):
            for name, rest in backend_references(template):
                where = ("backends", index, *relative)
                if name not in reachable:
                    problems.append(
                        (
                            where,
                            f'reads backend "{name}", which is not in depends_on (directly or indirectly)',
                        )
                    )
                elif rest.partition(".")[0] not in _BACKEND_PARTS:
                    problems.append(
                        (
                            where,
                            f'expected backends.{name}.body.<field>, .status or .headers.<name>: "{rest}"',
                        )
                    )
    return problems


def _dependencies(aggregate: Aggregate, name: str) -> set[str]:
    """Every backend `name` depends on, directly or through others."""
    by_name = {b.name: b for b in aggregate.backends}
    seen: set[str] = set()
    stack = list(by_name[name].depends_on) if name in by_name else []
    while stack:
        current = stack.pop()
        if current in seen or current not in by_name:
            continue
        seen.add(current)
        stack.extend(by_name[current].depends_on)
    return seen


def _find_cycle(aggregate: Aggregate) -> list[str] | None:
    """One dependency cycle as `[a, b, a]`, or None."""
    graph = {b.name: [d for d in b.depends_on if d != b.name] for b in aggregate.backends}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt in graph and nxt not in state:
                found = visit(nxt, path)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node, [])
            if found is not None:
                return found
    return None
