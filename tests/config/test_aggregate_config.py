"""The route `aggregate` extension: schema, references, dependency cycles and templates at load time."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import textwrap

import pytest

from forecourt.config import ConfigError, parse_config
from forecourt.plan.build import PlanBuilder

SERVICES = """\
services:
- name: users
  url: http://127.0.0.1:9001
- name: orders
  url: http://127.0.0.1:9002
routes:
- name: dash
  paths: [/dash]
"""


def load(aggregate: str, services: str = SERVICES) -> str:
    """Errors of a config whose only route has `aggregate` (indented YAML), one per line."""
    text = services + "  aggregate:\n" + textwrap.indent(textwrap.dedent(aggregate), "    ")
    try:
        parse_config(text, "gw.yaml")
    except ConfigError as exc:
        return str(exc)
    return ""


def test_a_valid_aggregate_loads_and_compiles() -> None:
    text = SERVICES + textwrap.indent(
        textwrap.dedent(
            """\
            aggregate:
              timeout: 800
              backends:
              - name: user
                service: users
                path: /users/$(headers.x_user_id)
                required: true
              - name: orders
                service: orders
                path: /orders
                query: {user: "$(backends.user.body.id)", page: "$(query_params.page)"}
                headers: {X-Consumer: "$(consumer.username)", X-Sub: "$(jwt.sub)"}
                depends_on: [user]
                timeout: 300
                fallback: {cache: {max_age: 60}}
                allow: [id, items.sku]
                mapping: {id: order_id}
                group: shop
                circuit_breaker: {failures: 3, open_seconds: 10}
              - name: recs
                service: orders
                method: POST
                body: {user: "$(backends.user.body.id)", mode: fast, n: 3}
                depends_on: [orders]
                fallback: {body: []}
            """
        ),
        "  ",
    )
    config = parse_config(text, "gw.yaml")
    route = config.routes[0]
    assert route.service is None
    assert route.aggregate is not None
    backends = route.aggregate.backends
    assert [b.name for b in backends] == ["user", "orders", "recs"]
    assert backends[0].method == "GET" and backends[0].timeout is None and not backends[1].required
    assert backends[2].fallback is not None and backends[2].fallback.body == []
    plan = PlanBuilder().build(config)
    aggregate = plan.routes["dash"].aggregate
    assert aggregate is not None
    assert aggregate.timeout == 0.8
    assert [b.name for b in aggregate.order] == ["user", "orders", "recs"]
    assert aggregate.by_name["orders"].breaker is not None
    assert aggregate.by_name["orders"].key == "shop"
    assert plan.routes["dash"].chain is None


def test_start_order_puts_dependencies_first_and_keeps_config_order_otherwise() -> None:
    text = SERVICES + textwrap.indent(
        textwrap.dedent(
            """\
            aggregate:
              backends:
              - {name: c, service: users, depends_on: [b]}
              - {name: a, service: users}
              - {name: b, service: users, depends_on: [a]}
              - {name: d, service: users}
            """
        ),
        "  ",
    )
    plan = PlanBuilder().build(parse_config(text, "gw.yaml"))
    aggregate = plan.routes["dash"].aggregate
    assert aggregate is not None
    assert [b.name for b in aggregate.order] == ["a", "b", "c", "d"]
    assert [b.name for b in aggregate.backends] == ["c", "a", "b", "d"]


CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown service",
        "backends:\n- {name: a, service: nope}\n",
        ['gw.yaml:11: routes[0].aggregate.backends[0].service: no service named "nope"'],
    ),
    (
        "no backends",
        "backends: []\n",
        ["gw.yaml:10: routes[0].aggregate.backends: must not be empty: list at least one backend"],
    ),
    (
        "unknown backend field",
        "backends:\n- {name: a, service: users, retries: 2}\n",
        ['gw.yaml:11: routes[0].aggregate.backends[0].retries: unknown field "retries"'],
    ),
    (
        "duplicate names",
        "backends:\n- {name: a, service: users}\n- {name: a, service: orders}\n",
        ['gw.yaml:12: routes[0].aggregate.backends[1].name: duplicate backend name "a"'],
    ),
    (
        "reserved name",
        "backends:\n- {name: _errors, service: users}\n",
        [
            'gw.yaml:11: routes[0].aggregate.backends[0].name: "_errors" is reserved for the aggregate response'
        ],
    ),
    (
        "unsupported template",
        "backends:\n- name: a\n  service: users\n  path: /u/$(headers.x-id)\n",
        [
            "gw.yaml:13: routes[0].aggregate.backends[0].path: unsupported template expression $(headers.x-id): unexpected '-'; supported: headers.<name>, query_params.<name>, uri_captures.<name>, shared.<name>, consumer.username|id|custom_id, jwt.<claim> (or the [\"name\"] form), string literals, and 'or' between them"
        ],
    ),
    (
        "template in a header and in a body",
        "backends:\n- name: a\n  service: users\n  method: POST\n  headers: {X-A: $(nope.x)}\n  body: {a: [$(query_params)]}\n",
        [
            "gw.yaml:14: routes[0].aggregate.backends[0].headers.X-A: unsupported template expression $(nope.x): unknown name 'nope'; supported: headers.<name>, query_params.<name>, uri_captures.<name>, shared.<name>, consumer.username|id|custom_id, jwt.<claim> (or the [\"name\"] form), string literals, and 'or' between them",
            "gw.yaml:15: routes[0].aggregate.backends[0].body: unsupported template expression $(query_params): query_params needs a key, as in query_params.name; supported: headers.<name>, query_params.<name>, uri_captures.<name>, shared.<name>, consumer.username|id|custom_id, jwt.<claim> (or the [\"name\"] form), string literals, and 'or' between them",
        ],
    ),
    (
        "path must start with a slash",
        "backends:\n- {name: a, service: users, path: users}\n",
        ['gw.yaml:11: routes[0].aggregate.backends[0].path: must start with "/"'],
    ),
    (
        "depends on an unknown backend and on itself",
        "backends:\n- {name: a, service: users, depends_on: [zz, a]}\n",
        [
            'gw.yaml:11: routes[0].aggregate.backends[0].depends_on[0]: no backend named "zz" in this aggregate',
            "gw.yaml:11: routes[0].aggregate.backends[0].depends_on[1]: a backend cannot depend on itself",
        ],
    ),
    (
        "dependency cycle",
        "backends:\n- {name: a, service: users, depends_on: [c]}\n- {name: b, service: users, depends_on: [a]}\n- {name: c, service: users, depends_on: [b]}\n",
        ["gw.yaml:11: routes[0].aggregate.backends[0].depends_on: dependency cycle: a -> c -> b -> a"],
    ),
    (
        "reading a backend that is not a dependency",
        "backends:\n- {name: a, service: users}\n- {name: b, service: users, path: '/x/$(backends.a.body.id)'}\n",
        [
            'gw.yaml:12: routes[0].aggregate.backends[1].path: reads backend "a", which is not in depends_on (directly or indirectly)'
        ],
    ),
    (
        "reading a dependency's dependency is fine; reading a bad part is not",
        "backends:\n- {name: a, service: users}\n- {name: b, service: users, depends_on: [a]}\n- name: c\n  service: users\n  depends_on: [b]\n  query: {x: '$(backends.a.body.id)', y: '$(backends.b.bogus)'}\n",
        [
            'gw.yaml:16: routes[0].aggregate.backends[2].query.y: expected backends.b.body.<field>, .status or .headers.<name>: "bogus"'
        ],
    ),
    (
        "allow with deny, body with GET, cache with POST",
        "backends:\n- name: a\n  service: users\n  allow: [x]\n  deny: [y]\n  body: {q: 1}\n- name: b\n  service: users\n  method: POST\n  fallback: {cache: {max_age: 5}}\n",
        [
            'gw.yaml:14: routes[0].aggregate.backends[0].deny: cannot be combined with "allow": list the fields to keep',
            "gw.yaml:15: routes[0].aggregate.backends[0].body: not allowed with method GET",
            "gw.yaml:19: routes[0].aggregate.backends[1].fallback.cache: only GET and HEAD answers are cached, not POST",
        ],
    ),
    (
        "fallback needs exactly one of body or cache",
        "backends:\n- {name: a, service: users, fallback: {}}\n",
        [
            'gw.yaml:11: routes[0].aggregate.backends[0].fallback: set exactly one of "body" (a static answer) or "cache" (the last good one)'
        ],
    ),
    (
        "bad field path and reserved group",
        "backends:\n- {name: a, service: users, allow: [a..b], group: _errors}\n",
        [
            'gw.yaml:11: routes[0].aggregate.backends[0].allow[0]: invalid field path "a..b": expected names separated by dots, like "a.b"',
            'gw.yaml:11: routes[0].aggregate.backends[0].group: "_errors" is reserved for the aggregate response',
        ],
    ),
    (
        "breaker record as the service's",
        "backends:\n- {name: a, service: users, circuit_breaker: {failures: 0, failure_ratio: 0}}\n",
        [
            "gw.yaml:11: routes[0].aggregate.backends[0].circuit_breaker: set failures or failure_ratio above 0: with neither the breaker never opens"
        ],
    ),
]


@pytest.mark.parametrize(("aggregate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_errors(aggregate: str, expected: list[str]) -> None:
    assert load(aggregate).splitlines() == expected


def test_a_route_cannot_have_both_a_service_and_an_aggregate() -> None:
    nested = """\
