"""The demo's domain services: orders, users, payments, products and a legacy inventory.

Each one is a `DemoService` with a routing table of named handlers over a little in-memory data;
a path no handler takes falls back to the echo (so `/status/503` or `/delay/500` still work, and
the seed's routes answer with what the gateway forwarded). Every answer carries `X-Served-By:
<service>@<host:port>`, which makes load balancing over instances visible.

The legacy inventory deliberately speaks an awkward old model (`sku_code`, `qty_avail` as a string,
`loc_id`), which the gateway's `translate` plugin turns into the domain's (the anti-corruption
layer of docs/patterns.md).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from forecourt.demo.service import DemoAnswer, DemoRequest, DemoService

__all__ = ["DOMAIN_SERVICES", "DomainService", "Handler", "HandlerRoute", "domain_service"]

Handler = Callable[[DemoRequest, Mapping[str, str]], Awaitable[DemoAnswer]]


@dataclass(frozen=True, slots=True)
class HandlerRoute:
    """`method path-regex → handler`; the regex's named groups are the handler's path arguments."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, path: str, handler: Handler) -> HandlerRoute:
    """`route("GET", "/orders/{id}", f)`: `{name}` is one path segment; a trailing `/` is optional."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path.rstrip("/"))
    return HandlerRoute(method, re.compile(f"^{regex}/?$"), handler)


class DomainService(DemoService):
    """A demo service that answers from a routing table of handlers, else echoes."""

    def __init__(self, name: str, routes: tuple[HandlerRoute, ...], instance: str) -> None:
        super().__init__(name, {"instance": instance})
        self.routes = routes
        self.served_by = (("X-Served-By", f"{name}@{instance}"),)

    async def answer(self, request: DemoRequest) -> DemoAnswer | None:
        for candidate in self.routes:
            if candidate.method != request.method and not (
                candidate.method == "GET" and request.method == "HEAD"
            ):
                continue
            match = candidate.pattern.match(request.path)
            if match is not None:
                answer = await candidate.handler(request, match.groupdict())
                return DemoAnswer(answer.status, answer.body, answer.headers + self.served_by)
        return None


# ---------------------------------------------------------------------------------------- data
_EUR = "EUR"

USERS: dict[str, dict[str, Any]] = {
    "7": {
        "id": "7",
        "username": "ada",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "tier": "gold",
        "memberSince": "2019-04-02",
        "address": {"street": "12 Analytical Row", "city": "London", "postcode": "N1 9GU", "country": "GB"},
        "preferences": {"language": "en-GB", "currency": _EUR, "newsletter": True},
    },
    "8": {
        "id": "8",
        "username": "alan",
        "name": "Alan Turing",
        "email": "alan@example.com",
        "tier": "silver",
        "memberSince": "2021-11-20",
        "address": {
            "street": "1 Bletchley Lane",
            "city": "Milton Keynes",
            "postcode": "MK3 6EB",
            "country": "GB",
        },
        "preferences": {"language": "en-GB", "currency": _EUR, "newsletter": False},
    },
}

PRODUCTS: dict[str, dict[str, Any]] = {
    "A-1": {
        "sku": "A-1",
        "name": "Espresso beans, 1 kg",
        "price": {"amount": "24.90", "currency": _EUR},
        "category": "coffee",
        "rating": 4.7,
        "description": "Dark roast, notes of cocoa and hazelnut.",
        "images": ["https://cdn.example.com/a-1/front.jpg", "https://cdn.example.com/a-1/back.jpg"],
    },
    "B-2": {
        "sku": "B-2",
        "name": "Burr grinder",
        "price": {"amount": "129.00", "currency": _EUR},
        "category": "equipment",
        "rating": 4.4,
        "description": "40 grind settings, from espresso to French press.",
        "images": ["https://cdn.example.com/b-2/front.jpg"],
    },
    "C-3": {
        "sku": "C-3",
        "name": "Milk frother",
        "price": {"amount": "39.50", "currency": _EUR},
        "category": "equipment",
        "rating": 4.1,
        "description": "Hot and cold foam in 90 seconds.",
        "images": ["https://cdn.example.com/c-3/front.jpg"],
    },
    "D-4": {
        "sku": "D-4",
        "name": "Cappuccino cups, set of 4",
        "price": {"amount": "32.00", "currency": _EUR},
        "category": "tableware",
        "rating": 4.8,
        "description": "Porcelain, 180 ml.",
        "images": ["https://cdn.example.com/d-4/front.jpg"],
    },
}

_SHIPPING = {"name": "Ada Lovelace", "street": "12 Analytical Row", "city": "London", "postcode": "N1 9GU"}

ORDERS: dict[str, dict[str, Any]] = {
    "1001": {
        "id": "1001",
        "userId": "7",
        "status": "SHIPPED",
        "placedAt": "2024-05-02T09:14:00Z",
        "total": {"amount": "74.70", "currency": _EUR},
        "items": [{"sku": "A-1", "name": "Espresso beans, 1 kg", "qty": 3, "unitPrice": "24.90"}],
        "shippingAddress": _SHIPPING,
        "billingAddress": _SHIPPING,
        "carrier": {"name": "DHL", "tracking": "JD014600003828"},
        "placedBy": "web",
        "audit": {"createdBy": "checkout", "revision": 4, "updatedAt": "2024-05-03T16:40:12Z"},
    },
    "1002": {
        "id": "1002",
        "userId": "7",
        "status": "PROCESSING",
        "placedAt": "2024-06-11T18:02:00Z",
        "total": {"amount": "168.50", "currency": _EUR},
        "items": [
            {"sku": "B-2", "name": "Burr grinder", "qty": 1, "unitPrice": "129.00"},
            {"sku": "C-3", "name": "Milk frother", "qty": 1, "unitPrice": "39.50"},
        ],
        "shippingAddress": _SHIPPING,
        "billingAddress": _SHIPPING,
        "carrier": None,
        "placedBy": "mobile",
        "audit": {"createdBy": "checkout", "revision": 1, "updatedAt": "2024-06-11T18:02:00Z"},
    },
    "1003": {
        "id": "1003",
        "userId": "8",
        "status": "DELIVERED",
        "placedAt": "2024-04-18T07:55:00Z",
        "total": {"amount": "32.00", "currency": _EUR},
        "items": [{"sku": "D-4", "name": "Cappuccino cups, set of 4", "qty": 1, "unitPrice": "32.00"}],
        "shippingAddress": {"name": "Alan Turing", "street": "1 Bletchley Lane", "city": "Milton Keynes"},
        "billingAddress": {"name": "Alan Turing", "street": "1 Bletchley Lane", "city": "Milton Keynes"},
        "carrier": {"name": "UPS", "tracking": "1Z999AA10123456784"},
        "placedBy": "partner:acme-logistics",
        "audit": {"createdBy": "partner-api", "revision": 2, "updatedAt": "2024-04-20T12:00:00Z"},
    },
}

PAYMENTS: dict[str, dict[str, Any]] = {
    "P-5001": {
        "id": "P-5001",
        "orderId": "1001",
        "status": "CAPTURED",
        "amount": {"amount": "74.70", "currency": _EUR},
        "method": "card",
        "cardLast4": "4242",
    },
    "P-5002": {
        "id": "P-5002",
        "orderId": "1002",
        "status": "AUTHORIZED",
        "amount": {"amount": "168.50", "currency": _EUR},
        "method": "card",
        "cardLast4": "4242",
    },
}

# The legacy system's own records: strings for numbers, terse names.
INVENTORY: dict[str, dict[str, str]] = {
    "A-1": {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3", "restock_dt": "20240701"},
    "B-2": {"sku_code": "B-2", "qty_avail": "0", "loc_id": "WH-1", "restock_dt": "20240715"},
    "C-3": {"sku_code": "C-3", "qty_avail": "42", "loc_id": "WH-3", "restock_dt": "20240630"},
    "D-4": {"sku_code": "D-4", "qty_avail": "12", "loc_id": "WH-2", "restock_dt": "20240705"},
}

# Which products each user is recommended, best first.
_RECOMMENDED = {"7": ["D-4", "C-3", "A-1", "B-2"], "8": ["A-1", "B-2", "C-3"]}


# ------------------------------------------------------------------------------------ helpers
def ok(body: Any, status: int = 200) -> DemoAnswer:
    return DemoAnswer(status, body)


def not_found(message: str) -> DemoAnswer:
    return DemoAnswer(404, {"message": message})


def _json_body(request: DemoRequest) -> dict[str, Any] | None:
    try:
        document = orjson.loads(request.body) if request.body else {}
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


# ------------------------------------------------------------------------------ order-service
class _Orders:
    """Orders in memory; POST adds one (forgotten when the demo stops)."""

    def __init__(self) -> None:
        self.orders = copy.deepcopy(ORDERS)

    async def list(self, request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
        user = request.query.get("user") or request.query.get("customer")
        found = [o for o in self.orders.values() if not user or o["userId"] == user]
        limit = request.query.get("limit", "")
        return ok(found[: int(limit)] if limit.isdigit() else found)

    async def get(self, request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
        order = self.orders.get(args["id"])
        return ok(order) if order is not None else not_found(f"order {args['id']} not found")

    async def create(self, request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
        body = _json_body(request)
        if body is None or not isinstance(body.get("items"), list):
            return DemoAnswer(400, {"message": 'expected a JSON object with "items": [{"sku", "qty"}]'})
        order_id = str(1001 + len(self.orders))
        order = {
            "id": order_id,
            "userId": str(body.get("userId") or request.headers.get("x-consumer-custom-id") or "7"),
            "status": "PLACED",
            "items": body["items"],
            "placedBy": request.headers.get("x-consumer-username", "anonymous"),
        }
        self.orders[order_id] = order
        return ok(order, 201)


def order_service(instance: str) -> DomainService:
    orders = _Orders()
    return DomainService(
        "order-service",
        (
            route("GET", "/orders", orders.list),
            route("POST", "/orders", orders.create),
            route("GET", "/orders/{id}", orders.get),
            route("GET", "/health", _health),
        ),
        instance,
    )


# ------------------------------------------------------------------------------- user-service
async def _users(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    return ok(list(USERS.values()))


def find_user(key: str) -> dict[str, Any] | None:
    """A user by id (`7`) or username (`ada`)."""
    return USERS.get(key) or next((u for u in USERS.values() if u["username"] == key), None)


async def _user(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    user = find_user(args["id"])
    return ok(user) if user is not None else not_found(f"user {args['id']} not found")


def user_service(instance: str) -> DomainService:
    return DomainService(
        "user-service",
        (
            route("GET", "/users", _users),
            route("GET", "/users/{id}", _user),
            route("GET", "/health", _health),
        ),
        instance,
    )


# ---------------------------------------------------------------------------- payment-service
async def _payments(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    # The gateway authenticated the caller; the service only reads who it was (X-Consumer-*).
    order = request.query.get("order")
    found = [p for p in PAYMENTS.values() if not order or p["orderId"] == order]
    return ok({"consumer": request.headers.get("x-consumer-username"), "payments": found})


async def _payment(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    payment = PAYMENTS.get(args["id"])
    return ok(payment) if payment is not None else not_found(f"payment {args['id']} not found")


def payment_service(instance: str) -> DomainService:
    return DomainService(
        "payment-service",
        (
            route("GET", "/payments", _payments),
            route("GET", "/payments/{id}", _payment),
            route("GET", "/health", _health),
        ),
        instance,
    )


# ---------------------------------------------------------------------------- product-service
async def _products(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    return ok(list(PRODUCTS.values()))


async def _product(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    product = PRODUCTS.get(args["sku"])
    return ok(product) if product is not None else not_found(f"product {args['sku']} not found")


async def _recommendations(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    delay = request.query.get("delay", "")
    if delay.isdigit():  # lets the demo show a slow backend: a partial aggregate
        await asyncio.sleep(min(int(delay), 10_000) / 1000)
    user = find_user(args.get("user") or request.query.get("user", ""))
    skus = _RECOMMENDED.get(user["id"] if user is not None else "", list(PRODUCTS))
    limit = request.query.get("limit", "")
    if limit.isdigit():
        skus = skus[: int(limit)]
    return ok([PRODUCTS[sku] for sku in skus])


def product_service(instance: str) -> DomainService:
    return DomainService(
        "product-service",
        (
            route("GET", "/products", _products),
            route("GET", "/products/{sku}", _product),
            route("GET", "/recommendations", _recommendations),
            route("GET", "/recommendations/{user}", _recommendations),
            route("GET", "/health", _health),
        ),
        instance,
    )


# --------------------------------------------------------------------------- legacy-inventory
async def _inventory(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    sku = request.query.get("sku", "")
    record = INVENTORY.get(sku)
    if record is None:
        return DemoAnswer(404, {"err_cd": "E404", "err_msg": f"SKU {sku or '?'} NOT FOUND"})
    return ok({k: record[k] for k in ("sku_code", "qty_avail", "loc_id")})


async def _inventory_search(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    location = request.query.get("loc")
    rows = [r for r in INVENTORY.values() if not location or r["loc_id"] == location]
    limit = request.query.get("max_rows", "")
    more = limit.isdigit() and len(rows) > int(limit)
    if limit.isdigit():
        rows = rows[: int(limit)]
    return ok({"rows": rows, "hdr": {"total_rows": str(len(rows)), "more_flag": "Y" if more else "N"}})


async def _inventory_reserve(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    body = _json_body(request) or {}
    record = INVENTORY.get(str(body.get("sku", "")))
    if record is None:
        return DemoAnswer(404, {"err_cd": "E404", "err_msg": "SKU NOT FOUND"})
    quantity = str(body.get("qty", "0"))
    wanted = int(quantity) if quantity.isdigit() else 0
    if wanted > int(record["qty_avail"]):
        return ok(
            {
                "status_cd": "INSUFFICIENT",
                "status_msg": f"ONLY {record['qty_avail']} AVAILABLE",
                "qty_avail": record["qty_avail"],
            }
        )
    return ok({"status_cd": "OK", "res_no": "R-0001", "sku_code": record["sku_code"], "qty": str(wanted)})


def legacy_inventory(instance: str) -> DomainService:
    return DomainService(
        "legacy-inventory",
        (
            route("GET", "/inventory", _inventory),
            route("GET", "/inventory/search", _inventory_search),
            route("POST", "/inventory/reserve", _inventory_reserve),
            route("GET", "/health", _health),
        ),
        instance,
    )


async def _health(request: DemoRequest, args: Mapping[str, str]) -> DemoAnswer:
    return ok({"status": "UP"})


DOMAIN_SERVICES: dict[str, Callable[[str], DomainService]] = {
    "order-service": order_service,
    "user-service": user_service,
    "payment-service": payment_service,
    "product-service": product_service,
    "legacy-inventory": legacy_inventory,
}
"""Service name → factory taking the instance's `host:port`."""


def domain_service(name: str, instance: str) -> DomainService:
    """A new instance of the named domain service (KeyError for an unknown name)."""
    return DOMAIN_SERVICES[name](instance)
