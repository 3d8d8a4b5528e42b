"""request-transformer: schema, and the upstream request after remove/rename/replace/add/append."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from forecourt.plugins.request_transformer import (
    RequestTransformerConfig,
    RequestTransformerPlugin,
    encode_query,
    split_pair,
)
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


# ---------------------------------------------------------------------- schema
def test_defaults_are_empty_rule_lists() -> None:
    config = RequestTransformerConfig()
    assert config.http_method is None
    for operation in (config.remove, config.rename, config.replace, config.add, config.append):
        assert (operation.body, operation.headers, operation.querystring) == ([], [], [])
    assert config.replace.uri is None
    assert RequestTransformerPlugin.priority == 801


def test_pairs_split_like_kong() -> None:
    assert split_pair("X-Url:http://a.example") == ("X-Url", "http://a.example")
    assert split_pair("a::b") == ("a", "b")
    assert split_pair("name:") == ("name", "")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"add": {"headers": ["X-A:1", "X-B"]}},
            "plugins[0].config.add.headers[1]: 'X-B' is not a name:value pair",
        ),
        ({"add": {"headers": ["X B:1"]}}, "plugins[0].config.add.headers[0]: 'X B' is not a valid header"),
        (
            {"remove": {"headers": ["X(A)"]}},
            "plugins[0].config.remove.headers[0]: 'X(A)' is not a valid header",
        ),
        (
            {"rename": {"headers": ["X-A:X B"]}},
            "plugins[0].config.rename.headers[0]: 'X B' is not a valid header",
        ),
        (
            {"replace": {"headers": ["Host:example.com"]}},
            "plugins[0].config.replace.headers[0]: 'Host' is set by the proxy itself",
        ),
        (
            {"add": {"querystring": ["a"]}},
            "plugins[0].config.add.querystring[0]: 'a' is not a name:value pair",
        ),
        (
            {"add": {"body": ["a:$(cookies.x)"]}},
            "plugins[0].config.add.body[0]: unsupported template expression $(cookies.x): "
            "unknown name 'cookies'",
        ),
        (
            {"replace": {"uri": "/a/$(uri_captures.id"}},
            "plugins[0].config.replace.uri: unterminated template",
        ),
        ({"http_method": "post"}, "plugins[0].config.http_method: invalid value: post"),
        ({"add": {"cookies": []}}, 'plugins[0].config.add.cookies: unknown field "cookies"'),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    errors = config_errors("request-transformer", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_query_encoding() -> None:
    assert encode_query([("a", "1 2"), ("flag", None), ("é", "x&y=z")]) == "a=1%202&flag&%C3%A9=x%26y%3Dz"


# ---------------------------------------------------------------------- over the wire
def _route(name: str, paths: list[str], config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "paths": paths, "plugins": [{"name": "request-transformer", "config": config}]}


@pytest.fixture
def gateway(demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_factory(
        {
            "services": [
                {
                    "name": "svc",
                    "url": f"http://127.0.0.1:{demo_upstream.port}",
                    "routes": [
                        _route(
                            "users",
                            [r"~/users/(?<user_id>\d+)$"],
                            {
                                "remove": {"headers": ["X-Remove"], "querystring": ["drop"]},
                                "rename": {"headers": ["X-Old:X-New"], "querystring": ["old:new"]},
                                "replace": {
                                    "headers": ["X-Replace:replaced-$(query_params.page)", "X-Absent:no"],
                                    "querystring": ["page:9"],
                                },
                                "add": {
                                    "headers": [
                                        "X-User-Id:$(uri_captures.user_id)",
                                        "X-Existing:not-used",
                                        "X-From:$(headers.x_source or 'none')",
                                    ],
                                    "querystring": ["added:1", "page:nope"],
                                },
                                "append": {"headers": ["X-Multi:two"], "querystring": ["multi:b"]},
                            },
                        ),
                        _route(
                            "body",
                            ["/body"],
                            {
                                "remove": {"body": ["secret"]},
                                "rename": {"body": ["old:new"]},
                                "replace": {"body": ["status:replaced"]},
                                "add": {"body": ["added:$(headers.x_user)", "status:no"]},
                                "append": {"body": ["tags:b"]},
                            },
                        ),
                        _route("method", ["/method"], {"http_method": "GET"}),
                        _route(
                            "uri",
                            [r"~/items/(?<id>\w+)$"],
                            {
                                "replace": {"uri": "/v2/items/$(uri_captures.id)"},
                                "add": {"querystring": ["v:2"]},
                            },
                        ),
                    ],
                }
            ]
        }
    )


def test_headers_and_query_in_kongs_order(gateway: GatewayProcess) -> None:
    headers = {
        "X-Remove": "r",
        "X-Old": "o",
        "X-Replace": "original",
        "X-Existing": "mine",
        "X-Source": "src",
        "X-Multi": "one",
    }
    with httpx.Client(base_url=gateway.url) as client:
        seen = client.get("/users/42?page=3&drop=1&old=o&multi=a", headers=headers).json()
        bare = client.get("/users/7").json()
    got = seen["headers"]
    assert "x-remove" not in got
    assert "x-old" not in got
    assert got["x-new"] == "o"
    assert got["x-replace"] == "replaced-3"  # templates read the request as it came in
    assert "x-absent" not in got  # replace only touches headers that are there
    assert got["x-user-id"] == "42"
    assert got["x-existing"] == "mine"  # add never overwrites
    assert got["x-from"] == "src"
    assert got["x-multi"] == "two"  # appended after the client's (the echo shows the last one)
    assert seen["query"] == "page=9&new=o&multi=a&added=1&multi=b"
    assert bare["query"] == "added=1&page=nope&multi=b"
    assert bare["headers"]["x-from"] == "none"


def test_json_and_form_bodies(gateway: GatewayProcess) -> None:
    document = {"secret": 1, "old": "o", "status": "s", "tags": "a", "flag": False}
    with httpx.Client(base_url=gateway.url) as client:
        as_json = client.post("/body", json=document, headers={"X-User": "alice"}).json()
        as_form = client.post(
            "/body",
            content=b"secret=1&old=o&status=s",
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-User": "alice"},
        ).json()
        empty_json = client.post("/body", content=b"", headers={"Content-Type": "application/json"}).json()
        other = client.post("/body", content=b"secret=1", headers={"Content-Type": "text/plain"}).json()
    assert orjson.loads(as_json["body"]) == {
        "new": "o",
        "status": "replaced",
        "tags": ["a", "b"],
        "flag": False,
        "added": "alice",
    }
    assert as_json["headers"]["content-length"] == str(len(as_json["body"]))
    assert as_form["body"] == "new=o&status=replaced&added=alice&tags=b"
    assert orjson.loads(empty_json["body"]) == {"added": "", "status": "no", "tags": ["b"]}
    assert other["body"] == "secret=1"  # neither JSON nor a form: untouched


def test_http_method_moves_form_arguments_into_the_query(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        seen = client.post(
            "/method?x=1", content=b"a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ).json()
    assert seen["method"] == "GET"
    assert seen["query"] == "x=1&a=1&b=2"


def test_replace_uri(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        seen = client.get("/items/abc?q=1").json()
    assert seen["path"] == "/v2/items/abc"
    assert seen["query"] == "q=1&v=2"
