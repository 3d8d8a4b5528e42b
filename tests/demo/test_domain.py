"""The demo's domain services, answer by answer (no sockets: `answer()` is the whole behaviour)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from forecourt.demo.domain import DOMAIN_SERVICES, domain_service
from forecourt.demo.service import DemoRequest


def ask(service: str, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
    instance = domain_service(service, "127.0.0.1:1")
    raw = orjson.dumps(body) if body is not None else b""
    request = DemoRequest(method, path, query or {}, {"x-consumer-username": "demo-user"}, raw)
    answer = asyncio.run(instance.answer(request))
    if answer is None:
        return None
    assert ("X-Served-By", f"{service}@127.0.0.1:1") in answer.headers
    return answer.status, answer.body


@pytest.mark.parametrize(
    ("service", "method", "path", "query", "status", "expected"),
    [
        ("order-service", "GET", "/orders/1001", None, 200, {"id": "1001", "status": "SHIPPED"}),
        ("order-service", "GET", "/orders/999", None, 404, {"message": "order 999 not found"}),
        ("user-service", "GET", "/users/7", None, 200, {"id": "7", "name": "Ada Lovelace"}),
        ("user-service", "GET", "/users/ada", None, 200, {"id": "7"}),
        ("user-service", "GET", "/users/9", None, 404, {"message": "user 9 not found"}),
        ("payment-service", "GET", "/payments/P-5001", None, 200, {"orderId": "1001"}),
        ("payment-service", "GET", "/payments", {"order": "1002"}, 200, {"consumer": "demo-user"}),
        ("product-service", "GET", "/products/A-1", None, 200, {"sku": "A-1"}),
        (
            "legacy-inventory",
            "GET",
            "/inventory",
            {"sku": "A-1"},
            200,
            {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3"},
        ),
        ("legacy-inventory", "GET", "/inventory", {"sku": "Z-9"}, 404, {"err_msg": "SKU Z-9 NOT FOUND"}),
        (
            "legacy-inventory",
            "GET",
            "/inventory/search",
            {"loc": "WH-3"},
            200,
            {"hdr": {"total_rows": "2", "more_flag": "N"}},
        ),
    ],
)
def test_answers(
    service: str, method: str, path: str, query: dict[str, str] | None, status: int, expected: dict[str, Any]
) -> None:
    got_status, body = ask(service, method, path, query)
    assert got_status == status
    assert {k: body.get(k) for k in expected} == expected


def test_lists_filter_and_limit() -> None:
    _, orders = ask("order-service", "GET", "/orders/", {"user": "7"})
    assert [o["id"] for o in orders] == ["1001", "1002"]
    _, limited = ask("order-service", "GET", "/orders", {"customer": "7", "limit": "1"})
    assert [o["id"] for o in limited] == ["1001"]
    _, recommended = ask("product-service", "GET", "/recommendations", {"user": "7", "limit": "3"})
    assert [p["sku"] for p in recommended] == ["D-4", "C-3", "A-1"]
    _, by_name = ask("product-service", "GET", "/recommendations/ada")
    assert by_name[0]["sku"] == "D-4"


def test_orders_can_be_placed() -> None:
    instance = domain_service("order-service", "127.0.0.1:1")
    body = orjson.dumps({"items": [{"sku": "A-1", "qty": 1}]})
    request = DemoRequest("POST", "/orders", {}, {"x-consumer-username": "demo-user"}, body)
    answer = asyncio.run(instance.answer(request))
    assert answer is not None and answer.status == 201
    assert answer.body["placedBy"] == "demo-user"
    bad = asyncio.run(instance.answer(DemoRequest("POST", "/orders", {}, {}, b"[]")))
    assert bad is not None and bad.status == 400


def test_legacy_reservations_speak_the_legacy_model() -> None:
    _, done = ask("legacy-inventory", "POST", "/inventory/reserve", body={"sku": "A-1", "qty": "2"})
    assert done == {"status_cd": "OK", "res_no": "R-0001", "sku_code": "A-1", "qty": "2"}
    _, refused = ask("legacy-inventory", "POST", "/inventory/reserve", body={"sku": "A-1", "qty": "70"})
    assert refused["status_cd"] == "INSUFFICIENT"


@pytest.mark.parametrize("service", sorted(DOMAIN_SERVICES))
def test_unknown_paths_fall_back_to_the_echo(service: str) -> None:
    assert ask(service, "GET", "/status/503") is None
    assert ask(service, "GET", "/health") == (200, {"status": "UP"})
