"""The Eureka REST API end to end over real sockets, in JSON and XML."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.registry.support import ThreadRegistry, instance_json

JSON = {"Accept": "application/json"}
XML = {"Accept": "application/xml"}


def register(http: httpx.Client, app: str = "ORDERS", instance_id: str = "orders-1", **kw: Any) -> None:
    answer = http.post(f"/apps/{app}", json=instance_json(app, instance_id, **kw))
    assert answer.status_code == 204, answer.text


def instances_json(http: httpx.Client, app: str = "ORDERS") -> dict[str, dict[str, Any]]:
    answer = http.get(f"/apps/{app}", headers=JSON)
    assert answer.status_code == 200, answer.text
    return {i["instanceId"]: i for i in answer.json()["application"]["instance"]}


XML_REGISTRATION = b"""<instance>
  <instanceId>billing-7</instanceId>
  <hostName>billing.local</hostName>
  <app>BILLING</app>
  <ipAddr>127.0.0.7</ipAddr>
  <status>UP</status>
  <overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="false">8080</port>
  <securePort enabled="true">8443</securePort>
  <countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">
    <name>MyOwn</name>
  </dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>10</renewalIntervalInSecs><durationInSecs>40</durationInSecs></leaseInfo>
  <metadata><zone>eu</zone><build__id>42</build__id></metadata>
  <vipAddress>billing</vipAddress>
  <secureVipAddress>billing-secure</secureVipAddress>
  <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
  <lastUpdatedTimestamp>1700000000000</lastUpdatedTimestamp>
  <lastDirtyTimestamp>1700000000000</lastDirtyTimestamp>
