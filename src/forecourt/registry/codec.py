"""Eureka's wire formats, JSON and XML, both ways.

Reading is lenient the way Eureka's own codecs are, because real clients disagree in the details:
ports come as `{"$": 8080, "@enabled": "true"}` (Jackson), with the number as a string (XStream's
JSON), or as a bare number (hand-written curl); booleans and numbers may be strings; the overridden
status is spelled `overriddenstatus` (XML and the older JSON codec) or `overriddenStatus` (the newer
one); `application` and `instance` may be a list or a single object; metadata may carry Jackson's
`"@class"` marker. Writing follows Eureka's output: Jackson's JSON shapes (always lists, the
`"@class"` marker on empty metadata, both spellings of the overridden status so old and new Java
clients read it) and XStream's XML (element order, `enabled`/`class` attributes, `_` in metadata
names written as `__` and `$` as `_-`, which Eureka's XML name coder does and its clients undo).

XML is parsed with the standard library after refusing any document type declaration, which is
where entity-expansion attacks live; Eureka clients never send one.

Errors are `CodecError` with a message naming what is wrong, for a 400 answer.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from forecourt.registry.model import (
    AMAZON_DATA_CENTER_CLASS,
    DEFAULT_DATA_CENTER_CLASS,
    ActionType,
    DataCenterInfo,
    InstanceInfo,
    Registration,
    Status,
)

__all__ = [
    "Applications",
    "CodecError",
    "Format",
    "body_format",
    "decode_application",
    "decode_applications",
    "decode_instance",
    "encode_application",
    "encode_applications",
    "encode_instance",
    "info_from_json",
    "info_to_json",
    "media_type",
    "response_format",
]

log = logging.getLogger("forecourt.registry")

Format = Literal["json", "xml"]

_EMPTY_METADATA_CLASS = "java.util.Collections$EmptyMap"
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
_XML_NAME_ESCAPE = re.compile(r"__|_-")


class CodecError(ValueError):
    """A body that is not a Eureka document we can read."""


@dataclass(slots=True)
class Applications:
    """A decoded `applications` document (what a client of a registry reads)."""

    versions_delta: str = ""
    apps_hashcode: str = ""
    apps: dict[str, list[InstanceInfo]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- negotiation
def response_format(accept: str | None) -> Format:
    """JSON when the client asks for it before XML; XML otherwise (Eureka's default, and what
    clients that send no `Accept`, such as py-eureka-client, expect)."""
    if not accept:
        return "xml"
    text = accept.lower()
    json_at = text.find("json")
    xml_at = text.find("xml")
    if json_at >= 0 and (xml_at < 0 or json_at < xml_at):
        return "json"
    return "xml"


def body_format(content_type: str | None, body: bytes) -> Format:
    """The request body's format from its `Content-Type`, sniffed when that says neither."""
    text = (content_type or "").lower()
    if "json" in text:
        return "json"
    if "xml" in text:
        return "xml"
    return "xml" if body.lstrip().startswith(b"<") else "json"


def media_type(fmt: Format) -> str:
    return "application/json" if fmt == "json" else "application/xml"


# ---------------------------------------------------------------------------------------- scalars
def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _text(value.get("$"))
    return str(value).strip()


def _int(value: object, what: str, default: int = 0) -> int:
    text = _text(value)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise CodecError(f"{what}: expected a number, got {text!r}") from None


def _bool(value: object) -> bool:
    return _text(value).lower() == "true"


def _status(value: object, what: str, default: Status) -> Status:
    text = _text(value)
    if not text:
        return default
    try:
        return Status.parse(text)
    except ValueError as exc:
        raise CodecError(f"{what}: {exc}") from None


def _action(value: object) -> ActionType | None:
    text = _text(value).upper()
    try:
        return ActionType(text) if text else None
    except ValueError:
        raise CodecError(f"actionType: invalid value {text!r}") from None


def _port(value: object, what: str, default: int, enabled_default: bool) -> tuple[int, bool]:
    if value is None:
        return default, enabled_default
    if isinstance(value, dict):
        number = _int(value.get("$"), what, default)
        enabled = value.get("@enabled", value.get("enabled"))
        return number, enabled_default if enabled is None else _bool(enabled)
    return _int(value, what, default), enabled_default


def _check_port(number: int, what: str) -> int:
    if not 0 <= number < 65536:
        raise CodecError(f"{what}: {number} is not a port number")
    return number


