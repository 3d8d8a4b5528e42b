"""TLS termination: two certificates picked by SNI on one listener, plain HTTP to the upstream."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme
from cryptography import x509

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


def _pem(blob: trustme.Blob) -> str:
    return blob.bytes().decode()


def service(port: int) -> dict[str, Any]:
    return {"name": "svc", "url": f"http://127.0.0.1:{port}", "routes": [{"paths": ["/"]}]}


def presented_subject(port: int, server_name: str | None, ca: trustme.CA) -> tuple[str, bytes]:
    """Handshake with `server_name`, send one request; the certificate's SAN and the response."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if server_name is None:
        context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.DNSName)[0], data


def test_sni_picks_the_certificate(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    ca = trustme.CA()
    first = ca.issue_cert("a.example.test")
    second = ca.issue_cert("*.b.example.test")
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [
            {"name": "svc", "url": f"http://127.0.0.1:{demo_upstream.port}", "routes": [{"paths": ["/"]}]}
        ],
        "certificates": [
            {
                "cert": _pem(first.cert_chain_pems[0]),
                "key": _pem(first.private_key_pem),
                "snis": ["a.example.test"],
            },
            {
                "cert": _pem(second.cert_chain_pems[0]),
                "key": _pem(second.private_key_pem),
                "snis": ["*.b.example.test"],
            },
        ],
    }
    gateway = gateway_factory(config, tls=True)
    name, response = presented_subject(gateway.port, "a.example.test", ca)
    assert name == "a.example.test"
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"x-forwarded-proto":"https"' in response
    name, _ = presented_subject(gateway.port, "api.b.example.test", ca)
    assert name == "*.b.example.test"
    # No SNI: the default (first) certificate.
    name, _ = presented_subject(gateway.port, None, ca)
    assert name == "a.example.test"


def test_ssl_listener_without_certificate_is_a_config_error(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    config = {
        "_format_version": "3.0",
        "services": [
            {"name": "svc", "url": f"http://127.0.0.1:{demo_upstream.port}", "routes": [{"paths": ["/"]}]}
        ],
    }
    with pytest.raises(RuntimeError, match="certificate"):
        gateway_factory(config, tls=True)
