"""HTTPS upstreams (`protocol: https`): verification with the service's CA certificates, as Kong."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trustme

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream

CA_ID = "2d6a1c4e-8f7b-4e8a-9c1d-3b5e7f9a1c2e"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_upstream(ca: trustme.CA) -> Iterator[DemoUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("upstream.test", "127.0.0.1").configure_cert(context)
    upstream = DemoUpstream("secure", ssl_context=context).start()
    yield upstream
    upstream.stop()


def config(port: int, ca: trustme.CA, **service: Any) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": ca.cert_pem.bytes().decode()}],
        "services": [
            {
                "name": "secure",
                "url": f"https://127.0.0.1:{port}",
                "routes": [{"name": "r", "paths": ["/"]}],
                **service,
            }
        ],
    }


def test_verified_https_upstream(
    https_upstream: DemoUpstream, ca: trustme.CA, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(https_upstream.port, ca, tls_verify=True, ca_certificates=[CA_ID]))
    response = httpx.get(gateway.url + "/x")
    assert response.status_code == 200
    assert response.json()["service"] == "secure"


def test_unverifiable_upstream_certificate_is_a_502(
    https_upstream: DemoUpstream, ca: trustme.CA, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(https_upstream.port, ca, tls_verify=True))
    response = httpx.get(gateway.url + "/x")
    assert response.status_code == 502
    assert https_upstream.requests == 0


def test_tls_verify_off_is_kongs_default(
    https_upstream: DemoUpstream, ca: trustme.CA, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(https_upstream.port, ca))
    assert httpx.get(gateway.url + "/x").status_code == 200