# ---------------------------------------------------------------------------------------- JSON in
def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"invalid JSON: {exc}") from None


def _json_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CodecError("metadata: expected an object")
    return {str(k): _text(v) for k, v in value.items() if k != "@class" and v is not None}


def info_from_json(obj: object) -> InstanceInfo:
    """An `InstanceInfo` from the JSON object of one instance (without the `instance` envelope)."""
    if not isinstance(obj, dict):
        raise CodecError("instance: expected an object")
    dc = obj.get("dataCenterInfo")
    if dc is not None and not isinstance(dc, dict):
        raise CodecError("dataCenterInfo: expected an object")
    dc = dc or {}
    lease = obj.get("leaseInfo") or {}
    if not isinstance(lease, dict):
        raise CodecError("leaseInfo: expected an object")
    overridden = obj.get("overriddenstatus", obj.get("overriddenStatus"))
    port, port_enabled = _port(obj.get("port"), "port", 7001, True)
    secure_port, secure_enabled = _port(obj.get("securePort"), "securePort", 7002, False)
    return _build(
        instance_id=_text(obj.get("instanceId")),
        app=_text(obj.get("app")),
        host_name=_text(obj.get("hostName")),
        ip_addr=_text(obj.get("ipAddr")),
        status=_status(obj.get("status"), "status", Status.UP),
        overridden_status=_status(overridden, "overriddenstatus", Status.UNKNOWN),
        port=_check_port(port, "port"),
        port_enabled=port_enabled,
        secure_port=_check_port(secure_port, "securePort"),
        secure_port_enabled=secure_enabled,
        country_id=_int(obj.get("countryId"), "countryId", 1),
        data_center=DataCenterInfo(
            name=_text(dc.get("name")) or "MyOwn",
            class_name=_text(dc.get("@class")) or DEFAULT_DATA_CENTER_CLASS,
            metadata=_json_metadata(dc.get("metadata")),
        ),
        renewal_interval=_int(lease.get("renewalIntervalInSecs"), "leaseInfo.renewalIntervalInSecs"),
        duration=_int(lease.get("durationInSecs"), "leaseInfo.durationInSecs"),
        metadata=_json_metadata(obj.get("metadata")),
        home_page_url=_text(obj.get("homePageUrl")),
        status_page_url=_text(obj.get("statusPageUrl")),
        health_check_url=_text(obj.get("healthCheckUrl")),
        secure_health_check_url=_text(obj.get("secureHealthCheckUrl")),
        vip_address=_text(obj.get("vipAddress")),
        secure_vip_address=_text(obj.get("secureVipAddress")),
        app_group_name=_text(obj.get("appGroupName")),
        asg_name=_text(obj.get("asgName")),
        sid=_text(obj.get("sid")),
        is_coordinating_discovery_server=_bool(obj.get("isCoordinatingDiscoveryServer")),
        last_dirty_timestamp=_int(obj.get("lastDirtyTimestamp"), "lastDirtyTimestamp"),
        last_updated_timestamp=_int(obj.get("lastUpdatedTimestamp"), "lastUpdatedTimestamp"),
        action_type=_action(obj.get("actionType")),
    )


def _build(**fields: Any) -> InstanceInfo:
    """Fill Eureka's derived fields: the upper-cased app name and the instance id (for instances
    outside AWS that sent none, Eureka's id is the host name; in AWS, the EC2 instance id)."""
    fields["app"] = fields["app"].upper()
    if not fields["instance_id"]:
        dc: DataCenterInfo = fields["data_center"]
        aws_id = dc.metadata.get("instance-id", "") if dc.name == "Amazon" else ""
        fields["instance_id"] = aws_id or fields["host_name"]
    return InstanceInfo(**fields)


def _list_of(value: object) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------- XML in
def _load_xml(body: bytes) -> ET.Element:
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        raise CodecError("XML document type declarations are not accepted")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise CodecError(f"invalid XML: {exc}") from None


def _unescape_name(name: str) -> str:
    return _XML_NAME_ESCAPE.sub(lambda m: "_" if m.group() == "__" else "$", name)


def _escape_name(name: str) -> str:
    return name.replace("_", "__").replace("$", "_-")


def _xml_children(elem: ET.Element | None) -> dict[str, ET.Element]:
    return {} if elem is None else {child.tag: child for child in elem}