</instance>"""


def test_register_json_and_read_back_in_both_formats(http: httpx.Client) -> None:
    register(http)
    register(http, instance_id="orders-2", port=8002)

    everything = http.get("/apps", headers=JSON)
    assert everything.headers["content-type"].startswith("application/json")
    apps = everything.json()["applications"]
    assert apps["apps__hashcode"] == "UP_2_"
    [orders] = apps["application"]
    assert orders["name"] == "ORDERS"
    assert [i["instanceId"] for i in orders["instance"]] == ["orders-1", "orders-2"]
    first = orders["instance"][0]
    assert first["port"] == {"$": 8001, "@enabled": "true"}
    assert first["status"] == "UP" and first["overriddenstatus"] == "UNKNOWN"
    assert first["leaseInfo"]["durationInSecs"] == 90 and first["leaseInfo"]["renewalIntervalInSecs"] == 30
    assert first["metadata"] == {"management.port": "8001"}
    assert first["actionType"] == "ADDED"

    # No Accept header (what py-eureka-client sends): XML, like Eureka.
    xml = http.get("/apps")
    assert xml.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(xml.content)
    assert root.tag == "applications"
    assert root.findtext("apps__hashcode") == "UP_2_"
    port = root.find("application/instance/port")
    assert port is not None and port.text == "8001" and port.get("enabled") == "true"
    assert root.find("application/instance/dataCenterInfo").get("class").endswith("DefaultDataCenterInfo")  # type: ignore[union-attr]

    one = http.get("/apps/orders/orders-2", headers=JSON).json()["instance"]
    assert one["port"]["$"] == 8002
    assert ET.fromstring(http.get("/apps/ORDERS/orders-2").content).findtext("instanceId") == "orders-2"
    assert http.get("/instances/orders-2", headers=JSON).json()["instance"]["app"] == "ORDERS"


def test_register_xml_and_read_back_as_json(http: httpx.Client) -> None:
    answer = http.post("/apps/billing", content=XML_REGISTRATION, headers={"Content-Type": "application/xml"})
    assert answer.status_code == 204, answer.text
    billing = instances_json(http, "BILLING")["billing-7"]
    assert billing["securePort"] == {"$": 8443, "@enabled": "true"}
    assert billing["port"] == {"$": 8080, "@enabled": "false"}
    assert billing["metadata"] == {"zone": "eu", "build_id": "42"}  # XStream's `__` is `_`
    assert billing["leaseInfo"]["durationInSecs"] == 40
    assert billing["hostName"] == "billing.local"
    # And back to XML, escaped the way Eureka's clients unescape.
    xml = ET.fromstring(http.get("/apps/BILLING/billing-7", headers=XML).content)
    assert xml.findtext("metadata/build__id") == "42"


def test_the_v2_prefix_of_netflix_eureka_works_too(http: httpx.Client, registry: ThreadRegistry) -> None:
    register(http)
    answer = httpx.get(f"http://127.0.0.1:{registry.port}/eureka/v2/apps/ORDERS", headers=JSON)
    assert answer.status_code == 200


def test_heartbeat_renews_404_for_unknown_or_newer_client_state(http: httpx.Client) -> None:
    register(http, last_dirty=5000)
    assert http.put("/apps/ORDERS/orders-1?status=UP&lastDirtyTimestamp=5000").status_code == 200
    assert http.put("/apps/ORDERS/orders-1").status_code == 200
    # The client changed since it registered: 404 makes it register again.
    assert http.put("/apps/ORDERS/orders-1?status=UP&lastDirtyTimestamp=6000").status_code == 404
    assert http.put("/apps/ORDERS/nobody?status=UP").status_code == 404
    assert http.put("/apps/NOAPP/orders-1").status_code == 404


def test_deregister(http: httpx.Client) -> None:
    register(http)
    assert http.delete("/apps/ORDERS/orders-1").status_code == 200
    assert http.delete("/apps/ORDERS/orders-1").status_code == 404
    assert http.get("/apps/ORDERS").status_code == 404
    assert http.get("/apps/ORDERS/orders-1").status_code == 404
    assert http.get("/apps", headers=JSON).json()["applications"]["application"] == []


def test_status_override_survives_heartbeats_and_reregistration(http: httpx.Client) -> None:
    register(http)
    assert http.put("/apps/ORDERS/orders-1/status?value=OUT_OF_SERVICE").status_code == 200
    got = instances_json(http)["orders-1"]
    assert (got["status"], got["overriddenstatus"]) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    assert http.put("/apps/ORDERS/orders-1?status=UP&lastDirtyTimestamp=1000").status_code == 200
    register(http)  # the client registers again (a restart): the operator's override stays
    assert instances_json(http)["orders-1"]["status"] == "OUT_OF_SERVICE"
    assert http.get("/apps", headers=JSON).json()["applications"]["apps__hashcode"] == "OUT_OF_SERVICE_1_"

    assert http.delete("/apps/ORDERS/orders-1/status?value=UP").status_code == 200
    got = instances_json(http)["orders-1"]
    assert (got["status"], got["overriddenstatus"]) == ("UP", "UNKNOWN")

    assert http.put("/apps/ORDERS/orders-1/status?value=SIDEWAYS").status_code == 400
    assert http.put("/apps/ORDERS/orders-1/status").status_code == 400
    assert http.put("/apps/ORDERS/ghost/status?value=UP").status_code == 404


def test_an_instance_that_reports_itself_down_stays_down_whatever_the_override(http: httpx.Client) -> None:
    register(http, status="STARTING")
    http.put("/apps/ORDERS/orders-1/status?value=UP")
    assert instances_json(http)["orders-1"]["status"] == "STARTING"


def test_metadata_update(http: httpx.Client) -> None:
    register(http)
    assert http.put("/apps/ORDERS/orders-1/metadata?version=2.1&zone=b").status_code == 200
    meta = instances_json(http)["orders-1"]["metadata"]
    assert meta == {"management.port": "8001", "version": "2.1", "zone": "b"}
    assert http.put("/apps/ORDERS/orders-1/metadata").status_code == 400
    assert http.put("/apps/ORDERS/ghost/metadata?a=b").status_code == 404


def test_vips_and_svips(http: httpx.Client) -> None:
    register(http, vipAddress="orders,shop")
    http.post("/apps/billing", content=XML_REGISTRATION, headers={"Content-Type": "application/xml"})
    shop = http.get("/vips/shop", headers=JSON).json()["applications"]["application"]
    assert [a["name"] for a in shop] == ["ORDERS"]
    secure = http.get("/svips/billing-secure", headers=JSON).json()["applications"]["application"]
    assert [a["name"] for a in secure] == ["BILLING"]
    assert http.get("/vips/nothing").status_code == 404


def test_delta_reports_changes_with_action_types_and_the_full_registry_hash(http: httpx.Client) -> None:
    before = int(http.get("/apps", headers=JSON).json()["applications"]["versions__delta"])
    register(http, instance_id="orders-1")
    register(http, instance_id="orders-2")
    register(http, instance_id="orders-3")
    http.put("/apps/ORDERS/orders-2/status?value=OUT_OF_SERVICE")
    http.delete("/apps/ORDERS/orders-3")

    delta = http.get("/apps/delta", headers=JSON).json()["applications"]
    assert int(delta["versions__delta"]) == before + 5
    assert delta["apps__hashcode"] == "OUT_OF_SERVICE_1_UP_1_"  # the whole registry, not the delta
    actions = {i["instanceId"]: (i["actionType"], i["status"]) for i in delta["application"][0]["instance"]}
    assert actions == {
        "orders-1": ("ADDED", "UP"),
        "orders-2": ("MODIFIED", "OUT_OF_SERVICE"),
        "orders-3": ("DELETED", "UP"),
    }
    xml = ET.fromstring(http.get("/apps/delta").content)
    assert (
        sorted(xml.findall("application/instance/actionType"), key=lambda e: e.text or "")[0].text == "ADDED"
    )
    # Heartbeats are not changes.
    http.put("/apps/ORDERS/orders-1")
    again = http.get("/apps/delta", headers=JSON).json()["applications"]
    assert again["versions__delta"] == delta["versions__delta"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        ("/apps/ORDERS", b"{not json", {"Content-Type": "application/json"}, "invalid JSON"),
        ("/apps/ORDERS", b"<instance><app>ORDERS", {"Content-Type": "application/xml"}, "invalid XML"),
        (
            "/apps/ORDERS",
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><instance><app>&a;</app></instance>',
            {"Content-Type": "application/xml"},
            "document type",
        ),
        ("/apps/BILLING", None, {}, "Mismatched appName"),
        ("/apps/ORDERS", b'{"instance": {"app": "ORDERS", "ipAddr": "1.2.3.4"}}', {}, "Missing instanceId"),
        (
            "/apps/ORDERS",
            b'{"instance": {"instanceId": "x", "port": {"$": "http"}}}',
            {"Content-Type": "application/json"},
            "port",
        ),
        ("/apps/ORDERS", b"", {"Content-Type": "application/json"}, "empty body"),
    ],
)
def test_bad_registrations_are_400_with_a_reason(
    http: httpx.Client, path: str, body: bytes | None, headers: dict[str, str], message: str
) -> None:
    if body is None:
        answer = http.post(path, json=instance_json("ORDERS"))
    else:
        answer = http.post(path, content=body, headers=headers)
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def test_unknown_paths_and_methods(http: httpx.Client, registry: ThreadRegistry) -> None:
    assert http.get("/apps/NOPE").status_code == 404
    assert http.get("/instances/nope").status_code == 404
    assert http.get("/nothing/here").status_code == 404
    answer = http.delete("/apps")
    assert answer.status_code == 405 and "GET" in answer.headers["allow"]
    assert httpx.get(f"http://127.0.0.1:{registry.port}/other").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{registry.port}/health").json()["status"] == "UP"


def test_lease_expiry_evicts_silent_instances_and_heartbeats_keep_them(http: httpx.Client) -> None:
    register(http, instance_id="silent", duration=1)
    register(http, instance_id="beating", duration=1)
    deadline = time.monotonic() + 5
    while "silent" in instances_json(http):
        assert time.monotonic() < deadline, "the silent instance was never evicted"
        assert http.put("/apps/ORDERS/beating").status_code == 200
        time.sleep(0.2)
    assert http.put("/apps/ORDERS/beating").status_code == 200
    assert list(instances_json(http)) == ["beating"]
    delta = http.get("/apps/delta", headers=JSON).json()["applications"]["application"][0]["instance"]
    evicted = next(i for i in delta if i["instanceId"] == "silent")
    assert evicted["actionType"] == "DELETED" and evicted["leaseInfo"]["evictionTimestamp"] > 0
    # The evicted client's next heartbeat is 404, so it registers again.
    assert http.put("/apps/ORDERS/silent").status_code == 404


def test_default_lease_comes_from_the_registry_options() -> None:
    registry = ThreadRegistry(lease_expiration=1, renew_interval=7, eviction_interval=0.1).start()
    try:
        with httpx.Client(base_url=registry.url.rstrip("/")) as http:
            body = instance_json()
            body["instance"].pop("leaseInfo", None)
            assert http.post("/apps/ORDERS", json=body).status_code == 204
            lease = instances_json(http)["orders-1"]["leaseInfo"]
            assert (lease["renewalIntervalInSecs"], lease["durationInSecs"]) == (7, 1)
            deadline = time.monotonic() + 5
            while http.get("/apps/ORDERS").status_code != 404:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        registry.stop()
