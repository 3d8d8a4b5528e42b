"""The admin API's read endpoints over a real `forecourt run` with two gateways."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from tests.admin.conftest import AdminNode, NxdomainDns
from tests.support.net import raw_exchange, status_of
from tests.support.upstreams import DemoUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    server = DemoUpstream("orders").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    issued = trustme.CA().issue_cert("shop.example.test")
    return issued.cert_chain_pems[0].bytes().decode(), issued.private_key_pem.bytes().decode()


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: DemoUpstream,
    nxdomain_dns: NxdomainDns,
    certificate: tuple[str, str],
) -> Iterator[AdminNode]:
    cert, key = certificate
    main: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "orders",
                "url": f"http://127.0.0.1:{upstream.port}/v1",
                "tags": ["shop"],
                "routes": [{"name": "orders-route", "paths": ["/orders"], "methods": ["GET"]}],
            },
            {
                "name": "pooled",
                "host": "pool",
                "routes": [{"name": "pooled-route", "paths": ["/pooled"]}],
            },
        ],
        "upstreams": [
            {
                "name": "pool",
                "targets": [
                    {"target": f"127.0.0.1:{upstream.port}", "weight": 50},
                    {"target": "nowhere.invalid:8080"},
                ],
            }
        ],
        "consumers": [{"username": "alice", "custom_id": "a-1"}],
        "certificates": [{"cert": cert, "key": key, "snis": ["shop.example.test"]}],
    }
    bff = {
        "services": [
            {"name": "mobile", "url": f"http://127.0.0.1:{upstream.port}", "routes": [{"paths": ["/m"]}]}
        ]
    }
    workdir = tmp_path_factory.mktemp("admin-api")
    started = AdminNode(workdir, {"main": main, "bff": bff}, "--dns-resolver", nxdomain_dns.address)
    yield started
    started.stop()


def test_node_info(node: AdminNode) -> None:
    info = node.admin.get("/").json()
    assert info["version"]
    assert info["hostname"]
    assert uuid.UUID(info["node_id"])
    assert info["plugins"]["enabled_in_cluster"] == []
    assert isinstance(info["plugins"]["available_on_server"], dict)
    configuration = info["configuration"]
    assert configuration["database"] == "off"
    assert configuration["admin_listen"] == [f"127.0.0.1:{node.admin_port}"]
    assert configuration["proxy_listen"] == [f"127.0.0.1:{node.ports['main']}"]
    assert configuration["declarative_configs"] == [str(node.paths["main"]), str(node.paths["bff"])]


def test_list_services_has_kongs_shape(node: AdminNode) -> None:
    body = node.admin.get("/services").json()
    assert body["next"] is None
    names = [s["name"] for s in body["data"]]
    assert names == ["orders", "pooled"]
    orders = body["data"][0]
    assert uuid.UUID(orders["id"])
    assert orders["protocol"] == "http"
    assert orders["host"] == "127.0.0.1"
    assert orders["path"] == "/v1"
    assert orders["retries"] == 5
    assert orders["connect_timeout"] == 60000
    assert orders["tags"] == ["shop"]
    assert orders["client_certificate"] is None
    assert isinstance(orders["created_at"], int)
    assert "source_path" not in orders


def test_entities_by_name_or_id(node: AdminNode) -> None:
    by_name = node.admin.get("/services/orders").json()
    assert node.admin.get(f"/services/{by_name['id']}").json() == by_name
    route = node.admin.get("/routes/orders-route").json()
    assert route["service"] == {"id": by_name["id"]}
    assert route["paths"] == ["/orders"]
    assert route["methods"] == ["GET"]
    assert route["hosts"] is None
    assert route["strip_path"] is True
    assert node.admin.get(f"/routes/{route['id']}").json()["name"] == "orders-route"
    assert node.admin.get("/routes/orders-route/service").json()["name"] == "orders"
    routes = node.admin.get("/services/orders/routes").json()["data"]
    assert [r["name"] for r in routes] == ["orders-route"]


def test_ids_are_stable(node: AdminNode) -> None:
    first = node.admin.get("/services/orders").json()["id"]
    assert node.admin.get("/services/orders").json()["id"] == first


@pytest.mark.parametrize(
    "path",
    [
        "/services/nope",
        "/routes/nope",
        "/upstreams/nope",
        "/upstreams/nope/health",
        "/upstreams/nope/targets",
        "/services/nope/routes",
        "/consumers/nope",
        "/certificates/nope",
        "/plugins/nope",
        "/nothing-here",
        "/gateways/nope/services",
    ],
)
def test_unknown_is_404(node: AdminNode, path: str) -> None:
    response = node.admin.get(path)
    assert response.status_code == 404
    assert response.json() == {"message": "Not found"}


def test_wrong_method_is_405(node: AdminNode) -> None:
    response = node.admin.delete("/services/orders")
    assert response.status_code == 405
    assert response.json() == {"message": "Method not allowed"}


def test_upstreams_and_targets(node: AdminNode) -> None:
    upstreams = node.admin.get("/upstreams").json()["data"]
    assert [u["name"] for u in upstreams] == ["pool"]
    pool = upstreams[0]
    assert pool["algorithm"] == "round-robin"
    assert pool["slots"] == 10000
    assert pool["healthchecks"]["active"]["type"] == "http"
    targets = node.admin.get("/upstreams/pool/targets").json()["data"]
    assert [t["target"] for t in targets][1] == "nowhere.invalid:8080"
    assert all(t["upstream"] == {"id": pool["id"]} for t in targets)


def test_upstream_health_reports_dns_error(node: AdminNode, upstream: DemoUpstream) -> None:
    body = node.admin.get("/upstreams/pool/health").json()
    assert body["total"] == 2
    assert body["next"] is None
    ip_target, name_target = body["data"]
    assert ip_target["target"] == f"127.0.0.1:{upstream.port}"
    assert ip_target["health"] == "HEALTHCHECKS_OFF"
    assert ip_target["weight"] == 50
    assert ip_target["data"]["addresses"] == [
        {"ip": "127.0.0.1", "port": upstream.port, "weight": 50, "health": "HEALTHY"}
    ]
    assert name_target["health"] == "DNS_ERROR"
    assert name_target["data"]["addresses"] == []
    balancer = node.admin.get("/upstreams/pool/health?balancer_health=1").json()["data"]
    assert balancer["health"] == "HEALTHCHECKS_OFF"
    assert balancer["details"]["weight"] == {"total": 50, "available": 50, "unavailable": 0}


def test_certificates_never_show_private_keys(node: AdminNode, certificate: tuple[str, str]) -> None:
    cert_pem, _ = certificate
    certs = node.admin.get("/certificates").json()["data"]
    assert len(certs) == 1
    assert certs[0]["cert"] == cert_pem
    assert certs[0]["snis"] == ["shop.example.test"]
    assert "key" not in certs[0]
    assert node.admin.get(f"/certificates/{certs[0]['id']}").status_code == 200
    config = node.admin.get("/config").json()
    assert "PRIVATE KEY" not in config["config"]
    assert "<redacted>" in config["config"]
    assert "PRIVATE KEY" not in node.admin.get("/").text


def test_consumers_and_plugins(node: AdminNode) -> None:
    consumers = node.admin.get("/consumers").json()["data"]
    assert consumers[0]["username"] == "alice"
    assert consumers[0]["custom_id"] == "a-1"
    assert node.admin.get("/consumers/alice").json()["id"] == consumers[0]["id"]
    assert node.admin.get("/consumers/alice/plugins").json() == {"data": [], "next": None}
    assert node.admin.get("/plugins").json() == {"data": [], "next": None}
    assert node.admin.get("/plugins/enabled").json() == {"enabled_plugins": []}


def test_pagination(node: AdminNode) -> None:
    first = node.admin.get("/services?size=1").json()
    assert [s["name"] for s in first["data"]] == ["orders"]
    assert first["next"] == "/services?offset=1&size=1"
    second = node.admin.get(first["next"]).json()
    assert [s["name"] for s in second["data"]] == ["pooled"]
    assert second["next"] is None
    assert node.admin.get("/services?tags=shop").json()["data"][0]["name"] == "orders"
    assert node.admin.get("/services?size=0").status_code == 400


def test_gateways(node: AdminNode) -> None:
    gateways = node.admin.get("/gateways").json()["data"]
    assert [(g["name"], g["default"]) for g in gateways] == [("main", True), ("bff", False)]
    assert gateways[1]["listen"] == [f"127.0.0.1:{node.ports['bff']}"]
    assert gateways[0]["configuration_hash"] != gateways[1]["configuration_hash"]
    bff_services = node.admin.get("/gateways/bff/services").json()["data"]
    assert [s["name"] for s in bff_services] == ["mobile"]
    assert node.admin.get("/gateways/main/services").json() == node.admin.get("/services").json()
    bff_status = node.admin.get("/gateways/bff/status").json()
    assert bff_status["configuration_hash"] == gateways[1]["configuration_hash"]


def test_status_counters_move(node: AdminNode) -> None:
    before = node.admin.get("/status").json()
    server = before["server"]
    assert set(server) == {
        "connections_accepted",
        "connections_handled",
        "connections_active",
        "connections_reading",
        "connections_writing",
        "connections_waiting",
        "total_requests",
    }
    assert before["database"] == {"reachable": True}
    assert len(before["configuration_hash"]) == 32
    assert before["memory"]["workers"][0]["rss"].endswith(" MiB")
    bff_before = node.admin.get("/gateways/bff/status").json()["server"]
    with node.proxy("main") as client:
        for _ in range(3):
            assert client.get("/orders").status_code == 200
        during = node.admin.get("/status").json()["server"]
        assert during["connections_active"] >= 1  # the keep-alive connection still open
    after = node.admin.get("/status").json()["server"]
    assert after["total_requests"] == server["total_requests"] + 3
    assert after["connections_accepted"] == server["connections_accepted"] + 1
    assert after["connections_handled"] == after["connections_accepted"]
    # the other gateway's own counters did not move
    assert (
        node.admin.get("/gateways/bff/status").json()["server"]["total_requests"]
        == (bff_before["total_requests"])
    )


def test_body_over_16_mib_is_413(node: AdminNode) -> None:
    head = (
        b"POST /config HTTP/1.1\r\nHost: admin\r\nContent-Type: text/yaml\r\nContent-Length: 16777217\r\n\r\n"
    )
    started = time.monotonic()
    response = raw_exchange(node.admin_port, head + b"x" * 1024, timeout=5)
    assert status_of(response) == 413
    assert time.monotonic() - started < 3  # answered at once, without reading the body


def test_keep_alive_and_pipelining(node: AdminNode) -> None:
    request = b"GET /status HTTP/1.1\r\nHost: admin\r\n\r\n"
    last = b"GET /services/orders HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    response = raw_exchange(node.admin_port, request + request + last)
    assert response.count(b"HTTP/1.1 200 OK") == 3
    assert response.rstrip().endswith(b"}")


def test_garbage_is_400(node: AdminNode) -> None:
    assert status_of(raw_exchange(node.admin_port, b"NOT HTTP AT ALL\r\n\r\n")) == 400