def _xml_metadata(elem: ET.Element | None) -> dict[str, str]:
    if elem is None:
        return {}
    return {_unescape_name(child.tag): (child.text or "").strip() for child in elem}


def _xml_port(elem: ET.Element | None, what: str, default: int, enabled_default: bool) -> tuple[int, bool]:
    if elem is None:
        return default, enabled_default
    number = _int(elem.text, what, default)
    enabled = elem.get("enabled")
    return number, enabled_default if enabled is None else _bool(enabled)


def _info_from_xml(elem: ET.Element) -> InstanceInfo:
    if elem.tag != "instance":
        raise CodecError(f"expected an <instance> element, got <{elem.tag}>")
    f = _xml_children(elem)

    def text(name: str) -> str:
        node = f.get(name)
        return (node.text or "").strip() if node is not None else ""

    dc_elem = f.get("dataCenterInfo")
    dc = _xml_children(dc_elem)
    lease = _xml_children(f.get("leaseInfo"))
    overridden = text("overriddenstatus") or text("overriddenStatus")
    port, port_enabled = _xml_port(f.get("port"), "port", 7001, True)
    secure_port, secure_enabled = _xml_port(f.get("securePort"), "securePort", 7002, False)

    def lease_int(name: str) -> int:
        node = lease.get(name)
        return _int(node.text if node is not None else None, f"leaseInfo.{name}")

    return _build(
        instance_id=text("instanceId"),
        app=text("app"),
        host_name=text("hostName"),
        ip_addr=text("ipAddr"),
        status=_status(text("status"), "status", Status.UP),
        overridden_status=_status(overridden, "overriddenstatus", Status.UNKNOWN),
        port=_check_port(port, "port"),
        port_enabled=port_enabled,
        secure_port=_check_port(secure_port, "securePort"),
        secure_port_enabled=secure_enabled,
        country_id=_int(text("countryId"), "countryId", 1),
        data_center=DataCenterInfo(
            name=(dc["name"].text or "").strip() if "name" in dc else "MyOwn",
            class_name=(dc_elem.get("class") if dc_elem is not None else None) or DEFAULT_DATA_CENTER_CLASS,
            metadata=_xml_metadata(dc.get("metadata")),
        ),
        renewal_interval=lease_int("renewalIntervalInSecs"),
        duration=lease_int("durationInSecs"),
        metadata=_xml_metadata(f.get("metadata")),
        home_page_url=text("homePageUrl"),
        status_page_url=text("statusPageUrl"),
        health_check_url=text("healthCheckUrl"),
        secure_health_check_url=text("secureHealthCheckUrl"),
        vip_address=text("vipAddress"),
        secure_vip_address=text("secureVipAddress"),
        app_group_name=text("appGroupName"),
        asg_name=text("asgName"),
        sid=text("sid"),
        is_coordinating_discovery_server=_bool(text("isCoordinatingDiscoveryServer")),
        last_dirty_timestamp=_int(text("lastDirtyTimestamp"), "lastDirtyTimestamp"),
        last_updated_timestamp=_int(text("lastUpdatedTimestamp"), "lastUpdatedTimestamp"),
        action_type=_action(text("actionType")),
    )


# ---------------------------------------------------------------------------------------- decoders
def decode_instance(body: bytes, fmt: Format) -> InstanceInfo:
    """A registration body: `{"instance": {...}}` or `<instance>...</instance>`."""
    if not body.strip():
        raise CodecError("empty body: expected an instance")
    if fmt == "xml":
        return _info_from_xml(_load_xml(body))
    data = _load_json(body)
    if isinstance(data, dict) and "instance" in data:
        data = data["instance"]
    return info_from_json(data)


def _applications_json(obj: object) -> Applications:
    if not isinstance(obj, dict):
        raise CodecError("applications: expected an object")
    result = Applications(
        versions_delta=_text(obj.get("versions__delta")), apps_hashcode=_text(obj.get("apps__hashcode"))
    )
    for app in _list_of(obj.get("application")):
        name, instances = _application_json(app)
        result.apps.setdefault(name, []).extend(instances)
    return result


def _application_json(obj: object) -> tuple[str, list[InstanceInfo]]:
    if not isinstance(obj, dict):
        raise CodecError("application: expected an object")
    name = _text(obj.get("name")).upper()
    return name, [info_from_json(item) for item in _list_of(obj.get("instance"))]


