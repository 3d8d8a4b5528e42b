"""`POST /config` over a real `forecourt run`: validate, swap atomically, or answer 400 and change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml

from tests.admin.conftest import AdminNode
from tests.support.upstreams import DemoUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    server = DemoUpstream("orders").start()
    yield server
    server.stop()


def config(port: int, *paths: str) -> dict[str, Any]:
    routes = [{"name": f"r{i}", "paths": [path]} for i, path in enumerate(paths)]
    return {
        "_format_version": "3.0",
        "services": [{"name": "orders", "url": f"http://127.0.0.1:{port}", "routes": routes}],
    }


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory, upstream: DemoUpstream) -> Iterator[AdminNode]:
    started = AdminNode(tmp_path_factory.mktemp("admin-config"), {"gw": config(upstream.port, "/old")})
    yield started
    started.stop()


def post_yaml(node: AdminNode, document: dict[str, Any] | str, query: str = "") -> Any:
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    return node.admin.post(f"/config{query}", content=text, headers={"Content-Type": "text/yaml"})


def test_valid_config_is_swapped_in(node: AdminNode, upstream: DemoUpstream) -> None:
    text = yaml.safe_dump({**config(upstream.port, "/new"), "listen": [f"127.0.0.1:{node.ports['gw']}"]})
    response = post_yaml(node, text)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["entities"]["services"] == 1
    assert body["entities"]["routes"] == 1
    with node.proxy("gw") as proxy:
        assert proxy.get("/new").status_code == 200
        assert proxy.get("/old").status_code == 404
    status = node.admin.get("/status").json()
    assert status["configuration_hash"] == body["configuration_hash"]
    active = node.admin.get("/config").json()
    assert active["config"] == text
    assert active["configuration_hash"] == body["configuration_hash"]
    assert [r["name"] for r in node.admin.get("/routes").json()["data"]] == ["r0"]
    # the same text again with ?check_hash=1: nothing to do
    assert post_yaml(node, text, "?check_hash=1").status_code == 304


BROKEN = """\
_format_version: "3.0"
services:
  - name: orders
    url: http://127.0.0.1:1
    retries: many
    routes:
      - name: broken
        paths: ["no-slash"]
"""


def test_broken_config_is_400_and_changes_nothing(node: AdminNode) -> None:
    before = node.admin.get("/status").json()["configuration_hash"]
    response = post_yaml(node, BROKEN)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 14
    assert body["name"] == "invalid declarative configuration"
    assert body["message"].startswith("declarative config is invalid: ")
    # Forecourt's own list: `file:line: key.path: message`
    assert len(body["errors"]) == 2
    for line in body["errors"]:
        assert re.match(r"^.*gw.*:\d+: services\[0\]\.", line), line
    assert any(":5: services[0].retries: " in line for line in body["errors"])
    assert any(":8: services[0].routes[0].paths[0]: " in line for line in body["errors"])
    # Kong's nesting by entity and index
    fields = body["fields"]
    assert isinstance(fields["services"][0]["retries"], str)
    assert isinstance(fields["services"][0]["routes"][0]["paths"][0], str)
    flattened = {(e["entity_type"], e["entity_name"]): e for e in body["flattened_errors"]}
    assert flattened["service", "orders"]["errors"][0]["field"] == "retries"
    assert flattened["route", "broken"]["errors"][0]["field"] == "paths[0]"
    # nothing changed: same hash, the old route still served, the new one not
    assert node.admin.get("/status").json()["configuration_hash"] == before
    with node.proxy("gw") as proxy:
        assert proxy.get("/old").status_code == 200
    assert [r["name"] for r in node.admin.get("/routes").json()["data"]] == ["r0"]
    assert node.admin.get("/routes/broken").status_code == 404


def test_yaml_syntax_error_is_400(node: AdminNode) -> None:
    response = post_yaml(node, "services: [\n  - name: x\n")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 14
    assert re.match(r"^.*gw.*:\d+: ", body["errors"][0])


def test_form_and_json_bodies(node: AdminNode, upstream: DemoUpstream) -> None:
    text = yaml.safe_dump(config(upstream.port, "/form"))
    multipart = node.admin.post("/config", files={"config": ("kong.yml", text.encode(), "text/yaml")})
    assert multipart.status_code == 201, multipart.text
    urlencoded = node.admin.post("/config", data={"config": yaml.safe_dump(config(upstream.port, "/urlenc"))})
    assert urlencoded.status_code == 201, urlencoded.text
    wrapped = node.admin.post(
        "/config",
        content=orjson.dumps({"config": config(upstream.port, "/wrapped")}),
        headers={"Content-Type": "application/json"},
    )
    assert wrapped.status_code == 201, wrapped.text
    raw_json = node.admin.post(
        "/config",
        content=orjson.dumps(config(upstream.port, "/json")),
        headers={"Content-Type": "application/json"},
    )
    assert raw_json.status_code == 201, raw_json.text
    with node.proxy("gw") as proxy:
        assert proxy.get("/json").status_code == 200
        assert proxy.get("/wrapped").status_code == 404
    missing = node.admin.post("/config", data={"other": "x"})
    assert missing.status_code == 400
    assert "config" in missing.json()["message"]
    assert node.admin.post("/config", content=b"", headers={"Content-Type": "text/yaml"}).status_code == 400
