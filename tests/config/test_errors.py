"""Invalid files: every problem reported, each as exactly `file:line: key.path: message`."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import pytest

from forecourt.config import ConfigError, ConfigIssue, load_config, parse_config

CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown top-level field",
        "_format_version: '3.0'\nservice: []\n",
        ['gw.yaml:2: service: unknown field "service"'],
    ),
    (
        "bad format version",
        "_format_version: '4.0'\n",
        ["gw.yaml:1: _format_version: expected '1.1', '2.1' or '3.0', got '4.0'"],
    ),
    (
        "unknown service field",
        "services:\n- name: s\n  host: h\n  hots: x\n",
        ['gw.yaml:4: services[0].hots: unknown field "hots"'],
    ),
    (
        "route path must start with / or ~",
        "services:\n- name: s\n  host: h\n  routes:\n  - paths: [/a]\n  - paths:\n    - /b\n    - c\n",
        ['gw.yaml:8: services[0].routes[1].paths[1]: must start with "/" or "~"'],
    ),
    (
        "service needs a host",
        "services:\n- name: s\n  port: 8080\n",
        ['gw.yaml:2: services[0].host: required field missing (set "host" or "url")'],
    ),
    (
        "url and host together",
        "services:\n- name: s\n  url: http://a\n  host: b\n",
        ['gw.yaml:3: services[0].url: cannot be combined with "host": the url sets it'],
    ),
    (
        "unsupported service protocol",
        "services:\n- name: s\n  host: h\n  protocol: grpc\n",
        [
            'gw.yaml:4: services[0].protocol: protocol "grpc" is not supported (Forecourt proxies http and https)'
        ],
    ),
    (
        "unsupported url scheme",
        "services:\n- name: s\n  url: tcp://h:9\n",
        ['gw.yaml:3: services[0].url: protocol "tcp" is not supported (Forecourt proxies http and https)'],
    ),
    (
        "service constraints",
        "services:\n- name: s\n  host: h\n  retries: 40000\n  connect_timeout: 0\n  port: '80'\n  path: x\n",
        [
            "gw.yaml:4: services[0].retries: must be at most 32767",
            "gw.yaml:5: services[0].connect_timeout: must be at least 1",
            "gw.yaml:6: services[0].port: expected an integer, got '80'",
            "gw.yaml:7: services[0].path: should start with: / (fixed path)",
        ],
    ),
    (
        "tls fields need https",
        "services:\n- name: s\n  host: h\n  tls_verify: true\n",
        ['gw.yaml:4: services[0].tls_verify: only allowed when the protocol is "https"'],
    ),
    (
        "bad service name",
        "services:\n- name: my service\n  host: h\n",
        [
            "gw.yaml:2: services[0].name: invalid value 'my service': it must only contain alphanumeric"
            " and '., -, _, ~' characters"
        ],
    ),
    (
        "route needs a matcher",
        "routes:\n- name: r\n  strip_path: false\n",
        [
            "gw.yaml:2: routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
        ],
    ),
    (
        "http-only route with snis",
        "routes:\n- protocols: [http]\n  snis: [a.example.com]\n",
        [
            "gw.yaml:2: routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'",
            "gw.yaml:3: routes[0].snis: 'snis' can only be set when 'protocols' is 'https'",
        ],
    ),
    (
        "route field checks",
        "routes:\n- methods: [get]\n  hosts: ['a.*.com', '*.*.com']\n  headers: {Host: [x]}\n"
        "  protocols: [tcp]\n  path_handling: v2\n  https_redirect_status_code: 303\n  sources: [{ip: 1.2.3.4}]\n",
        [
            'gw.yaml:2: routes[0].methods[0]: invalid method "get": must be an uppercase token like "GET"',
            "gw.yaml:3: routes[0].hosts[0]: invalid wildcard: must be placed at leftmost or rightmost label",
            "gw.yaml:3: routes[0].hosts[1]: invalid wildcard: must have at most one wildcard",
            'gw.yaml:5: routes[0].protocols[0]: protocol "tcp" is not supported (Forecourt proxies http and https)',
            "gw.yaml:6: routes[0].path_handling: expected 'v0' or 'v1', got 'v2'",
            "gw.yaml:7: routes[0].https_redirect_status_code: expected 426, 301, 302, 307 or 308, got 303",
            "gw.yaml:8: routes[0].sources: not supported: stream routing (tcp/tls/udp) is not implemented by Forecourt",
        ],
    ),
    (
        "host header in route headers",
        "routes:\n- headers:\n    host: [a.com]\n",
        [
            "gw.yaml:3: routes[0].headers.host: cannot contain 'host' header, which must be specified in the"
            " 'hosts' attribute"
        ],
    ),
    (
        "upstream hashing rules",
        "upstreams:\n- name: u\n  hash_on: cookie\n  hash_fallback: ip\n"
        "- name: v\n  hash_on: ip\n  hash_fallback: ip\n"
        "- name: w\n  hash_on: header\n  hash_on_header: X-A\n  hash_fallback: header\n"
        "  hash_fallback_header: X-A\n"
        "- name: x\n  hash_on: query_arg\n  hash_fallback: uri_capture\n",
        [
            'gw.yaml:2: upstreams[0].hash_on_cookie: required when hash_on is "cookie"',
            'gw.yaml:4: upstreams[0].hash_fallback: must be "none" when hash_on is "cookie"',
            "gw.yaml:7: upstreams[1].hash_fallback: must differ from hash_on",
            "gw.yaml:12: upstreams[2].hash_fallback_header: must differ from hash_on_header",
            'gw.yaml:13: upstreams[3].hash_on_query_arg: required when hash_on is "query_arg"',
            'gw.yaml:13: upstreams[3].hash_fallback_uri_capture: required when hash_fallback is "uri_capture"',
        ],
    ),
    (
        "upstream and healthcheck constraints",
        "upstreams:\n- name: 10.0.0.1\n  slots: 5\n  algorithm: random\n"
        "  healthchecks:\n    active:\n      type: grpc\n      healthy:\n        http_statuses: [99]\n"
        "        successes: 256\n    passive:\n      unhealthy:\n        timeout: 3\n",
        [
            "gw.yaml:2: upstreams[0].name: Invalid name; no ip addresses allowed",
            "gw.yaml:3: upstreams[0].slots: must be at least 10",
            "gw.yaml:4: upstreams[0].algorithm: expected 'round-robin', 'consistent-hashing', 'least-connections'"
            " or 'latency', got 'random'",
            'gw.yaml:7: upstreams[0].healthchecks.active.type: health check type "grpc" is not supported'
            " (use http, https or tcp)",
            "gw.yaml:9: upstreams[0].healthchecks.active.healthy.http_statuses[0]: must be at least 100",
            "gw.yaml:10: upstreams[0].healthchecks.active.healthy.successes: must be at most 255",
            'gw.yaml:13: upstreams[0].healthchecks.passive.unhealthy.timeout: unknown field "timeout"',
        ],
    ),
    (
        "upstream name required, target checks",
        "upstreams:\n- targets:\n  - target: 'bad host'\n  - weight: 70000\n    target: a\n",
        [
            "gw.yaml:2: upstreams[0].name: required field missing",
            'gw.yaml:3: upstreams[0].targets[0].target: invalid target "bad host": not a valid hostname or IP address',
            "gw.yaml:4: upstreams[0].targets[1].weight: must be at most 65535",
        ],
    ),
    (
        "consumer needs username or custom_id; credential fields are checked",
        "consumers:\n- tags: [x]\n- username: a\n  keyauth_credentials: [{key: k, secret: s}]\n",
        [
            "gw.yaml:2: consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'",
            'gw.yaml:4: consumers[1].keyauth_credentials[0].secret: unknown field "secret"',
        ],
    ),
    (
        "certificate checks",
        "certificates:\n- cert: C\n  cert_alt: C2\n  snis: [1.2.3.4]\n- key: K\n",
        [
            "gw.yaml:2: certificates[0].key: required field missing",
            "gw.yaml:4: certificates[0].snis[0].name: must not be an IP address",
            "gw.yaml:5: certificates[1].cert: required field missing",
        ],
    ),
    (
        "listen entries",
        "listen: ['0.0.0.0:8000 http2', '0.0.0.0', '0.0.0.0:8000 foo', 8000, '0.0.0.0:8443 ssl', '0.0.0.0:8443']\n",
        [
            'gw.yaml:1: listen[0]: listen flag "http2" is not supported (only "ssl" is)',
            'gw.yaml:1: listen[1]: listen address "0.0.0.0" needs a port, like "0.0.0.0:8000"',
            'gw.yaml:1: listen[2]: unknown listen flag "foo" (only "ssl" is supported)',
            'gw.yaml:1: listen[3]: expected a string like "0.0.0.0:8000" or "0.0.0.0:8443 ssl"',
        ],
    ),
    (
        "duplicate listen address",
        "listen:\n- 0.0.0.0:8443 ssl\n- 0.0.0.0:8443\n",
        ['gw.yaml:3: listen[1]: duplicate listen address "0.0.0.0:8443"'],
    ),
    (
        "entity arrays must be lists of mappings",
        "services: {name: s}\nroutes:\n- /x\n",
        ["gw.yaml:1: services: expected a list", "gw.yaml:3: routes[0]: expected a mapping"],
    ),
    (
        "duplicate keys are errors, alongside the others",
        "services:\n- name: s\n  host: a\n  host: b\n  foo: 1\n",
        [
            'gw.yaml:4: services[0].host: duplicate key "host"',
            'gw.yaml:5: services[0].foo: unknown field "foo"',
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_issues(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml")
    assert [str(issue) for issue in caught.value.issues] == expected
    assert str(caught.value) == "\n".join(expected)


def test_issue_fields() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("services:\n- name: s\n  host: h\n  foo: 1\n", "gw.yaml")
    assert caught.value.issues == [ConfigIssue("gw.yaml", 4, "services[0].foo", 'unknown field "foo"')]


def test_yaml_syntax_error_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("services:\n- name: s\n  host: 'unterminated\n", "gw.yaml")
    [issue] = caught.value.issues
    assert issue.line == 4
    assert issue.message.startswith("invalid YAML: while scanning a quoted scalar")


def test_unreadable_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("/nonexistent/gw.yaml")
    assert str(caught.value) == "/nonexistent/gw.yaml: cannot read file: No such file or directory"
