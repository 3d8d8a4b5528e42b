"""Kong's checks that span several fields of one entity (its schema `entity_checks`).

They run on entities that passed field validation, and return `(relative path, message)` pairs so
each problem points at the field to change rather than at the whole entity.
"""

from __future__ import annotations

from forecourt.config.errors import KeyPath
from forecourt.config.schema import (
    CertificateEntity,
    ConsumerEntity,
    RouteEntity,
    ServiceEntity,
    UpstreamEntity,
)

Problems = list[tuple[KeyPath, str]]

_URL_PARTS = ("protocol", "host", "port", "path")
_HTTPS_ONLY = ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates")


def service_problems(service: ServiceEntity) -> Problems:
    problems: Problems = []
    for part in _URL_PARTS:
        if service.url is not None and getattr(service, part) is not None:
            problems.append((("url",), f'cannot be combined with "{part}": the url sets it'))
    if service.url is None and service.host is None:
        problems.append((("host",), 'required field missing (set "host" or "url")'))
    protocol = service.url.protocol if service.url is not None else service.protocol or "http"
    if protocol != "https":
        for name in _HTTPS_ONLY:
            if getattr(service, name) is not None:
                problems.append(((name,), 'only allowed when the protocol is "https"'))
    return problems


def route_problems(route: RouteEntity) -> Problems:
    problems: Problems = []
    https = "https" in route.protocols
    matchers = ["methods", "hosts", "headers", "paths"] + (["snis"] if https else [])
    if not any(getattr(route, name) for name in matchers):
        listed = ", ".join(f"'{name}'" for name in matchers)
        problems.append(
            ((), f"must set one of {listed} when 'protocols' is '{'https' if https else 'http'}'")
        )
    if route.snis and not https:
        problems.append((("snis",), "'snis' can only be set when 'protocols' is 'https'"))
    for name in route.headers:
        if name.lower() == "host":
            problems.append(
                (
                    ("headers", name),
                    "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
                )
            )
    return problems


def upstream_problems(upstream: UpstreamEntity) -> Problems:
    problems: Problems = []
    hash_on, fallback = upstream.hash_on, upstream.hash_fallback
    required = {
        "header": ("hash_on_header", "hash_fallback_header"),
        "cookie": ("hash_on_cookie", "hash_on_cookie"),
        "query_arg": ("hash_on_query_arg", "hash_fallback_query_arg"),
        "uri_capture": ("hash_on_uri_capture", "hash_fallback_uri_capture"),
    }
    if hash_on in required and getattr(upstream, required[hash_on][0]) is None:
        problems.append(((required[hash_on][0],), f'required when hash_on is "{hash_on}"'))
    if fallback in required and getattr(upstream, required[fallback][1]) is None:
        problems.append(((required[fallback][1],), f'required when hash_fallback is "{fallback}"'))
    if hash_on in ("none", "cookie") and fallback != "none":
        problems.append((("hash_fallback",), f'must be "none" when hash_on is "{hash_on}"'))
    elif hash_on == fallback and hash_on in ("consumer", "ip", "path"):
        problems.append((("hash_fallback",), "must differ from hash_on"))
    for first, second in (
        ("hash_on_header", "hash_fallback_header"),
        ("hash_on_query_arg", "hash_fallback_query_arg"),
        ("hash_on_uri_capture", "hash_fallback_uri_capture"),
    ):
        value = getattr(upstream, first)
        if value is not None and value == getattr(upstream, second):
            problems.append(((second,), f"must differ from {first}"))
    return problems


def consumer_problems(consumer: ConsumerEntity) -> Problems:
    if consumer.username is None and consumer.custom_id is None:
        return [((), "at least one of these fields must be non-empty: 'custom_id', 'username'")]
    return []


def certificate_problems(certificate: CertificateEntity) -> Problems:
    if (certificate.cert_alt is None) != (certificate.key_alt is None):
        missing = "key_alt" if certificate.key_alt is None else "cert_alt"
        return [((missing,), "all or none of these fields must be set: 'cert_alt', 'key_alt'")]
    return []
