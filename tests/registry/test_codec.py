"""Eureka's JSON and XML, table-driven; our XML read by py-eureka-client's own parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson
import pytest
from py_eureka_client import eureka_basic

from forecourt.registry.codec import (
    CodecError,
    body_format,
    decode_application,
    decode_applications,
    decode_instance,
    encode_application,
    encode_applications,
    encode_instance,
    info_from_json,
    info_to_json,
    response_format,
)
from forecourt.registry.model import ActionType, InstanceInfo, Status
from forecourt.registry.store import RegistryStore

BASE = {"instanceId": "i-1", "app": "orders", "hostName": "h", "ipAddr": "10.0.0.1"}


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("port", {"$": 8080, "@enabled": "true"}, "port", 8080),  # Jackson
        ("port", {"$": "8080", "@enabled": "true"}, "port", 8080),  # XStream's JSON
        ("port", 8080, "port", 8080),  # hand-written
        ("port", "8080", "port", 8080),
        ("port", {"$": 8080, "@enabled": False}, "port_enabled", False),
        ("securePort", {"$": 8443, "@enabled": "true"}, "secure_port_enabled", True),
        ("securePort", 8443, "secure_port_enabled", False),
        ("status", "out_of_service", "status", Status.OUT_OF_SERVICE),
        ("overriddenstatus", "OUT_OF_SERVICE", "overridden_status", Status.OUT_OF_SERVICE),
        ("overriddenStatus", "DOWN", "overridden_status", Status.DOWN),
        ("isCoordinatingDiscoveryServer", "true", "is_coordinating_discovery_server", True),
        ("isCoordinatingDiscoveryServer", True, "is_coordinating_discovery_server", True),
        ("lastDirtyTimestamp", "1700000000123", "last_dirty_timestamp", 1700000000123),
        ("lastDirtyTimestamp", 1700000000123, "last_dirty_timestamp", 1700000000123),
        ("countryId", "2", "country_id", 2),
        ("metadata", {"@class": "java.util.Collections$EmptyMap"}, "metadata", {}),
        ("metadata", {"a": 1, "b": True, "c": None}, "metadata", {"a": "1", "b": "true"}),
        ("leaseInfo", {"durationInSecs": "15"}, "duration", 15),
        ("actionType", "MODIFIED", "action_type", ActionType.MODIFIED),
    ],
)
def test_json_fields_in_every_spelling(field: str, value: Any, attribute: str, expected: Any) -> None:
    info = info_from_json({**BASE, field: value})
    assert getattr(info, attribute) == expected


@pytest.mark.parametrize(
    ("record", "expected_id"),
    [
        ({"app": "a", "hostName": "host-1"}, "host-1"),  # MyOwn: the host name
        (
            {
                "app": "a",
                "hostName": "h",
                "dataCenterInfo": {"name": "Amazon", "metadata": {"instance-id": "i-0abc"}},
            },
            "i-0abc",
        ),
        ({"app": "a", "instanceId": "explicit", "hostName": "h"}, "explicit"),
    ],
)
def test_instance_id_falls_back_like_eureka(record: dict[str, Any], expected_id: str) -> None:
    assert info_from_json(record).instance_id == expected_id


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**BASE, "status": "SIDEWAYS"}, "status"),
        ({**BASE, "port": {"$": 70000}}, "not a port"),
        ({**BASE, "metadata": ["x"]}, "metadata"),
        ({**BASE, "leaseInfo": {"durationInSecs": "soon"}}, "leaseInfo.durationInSecs"),
        ({**BASE, "actionType": "EXPLODED"}, "actionType"),
        ([], "expected an object"),
    ],
)
def test_json_errors_name_the_field(record: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        info_from_json(record)


def test_app_names_are_upper_case_and_the_envelope_is_optional() -> None:
    assert decode_instance(orjson.dumps({"instance": BASE}), "json").app == "ORDERS"
    assert decode_instance(orjson.dumps(BASE), "json").app == "ORDERS"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "xml"),
        ("*/*", "xml"),
        ("application/json", "json"),
        ("application/json, application/xml", "json"),
        ("application/xml, application/json", "xml"),
        ("application/xml", "xml"),
        ("text/html", "xml"),
    ],
)
def test_response_format_follows_accept(accept: str | None, expected: str) -> None:
    assert response_format(accept) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b"<x/>", "json"),
        ("application/xml; charset=utf-8", b"{}", "xml"),
        (None, b"  <instance/>", "xml"),
        (None, b"{}", "json"),
    ],
)
def test_body_format_from_content_type_or_sniffed(
    content_type: str | None, body: bytes, expected: str
) -> None:
    assert body_format(content_type, body) == expected


def _store_with_instances() -> RegistryStore:
    store = RegistryStore()
    store.register(
        InstanceInfo(
            instance_id="o-1",
            app="ORDERS",
            host_name="orders.local",
            ip_addr="10.0.0.1",
            port=8001,
            metadata={"build_id": "7", "zone": "eu", "cost$center": "x"},
            vip_address="orders",
            health_check_url="http://10.0.0.1:8001/health",
            last_dirty_timestamp=123,
        )
    )
    store.register(
        InstanceInfo(
            instance_id="o-2", app="ORDERS", host_name="h2", ip_addr="10.0.0.2", port=8002, status=Status.DOWN
        )
    )
    store.set_override("ORDERS", "o-1", Status.OUT_OF_SERVICE)
    return store


def test_py_eureka_client_parses_our_xml() -> None:
    """The exact parser py-eureka-client runs on `GET apps` and `apps/delta`."""
    store = _store_with_instances()
    body = encode_applications(store.applications(), store.version, store.hashcode(), "xml")
    apps = eureka_basic._build_applications(ET.fromstring(body))
    assert apps.apps__hashcode == "DOWN_1_OUT_OF_SERVICE_1_"
    assert apps.versions__delta == str(store.version)
    orders = apps.get_application("ORDERS")
    first = orders.get_instance("o-1")
    assert (first.status, first.overriddenstatus) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    assert (first.port.port, first.port.enabled) == (8001, True)
    assert (first.securePort.port, first.securePort.enabled) == (7002, False)
    assert first.leaseInfo.durationInSecs == 90
    assert first.lastDirtyTimestamp == 123
    assert first.actionType == "MODIFIED"
    # Eureka's XML name coder: `_` is written `__`, `$` is `_-` (Java clients decode them back).
    assert first.metadata == {"build__id": "7", "zone": "eu", "cost_-center": "x"}
    assert orders.get_instance("o-2").status == "DOWN"


def test_xml_and_json_round_trip_to_the_same_instances() -> None:
    store = _store_with_instances()
    for fmt in ("json", "xml"):
        body = encode_applications(store.applications(), store.version, store.hashcode(), fmt)  # type: ignore[arg-type]
        decoded = decode_applications(body, fmt)  # type: ignore[arg-type]
        assert decoded.apps_hashcode == store.hashcode()
        [o1, o2] = decoded.apps["ORDERS"]
        assert o1.metadata == {"build_id": "7", "zone": "eu", "cost$center": "x"}
        assert (o1.status, o1.overridden_status, o1.port) == (
            Status.OUT_OF_SERVICE,
            Status.OUT_OF_SERVICE,
            8001,
        )
        assert o2.status is Status.DOWN
        one = decode_application(encode_application("ORDERS", store.application("ORDERS"), fmt), fmt)  # type: ignore[arg-type]
        assert [i.instance_id for i in one] == ["o-1", "o-2"]
        reg = store.get("ORDERS", "o-1")
        assert reg is not None
        again = decode_instance(encode_instance(reg, fmt), fmt)  # type: ignore[arg-type]
        assert again.health_check_url == "http://10.0.0.1:8001/health"


def test_single_objects_instead_of_lists_are_read() -> None:
    body = orjson.dumps({"applications": {"application": {"name": "A", "instance": {**BASE, "app": "A"}}}})
    assert [i.instance_id for i in decode_applications(body, "json").apps["A"]] == ["i-1"]


def test_empty_metadata_carries_the_jackson_marker() -> None:
    store = RegistryStore()
    store.register(InstanceInfo(instance_id="x", app="A", host_name="h", ip_addr="1.2.3.4"))
    reg = store.get("A", "x")
    assert reg is not None
    assert orjson.loads(encode_instance(reg, "json"))["instance"]["metadata"] == {
        "@class": "java.util.Collections$EmptyMap"
    }
    assert ET.fromstring(encode_instance(reg, "xml")).find("metadata").get("class") == (  # type: ignore[union-attr]
        "java.util.Collections$EmptyMap"
    )


def test_info_to_json_keeps_what_the_client_registered() -> None:
    info = info_from_json(
        {**BASE, "status": "STARTING", "overriddenstatus": "DOWN", "leaseInfo": {"durationInSecs": 9}}
    )
    assert info_from_json(info_to_json(info)) == info
