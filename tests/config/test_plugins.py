"""Plugins: config validated by the caller's schemas, scope resolution, one per name and scope."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from forecourt.config import ConfigError, parse_config


class RateLimitingConfig(BaseModel):
    """A stand-in plugin schema, shaped like a bundled plugin's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minute: int | None = Field(None, ge=0)
    policy: str = "local"


class CorsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    origins: list[str] = Field(default_factory=lambda: ["*"])


SCHEMAS: dict[str, type[BaseModel]] = {"rate-limiting": RateLimitingConfig, "cors": CorsConfig}

CONFIG = """\
services:
- name: s
  host: a
  plugins:
  - name: rate-limiting
    config: {minute: 5}
  routes:
  - name: r
    paths: [/]
    plugins:
    - name: rate-limiting
      config: {minute: 1, policy: redis}
  - paths: [/other]
    plugins:
    - name: cors
consumers:
- username: alice
  plugins:
  - name: rate-limiting
    config: {minute: 100}
plugins:
- name: cors
  config: {origins: [https://a.example]}
- name: cors
  route: r
  consumer: alice
"""


def test_plugins_are_validated_and_scoped() -> None:
    config = parse_config(CONFIG, "gw.yaml", SCHEMAS)
    summary = [(p.name, p.route, p.service, p.consumer, p.config, p.source_path) for p in config.plugins]
    assert summary == [
        ("rate-limiting", None, "s", None, RateLimitingConfig(minute=5), ("services", 0, "plugins", 0)),
        (
            "rate-limiting",
            "r",
            None,
            None,
            RateLimitingConfig(minute=1, policy="redis"),
            ("services", 0, "routes", 0, "plugins", 0),
        ),
        ("cors", "route-1", None, None, CorsConfig(), ("services", 0, "routes", 1, "plugins", 0)),
        (
            "rate-limiting",
            None,
            None,
            "alice",
            RateLimitingConfig(minute=100),
            ("consumers", 0, "plugins", 0),
        ),
        ("cors", None, None, None, CorsConfig(origins=["https://a.example"]), ("plugins", 0)),
        ("cors", "r", None, "alice", CorsConfig(), ("plugins", 1)),
    ]
    assert all(plugin.enabled for plugin in config.plugins)
    assert config.plugins[0].protocols == ("grpc", "grpcs", "http", "https")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "plugins:\n- name: jwt\n",
            ['gw.yaml:2: plugins[0].name: unknown plugin "jwt"'],
        ),
        (
            "plugins:\n- name: rate-limiting\n  config:\n    minute: -1\n    second: 1\n",
            [
                "gw.yaml:4: plugins[0].config.minute: must be at least 0",
                'gw.yaml:5: plugins[0].config.second: unknown field "second"',
            ],
        ),
        (
            "plugins:\n- name: cors\n  config: [x]\n",
            ["gw.yaml:3: plugins[0].config: expected a mapping, got a list"],
        ),
        (
            "plugins:\n- name: cors\n- name: cors\n  enabled: false\n",
            ['gw.yaml:3: plugins[1]: duplicate plugin "cors" for the global scope (first at plugins[0])'],
        ),
        (
            "services:\n- name: s\n  host: a\n  plugins:\n  - name: cors\nplugins:\n- name: cors\n  service: s\n",
            [
                'gw.yaml:7: plugins[0]: duplicate plugin "cors" for service "s"'
                " (first at services[0].plugins[0])"
            ],
        ),
        (
            "plugins:\n- name: cors\n  instance_name: c\n  service: {name: s}\n- name: rate-limiting\n"
            "  instance_name: c\n  service: s\nservices:\n- name: s\n  host: a\n",
            ['gw.yaml:6: plugins[1].instance_name: duplicate plugin instance_name "c" (first at plugins[0])'],
        ),
        (
            "plugins:\n- name: cors\n  protocols: [http, ftp]\n  ordering: {}\n",
            [
                "gw.yaml:3: plugins[0].protocols[1]: expected 'grpc', 'grpcs', 'http', 'https', 'tcp', 'tls',"
                " 'tls_passthrough', 'udp', 'ws' or 'wss', got 'ftp'",
                'gw.yaml:4: plugins[0].ordering: unknown field "ordering"',
            ],
        ),
        (
            "services:\n- name: s\n  host: a\n  plugins:\n  - name: cors\n    service: s\n",
            ["gw.yaml:6: services[0].plugins[0].service: not allowed in a plugin nested in a service"],
        ),
    ],
)
def test_plugin_issues(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml", SCHEMAS)
    assert [str(issue) for issue in caught.value.issues] == expected


def test_without_schemas_every_plugin_is_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("plugins:\n- name: cors\n", "gw.yaml")
    assert str(caught.value) == 'gw.yaml:2: plugins[0].name: unknown plugin "cors"'
