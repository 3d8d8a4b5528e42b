"""compression: schema, Accept-Encoding negotiation, and compressed streams decoded on the client."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any

import brotli  # type: ignore[import-untyped]
import httpx
import orjson
import pytest
import zstandard

from forecourt.plugins.compression import (
    DEFAULT_TYPES,
    BrotliCompressor,
    CompressionConfig,
    CompressionPlugin,
    GzipCompressor,
    ZstdCompressor,
    choose_encoding,
    parse_accept_encoding,
)
from tests.plugins.offloading_helpers import config_errors, response, scripted
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import RecordingUpstream

BIG = orjson.dumps({"items": [{"id": i, "name": f"item number {i}", "tags": ["a", "b"]} for i in range(60)]})
SMALL = b'{"ok":true}'
ALGORITHMS = ("zstd", "br", "gzip")


def decode(encoding: str | None, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "br":
        return bytes(brotli.decompress(data))
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert encoding is None
    return data


# ---------------------------------------------------------------------- schema
def test_defaults() -> None:
    config = CompressionConfig()
    assert config.algorithms == ["zstd", "br", "gzip"]
    assert (config.level.gzip, config.level.br, config.level.zstd) == (6, 4, 3)
    assert config.min_size == 860
    assert config.types == DEFAULT_TYPES
    assert CompressionPlugin.priority < 100  # after response-transformer and proxy-cache
    assert len(BIG) > 2000


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"algorithms": ["gzip", "deflate"]},
            "plugins[0].config.algorithms[1]: expected 'zstd', 'br' or 'gzip'",
        ),
        ({"algorithms": []}, "plugins[0].config.algorithms: "),
        ({"algorithms": ["gzip", "gzip"]}, "plugins[0].config.algorithms: algorithms must not repeat"),
        ({"level": {"gzip": 10}}, "plugins[0].config.level.gzip: must be at most 9"),
        ({"level": {"br": -1}}, "plugins[0].config.level.br: must be at least 0"),
        ({"min_size": -5}, "plugins[0].config.min_size: must be at least 0"),
        ({"types": ["json"]}, "plugins[0].config.types: 'json' is not a media type"),
        ({"level": 5}, "plugins[0].config.level: "),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    errors = config_errors("compression", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


# ---------------------------------------------------------------------- negotiation and codecs
@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate, br, zstd", "zstd"),  # all equal: the configured preference
        ("gzip;q=0.5, br;q=0.8", "br"),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0", None),
        ("*", "zstd"),
        ("*;q=0.5, gzip", "gzip"),
        ("zstd;q=0, *", "br"),
        ("identity", None),
        ("identity;q=1, gzip;q=0.5", None),
        ("identity;q=0.1, gzip;q=0.5", "gzip"),
        ("deflate", None),
        ("GZIP ; Q=0.9", "gzip"),
        ("gzip;q=nonsense, br;q=0.1", "br"),
        ("", None),
    ],
)
def test_choose_encoding(accept: str, chosen: str | None) -> None:
    assert choose_encoding(accept, ALGORITHMS) == chosen


def test_parse_accept_encoding() -> None:
    assert parse_accept_encoding("gzip;q=0.5, br, *;q=0") == {"gzip": 0.5, "br": 1.0, "*": 0.0}


@pytest.mark.parametrize(
    ("compressor", "encoding"),
    [(GzipCompressor(6), "gzip"), (BrotliCompressor(4), "br"), (ZstdCompressor(3), "zstd")],
)
def test_streaming_compressors_round_trip(compressor: Any, encoding: str) -> None:
    pieces = [BIG[i : i + 500] for i in range(0, len(BIG), 500)]
    out = [compressor.feed(p) for p in pieces[:-1]]
    assert all(out)  # every piece produced output: streams keep flowing
    out.append(compressor.end(pieces[-1]))
    assert decode(encoding, b"".join(out)) == BIG


# ---------------------------------------------------------------------- over the wire
@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream(
        scripted(
            {
                "big": response(BIG, ETag='"v1"', Accept_Ranges="bytes"),
                "small": response(SMALL),
                "chunked-big": response(BIG, chunked=True),
                "chunked-small": response(SMALL, chunked=True),
                "gzipped": response(gzip.compress(BIG), Content_Encoding="gzip"),
                "image": response(BIG, content_type="image/png"),
                "notransform": response(BIG, Cache_Control="public, no-transform"),
                "vary": response(BIG, content_type="text/html; charset=utf-8", Vary="Origin"),
                "problem": response(BIG, content_type="application/problem+json"),
            }
        )
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One gateway for the module: these tests only read responses."""
    service = {
        "name": "svc",
        "url": f"http://127.0.0.1:{upstream.port}",
        "routes": [
            {"name": "default", "paths": ["/"], "plugins": [{"name": "compression"}]},
            {
                "name": "gzip-only",
                "paths": ["/gzip-only"],
                "plugins": [
                    {
                        "name": "compression",
                        "config": {"algorithms": ["gzip"], "min_size": 0, "level": {"gzip": 1}},
                    }
                ],
            },
            {
                "name": "transformed",
                "paths": ["/transformed"],
                "plugins": [
                    {"name": "compression"},
                    {"name": "response-transformer", "config": {"add": {"json": ["extra:yes"]}}},
                ],
            },
        ],
    }
    gateway = GatewayProcess({"services": [service]}, tmp_path_factory.mktemp("gw")).start()
    yield gateway
    gateway.stop()


