"""Names, ids and references between entities."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import pytest

from forecourt.config import ConfigError, parse_config

SVC_ID = "0b5a7c64-3c4e-4c7d-9b64-6a3c0e1d2f01"
CERT_ID = "1c6b8d75-4d5f-4d8e-8c75-7b4d1f2e3a02"
CA_ID = "2d7c9e86-5e6a-4e9f-9d86-8c5e2a3f4b03"

CASES: list[tuple[str, str, list[str]]] = [
    (
        "duplicate service name",
        "services:\n- name: s\n  host: a\n- name: s\n  host: b\n",
        ['gw.yaml:4: services[1].name: duplicate service name "s" (first at services[0])'],
    ),
    (
        "duplicate route name across nesting",
        "services:\n- name: s\n  host: a\n  routes:\n  - name: r\n    paths: [/a]\nroutes:\n- name: r\n  paths: [/b]\n",
        ['gw.yaml:8: routes[0].name: duplicate route name "r" (first at services[0].routes[0])'],
    ),
    (
        "duplicate upstream name",
        "upstreams:\n- name: u\n- name: u\n",
        ['gw.yaml:3: upstreams[1].name: duplicate upstream name "u" (first at upstreams[0])'],
    ),
    (
        "duplicate consumer username and custom_id",
        "consumers:\n- username: a\n  custom_id: x\n- username: a\n  custom_id: x\n",
        [
            'gw.yaml:4: consumers[1].username: duplicate consumer name "a" (first at consumers[0])',
            'gw.yaml:5: consumers[1].custom_id: duplicate consumer custom_id "x" (first at consumers[0])',
        ],
    ),
    (
        "duplicate id",
        f"services:\n- id: {SVC_ID}\n  host: a\n- id: {SVC_ID}\n  host: b\n",
        [f'gw.yaml:4: services[1].id: duplicate service id "{SVC_ID}" (first at services[0])'],
    ),
    (
        "malformed id",
        "services:\n- id: not-a-uuid\n  host: a\n",
        ['gw.yaml:2: services[0].id: expected a UUID, got "not-a-uuid"'],
    ),
    (
        "duplicate sni across nesting",
        f"certificates:\n- id: {CERT_ID}\n  cert: C\n  key: K\n  snis: [a.com]\n"
        f"snis:\n- name: a.com\n  certificate: {CERT_ID}\n",
        ['gw.yaml:7: snis[0].name: duplicate sni name "a.com" (first at certificates[0].snis[0])'],
    ),
    (
        "duplicate target in one upstream, nested and top-level",
        "upstreams:\n- name: u\n  targets:\n  - target: a:80\ntargets:\n- target: a:80\n  upstream: u\n",
        ['gw.yaml:6: targets[0].target: duplicate target "a:80" in this upstream'],
    ),
    (
        "dangling references",
        "routes:\n- paths: [/]\n  service: nope\n- paths: [/]\n  service: {id: " + SVC_ID + "}\n"
        "targets:\n- target: a\n  upstream: nope\n- target: b\n"
        "snis:\n- name: a.com\n  certificate: {id: " + CERT_ID + "}\n- name: b.com\n"
        "plugins:\n- name: p\n  route: nope\n  consumer: {name: nope}\n",
        [
            'gw.yaml:3: routes[0].service: no service named "nope"',
            f'gw.yaml:5: routes[1].service: no service with id "{SVC_ID}"',
            'gw.yaml:8: targets[0].upstream: no upstream named "nope"',
            "gw.yaml:9: targets[1].upstream: required field missing",
            f'gw.yaml:12: snis[0].certificate: no certificate with id "{CERT_ID}"',
            "gw.yaml:13: snis[1].certificate: required field missing",
            'gw.yaml:15: plugins[0].name: unknown plugin "p"',
            'gw.yaml:16: plugins[0].route: no route named "nope"',
            'gw.yaml:17: plugins[0].consumer: no consumer named "nope"',
        ],
    ),
    (
        "certificate references on services",
        f"services:\n- host: a\n  protocol: https\n  client_certificate: {{id: {CERT_ID}}}\n"
        f"  ca_certificates: [{CA_ID}]\n",
        [
            f'gw.yaml:4: services[0].client_certificate: no certificate with id "{CERT_ID}"',
            f'gw.yaml:5: services[0].ca_certificates[0]: no ca_certificate with id "{CA_ID}"',
        ],
    ),
    (
        "a reference must be a name, {name} or {id}",
        "routes:\n- paths: [/]\n  service: 5\n- paths: [/]\n  service: {}\n",
        [
            "gw.yaml:3: routes[0].service: expected a name, {name: ...} or {id: ...}",
            'gw.yaml:5: routes[1].service: set exactly one of "id" or "name"',
        ],
    ),
    (
        "nested entities may not name their parent",
        "services:\n- name: s\n  host: a\n  routes:\n  - paths: [/]\n    service: s\n"
        "upstreams:\n- name: u\n  targets:\n  - target: a\n    upstream: u\n",
        [
            "gw.yaml:6: services[0].routes[0].service: not allowed in a route nested in a service",
            "gw.yaml:11: upstreams[0].targets[0].upstream: not allowed in a target nested in an upstream",
        ],
    ),
    (
        "a field error does not hide a dangling reference of the same entity",
        "routes:\n- paths: [x]\n  service: nope\n",
        [
            'gw.yaml:2: routes[0].paths[0]: must start with "/" or "~"',
            'gw.yaml:3: routes[0].service: no service named "nope"',
        ],
    ),
    (
        "a reference to an invalid entity is not reported twice",
        "services:\n- name: s\n  hots: a\nroutes:\n- paths: [/]\n  service: s\n",
        ['gw.yaml:3: services[0].hots: unknown field "hots"'],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_reference_issues(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml")
    assert [str(issue) for issue in caught.value.issues] == expected


def test_references_by_name_id_and_object() -> None:
    config = parse_config(
        f"services:\n- name: s\n  id: {SVC_ID}\n  host: a\n  protocol: https\n"
        f"  client_certificate: {{id: {CERT_ID}}}\n  ca_certificates: [{CA_ID}]\n"
        "routes:\n"
        "- paths: [/1]\n  service: s\n"
        "- paths: [/2]\n  service: {name: s}\n"
        f"- paths: [/3]\n  service: {{id: {SVC_ID}}}\n"
        f"- paths: [/4]\n  service: {SVC_ID}\n"
        f"certificates:\n- id: {CERT_ID}\n  cert: C\n  key: K\n"
        f"ca_certificates:\n- id: {CA_ID}\n  cert: CA\n",
        "gw.yaml",
    )
    assert [route.service for route in config.routes] == ["s", "s", "s", "s"]
    assert config.services[0].client_certificate == CERT_ID
    assert config.services[0].ca_certificates == (CA_ID,)
