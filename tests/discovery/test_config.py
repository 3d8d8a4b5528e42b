"""The upstream `discovery` field: defaults, and every error as `file:line: key.path: message`."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import asyncio

import pytest

from forecourt.config import ConfigError, parse_config
from forecourt.config.discovery import DnsDiscovery, EtcdDiscovery, EurekaDiscovery, StaticDiscovery
from forecourt.discovery import DiscoveredTargets, StaticProvider, TargetSpec, make_provider
from forecourt.plan.build import PlanBuilder


def upstream(discovery: str, extra: str = "") -> str:
    return f"upstreams:\n- name: pool\n  discovery: {discovery}\n{extra}"


def test_defaults() -> None:
    config = parse_config(
        upstream("{type: dns, name: orders.default.svc.cluster.local, port: 8080}")
        + "- name: e\n  discovery: {type: eureka, url: 'http://127.0.0.1:8761/eureka', app: ORDER-SERVICE}\n"
        + "- name: k\n  discovery: {type: etcd, endpoints: ['http://127.0.0.1:2379'], prefix: /services/orders/}\n"
        + "- name: s\n  discovery: {type: static, targets: ['127.0.0.1:8080', {target: b.test, weight: 5}]}\n",
        "gw.yaml",
    )
    dns, eureka, etcd, static = (u.discovery for u in config.upstreams)
    assert dns == DnsDiscovery(type="dns", name="orders.default.svc.cluster.local", port=8080)
    assert (dns.record, dns.interval, dns.weight, dns.uses_srv) == ("auto", 1.0, 100, False)
    assert isinstance(eureka, EurekaDiscovery)
    assert (eureka.interval, eureka.delta, eureka.secure, eureka.status) == (30.0, True, False, "UP")
    assert isinstance(etcd, EtcdDiscovery) and etcd.username is None and etcd.timeout == 5.0
    assert isinstance(static, StaticDiscovery)
    assert [(t.host, t.port, t.weight) for t in static.targets] == [
        ("127.0.0.1", 8080, 100),
        ("b.test", 8000, 5),
    ]


def test_the_etcd_password_is_not_shown() -> None:
    config = parse_config(
        upstream(
            "{type: etcd, endpoints: ['http://127.0.0.1:2379'], prefix: /s/, username: u, password: hunter2}"
        ),
        "gw.yaml",
    )
    assert "hunter2" not in repr(config.upstreams[0]) + str(config.upstreams[0].model_dump())


CASES: list[tuple[str, str, list[str]]] = [
    (
        "targets with a provider",
        upstream(
            "{type: etcd, endpoints: ['http://127.0.0.1:2379'], prefix: /s/}",
            "  targets: [{target: '127.0.0.1:80'}]\n",
        ),
        [
            'gw.yaml:3: upstreams[0].discovery: cannot be combined with "targets": etcd discovery supplies this upstream\'s targets at run time (remove the targets, or list them under discovery {type: static})'
        ],
    ),
    (
        "top-level targets with a provider",
        upstream("{type: dns, name: a.test, port: 80}")
        + "targets:\n- {target: '127.0.0.1:80', upstream: pool}\n",
        [
            'gw.yaml:3: upstreams[0].discovery: cannot be combined with "targets": dns discovery supplies this upstream\'s targets at run time (remove the targets, or list them under discovery {type: static})'
        ],
    ),
    (
        "unknown type",
        upstream("{type: consul}"),
        [
            "gw.yaml:3: upstreams[0].discovery.type: expected 'dns', 'eureka', 'etcd' or 'static', got 'consul'"
        ],
    ),
    (
        "no type",
        upstream("{name: a.test}"),
        ["gw.yaml:3: upstreams[0].discovery.type: required field missing"],
    ),
    (
        "not a mapping",
        upstream("dns"),
        ["gw.yaml:3: upstreams[0].discovery: expected a mapping like {type: dns, name: ..., port: ...}"],
    ),
    (
        "dns without a port",
        upstream("{type: dns, name: orders.default.svc.cluster.local}"),
        [
            'gw.yaml:3: upstreams[0].discovery.port: required field missing: "auto" looks up A/AAAA records for "orders.default.svc.cluster.local" (no leading "_")'
        ],
    ),
    (
        "srv with a port",
        upstream("{type: dns, name: _http._tcp.orders.test, port: 80}"),
        [
            "gw.yaml:3: upstreams[0].discovery.port: not allowed with SRV records: each SRV record names its own port"
        ],
    ),
    (
        "dns field errors",
        upstream("\n    type: dns\n    name: 10.0.0.1\n    port: 80\n    record: MX\n    interval: 0\n"),
        [
            'gw.yaml:5: upstreams[0].discovery.name: invalid DNS name "10.0.0.1"',
            "gw.yaml:7: upstreams[0].discovery.record: expected 'A', 'AAAA', 'SRV' or 'auto', got 'MX'",
            "gw.yaml:8: upstreams[0].discovery.interval: must be at least 0.1",
        ],
    ),
    (
        "eureka field errors",
        upstream("{type: eureka, url: 'ftp://x', app: '', secure: 'yes'}"),
        [
            'gw.yaml:3: upstreams[0].discovery.url: expected an http(s) URL like "http://127.0.0.1:2379", got "ftp://x"',
            "gw.yaml:3: upstreams[0].discovery.app: must not be empty",
            "gw.yaml:3: upstreams[0].discovery.secure: expected a boolean, got 'yes'",
        ],
    ),
    (
        "etcd field errors",
        upstream("\n    type: etcd\n    endpoints: []\n    prefix: /s/\n    bogus: 1\n"),
        [
            "gw.yaml:5: upstreams[0].discovery.endpoints: must not be empty",
            'gw.yaml:7: upstreams[0].discovery.bogus: unknown field "bogus"',
        ],
    ),
    (
        "etcd username without password",
        upstream("{type: etcd, endpoints: ['http://127.0.0.1:2379'], prefix: /s/, username: u}"),
        ['gw.yaml:3: upstreams[0].discovery.password: set both "username" and "password", or neither'],
    ),
    (
        "static bad target",
        upstream("\n    type: static\n    targets:\n    - 127.0.0.1:80\n    - {target: 'bad host'}\n"),
        [
            'gw.yaml:7: upstreams[0].discovery.targets[1]: invalid target "bad host": not a valid hostname or IP address'
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_issues(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "gw.yaml")
    assert [str(issue) for issue in raised.value.issues] == expected


def test_static_discovery_is_combined_with_targets() -> None:
    config = parse_config(
        upstream(
            "{type: static, targets: ['127.0.0.1:8001']}",
            "  targets: [{target: '127.0.0.1:8002', weight: 7}]\n",
        ),
        "gw.yaml",
    )
    builder = PlanBuilder()
    plan = builder.build(config)
    source = plan.upstreams["pool"]
    assert isinstance(source, DiscoveredTargets) and isinstance(source.provider, StaticProvider)

    async def scenario() -> None:
        await builder.prepare(plan)
        assert sorted((ep.key, ep.weight) for ep in source.endpoints) == [
            ("127.0.0.1:8001", 100),
            ("127.0.0.1:8002", 7),
        ]
        assert source.status.state == "ok"
        # A reload of the same definition keeps the very same source (and its balancer state).
        again = builder.build(config)
        assert again.upstreams["pool"] is source
        await builder.close()

    asyncio.run(scenario())


def test_make_provider_kinds() -> None:
    static = StaticDiscovery(type="static", targets=())
    provider = make_provider(static, extra_targets=[TargetSpec("127.0.0.1", 1)])
    assert isinstance(provider, StaticProvider) and provider.targets == (TargetSpec("127.0.0.1", 1),)
