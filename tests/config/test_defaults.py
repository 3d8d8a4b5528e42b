"""Loading valid files: Kong's defaults, the url shorthand, flattening and generated names."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecourt.config import ConfigError, GatewayConfig, Listen, load_config, parse_config

SEED = """\
services:
- name: order-service
  url: http://order-service:8080
  routes:
  - name: orders-route
    paths:
    - /api/orders
- name: user-service
  url: http://user-service:8080
  routes:
  - name: users-route
    paths:
    - /api/users
"""


def load(text: str) -> GatewayConfig:
    return parse_config(text, "gw.yaml")


def test_seed_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED)
    config = load_config(path)
    assert [(s.name, s.protocol, s.host, s.port, s.path) for s in config.services] == [
        ("order-service", "http", "order-service", 8080, None),
        ("user-service", "http", "user-service", 8080, None),
    ]
    assert [(r.name, r.service, r.paths, r.source_path) for r in config.routes] == [
        ("orders-route", "order-service", ("/api/orders",), ("services", 0, "routes", 0)),
        ("users-route", "user-service", ("/api/users",), ("services", 1, "routes", 0)),
    ]
    assert config.source.file == str(path)
    assert config.listen == []


def test_service_defaults() -> None:
    service = load("services:\n- host: example.com\n").services[0]
    assert service.name == "service-0"
    assert (service.protocol, service.port, service.path) == ("http", 80, None)
    assert (service.retries, service.connect_timeout, service.write_timeout, service.read_timeout) == (
        5,
        60000,
        60000,
        60000,
    )
    assert service.enabled is True
    assert service.tls_verify is None
    assert service.source_path == ("services", 0)


def test_https_service_defaults_to_port_443() -> None:
    service = load("services:\n- host: example.com\n  protocol: https\n").services[0]
    assert service.port == 443


@pytest.mark.parametrize(
    ("url", "protocol", "host", "port", "path"),
    [
        ("http://order-service:8080", "http", "order-service", 8080, None),
        ("http://order-service", "http", "order-service", 80, None),
        ("https://api.example.com/v1", "https", "api.example.com", 443, "/v1"),
        ("https://10.0.0.1:8443/", "https", "10.0.0.1", 8443, "/"),
        ("http://[::1]:9000/x/y", "http", "::1", 9000, "/x/y"),
        ("HTTP://Host.Example:81", "http", "Host.Example", 81, None),
    ],
)
def test_url_shorthand(url: str, protocol: str, host: str, port: int, path: str | None) -> None:
    service = load(f"services:\n- name: s\n  url: {url}\n").services[0]
    assert (service.protocol, service.host, service.port, service.path) == (protocol, host, port, path)


def test_route_defaults() -> None:
    route = load("routes:\n- paths: [/]\n").routes[0]
    assert route.name == "route-0"
    assert route.service is None
    assert route.protocols == ("http", "https")
    assert (route.methods, route.hosts, route.headers, route.snis) == ((), (), {}, ())
    assert route.https_redirect_status_code == 426
    assert route.regex_priority == 0
    assert route.strip_path is True
    assert route.path_handling == "v0"
    assert route.preserve_host is False
    assert route.request_buffering is True
    assert route.response_buffering is True


def test_routes_are_in_file_order_with_stable_generated_names() -> None:
    config = load(
        "routes:\n"
        "- paths: [/top]\n"
        "  service: b\n"
        "services:\n"
        "- name: b\n"
        "  host: b.internal\n"
        "  routes:\n"
        "  - paths: [/nested]\n"
        "- host: c.internal\n"
        "  routes:\n"
        "  - name: route-1\n"
        "    paths: [/named]\n"
    )
    assert [(r.name, r.service, r.paths[0]) for r in config.routes] == [
        ("route-0", "b", "/top"),
        ("route-1-1", "b", "/nested"),  # "route-1" is taken by a route named so in the file
        ("route-1", "service-1", "/named"),
    ]


def test_route_matchers() -> None:
    route = load(
        "routes:\n"
        "- methods: [GET, POST]\n"
        "  hosts: ['*.example.com', 'example.*', 'api.example.com:8443', '10.0.0.1', '[::1]:80']\n"
        "  headers: {x-version: ['v1', 'v2']}\n"
        "  paths: ['/api', '~/items/(?<id>\\d+)$']\n"
        "  snis: [example.com]\n"
    ).routes[0]
    assert route.methods == ("GET", "POST")
    assert route.headers == {"x-version": ("v1", "v2")}
    assert route.paths == ("/api", "~/items/(?<id>\\d+)$")


def test_upstream_defaults_and_targets() -> None:
    config = load(
        "upstreams:\n"
        "- name: orders.internal\n"
        "  targets:\n"
        "  - target: 10.0.0.1\n"
        "  - target: 10.0.0.2:9000\n"
        "    weight: 0\n"
        "targets:\n"
        "- target: '[::1]:8080'\n"
        "  upstream: orders.internal\n"
    )
    upstream = config.upstreams[0]
    assert upstream.algorithm == "round-robin"
    assert (upstream.hash_on, upstream.hash_fallback, upstream.hash_on_cookie_path) == ("none", "none", "/")
    assert upstream.slots == 10000
    assert upstream.use_srv_name is False
    assert [(t.target, t.host, t.port, t.weight, t.upstream) for t in upstream.targets] == [
        ("10.0.0.1:8000", "10.0.0.1", 8000, 100, "orders.internal"),
        ("10.0.0.2:9000", "10.0.0.2", 9000, 0, "orders.internal"),
        ("[::1]:8080", "::1", 8080, 100, "orders.internal"),
    ]


def test_healthcheck_defaults() -> None:
    checks = load("upstreams:\n- name: u\n").upstreams[0].healthchecks
    active, passive = checks.active, checks.passive
    assert (active.type, active.timeout, active.concurrency, active.http_path) == ("http", 1, 10, "/")
    assert active.https_sni is None
    assert active.https_verify_certificate is True
    assert (active.healthy.interval, active.healthy.http_statuses, active.healthy.successes) == (
        0,
        (200, 302),
        0,
    )
    assert active.unhealthy.http_statuses == (429, 404, 500, 501, 502, 503, 504, 505)
    assert (active.unhealthy.tcp_failures, active.unhealthy.timeouts, active.unhealthy.http_failures) == (
        0,
        0,
        0,
    )
    assert passive.type == "http"
    assert passive.healthy.http_statuses == (
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308,
    )  # fmt: skip
    assert passive.healthy.successes == 0
    assert passive.unhealthy.http_statuses == (429, 500, 503)
    assert checks.threshold == 0


def test_partial_healthchecks_keep_other_defaults() -> None:
    text = "upstreams:\n- name: u\n  healthchecks:\n    active:\n      healthy: {interval: 5, successes: 2}\n"
    checks = load(text).upstreams[0].healthchecks
    assert (checks.active.healthy.interval, checks.active.healthy.successes) == (5, 2)
    assert checks.active.healthy.http_statuses == (200, 302)
    assert checks.passive.unhealthy.http_statuses == (429, 500, 503)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:8000", Listen(host="0.0.0.0", port=8000, ssl=False)),
        ("0.0.0.0:8443 ssl", Listen(host="0.0.0.0", port=8443, ssl=True)),
        ("[::1]:8000", Listen(host="::1", port=8000, ssl=False)),
        ("localhost:9000", Listen(host="localhost", port=9000, ssl=False)),
    ],
)
def test_listen(text: str, expected: Listen) -> None:
    config = load(f"listen: ['{text}']\n")
    assert config.listen == [expected]


def test_consumers_certificates_and_snis() -> None:
    cert_id = "6b4f7e5e-2b7c-4a8e-9c44-3a9f6f0c1d11"
    config = load(
        "consumers:\n"
        "- username: alice\n"
        "- custom_id: ext-42\n"
        "certificates:\n"
        f"- id: {cert_id}\n"
        "  cert: CERT\n"
        "  key: KEY\n"
        "  snis: [a.example.com, {name: '*.b.example.com'}]\n"
        "snis:\n"
        f"- name: c.example.com\n  certificate: {{id: {cert_id}}}\n"
        "ca_certificates:\n"
        "- cert: CA\n"
    )
    assert [(c.name, c.username, c.custom_id) for c in config.consumers] == [
        ("alice", "alice", None),
        ("consumer-1", None, "ext-42"),
    ]
    assert config.certificates[0].snis == ("a.example.com", "*.b.example.com", "c.example.com")
    assert config.ca_certificates[0].cert == "CA"
    assert config.ca_certificates[0].source_path == ("ca_certificates", 0)


def test_issue_points_later_stages_at_a_line() -> None:
    config = load(SEED)
    issue = config.issue(("services", 1, "routes", 0, "paths", 0), "bad regex")
    assert str(issue) == "gw.yaml:13: services[1].routes[0].paths[0]: bad regex"


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    path.write_text(
        '{\n  "_format_version": "3.0",\n  "services": [\n    {"name": "s", "url": "http://s:1",\n'
        '     "routes": [{"paths": ["/x"], "retries": 1}]}\n  ]\n}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f'{path}:5: services[0].routes[0].retries: unknown field "retries"'
    path.write_text('{"_format_version": "3.0", "services": [{"name": "s", "url": "http://s:1"}]}')
    config = load_config(path)
    assert config.format_version == "3.0"
    assert config.services[0].port == 1
