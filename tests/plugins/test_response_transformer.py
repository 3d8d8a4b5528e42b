"""response-transformer: schema, header and JSON body changes on the wire."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from forecourt.plugins.response_transformer import (
    ResponseTransformerConfig,
    ResponseTransformerPlugin,
    cast_json,
    is_json_content_type,
)
from tests.plugins.offloading_helpers import config_errors, response, scripted
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import RecordingUpstream

DOCUMENT = {"drop": 1, "old": "o", "keep": "k", "count": 1, "list": "a", "off": False}
RULES = {
    "remove": {"headers": ["X-Drop"], "json": ["drop"]},
    "rename": {"headers": ["X-Old:X-New"], "json": ["old:new"]},
    "replace": {"headers": ["X-Keep:replaced"], "json": ["keep:2", "absent:x"], "json_types": ["number"]},
    "add": {
        "headers": ["X-Added:$(headers.x_user)", "X-Keep:no"],
        "json": ["flag:true", "keep:no", "off:yes"],
        "json_types": ["boolean"],
    },
    "append": {"headers": ["X-Multi:b"], "json": ["list:b"]},
}
EXPECTED = {"new": "o", "keep": 2, "count": 1, "list": ["a", "b"], "off": "yes", "flag": True}


# ---------------------------------------------------------------------- schema
def test_defaults_are_empty_rule_lists() -> None:
    config = ResponseTransformerConfig()
    assert (config.remove.headers, config.remove.json_) == ([], [])
    assert (config.add.headers, config.add.json_, config.add.json_types) == ([], [], [])
    assert ResponseTransformerPlugin.priority == 800
    assert config_errors("response-transformer", RULES) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"add": {"json_types": ["integer"]}},
            "plugins[0].config.add.json_types[0]: expected 'boolean', 'number' or 'string'",
        ),
        ({"add": {"json": ["a:1", "b"]}}, "plugins[0].config.add.json[1]: 'b' is not a name:value pair"),
        (
            {"append": {"headers": ["X Y:1"]}},
            "plugins[0].config.append.headers[0]: 'X Y' is not a valid header",
        ),
        (
            {"add": {"headers": ["Transfer-Encoding:identity"]}},
            "plugins[0].config.add.headers[0]: 'Transfer-Encoding' frames the response",
        ),
        (
            {"remove": {"json_types": ["string"]}},
            'plugins[0].config.remove.json_types: unknown field "json_types"',
        ),
        ({"add": {"querystring": ["a:1"]}}, 'plugins[0].config.add.querystring: unknown field "querystring"'),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    errors = config_errors("response-transformer", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_json_casts_and_types() -> None:
    assert cast_json("12", "number") == 12
    assert cast_json("1.5", "number") == 1.5
    assert cast_json("x", "number") is None
    assert cast_json("true", "boolean") is True
    assert cast_json("yes", "boolean") is False
    assert cast_json("1", "string") == "1"
    assert is_json_content_type(b"application/json; charset=utf-8")
    assert is_json_content_type(b"application/problem+json")
    assert not is_json_content_type(b"text/json-ish")


# ---------------------------------------------------------------------- over the wire
@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    body = orjson.dumps(DOCUMENT)
    extra = {"X_Drop": "d", "X_Old": "o", "X_Keep": "k", "X_Multi": "a"}
    server = RecordingUpstream(
        scripted(
            {
                "json": response(body, **extra),
                "chunked": response(body, chunked=True, **extra),
                "text": response(b"plain text", content_type="text/plain", **extra),
                "gzipped": response(gzip.compress(body), Content_Encoding="gzip", **extra),
                "array": response(b"[1,2]", **extra),
            }
        )
    ).start()
    yield server
    server.stop()


@pytest.fixture
def gateway(upstream: RecordingUpstream, gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    service = {
        "name": "svc",
        "url": f"http://127.0.0.1:{upstream.port}",
        "routes": [
            {"name": "all", "paths": ["/"], "plugins": [{"name": "response-transformer", "config": RULES}]},
            {
                "name": "headers-only",
                "paths": ["/headers-only"],
                "strip_path": True,
                "plugins": [{"name": "response-transformer", "config": {"remove": {"headers": ["X-Drop"]}}}],
            },
        ],
    }
    return gateway_factory({"services": [service]})


def _check_headers(answer: httpx.Response) -> None:
    assert "x-drop" not in answer.headers
    assert "x-old" not in answer.headers
    assert answer.headers["x-new"] == "o"
    assert answer.headers["x-keep"] == "replaced"
    assert answer.headers["x-added"] == "alice"
    assert answer.headers.get_list("x-multi") == ["a", "b"]


def test_headers_and_json_body(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url, headers={"X-User": "alice"}) as client:
        with_length = client.get("/json")
        chunked = client.get("/chunked")
    for answer in (with_length, chunked):
        _check_headers(answer)
        assert answer.json() == EXPECTED
        assert "content-length" not in answer.headers or int(answer.headers["content-length"]) == len(
            answer.content
        )


def test_other_bodies_pass_unchanged(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url, headers={"X-User": "alice"}) as client:
        text = client.get("/text")
        encoded = client.get("/gzipped", headers={"Accept-Encoding": "gzip"})
        array = client.get("/array")
        headers_only = client.get("/headers-only/json")
    _check_headers(text)
    assert text.text == "plain text"
    assert encoded.headers["content-encoding"] == "gzip"
    assert encoded.json() == DOCUMENT  # decoded by httpx: the gateway left the gzip stream alone
    assert array.json() == [1, 2]
    assert "x-drop" not in headers_only.headers
    assert headers_only.json() == DOCUMENT
    assert headers_only.headers["content-length"] == str(len(orjson.dumps(DOCUMENT)))  # no body filter
