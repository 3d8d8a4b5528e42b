"""translate: schema, mapping language, and the anti-corruption layer over the wire.

The wire tests run real gateways in front of a scripted legacy inventory service: the seed's
example exactly as given, and examples/acl-legacy-inventory.yaml (plus a few routes for the
corners) with the custom Python translator of examples/plugins next to it.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from forecourt.config import ConfigError, parse_config
from forecourt.pipeline import PluginEnv, PluginRegistry, PluginScope
from forecourt.plan.build import PlanBuilder
from forecourt.plugins.translate import TranslateConfig, TranslatePlugin, compile_mapping, named_coercion
from forecourt.plugins.translate.expressions import compile_expression
from forecourt.plugins.translate.problem import ErrorMapping, ErrorRule
from forecourt.plugins.translate.schema import split_outside_placeholders
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import RecordingUpstream, request_complete

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "acl-legacy-inventory.yaml"
SEED_MAPPING = {
    "request": {"path": "/inventory?sku=$(uri_captures.productId)"},
    "response": {
        "body": {
            "productId": "sku_code",
            "availableQuantity": "to_number(qty_avail)",
            "warehouseId": "loc_id",
        }
    },
}
CLEAN_STOCK = {"productId": "A-1", "availableQuantity": 7, "warehouseId": "WH-3"}


# ====================================================================== schema
def test_defaults_and_registration() -> None:
    config = TranslateConfig()
    assert config.request.path is None and config.request.body is None
    assert config.request.query.forward_unmapped is True
    assert config.response.statuses == ["2xx"]
    assert config.response.content_type == "application/json"
    assert config.response.on_invalid == "problem"
    assert config.response.max_body_size == 8 * 1024 * 1024
    assert config.errors == []
    assert TranslatePlugin.priority == 790
    assert PluginRegistry().plugin_class("translate") is TranslatePlugin
    assert config_errors("translate", SEED_MAPPING) == []
    assert config_errors("translate", None) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"response": {"body": {"availableQuantity": "to_number(qty_avail"}}},
            "plugins[0].config.response.body.availableQuantity: invalid JMESPath expression "
            "'to_number(qty_avail': incomplete expression",
        ),
        (
            {"response": {"body": {"stock": {"level": {"qty": "qty_avail."}}}}},
            "plugins[0].config.response.body.stock.level.qty: invalid JMESPath expression 'qty_avail.': "
            "unexpected end of expression at column 11",
        ),
        (
            {"response": {"body": {"items": {"each": "rows", "map": {"qty": "to_integer(q)"}}}}},
            "plugins[0].config.response.body.items.map.qty: invalid JMESPath expression "
            "'to_integer(q)': unknown function to_integer()",
        ),
        (
            {"response": {"body": {"items": {"each": "rows[", "map": "a"}}}},
            "plugins[0].config.response.body.items.each: invalid JMESPath expression 'rows[': incomplete",
        ),
        (
            {"response": {"body": {"items": {"each": "rows"}}}},
            "plugins[0].config.response.body.items.map: required field missing",
        ),
        (
            {"response": {"body": {"items": {"each": "rows", "map": "a", "where": "b"}}}},
            'plugins[0].config.response.body.items.where: unknown field "where"',
        ),
        (
            {"request": {"body": {"qty": "to_int(a, b)"}}},
            "plugins[0].config.request.body.qty: invalid JMESPath expression 'to_int(a, b)': "
            "to_int() takes 1 argument(s), got 2",
        ),
        (
            {"response": {"body": {"n": 42}}},
            "plugins[0].config.response.body.n: expected a JMESPath expression (a string), a nested mapping",
        ),
        (
            {"response": {"body": {"o": {}}}},
            "plugins[0].config.response.body.o: an empty mapping maps nothing",
        ),
        (
            {"response": {"body": {"id": "$(uri_captures)"}}},
            "plugins[0].config.response.body.id: unsupported template expression $(uri_captures)",
        ),
        (
            {"response": {"body": {"q": "qty"}, "types": {"q": "float"}}},
            "plugins[0].config.response.types.q: unknown type 'float' (supported: int, number, string",
        ),
        (
            {"response": {"body": {"q": "qty"}, "types": {"qty": "int"}}},
            "plugins[0].config.response.types.qty: names no mapped field (fields: q)",
        ),
        (
            {"response": {"body": {"o": {"a": "a"}}, "defaults": {"o": {}}}},
            "plugins[0].config.response.defaults.o: names a nested object",
        ),
        (
            {"response": {"body": {"i": {"each": "r", "map": "a"}}, "types": {"i": "int"}}},
            "plugins[0].config.response.types.i: names a collection; types apply to its elements (i[])",
        ),
        (
            {"request": {"defaults": {"a": 1}}},
            "plugins[0].config.request.defaults.a: there is no body mapping",
        ),
        (
            {"request": {"path": "inventory"}},
            "plugins[0].config.request.path: 'inventory' must start with /",
        ),
        (
            {"request": {"path": "/inventory?sku=$(uri_captures.id"}},
            "plugins[0].config.request.path: unterminated template placeholder",
        ),
        ({"request": {"method": "get"}}, "plugins[0].config.request.method: invalid value: get"),
        (
            {"request": {"headers": {"set": {"Content-Length": "1"}}}},
            "plugins[0].config.request.headers.set.Content-Length: 'Content-Length' is set by the proxy",
        ),
        (
            {"response": {"headers": {"rename": {"X-Legacy": "Transfer-Encoding"}}}},
            "plugins[0].config.response.headers.rename.X-Legacy: 'Transfer-Encoding' frames the response",
        ),
        (
            {"response": {"on_invalid": "ignore"}},
            "plugins[0].config.response.on_invalid: expected 'problem' or 'pass'",
        ),
        ({"response": {"content_type": "json"}}, "plugins[0].config.response.content_type: 'json' is not"),
        (
            {"errors": [{"status": "6xx"}]},
            "plugins[0].config.errors[0].status[0]: expected a status (404) or a status class ('5xx')",
        ),
        ({"errors": [{"when": "body.code =="}]}, "plugins[0].config.errors[0].when: invalid JMESPath"),
        (
            {"errors": [{"problem": {"detail": "$(body.msg"}}]},
            "plugins[0].config.errors[0].problem.detail: unterminated template placeholder",
        ),
        (
            {"errors": [{"problem": {"extensions": {"status": "1"}}}]},
            "plugins[0].config.errors[0].problem.extensions.status: 'status' is a standard member",
        ),
        (
            {"errors": [{"problem": {"status": 600}}]},
            "plugins[0].config.errors[0].problem.status: must be at most 599",
        ),
        ({"requests": {}}, 'plugins[0].config.requests: unknown field "requests"'),
    ],
)
def test_bad_values_are_refused_at_their_key_path(config: dict[str, Any], message: str) -> None:
    errors = config_errors("translate", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_config_errors_point_at_file_and_line() -> None:
    """What `forecourt check` prints: the line of the offending mapping entry itself."""
    text = EXAMPLE.read_text().replace("availableQuantity: to_number(qty_avail)", "availableQuantity: qty[")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "availableQuantity: qty[" in t)
    builder = PlanBuilder(registry=PluginRegistry())
    with pytest.raises(ConfigError) as caught:
        builder.validate(parse_config(text, "acl.yaml", builder.registry))
    [issue] = caught.value.issues
    assert str(issue) == (
        f"acl.yaml:{line}: routes[0].plugins[0].config.response.body.availableQuantity: "
        "invalid JMESPath expression 'qty[': incomplete expression"
    )


# ====================================================================== the mapping language
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("int", "7", 7),
        ("int", " 7 ", 7),
        ("int", "7.0", 7),
        ("int", 7.5, None),
        ("int", "seven", None),
        ("int", True, None),
        ("number", "7.5", 7.5),
        ("number", "NaN", None),
        ("number", [1], None),
        ("string", 7, "7"),
        ("string", True, "true"),
        ("string", "x", "x"),
        ("bool", "Y", True),
        ("bool", "off", False),
        ("bool", 0, False),
        ("bool", "maybe", None),
        ("date", "20240131", "2024-01-31"),
        ("date", "2024-01-31T23:10:00Z", "2024-01-31"),
        ("date", 0, "1970-01-01"),
        ("date", "31/01/2024", None),
        ("date:%d/%m/%Y", "31/01/2024", "2024-01-31"),
        ("datetime", 1706745600, "2024-02-01T00:00:00Z"),
        ("datetime", "2024-01-31T10:00:00+01:00", "2024-01-31T10:00:00+01:00"),
        ("datetime", "2024-01-31", "2024-01-31T00:00:00"),
        ("datetime:%d.%m.%Y %H:%M", "31.01.2024 10:30", "2024-01-31T10:30:00"),
    ],
)
def test_coercions(name: str, value: Any, expected: Any) -> None:
    assert named_coercion(name)(value) == expected


@pytest.mark.parametrize(
    ("expression", "document", "expected"),
    [
        ("to_number(qty_avail)", {"qty_avail": "7"}, 7),
        ("to_int(q)", {"q": "3.0"}, 3),
        ("to_bool(flag)", {"flag": "N"}, False),
        ("to_date(d)", {"d": "2024-01-31T10:00:00"}, "2024-01-31"),
        ("parse_date(d, '%d/%m/%Y')", {"d": "31/01/2024"}, "2024-01-31"),
        ("parse_datetime(d, '%Y%m%d%H%M')", {"d": "202401311030"}, "2024-01-31T10:30:00"),
        ("to_datetime(t)", {"t": 0}, "1970-01-01T00:00:00Z"),
        ("join(' ', [first, last])", {"first": "Ada", "last": "Lovelace"}, "Ada Lovelace"),
        ("not_null(a, b, `0`)", {"b": 2}, 2),
    ],
)
def test_expressions_with_forecourt_functions(expression: str, document: Any, expected: Any) -> None:
    assert compile_expression(expression).search(document) == expected


def test_mapping_nesting_collections_types_and_defaults() -> None:
    spec = {
        "productId": "sku_code",
        "location": {"warehouseId": "loc_id", "aisle": "aisle_no"},
        "lots": {"each": "lots", "map": {"lot": "lot_no", "qty": "q", "expires": "exp"}},
        "tags": {"each": "tag_list", "map": "@"},
        "source": "'legacy'",
    }
    node = compile_mapping(
        spec,
        types={
            "location.aisle": "int",
            "lots[].qty": "int",
            "lots[].expires": "date:%Y%m%d",
            "tags[]": "string",
        },
        defaults={"lots[].qty": 0, "tags": [], "location.aisle": -1},
    )
    legacy = {
        "sku_code": "A-1",
        "loc_id": "WH-3",
        "aisle_no": "12",
        "lots": [{"lot_no": "L1", "q": "5", "exp": "20250101"}, {"lot_no": "L2", "q": "n/a"}],
    }
    assert node.evaluate(legacy, None) == {
        "productId": "A-1",
        "location": {"warehouseId": "WH-3", "aisle": 12},
        "lots": [
            {"lot": "L1", "qty": 5, "expires": "2025-01-01"},
            {"lot": "L2", "qty": 0, "expires": None},
        ],
        "tags": [],
        "source": "legacy",
    }
    # A lone object where a list was expected is a one-element list (legacy XML-to-JSON quirk).
    single = node.evaluate({"lots": {"lot_no": "L9", "q": 1}, "tag_list": 7}, None)
    assert single["lots"] == [{"lot": "L9", "qty": 1, "expires": None}]
    assert single["tags"] == ["7"]
    assert single["location"] == {"warehouseId": None, "aisle": -1}


def test_mapping_roots_and_drop_nulls() -> None:
    rows = compile_mapping({"each": "rows", "map": {"id": "k", "v": "v"}}, drop_nulls=True)
    assert rows.evaluate({"rows": [{"k": 1}, {"k": 2, "v": 3}]}, None) == [{"id": 1}, {"id": 2, "v": 3}]
    assert compile_mapping("data.item").evaluate({"data": {"item": [1]}}, None) == [1]
    with pytest.raises(ValueError, match=r"types\.nope: names no mapped field"):
        compile_mapping({"a": "a"}, types={"nope": "int"})


def test_error_rules_and_problem_templates() -> None:
    rule = ErrorMapping(
        ErrorRule.model_validate(
            {
                "status": [404, "5xx"],
                "when": "body.err_code == 'E_NOSKU' || status >= `500`",
                "problem": {
                    "status": 404,
                    "type": "https://errors.example.com/$(status)",
                    "detail": "$(body.err_msg) ($(body.err_code))",
                    "extensions": {"legacy": "$(body)", "code": "$(body.err_code)", "n": "$(body.n)"},
                },
            }
        )
    )
    assert [rule.applies_to(s) for s in (404, 500, 503, 400, 200)] == [True, True, True, False, False]
    document = {"status": 404, "body": {"err_code": "E_NOSKU", "err_msg": "no such sku", "n": 3}}
    assert rule.matches(document)
    assert not rule.matches({"status": 404, "body": {"err_code": "E_OTHER"}})
    assert rule.matches({"status": 502, "body": "<html>bad gateway</html>"})
    status, problem = rule.problem(document, None)
    assert status == 404
    assert problem == {
        "type": "https://errors.example.com/404",
        "title": "Not Found",
        "status": 404,
        "detail": "no such sku (E_NOSKU)",
        "legacy": document["body"],
        "code": "E_NOSKU",
        "n": 3,
    }
    catch_all = ErrorMapping(ErrorRule.model_validate({}))
    assert [catch_all.applies_to(s) for s in (399, 400, 599)] == [False, True, True]
    assert catch_all.problem({"status": 503, "body": None}, None) == (
        503,
        {"type": "about:blank", "title": "Service Unavailable", "status": 503},
    )


def test_placeholders_do_not_split_templates() -> None:
    assert split_outside_placeholders("/a?x=$(query_params['a?b'])&y=1", "?") == [
        "/a",
        "x=$(query_params['a?b'])&y=1",
    ]
    assert split_outside_placeholders("x=$(headers['a&b'])&y=1", "&") == ["x=$(headers['a&b'])", "y=1"]


def test_without_body_rules_no_body_filter_is_installed() -> None:
    scope = PluginScope()
    renames = {"response": {"headers": {"rename": {"X-A": "X-B"}}}}
    headers_only = TranslatePlugin(TranslateConfig.model_validate(renames), scope, PluginEnv())
    full = TranslatePlugin(TranslateConfig.model_validate(SEED_MAPPING), scope, PluginEnv())
    assert not type(headers_only).overrides("body")
    assert type(headers_only).overrides("response") and type(headers_only).overrides("access")
    assert type(full).overrides("body")
    assert isinstance(headers_only, TranslatePlugin)


# ====================================================================== the legacy service
def _answer(status: int, body: bytes, content_type: str = "application/json", **headers: str) -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 500: b"Internal Server Error"}.get(status, b"X")
    lines = [b"HTTP/1.1 %d %s" % (status, reason), b"Content-Type: " + content_type.encode()]
    lines += [f"{k.replace('_', '-')}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join([*lines, b"Content-Length: %d" % len(body), b"", body])


def _json(status: int, document: Any, **headers: str) -> bytes:
    return _answer(status, orjson.dumps(document), **headers)


STOCK = {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3"}
SEARCH = {
    "rows": [
        {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3", "restock_dt": "20240131"},
        {"sku_code": "B-2", "qty_avail": "0", "loc_id": "WH-1", "restock_dt": None},
    ],
    "hdr": {"total_rows": "2", "more_flag": "N"},
}
LEGACY: dict[str, bytes] = {
    "/inventory?sku=A-1": _json(200, STOCK, X_Legacy_Trace="t-1", X_Powered_By="Legacy/1.0"),
    "/inventory?sku=NOPE": _json(404, {"err_code": "E_NOSKU", "err_msg": "sku not found"}),
    "/inventory?sku=BOOM": _json(500, {"err_msg": "database offline"}),
    "/inventory?sku=TEXT": _answer(200, b"<html>down for maintenance</html>", "text/html"),
    "/inventory?sku=BIG": _json(200, {"sku_code": "B" * 2000}),
    "/inventory?sku=A%20B": _json(200, {"sku_code": "A B", "qty_avail": "1", "loc_id": "WH-9"}),
    "/inventory/reserve": _json(200, {"res_no": "R-1", "sku_code": "A-1", "qty": "2"}),
    "/inventory/reserve/short": _json(
        200, {"status_cd": "INSUFFICIENT", "status_msg": "only 3 left", "qty_avail": 3}
    ),
    "/inventory/search": _json(200, SEARCH, X_Legacy_Trace="t-2", X_Powered_By="Legacy/1.0"),
    "/inventory/search/one": _json(200, {"rows": SEARCH["rows"][0], "hdr": {"total_rows": "1"}}),
}


def legacy_inventory(sock: socket.socket, received: bytes) -> bool:
    """The legacy service: answers by exact path and query; `"qty": "99"` reservations are short."""
    size = request_complete(received)
    if not size:
        return False
    target = received.split(b" ", 2)[1].decode()
    key = target
    if target.startswith("/inventory/search"):
        key = "/inventory/search/one" if "loc=ONE" in target else "/inventory/search"
    if target == "/inventory?sku=OLD":
        # An HTTP/1.0-era legacy server: no Content-Length, the body ends when it closes.
        sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + orjson.dumps(STOCK))
        sock.shutdown(socket.SHUT_WR)
        return True
    if target == "/inventory/reserve" and b'"qty":"99"' in received[:size]:
        key = "/inventory/reserve/short"
    sock.sendall(LEGACY.get(key, _json(404, {"err_code": "E_ROUTE", "err_msg": target})))
    return True


@pytest.fixture(scope="module")
def legacy() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream(legacy_inventory).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seed_gateway(
    legacy: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The route config of the issue, verbatim."""
    config = f"""\
_format_version: "3.0"
services:
- name: legacy-inventory
  url: http://127.0.0.1:{legacy.port}
routes:
- name: stock
  service: legacy-inventory
  paths: ["~/api/stock/(?<productId>[^/]+)$"]
  plugins:
  - name: translate
    config:
      request:
        path: /inventory?sku=$(uri_captures.productId)
      response:
        body:
          productId: sku_code
          availableQuantity: to_number(qty_avail)
          warehouseId: loc_id
"""
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("seed")).start()
    yield gateway
    gateway.stop()