services:
- name: users
  url: http://127.0.0.1:9001
  routes:
  - name: dash
    paths: [/dash]
    aggregate:
      backends: [{name: a, service: users}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(nested, "gw.yaml")
    assert str(caught.value) == (
        'gw.yaml:7: services[0].routes[0].aggregate: cannot be combined with "service": '
        "an aggregate route calls its backends"
    )
    top_level = SERVICES + "  service: users\n  aggregate:\n    backends: [{name: a, service: users}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(top_level, "gw.yaml")
    assert "routes[0].aggregate: cannot be combined with" in str(caught.value)


def test_a_route_without_service_or_aggregate_is_refused_when_compiled() -> None:
    config = parse_config(SERVICES, "gw.yaml")
    with pytest.raises(ConfigError) as caught:
        PlanBuilder().build(config)
    assert str(caught.value) == "gw.yaml:7: routes[0]: a route needs a service or an aggregate"


def test_a_backend_inherits_its_services_breaker_unless_it_sets_its_own() -> None:
    services = SERVICES.replace(
        "  url: http://127.0.0.1:9002\n", "  url: http://127.0.0.1:9002\n  circuit_breaker: {failures: 2}\n"
    )
    text = services + textwrap.indent(
        textwrap.dedent(
            """\
            aggregate:
              backends:
              - {name: a, service: orders}
              - {name: b, service: orders, circuit_breaker: {enabled: false}}
              - {name: c, service: users}
            """
        ),
        "  ",
    )
    aggregate = PlanBuilder().build(parse_config(text, "gw.yaml")).routes["dash"].aggregate
    assert aggregate is not None
    breaker = aggregate.by_name["a"].breaker
    assert breaker is not None and breaker.policy.failures == 2
    assert aggregate.by_name["b"].breaker is None
    assert aggregate.by_name["c"].breaker is None
