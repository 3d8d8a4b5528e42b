"""A custom plugin loaded by dotted path runs in access and response phases, over real sockets."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLES), *sys.path]))


def test_custom_plugin_by_dotted_path(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    config = {
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{demo_upstream.port}",
                "routes": [{"name": "r", "paths": ["/"]}],
                "plugins": [
                    {
                        "name": "request_stamp:RequestStamp",
                        "config": {"header": "X-Stamp", "value": "v1", "deny_header": "X-Forbidden"},
                    }
                ],
            }
        ]
    }
    gateway = gateway_factory(config)
    with httpx.Client(base_url=gateway.url) as client:
        ok = client.get("/hello")
        assert ok.status_code == 200
        assert ok.json()["headers"]["x-stamp"] == "v1"  # access phase changed the upstream request
        assert ok.headers["x-stamp"] == "v1"  # response phase changed the response
        denied = client.get("/hello", headers={"X-Forbidden": "1"})
        assert denied.status_code == 403
        assert denied.json()["message"] == "X-Forbidden is not allowed"
        assert denied.json()["request_id"] == denied.headers["x-forecourt-request-id"]
        assert denied.headers["x-stamp"] == "v1"  # response phase runs for plugin-made answers too
    before = demo_upstream.requests
    assert before == 1


def test_unknown_plugin_is_a_config_error(tmp_path: Path) -> None:
    from forecourt.cli import main

    path = tmp_path / "gw.yaml"
    path.write_text("services:\n- name: s\n  url: http://127.0.0.1:1\n  plugins:\n  - name: no-such-plugin\n")
    assert main(["check", str(path)]) == 1