def _application_xml(elem: ET.Element) -> tuple[str, list[InstanceInfo]]:
    if elem.tag != "application":
        raise CodecError(f"expected an <application> element, got <{elem.tag}>")
    name_elem = elem.find("name")
    name = (name_elem.text or "").strip().upper() if name_elem is not None else ""
    return name, [_info_from_xml(child) for child in elem.findall("instance")]


def decode_applications(body: bytes, fmt: Format) -> Applications:
    """`GET apps`, `apps/delta` and `vips/...` answers."""
    if fmt == "xml":
        root = _load_xml(body)
        if root.tag != "applications":
            raise CodecError(f"expected an <applications> element, got <{root.tag}>")
        result = Applications(
            versions_delta=(root.findtext("versions__delta") or "").strip(),
            apps_hashcode=(root.findtext("apps__hashcode") or "").strip(),
        )
        for child in root.findall("application"):
            name, instances = _application_xml(child)
            result.apps.setdefault(name, []).extend(instances)
        return result
    data = _load_json(body)
    return _applications_json(data.get("applications") if isinstance(data, dict) else data)


def decode_application(body: bytes, fmt: Format) -> list[InstanceInfo]:
    """`GET apps/{app}` answers: the application's instances."""
    if fmt == "xml":
        return _application_xml(_load_xml(body))[1]
    data = _load_json(body)
    return _application_json(data.get("application") if isinstance(data, dict) else data)[1]


# ---------------------------------------------------------------------------------------- JSON out
def _json_instance(
    info: InstanceInfo,
    status: Status,
    overridden: Status,
    lease: dict[str, int] | None,
    last_updated: int,
    action: ActionType | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "instanceId": info.instance_id,
        "hostName": info.host_name,
        "app": info.app,
        "ipAddr": info.ip_addr,
        "status": status.value,
        "overriddenStatus": overridden.value,
        "overriddenstatus": overridden.value,
        "port": {"$": info.port, "@enabled": _text(info.port_enabled)},
        "securePort": {"$": info.secure_port, "@enabled": _text(info.secure_port_enabled)},
        "countryId": info.country_id,
        "dataCenterInfo": {"@class": info.data_center.class_name, "name": info.data_center.name},
    }
    if info.sid:
        out["sid"] = info.sid
    if info.data_center.metadata:
        out["dataCenterInfo"]["metadata"] = dict(info.data_center.metadata)
    if lease is not None:
        out["leaseInfo"] = lease
    out["metadata"] = dict(info.metadata) if info.metadata else {"@class": _EMPTY_METADATA_CLASS}
    if info.app_group_name:
        out["appGroupName"] = info.app_group_name
    out["homePageUrl"] = info.home_page_url
    out["statusPageUrl"] = info.status_page_url
    out["healthCheckUrl"] = info.health_check_url
    if info.secure_health_check_url:
        out["secureHealthCheckUrl"] = info.secure_health_check_url
    out["vipAddress"] = info.vip_address
    out["secureVipAddress"] = info.secure_vip_address
    out["isCoordinatingDiscoveryServer"] = _text(info.is_coordinating_discovery_server)
    out["lastUpdatedTimestamp"] = str(last_updated)
    out["lastDirtyTimestamp"] = str(info.last_dirty_timestamp)
    if action is not None:
        out["actionType"] = action.value
    if info.asg_name:
        out["asgName"] = info.asg_name
    return out


def _lease(reg: Registration) -> dict[str, int]:
    return {
        "renewalIntervalInSecs": reg.renewal_interval,
        "durationInSecs": reg.duration,
        "registrationTimestamp": reg.registered_ms,
        "lastRenewalTimestamp": reg.last_renewal_ms,
        "evictionTimestamp": reg.evicted_ms,
        "serviceUpTimestamp": reg.service_up_ms,
    }


def _registration_json(reg: Registration) -> dict[str, Any]:
    return _json_instance(
        reg.info, reg.effective_status, reg.override, _lease(reg), reg.last_updated_ms, reg.action_type
    )


def info_to_json(info: InstanceInfo) -> dict[str, Any]:
    """The instance as its client registered it (own status, no registry bookkeeping)."""
    lease = {"renewalIntervalInSecs": info.renewal_interval, "durationInSecs": info.duration}
    return _json_instance(info, info.status, info.overridden_status, lease, info.last_updated_timestamp, None)


