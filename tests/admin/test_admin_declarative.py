"""Config text out of `POST /config` bodies, Kong's error body, and secret redaction (table-driven)."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
import pytest

from forecourt.admin.declarative import BodyError, config_error_body, config_text
from forecourt.admin.views import REDACTED, redact, redact_document
from forecourt.config import ConfigError, ConfigIssue, parse_config

TEXT = "_format_version: '3.0'\nservices: []\n"
MULTIPART = (
    b'--XyZ\r\nContent-Disposition: form-data; name="config"; filename="kong.yml"\r\n'
    b"Content-Type: text/yaml\r\n\r\n" + TEXT.encode() + b"\r\n--XyZ--\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/yaml", TEXT.encode()),
        ("", TEXT.encode()),
        ("application/x-www-form-urlencoded", urlencode({"config": TEXT}).encode()),
        ("multipart/form-data; boundary=XyZ", MULTIPART),
        ("application/json", orjson.dumps({"config": TEXT})),
    ],
)
def test_config_text(content_type: str, body: bytes) -> None:
    assert config_text(content_type, body) == TEXT


def test_json_config_object() -> None:
    document = {"_format_version": "3.0", "services": []}
    assert orjson.loads(config_text("application/json", orjson.dumps({"config": document}))) == document
    raw = orjson.dumps(document)
    assert config_text("application/json; charset=utf-8", raw) == raw.decode()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/yaml", b"   \n"),
        ("text/yaml", b"\xff\xfe"),
        ("application/x-www-form-urlencoded", b"other=1"),
        ("multipart/form-data; boundary=XyZ", b"--XyZ--\r\n"),
    ],
)
def test_no_config_text(content_type: str, body: bytes) -> None:
    with pytest.raises(BodyError):
        config_text(content_type, body)


def test_error_body_nests_and_flattens() -> None:
    text = "services:\n  - name: a\n    host: h\n    port: 99999\n    routes:\n      - paths: [x]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "f.yaml")
    body = config_error_body(caught.value, text)
    assert body["code"] == 14
    assert body["fields"]["services"][0]["port"]
    assert body["fields"]["services"][0]["routes"][0]["paths"][0]
    service = next(e for e in body["flattened_errors"] if e["entity_type"] == "service")
    assert service["entity_name"] == "a"
    assert "routes" not in service["entity"]  # nested entities are entries of their own
    assert all(line.startswith("f.yaml:") for line in body["errors"])


def test_error_body_sparse_indexes_and_entity_messages() -> None:
    issues = [
        ConfigIssue("f", 3, "services[2].host", "bad host"),
        ConfigIssue("f", 2, "services[2]", "whole entity"),
        ConfigIssue("f", 1, "", "top level"),
    ]
    body = config_error_body(ConfigError(issues), "")
    assert body["fields"]["services"] == {"2": {"host": "bad host", "@entity": ["whole entity"]}}
    assert body["fields"]["@entity"] == ["top level"]
    (entry,) = body["flattened_errors"]
    assert [e["type"] for e in entry["errors"]] == ["field", "entity"]


def test_redaction() -> None:
    config = {
        "redis_password": "pw",
        "header_name": "apikey",
        "nested": {"client_secret": "s"},
        "token": None,
    }
    assert redact(config) == {
        "redis_password": REDACTED,
        "header_name": "apikey",
        "nested": {"client_secret": REDACTED},
        "token": None,
    }
    document = {
        "certificates": [{"cert": "C", "key": "K", "key_alt": "K2"}],
        "consumers": [
            {"username": "u", "keyauth_credentials": [{"key": "k"}], "jwt_secrets": [{"secret": "s"}]}
        ],
        "plugins": [{"name": "key-auth", "config": {"key_names": ["apikey"]}}],
    }
    redacted = redact_document(document)
    assert redacted["certificates"] == [{"cert": "C", "key": REDACTED, "key_alt": REDACTED}]
    consumer = redacted["consumers"][0]
    assert consumer["keyauth_credentials"] == [{"key": REDACTED}]
    assert consumer["jwt_secrets"] == [{"secret": REDACTED}]
    assert redacted["plugins"] == document["plugins"]