def fetch(
    client: httpx.Client, path: str, accept: str | None, method: str = "GET"
) -> tuple[httpx.Response, bytes]:
    """The response and its raw (still encoded) body."""
    headers = {"Accept-Encoding": accept} if accept is not None else {"Accept-Encoding": ""}
    with client.stream(method, path, headers=headers) as answer:
        raw = b"".join(answer.iter_raw())
    return answer, raw


@pytest.mark.parametrize("path", ["/big", "/chunked-big"])
@pytest.mark.parametrize(
    ("accept", "encoding"),
    [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=0.2, br;q=0.9, zstd;q=0.5", "br"),
        ("identity", None),
    ],
)
def test_bodies_are_compressed_as_negotiated(
    gateway: GatewayProcess, path: str, accept: str, encoding: str | None
) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        answer, raw = fetch(client, path, accept)
    assert answer.status_code == 200
    assert answer.headers.get("content-encoding") == encoding
    assert answer.headers["vary"] == "Accept-Encoding"
    assert decode(encoding, raw) == BIG
    if encoding is not None:
        assert len(raw) < len(BIG) // 2
        assert "content-length" not in answer.headers


def test_small_bodies_are_sent_as_they_are(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        small, small_raw = fetch(client, "/small", "gzip")
        chunked, chunked_raw = fetch(client, "/chunked-small", "gzip")
        forced, forced_raw = fetch(client, "/gzip-only/small", "gzip, br")
    for answer, raw in ((small, small_raw), (chunked, chunked_raw)):
        assert "content-encoding" not in answer.headers
        assert answer.headers["vary"] == "Accept-Encoding"  # it would be compressed if it were larger
        assert raw == SMALL
    assert forced.headers["content-encoding"] == "gzip"  # min_size 0, gzip only
    assert gzip.decompress(forced_raw) == SMALL


def test_never_compressed(gateway: GatewayProcess, upstream: RecordingUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        already, already_raw = fetch(client, "/gzipped", "gzip, br, zstd")
        image, image_raw = fetch(client, "/image", "gzip")
        no_transform, no_transform_raw = fetch(client, "/notransform", "gzip")
        head, head_raw = fetch(client, "/big", "gzip", method="HEAD")
        without_accept, without_raw = fetch(client, "/big", None)
    assert already.headers["content-encoding"] == "gzip"
    assert gzip.decompress(already_raw) == BIG  # exactly the upstream's stream: not compressed twice
    assert already_raw == zlib.decompress(zlib.compress(already_raw))
    assert "vary" not in already.headers
    for answer, raw in ((image, image_raw), (no_transform, no_transform_raw)):
        assert "content-encoding" not in answer.headers
        assert raw == BIG
    assert "content-encoding" not in head.headers
    assert head_raw == b""
    assert "content-encoding" not in without_accept.headers
    assert without_accept.headers["vary"] == "Accept-Encoding"
    assert without_raw == BIG


def test_headers_of_compressed_responses(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        big, _ = fetch(client, "/big", "gzip")
        vary, vary_raw = fetch(client, "/vary", "br")
        problem, problem_raw = fetch(client, "/problem", "zstd")
    assert big.headers["etag"] == 'W/"v1"'
    assert "accept-ranges" not in big.headers
    assert vary.headers.get_list("vary") == ["Origin", "Accept-Encoding"]
    assert brotli.decompress(vary_raw) == BIG
    assert problem.headers["content-encoding"] == "zstd"  # application/*+json
    assert decode("zstd", problem_raw) == BIG


def test_compresses_what_response_transformer_produced(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        answer, raw = fetch(client, "/transformed/big", "gzip")
    assert answer.headers["content-encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(raw)) == {**orjson.loads(BIG), "extra": "yes"}