def _extra_routes() -> list[dict[str, Any]]:
    """Routes for the corners the example does not show."""
    return [
        {
            "name": "lenient",
            "service": "legacy-inventory",
            "paths": ["~/lenient/(?<productId>[^/]+)$"],
            "plugins": [
                {
                    "name": "translate",
                    "config": {
                        "request": SEED_MAPPING["request"],
                        "response": {**SEED_MAPPING["response"], "on_invalid": "pass", "max_body_size": 1000},
                    },
                }
            ],
        },
        {
            "name": "compressed",
            "service": "legacy-inventory",
            "paths": ["~/compressed/(?<productId>[^/]+)$"],
            "plugins": [
                {"name": "translate", "config": SEED_MAPPING},
                {"name": "compression", "config": {"min_size": 10}},
            ],
        },
        {
            "name": "search-rows",
            "service": "legacy-inventory",
            "paths": ["/rows"],
            "plugins": [
                {
                    "name": "translate",
                    "config": {
                        "request": {"path": "/inventory/search", "query": {"remove": ["debug"]}},
                        "response": {
                            "body": {"each": "rows", "map": {"id": "sku_code", "next": "restock_dt"}}
                        },
                    },
                }
            ],
        },
        {
            "name": "headers-only",
            "service": "legacy-inventory",
            "paths": ["~/plain/(?<productId>[^/]+)$"],
            "plugins": [
                {
                    "name": "translate",
                    "config": {
                        "request": {"path": "/inventory?sku=$(uri_captures.productId)"},
                        "response": {"headers": {"rename": {"X-Legacy-Trace": "X-Trace-Id"}}},
                    },
                }
            ],
        },
        {
            "name": "custom",
            "service": "legacy-inventory",
            "paths": ["~/custom/stock/(?<productId>[^/]+)$"],
            "plugins": [{"name": "legacy_inventory_translator:LegacyInventoryTranslator"}],
        },
    ]


