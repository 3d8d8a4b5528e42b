"""An upstream's `discovery` record (Forecourt extension): where its targets come from at run time.

One record per upstream, chosen by `type`:

- `dns`: a DNS name's A/AAAA records (`port` given) or SRV records (port and weight from DNS),
  re-resolved when the TTL runs out; a Kubernetes Service name works as is.
- `eureka`: the instances of one application in a Eureka-compatible registry.
- `etcd`: every key under a prefix in etcd v3, each value an instance as JSON.
- `static`: the targets, written here instead of in `targets`.

The union is dispatched by hand on `type` (rather than pydantic's tagged union) so errors point at
`upstreams[0].discovery.port`, not at `upstreams[0].discovery.dns.port`.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from forecourt.config.fields import Bool, NonEmptyStr, Port, is_hostname, is_ip, split_host_port

__all__ = [
    "Discovery",
    "DiscoveryKind",
    "DnsDiscovery",
    "EtcdDiscovery",
    "EurekaDiscovery",
    "StaticDiscovery",
    "StaticTarget",
]

DiscoveryKind = Literal["dns", "eureka", "etcd", "static"]

Interval = Annotated[float, Strict(), Field(ge=0.1, le=86400)]
Timeout = Annotated[float, Strict(), Field(gt=0, le=3600)]
Weight = Annotated[int, Strict(), Field(ge=0, le=65535)]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f'expected an http(s) URL like "http://127.0.0.1:2379", got "{value}"')
    if parts.query or parts.fragment:
        raise ValueError("the URL must not have a query string or fragment")
    try:
        host, _port = split_host_port(parts.netloc.rpartition("@")[2])
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if not (is_ip(host) or is_hostname(host)):
        raise ValueError(f'invalid host "{host}" in URL')
    return value


def _check_dns_name(value: str) -> str:
    if is_ip(value) or not is_hostname(value):
        raise ValueError(f'invalid DNS name "{value}"')
    return value


HttpUrl = Annotated[str, Strict(), AfterValidator(_check_http_url)]
DnsName = Annotated[str, Strict(), AfterValidator(_check_dns_name)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DnsDiscovery(_Record):
    """Targets from DNS: every address of `name` (A/AAAA) on `port`, or its SRV records."""

    type: Literal["dns"]
    name: DnsName = Field(description="The name to resolve, e.g. orders.default.svc.cluster.local.")
    port: Port | None = Field(None, description="Port of every address (A/AAAA); SRV records carry theirs.")
    record: Literal["A", "AAAA", "SRV", "auto"] = Field(
        "auto", description='Record type; "auto" is SRV for a name starting with "_", else A (AAAA fallback).'
    )
    interval: Interval = Field(
        1.0, description="Minimum seconds between lookups: the refresh period when the TTL is 0."
    )
    weight: Weight = Field(100, description="Weight of each address found through A/AAAA records.")

    @property
    def uses_srv(self) -> bool:
        return self.record == "SRV" or (self.record == "auto" and self.name.startswith("_"))


class EurekaDiscovery(_Record):
    """Targets from a Eureka-compatible registry: the instances of `app` in `status`."""

    type: Literal["eureka"]
    url: HttpUrl = Field(description="The registry's base URL, e.g. http://127.0.0.1:8761/eureka.")
    app: NonEmptyStr = Field(description="The application name as registered, e.g. ORDER-SERVICE.")
    interval: Interval = Field(30.0, description="Seconds between registry polls.")
    delta: Bool = Field(True, description="Poll /apps/delta between full fetches (as Eureka clients do).")
    secure: Bool = Field(False, description="Use each instance's securePort (for an https service).")
    status: NonEmptyStr = Field("UP", description="Only instances with this status are targets.")
    timeout: Timeout = Field(5.0, description="Seconds a registry request may take.")


class EtcdDiscovery(_Record):
    """Targets from etcd v3: one instance (JSON) per key under `prefix`, followed with a watch."""

    type: Literal["etcd"]
    endpoints: Annotated[tuple[HttpUrl, ...], Field(min_length=1)] = Field(
        description="etcd client URLs, tried in order (e.g. http://127.0.0.1:2379)."
    )
    prefix: NonEmptyStr = Field(description="Key prefix; every key under it is one instance.")
    username: NonEmptyStr | None = None
    password: Annotated[str, Strict()] | None = Field(None, exclude=True, repr=False)
    timeout: Timeout = Field(5.0, description="Seconds a request (not the watch) may take.")


def _normalize_static_target(value: object) -> object:
    """`"host:port"` → `{target: "host:port"}`; `host` alone gets Kong's default port 8000."""
    if isinstance(value, str):
        value = {"target": value}
    if isinstance(value, dict) and isinstance(value.get("target"), str):
        host, port = split_host_port(value["target"])
        if not (is_ip(host) or is_hostname(host)):
            raise ValueError(f'invalid target "{value["target"]}": not a valid hostname or IP address')
        return {**value, "target": f"[{host}]:{port or 8000}" if ":" in host else f"{host}:{port or 8000}"}
    return value


class StaticTarget(_Record):
    """One fixed target, as in `targets`: `host:port` and a weight."""

    target: NonEmptyStr
    weight: Weight = 100

    @property
    def host(self) -> str:
        return self.target.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.target.rpartition(":")[2])


class StaticDiscovery(_Record):
    """Fixed targets; the same as the upstream's `targets`, through the discovery machinery."""

    type: Literal["static"]
    targets: tuple[Annotated[StaticTarget, BeforeValidator(_normalize_static_target)], ...] = ()


_KINDS: dict[str, type[_Record]] = {
    "dns": DnsDiscovery,
    "eureka": EurekaDiscovery,
    "etcd": EtcdDiscovery,
    "static": StaticDiscovery,
}


class _Tag(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["dns", "eureka", "etcd", "static"]


def _dispatch(value: object) -> object:
    """Validate with the model `type` names; a ValidationError raised here keeps its key paths."""
    if isinstance(value, _Record):
        return value
    if not isinstance(value, dict):
        raise ValueError("expected a mapping like {type: dns, name: ..., port: ...}")
    _Tag.model_validate(value)  # "type" missing or unknown: reported at discovery.type
    record = _KINDS[value["type"]].model_validate(value)
    problem = _cross_field_problem(record)
    if problem is not None:
        field, message = problem
        raise ValidationError.from_exception_data(
            "Discovery",
            [{"type": "value_error", "loc": (field,), "input": value, "ctx": {"error": ValueError(message)}}],
        )
    return record


def _cross_field_problem(record: _Record) -> tuple[str, str] | None:
    """(field, message) for a rule spanning fields, so the error lands on the field to change."""
    if isinstance(record, DnsDiscovery):
        if record.uses_srv and record.port is not None:
            return "port", "not allowed with SRV records: each SRV record names its own port"
        if not record.uses_srv and not record.port:
            why = (
                f'"auto" looks up A/AAAA records for "{record.name}" (no leading "_")'
                if record.record == "auto"
                else f"{record.record} records carry addresses, not ports"
            )
            return "port", f"required field missing: {why}"
    if isinstance(record, EtcdDiscovery) and (record.username is None) != (record.password is None):
        return ("password" if record.password is None else "username"), (
            'set both "username" and "password", or neither'
        )
    return None


Discovery = Annotated[
    DnsDiscovery | EurekaDiscovery | EtcdDiscovery | StaticDiscovery, BeforeValidator(_dispatch)
]
"""The `discovery` field's type: one of the four records, chosen by `type`."""
