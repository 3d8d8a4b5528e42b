"""request-size-limiting: schema, and 413/417/411 answers before the upstream sees the body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from forecourt.plugins.request_size_limiting import RequestSizeLimitingConfig, RequestSizeLimitingPlugin
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


# ---------------------------------------------------------------------- schema
def test_defaults_are_kongs() -> None:
    config = RequestSizeLimitingConfig()
    assert config.allowed_payload_size == 128
    assert config.size_unit == "megabytes"
    assert config.require_content_length is False
    assert RequestSizeLimitingPlugin.priority == 951
    assert RequestSizeLimitingPlugin(config, None, None).limit == 128 * 1024 * 1024  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"size_unit": "gigabytes"},
            "plugins[0].config.size_unit: expected 'bytes', 'kilobytes' or 'megabytes'",
        ),
        ({"allowed_payload_size": -1}, "plugins[0].config.allowed_payload_size: must be at least 0"),
        ({"allowed_payload_size": "big"}, "plugins[0].config.allowed_payload_size: expected an integer"),
        (
            {"require_content_length": "yes please"},
            "plugins[0].config.require_content_length: expected a boolean",
        ),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    errors = config_errors("request-size-limiting", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


# ---------------------------------------------------------------------- over the wire
@pytest.fixture
def gateway(demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    def route(name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
        plugin = {"name": "request-size-limiting", "config": config}
        return {"name": name, "paths": [f"/{name}"], "plugins": [plugin], **extra}

    return gateway_factory(
        {
            "services": [
                {
                    "name": "svc",
                    "url": f"http://127.0.0.1:{demo_upstream.port}",
                    "routes": [
                        route("small", {"allowed_payload_size": 10, "size_unit": "bytes"}),
                        route("kb", {"allowed_payload_size": 1, "size_unit": "kilobytes"}),
                        route("strict", {"allowed_payload_size": 1, "require_content_length": True}),
                        route(
                            "streamed",
                            {"allowed_payload_size": 10, "size_unit": "bytes"},
                            request_buffering=False,
                        ),
                    ],
                }
            ]
        }
    )


def chunks(*parts: bytes) -> Iterator[bytes]:
    yield from parts  # a generator body: httpx sends it chunked, without Content-Length


def test_limits_by_content_length_and_by_received_chunked_body(
    gateway: GatewayProcess, demo_upstream: DemoUpstream
) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        exact = client.post("/small", content=b"0123456789")
        over = client.post("/small", content=b"0123456789a")
        chunked_ok = client.post("/small", content=chunks(b"01234", b"5678"))
        chunked_over = client.post("/small", content=chunks(b"012345", b"67890"))
        kb_ok = client.post("/kb", content=b"x" * 1024)
        kb_over = client.post("/kb", content=b"x" * 1025)
    assert exact.status_code == 200
    assert exact.json()["body"] == "0123456789"
    assert chunked_ok.json()["body"] == "012345678"
    assert kb_ok.status_code == 200
    for refused in (over, chunked_over, kb_over):
        assert refused.status_code == 413
        assert refused.json() == {
            "message": "Request size limit exceeded",
            "request_id": refused.headers["x-forecourt-request-id"],
        }
    assert demo_upstream.requests == 3


def test_expect_100_continue_gets_417(gateway: GatewayProcess, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.post("/small", content=b"x" * 100, headers={"Expect": "100-continue"})
    assert answer.status_code == 417
    assert answer.json()["message"] == "Request size limit exceeded"
    assert demo_upstream.requests == 0


def test_require_content_length(gateway: GatewayProcess, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        with_length = client.post("/strict", content=b"abc")
        without = client.post("/strict", content=chunks(b"abc"))
    assert with_length.status_code == 200
    assert without.status_code == 411
    assert without.json()["message"] == "A valid Content-Length header is required"
    assert demo_upstream.requests == 1


def test_streamed_route_refuses_a_declared_length_before_proxying(
    gateway: GatewayProcess, demo_upstream: DemoUpstream
) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        over = client.post("/streamed", content=b"0123456789a")
        ok = client.post("/streamed", content=b"0123")
    assert over.status_code == 413
    assert ok.json()["body"] == "0123"
    assert demo_upstream.requests == 1