# ---------------------------------------------------------------------------------------- XML out
def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    elem = ET.SubElement(parent, tag, attrs)
    if text is not None:
        elem.text = _text(text)
    return elem


def _xml_map(parent: ET.Element, tag: str, values: Mapping[str, str], empty_class: str | None) -> None:
    if not values and empty_class:
        _sub(parent, tag, None, **{"class": empty_class})
        return
    node = _sub(parent, tag)
    for key, value in values.items():
        name = _escape_name(key)
        if _XML_NAME.match(name) and not name.lower().startswith("xml"):
            _sub(node, name, value)
        else:
            log.warning("metadata key %r cannot be an XML element name; left out of the XML answer", key)


def _xml_instance(parent: ET.Element, reg: Registration) -> None:
    info = reg.info
    node = _sub(parent, "instance")
    _sub(node, "instanceId", info.instance_id)
    _sub(node, "hostName", info.host_name)
    _sub(node, "app", info.app)
    _sub(node, "ipAddr", info.ip_addr)
    if info.sid:
        _sub(node, "sid", info.sid)
    _sub(node, "status", reg.effective_status.value)
    _sub(node, "overriddenstatus", reg.override.value)
    _sub(node, "port", info.port, enabled=_text(info.port_enabled))
    _sub(node, "securePort", info.secure_port, enabled=_text(info.secure_port_enabled))
    _sub(node, "countryId", info.country_id)
    dc = _sub(node, "dataCenterInfo", None, **{"class": info.data_center.class_name})
    _sub(dc, "name", info.data_center.name)
    if info.data_center.metadata or info.data_center.class_name == AMAZON_DATA_CENTER_CLASS:
        _xml_map(dc, "metadata", info.data_center.metadata, None)
    lease = _sub(node, "leaseInfo")
    for key, value in _lease(reg).items():
        _sub(lease, key, value)
    _xml_map(node, "metadata", info.metadata, _EMPTY_METADATA_CLASS)
    if info.app_group_name:
        _sub(node, "appGroupName", info.app_group_name)
    _sub(node, "homePageUrl", info.home_page_url)
    _sub(node, "statusPageUrl", info.status_page_url)
    _sub(node, "healthCheckUrl", info.health_check_url)
    if info.secure_health_check_url:
        _sub(node, "secureHealthCheckUrl", info.secure_health_check_url)
    _sub(node, "vipAddress", info.vip_address)
    _sub(node, "secureVipAddress", info.secure_vip_address)
    _sub(node, "isCoordinatingDiscoveryServer", info.is_coordinating_discovery_server)
    _sub(node, "lastUpdatedTimestamp", reg.last_updated_ms)
    _sub(node, "lastDirtyTimestamp", info.last_dirty_timestamp)
    _sub(node, "actionType", reg.action_type.value)
    if info.asg_name:
        _sub(node, "asgName", info.asg_name)


def _xml_bytes(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8")
    return data


# ---------------------------------------------------------------------------------------- encoders
def encode_instance(reg: Registration, fmt: Format) -> bytes:
    if fmt == "json":
        return orjson.dumps({"instance": _registration_json(reg)})
    root = ET.Element("root")
    _xml_instance(root, reg)
    return _xml_bytes(root[0])


def encode_application(name: str, regs: Sequence[Registration], fmt: Format) -> bytes:
    if fmt == "json":
        return orjson.dumps(
            {"application": {"name": name, "instance": [_registration_json(r) for r in regs]}}
        )
    root = ET.Element("application")
    _sub(root, "name", name)
    for reg in regs:
        _xml_instance(root, reg)
    return _xml_bytes(root)


def encode_applications(
    apps: Iterable[tuple[str, Sequence[Registration]]], version: int, hashcode: str, fmt: Format
) -> bytes:
    if fmt == "json":
        return orjson.dumps(
            {
                "applications": {
                    "versions__delta": str(version),
                    "apps__hashcode": hashcode,
                    "application": [
                        {"name": name, "instance": [_registration_json(r) for r in regs]}
                        for name, regs in apps
                    ],
                }
            }
        )
    root = ET.Element("applications")
    _sub(root, "versions__delta", version)
    _sub(root, "apps__hashcode", hashcode)
    for name, regs in apps:
        app = _sub(root, "application")
        _sub(app, "name", name)
        for reg in regs:
            _xml_instance(app, reg)
    return _xml_bytes(root)