@pytest.fixture(scope="module")
def gateway(legacy: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """examples/acl-legacy-inventory.yaml against the scripted legacy service, plus _extra_routes."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["upstreams"][0]["targets"] = [{"target": f"127.0.0.1:{legacy.port}"}]
    config["routes"].extend(_extra_routes())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "examples" / "plugins"), *sys.path]))
        gateway = GatewayProcess(config, tmp_path_factory.mktemp("acl")).start()
    yield gateway
    gateway.stop()


def _received(legacy: RecordingUpstream) -> bytes:
    data = legacy.data()
    legacy.clear()
    return data


def _head(data: bytes) -> dict[str, str]:
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


# ====================================================================== over the wire
def test_seed_example_as_given(seed_gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    legacy.clear()
    answer = httpx.get(f"{seed_gateway.url}/api/stock/A-1")
    assert answer.status_code == 200
    assert answer.json() == CLEAN_STOCK
    assert answer.content == b'{"productId":"A-1","availableQuantity":7,"warehouseId":"WH-3"}'
    assert answer.headers["content-type"] == "application/json"
    sent = _received(legacy)
    assert sent.startswith(b"GET /inventory?sku=A-1 HTTP/1.1\r\n"), sent
    # Other paths are not this route's.
    assert httpx.get(f"{seed_gateway.url}/api/stock/A-1/extra").status_code == 404


def test_seed_example_from_the_examples_file(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    legacy.clear()
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.get("/api/stock/A-1", headers={"Accept-Encoding": "gzip"})
        encoded = client.get("/api/stock/A%20B")
    assert answer.status_code == 200
    assert answer.json() == CLEAN_STOCK
    assert encoded.json() == {"productId": "A B", "availableQuantity": 1, "warehouseId": "WH-9"}
    first, second = _received(legacy).split(b"GET ")[1:]
    assert first.startswith(b"/inventory?sku=A-1 HTTP/1.1\r\n")
    assert "accept-encoding" not in _head(first)  # legacy bodies must arrive readable
    assert second.startswith(b"/inventory?sku=A%20B HTTP/1.1\r\n")  # the capture is encoded once


def test_close_delimited_legacy_answers_are_translated(
    gateway: GatewayProcess, legacy: RecordingUpstream
) -> None:
    answer = httpx.get(f"{gateway.url}/api/stock/OLD")
    assert answer.status_code == 200
    assert answer.json() == CLEAN_STOCK
    legacy.clear()


def test_error_mapping_to_problem_details(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        missing = client.get("/api/stock/NOPE")
        failing = client.get("/api/stock/BOOM")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {
        "type": "https://errors.example.com/product-not-found",
        "title": "Product not found",
        "status": 404,
        "detail": "No stock record for product NOPE.",
    }
    assert failing.status_code == 503
    assert failing.json() == {
        "type": "about:blank",
        "title": "Inventory unavailable",
        "status": 503,
        "detail": "The inventory system failed: database offline",
    }
    legacy.clear()


def test_untranslatable_answers(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        strict = client.get("/api/stock/TEXT")
        lenient = client.get("/lenient/TEXT")
        too_big = client.get("/lenient/BIG")
        fine = client.get("/lenient/A-1")
    assert strict.status_code == 502
    assert strict.headers["content-type"] == "application/problem+json"
    assert strict.json() == {
        "type": "about:blank",
        "title": "Bad Gateway",
        "status": 502,
        "detail": "The upstream answer could not be translated.",
    }
    assert lenient.status_code == 200
    assert lenient.headers["content-type"] == "text/html"
    assert lenient.text == "<html>down for maintenance</html>"
    assert too_big.status_code == 502
    assert too_big.json()["detail"] == "The upstream answer is too large to translate."
    assert fine.json() == CLEAN_STOCK
    log = gateway.stderr()
    assert "translate: route stock: upstream answer 200 not translated (the upstream body is not JSON)" in log
    assert "route lenient: upstream answer 200 not translated" in log
    assert "passed through untranslated" in log
    legacy.clear()


def test_collections_nesting_query_and_header_renames(
    gateway: GatewayProcess, legacy: RecordingUpstream
) -> None:
    legacy.clear()
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.get("/api/stock", params={"warehouseId": "WH-3", "pageSize": "50", "debug": "1"})
        single = client.get("/api/stock", params={"warehouseId": "ONE", "other": "x"})
    assert answer.status_code == 200
    assert answer.json() == {
        "items": [
            {"productId": "A-1", "availableQuantity": 7, "warehouseId": "WH-3", "restockDate": "2024-01-31"},
            {"productId": "B-2", "availableQuantity": 0, "warehouseId": "WH-1", "restockDate": None},
        ],
        "page": {"total": 2, "more": False},
    }
    assert answer.headers["x-trace-id"] == "t-2"
    assert "x-legacy-trace" not in answer.headers
    assert "x-powered-by" not in answer.headers
    assert single.json() == {
        "items": [
            {"productId": "A-1", "availableQuantity": 7, "warehouseId": "WH-3", "restockDate": "2024-01-31"}
        ],
        "page": {"total": 1, "more": False},  # more: the default
    }
    first, second = _received(legacy).split(b"GET ")[1:]
    # Renamed arguments, the fixed one, and nothing unmapped (forward_unmapped: false).
    assert first.startswith(b"/inventory/search?loc=WH-3&max_rows=50&fmt=json HTTP/1.1\r\n"), first
    assert second.startswith(b"/inventory/search?loc=ONE&fmt=json HTTP/1.1\r\n"), second


def test_top_level_collection_and_forwarded_query(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    legacy.clear()
    answer = httpx.get(f"{gateway.url}/rows?debug=1&page=2&q=a%26b")
    assert answer.json() == [{"id": "A-1", "next": "20240131"}, {"id": "B-2", "next": None}]
    assert _received(legacy).startswith(b"GET /inventory/search?page=2&q=a%26b HTTP/1.1\r\n")


def test_request_body_mapping(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    legacy.clear()
    clean = {"quantity": 2, "customer": {"reference": "C-42", "name": "Ada"}, "note": "not for legacy"}
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.post("/api/stock/A-1/reservations", json=clean, headers={"X-Customer-Id": "c42"})
        short = client.post("/api/stock/A-1/reservations", json={"quantity": 99})
        garbage = client.post(
            "/api/stock/A-1/reservations", content=b"qty=2", headers={"Content-Type": "text/plain"}
        )
    assert answer.status_code == 200
    assert answer.json() == {"reservationId": "R-1", "productId": "A-1", "quantity": 2}
    sent = _received(legacy)
    first = sent.split(b"POST ")[1]
    head, body = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"/inventory/reserve HTTP/1.1\r\n")
    headers = _head(b"POST " + first)
    body = body[: int(headers["content-length"])]
    assert orjson.loads(body) == {"sku": "A-1", "qty": "2", "cust_ref": "C-42"}
    assert headers["content-type"] == "application/json"
    assert headers["x-legacy-cust"] == "c42" and "x-customer-id" not in headers
    # A legacy "200 with an error inside" becomes a clean 409 problem, typed extension and all.
    assert short.status_code == 409
    assert short.json() == {
        "type": "https://errors.example.com/insufficient-stock",
        "title": "Insufficient stock",
        "status": 409,
        "detail": "only 3 left",
        "available": 3,
    }
    # A clean body that is not JSON never reaches the legacy side.
    assert garbage.status_code == 400
    assert garbage.headers["content-type"] == "application/problem+json"
    assert garbage.json()["detail"] == "The request body is not valid JSON."
    assert sent.count(b"POST ") == 2


def test_translated_bodies_are_compressed_after_translation(
    gateway: GatewayProcess, legacy: RecordingUpstream
) -> None:
    legacy.clear()
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.get("/compressed/A-1", headers={"Accept-Encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.json() == CLEAN_STOCK  # httpx decodes the gzip stream
    assert "accept-encoding" not in _head(_received(legacy))


def test_headers_only_translation_keeps_streaming(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    answer = httpx.get(f"{gateway.url}/plain/A-1")
    assert answer.json() == STOCK  # untouched body, with its own Content-Length (no body filter)
    assert answer.headers["content-length"] == str(len(orjson.dumps(STOCK)))
    assert answer.headers["x-trace-id"] == "t-1"
    assert "x-legacy-trace" not in answer.headers
    legacy.clear()


def test_custom_python_translator(gateway: GatewayProcess, legacy: RecordingUpstream) -> None:
    legacy.clear()
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.get("/custom/stock/A-1")
        missing = client.get("/custom/stock/NOPE")
        broken = client.get("/custom/stock/TEXT")
    assert answer.status_code == 200
    assert answer.json() == CLEAN_STOCK
    assert _received(legacy).split(b"GET ")[1].startswith(b"/inventory?sku=A-1 HTTP/1.1\r\n")
    assert missing.status_code == 404
    assert missing.json() == {
        "type": "about:blank",
        "title": "Product not found",
        "status": 404,
        "detail": "No stock record for product NOPE.",
    }
    assert broken.status_code == 502
    assert broken.headers["content-type"] == "application/problem+json"
