"""Field types shared by the entity schemas, with Kong's constraints.

Scalars are strict (a quoted `"80"` is not a port, `yes` is not a string) because a declarative
file that means something else than it says is worse than one that fails to load. Validators raise
`ValueError` with the message the user sees; `validation.py` turns it into a `ConfigIssue`.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict

Str = Annotated[str, Strict()]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1)]
Bool = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]


def _none_as_empty(value: object) -> object:
    # Kong treats an absent list and `null` alike; exports sometimes write the null out.
    return () if value is None else value


EmptyIfNull = BeforeValidator(_none_as_empty)
Tags = Annotated[tuple[NonEmptyStr, ...], EmptyIfNull]
Port = Annotated[int, Strict(), Field(ge=0, le=65535)]
TimeoutMs = Annotated[int, Strict(), Field(ge=1, le=2**31 - 2)]
HttpStatus = Annotated[int, Strict(), Field(ge=100, le=999)]

# Protocols Kong knows but Forecourt does not proxy: named in errors instead of "invalid value".
UNSUPPORTED_PROTOCOLS = frozenset({"grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"})

_NAME = re.compile(r"[A-Za-z0-9.\-_~]+")
_UTF8_NAME = re.compile(r"[\w.\-~]+")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_METHOD = re.compile(r"[A-Z]+")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_COOKIE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def _check_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f'expected a UUID, got "{value}"') from None
    return value


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid value '{value}': it must only contain alphanumeric and '., -, _, ~' characters"
        )
    return value


def _check_utf8_name(value: str) -> str:
    if not _UTF8_NAME.fullmatch(value):
        raise ValueError(
            f"invalid value '{value}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
        )
    return value


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_hostname(value: str) -> bool:
    """True for a DNS name: dot-separated labels of letters, digits, `-` and `_`."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address has no port.

    Raises `ValueError` for a malformed port; the host part is returned unchecked.
    """
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f'invalid address "{value}": missing "]"')
        host, rest = value[1:end], value[end + 1 :]
        if not is_ip(host):
            raise ValueError(f'invalid address "{value}": brackets need an IPv6 address')
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f'invalid address "{value}"')
        return host, _parse_port(rest[1:], value)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, _parse_port(port, value)
    return value, None


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f'invalid port in "{whole}": must be a number between 0 and 65535')
    return int(text)


def _check_host(value: str) -> str:
    if not (is_ip(value) or is_hostname(value)):
        raise ValueError(f'invalid hostname or IP address "{value}"')
    return value


def _check_upstream_name(value: str) -> str:
    if is_ip(value):
        raise ValueError("Invalid name; no ip addresses allowed")
    if ":" in value:
        raise ValueError("Invalid name; no port allowed")
    if not is_hostname(value):
        raise ValueError("Invalid name; must be a valid hostname")
    return value


def _check_wildcard_host(value: str) -> str:
    """A route host: hostname or IP, optional `:port`, at most one `*` as the first or last label."""
    host, _port = split_host_port(value)
    if "*" not in host:
        _check_host(host)
        return value
    if host.count("*") > 1:
        raise ValueError("invalid wildcard: must have at most one wildcard")
    labels = host.split(".")
    if "*" not in (labels[0], labels[-1]) or len(labels) < 2:
        raise ValueError("invalid wildcard: must be placed at leftmost or rightmost label")
    rest = labels[1:] if labels[0] == "*" else labels[:-1]
    if not is_hostname(".".join(rest)):
        raise ValueError(f'invalid hostname "{value}"')
    return value


def _check_sni(value: str) -> str:
    """An SNI name: a hostname (wildcards allowed as for route hosts), never an IP or a port."""
    if is_ip(value):
        raise ValueError("must not be an IP address")
    if ":" in value:
        raise ValueError("must not have a port")
    return _check_wildcard_host(value)


def _check_route_path(value: str) -> str:
    if not value.startswith(("/", "~")):
        raise ValueError('must start with "/" or "~"')
    return value


def _check_upstream_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("should start with: / (fixed path)")
    return value


def _check_method(value: str) -> str:
    if not _METHOD.fullmatch(value):
        raise ValueError(f'invalid method "{value}": must be an uppercase token like "GET"')
    return value


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(f'invalid header name "{value}"')
    return value


def _check_cookie_name(value: str) -> str:
    if not _COOKIE_NAME.fullmatch(value):
        raise ValueError(f'invalid cookie name "{value}"')
    return value


def _reject_unsupported_protocol(value: object) -> object:
    if isinstance(value, str) and value in UNSUPPORTED_PROTOCOLS:
        raise ValueError(f'protocol "{value}" is not supported (Forecourt proxies http and https)')
    return value


Uuid = Annotated[str, Strict(), AfterValidator(_check_uuid)]
EntityName = Annotated[str, Strict(), AfterValidator(_check_name)]
Utf8Name = Annotated[str, Strict(), AfterValidator(_check_utf8_name)]
Host = Annotated[str, Strict(), AfterValidator(_check_host)]
UpstreamName = Annotated[str, Strict(), AfterValidator(_check_upstream_name)]
WildcardHost = Annotated[str, Strict(), AfterValidator(_check_wildcard_host)]
Sni = Annotated[str, Strict(), AfterValidator(_check_sni)]
RoutePath = Annotated[str, Strict(), AfterValidator(_check_route_path)]
UpstreamPath = Annotated[str, Strict(), AfterValidator(_check_upstream_path)]
Method = Annotated[str, Strict(), AfterValidator(_check_method)]
HeaderName = Annotated[str, Strict(), AfterValidator(_check_header_name)]
CookieName = Annotated[str, Strict(), AfterValidator(_check_cookie_name)]
HttpProtocol = Annotated[Literal["http", "https"], BeforeValidator(_reject_unsupported_protocol)]
