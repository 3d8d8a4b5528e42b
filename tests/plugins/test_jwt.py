"""`jwt`: schema (defaults, bad values) and behaviour over real sockets.

# Exact expected messages read best on one line each.
# ruff: noqa: E501

One gateway process (module scope) serves every route of the behaviour tests; tokens are made
here with PyJWT, keys with `cryptography`, and a JWKS is served by a small HTTP server on
127.0.0.1 whose answers the tests change (rotation, outage).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from forecourt.config import ConfigError, parse_config
from forecourt.pipeline import PluginRegistry
from forecourt.plugins.jwt import JwtConfig
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream

HS_SECRET = "hs-secret-for-tests-" + "0123456789abcdef" * 4
RAW_B64_SECRET = b"\x00\x01binary-secret\xff" + bytes(range(32))


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


WRONG_SECRET = "wrong-secret-" + "x" * 64
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
}
ED_KEY = ed25519.Ed25519PrivateKey.generate()
JWKS_KEYS = {"kid-1": ec.generate_private_key(ec.SECP256R1()), "kid-2": rsa.generate_private_key(65537, 2048)}


def token(key: Any, alg: str = "HS256", headers: dict[str, Any] | None = None, **claims: Any) -> str:
    claims.setdefault("iss", "hs-issuer")
    return pyjwt.encode(claims, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand (what PyJWT refuses to make: alg none, HS with a public key)."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def hs_signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An HS256 token signed by hand (PyJWT refuses some claims this test needs)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(HS_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


# --- a JWKS endpoint on 127.0.0.1 ------------------------------------------------------------------


class JwksServer:
    """Serves `document` at /jwks.json; `down` makes it answer 503; counts the requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.down = False
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = b'{"error":"down"}' if server.down else json.dumps(server.document).encode()
                self.send_response(503 if server.down else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def publish(self, *kids: str) -> None:
        keys = []
        for kid in kids:
            private = JWKS_KEYS[kid]
            algorithm = ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) else RSAAlgorithm
            jwk = json.loads(algorithm.to_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        self.document = {"keys": keys}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish("kid-1")
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    demo = DemoUpstream("upstream").start()
    yield demo
    demo.stop()


def route(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "paths": [f"/{name}"], "plugins": [{"name": "jwt", "config": config or {}}]}


@pytest.fixture(scope="module")
def gateway(
    upstream: DemoUpstream, jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": [
                    route("seed", {"claims_to_verify": ["exp", "iss"]}),
                    route("plain"),
                    route("nbf", {"claims_to_verify": ["nbf"], "leeway": 5}),
                    route("maxexp", {"claims_to_verify": ["exp"], "maximum_expiration": 60}),
                    route("aud", {"audiences": ["api://orders"]}),
                    route("anon", {"anonymous": "anon"}),
                    route("b64", {"secret_is_base64": True}),
                    route(
                        "where", {"cookie_names": ["tok"], "header_names": ["x-token"], "uri_param_names": []}
                    ),
                    route("kid", {"key_claim_name": "kid"}),
                    route("jwks", {"claims_to_verify": ["exp"], "jwks_min_refresh_interval": 0}),
                    route("preflight", {"run_on_preflight": False, "realm": "orders"}),
                ],
            }
        ],
        "consumers": [
            {
                "username": "alice",
                "custom_id": "c-alice",
                "jwt_secrets": [
                    {"key": "hs-issuer", "secret": HS_SECRET},
                    {"key": "hs512-issuer", "algorithm": "HS512", "secret": HS_SECRET},
                    {"key": "b64-issuer", "secret": base64.b64encode(RAW_B64_SECRET).decode()},
                ],
            },
            {
                "username": "bob",
                "jwt_secrets": [
                    {
                        "key": "rsa-issuer",
                        "algorithm": "RS256",
                        "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
                        "rsa_public_key": _pem(RSA_KEY),
                    }
                ],
            },
            {
                "custom_id": "carol-only-custom",
                "jwt_secrets": [
                    {"key": f"{alg.lower()}-issuer", "algorithm": alg, "rsa_public_key": _pem(key)}
                    for alg, key in EC_KEYS.items()
                ]
                + [{"key": "ed-issuer", "algorithm": "EdDSA", "rsa_public_key": _pem(ED_KEY)}],
            },
            {"username": "erin", "jwt_secrets": [{"key": "https://idp.test/", "jwks_uri": jwks.url}]},
            {"username": "anon"},
        ],
    }
    workdir = tmp_path_factory.mktemp("jwt-gateway")
    process = GatewayProcess(config, workdir).start()
    yield process
    process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url) as http:
        yield http


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def later(seconds: int = 300) -> int:
    return int(time.time()) + seconds


# --- schema ---------------------------------------------------------------------------------------


def test_defaults_are_kongs() -> None:
    config = JwtConfig()
    assert config.uri_param_names == ("jwt",)
    assert config.cookie_names == ()
    assert config.header_names == ("authorization",)
    assert config.key_claim_name == "iss"
    assert config.secret_is_base64 is False
    assert config.claims_to_verify == ()
    assert config.anonymous is None
    assert config.run_on_preflight is True
    assert config.maximum_expiration == 0
    assert config.realm is None
    assert (config.leeway, config.audiences, config.authenticated_groups_claim) == (0, (), None)


def test_seed_snippet_loads_unchanged() -> None:
    text = "plugins:\n- name: jwt\n  config:\n    claims_to_verify: [exp, iss]\n"
    config = parse_config(text, "gw.yaml", PluginRegistry())
    assert config.plugins[0].config.claims_to_verify == ("exp", "iss")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"claims_to_verify": ["aud"]},
            "plugins[0].config.claims_to_verify[0]: expected 'exp', 'nbf' or 'iss'",
        ),
        ({"maximum_expiration": 31536001}, "plugins[0].config.maximum_expiration: must be at most 31536000"),
        (
            {"maximum_expiration": 60},
            'plugins[0].config: claims_to_verify must contain "exp" when maximum_expiration is set',
        ),
        ({"leeway": 301}, "plugins[0].config.leeway: must be at most 300"),
        ({"run_on_preflight": "yes"}, "plugins[0].config.run_on_preflight: expected a boolean, got 'yes'"),
        (
            {"header_names": ["bad header"]},
            'plugins[0].config.header_names[0]: invalid header name "bad header"',
        ),
        ({"key_claims_name": "iss"}, 'plugins[0].config.key_claims_name: unknown field "key_claims_name"'),
        ({"anonymous": "nobody"}, 'plugins[0].config: anonymous consumer "nobody" not found'),
    ],
)
def test_bad_config_is_a_clear_error(config: dict[str, Any], expected: str, tmp_path: Path) -> None:
    from forecourt.gateway import check_files

    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps({"plugins": [{"name": "jwt", "config": config}]}))
    messages = _check_messages(path)
    assert any(expected in message for message in messages), messages
    assert check_files([str(path)]) == 1


def _check_messages(path: Path) -> list[str]:
    from forecourt.plan.build import PlanBuilder

    builder = PlanBuilder()
    try:
        builder.validate(parse_config(path.read_text(), str(path), builder.registry))
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def test_jwt_cannot_be_scoped_to_a_consumer() -> None:
    text = "consumers:\n- username: a\n  plugins:\n  - name: jwt\n"
    from forecourt.plan.build import PlanBuilder

    builder = PlanBuilder()
    with pytest.raises(ConfigError, match="cannot be applied to a consumer"):
        builder.validate(parse_config(text, "gw.yaml", builder.registry))


def test_config_model_rejects_numeric_strings() -> None:
    with pytest.raises(ValidationError):
        JwtConfig.model_validate({"maximum_expiration": "60", "claims_to_verify": ["exp"]})


# --- behaviour: accepted tokens, consumer headers upstream ------------------------------------------


def test_hs256_token_reaches_upstream_with_consumer_headers(client: httpx.Client) -> None:
    answer = client.get("/seed", headers=bearer(token(HS_SECRET, exp=later())))
    assert answer.status_code == 200, answer.text
    headers = answer.json()["headers"]
    assert headers["x-consumer-username"] == "alice"
    assert headers["x-consumer-custom-id"] == "c-alice"
    assert len(headers["x-consumer-id"]) == 36  # a stable UUID, as Kong sends
    assert headers["x-credential-identifier"] == "hs-issuer"
    assert "x-anonymous-consumer" not in headers


def test_spoofed_consumer_headers_are_replaced(client: httpx.Client) -> None:
    spoof = {"X-Consumer-Username": "root", "X-Anonymous-Consumer": "true", "X-Credential-Identifier": "x"}
    answer = client.get("/plain", headers={**bearer(token(HS_SECRET)), **spoof})
    headers = answer.json()["headers"]
    assert headers["x-consumer-username"] == "alice"
    assert headers["x-credential-identifier"] == "hs-issuer"
    assert "x-anonymous-consumer" not in headers


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_family(client: httpx.Client, alg: str) -> None:
    answer = client.get("/plain", headers=bearer(token(RSA_KEY, alg, iss="rsa-issuer")))
    assert answer.status_code == 200, answer.text
    assert answer.json()["headers"]["x-consumer-username"] == "bob"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ec_family(client: httpx.Client, alg: str) -> None:
    answer = client.get("/plain", headers=bearer(token(EC_KEYS[alg], alg, iss=f"{alg.lower()}-issuer")))
    assert answer.status_code == 200, answer.text
    headers = answer.json()["headers"]
    assert headers["x-consumer-custom-id"] == "carol-only-custom"
    assert "x-consumer-username" not in headers


def test_eddsa_and_hs512(client: httpx.Client) -> None:
    assert client.get("/plain", headers=bearer(token(ED_KEY, "EdDSA", iss="ed-issuer"))).status_code == 200
    assert (
        client.get("/plain", headers=bearer(token(HS_SECRET, "HS512", iss="hs512-issuer"))).status_code == 200
    )


def test_token_in_query_by_default(client: httpx.Client) -> None:
    assert client.get("/plain", params={"jwt": token(HS_SECRET)}).status_code == 200


def test_token_in_cookie_and_custom_header(client: httpx.Client) -> None:
    assert client.get("/where", headers={"Cookie": f"a=b; tok={token(HS_SECRET)}"}).status_code == 200
    assert client.get("/where", headers={"X-Token": f"bearer {token(HS_SECRET)}"}).status_code == 200
    # Authorization is not among this route's header_names, nor jwt among its query parameters.
    assert client.get("/where", headers=bearer(token(HS_SECRET))).status_code == 401
    assert client.get("/where", params={"jwt": token(HS_SECRET)}).status_code == 401


def test_key_claim_from_the_token_header(client: httpx.Client) -> None:
    good = pyjwt.encode({"sub": "x"}, HS_SECRET, algorithm="HS256", headers={"kid": "hs-issuer"})
    assert client.get("/kid", headers=bearer(good)).status_code == 200


def test_secret_is_base64(client: httpx.Client) -> None:
    good = token(RAW_B64_SECRET, iss="b64-issuer")
    assert client.get("/b64", headers=bearer(good)).status_code == 200
    as_text = token(base64.b64encode(RAW_B64_SECRET), iss="b64-issuer")
    assert client.get("/b64", headers=bearer(as_text)).json()["message"] == "Invalid signature"


# --- behaviour: Kong's 401s ------------------------------------------------------------------------


def _refused(answer: httpx.Response, message: str) -> None:
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["message"] == message
    assert body["request_id"] == answer.headers["x-forecourt-request-id"]


def test_no_token(client: httpx.Client) -> None:
    answer = client.get("/plain")
    _refused(answer, "Unauthorized")
    assert answer.headers["www-authenticate"] == "Bearer"


def test_kong_messages(client: httpx.Client) -> None:
    cases = [
        ("not-a-token", "Bad token; invalid JSON"),
        (pyjwt.encode({"sub": "x"}, HS_SECRET), "No mandatory 'iss' in claims"),
        (token(HS_SECRET, iss=""), "Invalid 'iss' in claims"),
        (token(HS_SECRET, iss="nobody"), "No credentials found for given 'iss'"),
        (token(WRONG_SECRET), "Invalid signature"),
        (token(HS_SECRET, "HS384"), "Invalid algorithm"),
    ]
    for value, message in cases:
        answer = client.get("/plain", headers=bearer(value))
        _refused(answer, message)
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_multiple_tokens(client: httpx.Client) -> None:
    answer = client.get(
        "/plain", params={"jwt": token(HS_SECRET, n=1)}, headers=bearer(token(HS_SECRET, n=2))
    )
    _refused(answer, "Multiple tokens provided")
    same = token(HS_SECRET)
    assert client.get("/plain", params={"jwt": same}, headers=bearer(same)).status_code == 200


def test_alg_none_is_refused(client: httpx.Client) -> None:
    answer = client.get("/plain", headers=bearer(forged({"alg": "none", "typ": "JWT"}, {"iss": "hs-issuer"})))
    _refused(answer, "Bad token; invalid alg")


def test_hs_rs_key_confusion_is_refused(client: httpx.Client) -> None:
    """An HS256 token 'signed' with the RSA credential's public key as the HMAC secret."""
    header, claims = {"alg": "HS256", "typ": "JWT"}, {"iss": "rsa-issuer"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
    for secret in (_pem(RSA_KEY).encode(), _pem(RSA_KEY).strip().encode()):
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        answer = client.get("/plain", headers=bearer(signing_input.decode() + "." + b64(mac)))
        _refused(answer, "Invalid algorithm")


def test_token_signed_by_another_rsa_key(client: httpx.Client) -> None:
    answer = client.get("/plain", headers=bearer(token(OTHER_RSA_KEY, "RS256", iss="rsa-issuer")))
    _refused(answer, "Invalid signature")


def test_registered_claims(client: httpx.Client) -> None:
    expired = client.get("/seed", headers=bearer(token(HS_SECRET, exp=int(time.time()) - 10)))
    assert expired.status_code == 401
    assert expired.json() == {"exp": "token expired"}
    assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    missing = client.get("/seed", headers=bearer(token(HS_SECRET)))
    assert missing.json() == {"exp": "must be a number"}
    numeric_string = client.get("/seed", headers=bearer(token(HS_SECRET, exp=str(later()))))
    assert numeric_string.json() == {"exp": "must be a number"}
    boolean = client.get("/seed", headers=bearer(token(HS_SECRET, exp=True)))
    assert boolean.json() == {"exp": "must be a number"}


def test_iss_is_verified_against_the_credential_key(client: httpx.Client) -> None:
    """`iss` in claims_to_verify with the key found elsewhere (the header's `iss`)."""
    no_iss = pyjwt.encode({"exp": later()}, HS_SECRET, headers={"iss": "hs-issuer"})
    assert client.get("/seed", headers=bearer(no_iss)).json() == {"iss": "must be a string"}
    numeric_iss = hs_signed({"alg": "HS256", "iss": "hs-issuer"}, {"exp": later(), "iss": 5})
    assert client.get("/seed", headers=bearer(numeric_iss)).json()["message"] == "Invalid 'iss' in claims"


def test_nbf_with_bounded_leeway(client: httpx.Client) -> None:
    now = int(time.time())
    assert client.get("/nbf", headers=bearer(token(HS_SECRET, nbf=now + 2))).status_code == 200  # leeway 5
    future = client.get("/nbf", headers=bearer(token(HS_SECRET, nbf=now + 60)))
    assert (future.status_code, future.json()) == (401, {"nbf": "token not valid yet"})
    assert client.get("/nbf", headers=bearer(token(HS_SECRET, nbf=f"{now}"))).json() == {
        "nbf": "must be a number"
    }


def test_maximum_expiration(client: httpx.Client) -> None:
    assert client.get("/maxexp", headers=bearer(token(HS_SECRET, exp=later(30)))).status_code == 200
    far = client.get("/maxexp", headers=bearer(token(HS_SECRET, exp=later(3600))))
    assert (far.status_code, far.json()) == (401, {"exp": "exceeds maximum allowed expiration"})


def test_audience_exact_match(client: httpx.Client) -> None:
    assert client.get("/aud", headers=bearer(token(HS_SECRET, aud="api://orders"))).status_code == 200
    assert client.get("/aud", headers=bearer(token(HS_SECRET, aud=["x", "api://orders"]))).status_code == 200
    assert client.get("/aud", headers=bearer(token(HS_SECRET, aud="api://orders/"))).json() == {
        "aud": "invalid audience"
    }
    assert client.get("/aud", headers=bearer(token(HS_SECRET))).json() == {"aud": "must be present"}


def test_cached_token_still_expires(client: httpx.Client) -> None:
    short = token(HS_SECRET, exp=int(time.time()) + 2)
    assert client.get("/seed", headers=bearer(short)).status_code == 200
    assert client.get("/seed", headers=bearer(short)).status_code == 200  # from the verified-token cache
    time.sleep(2.2)
    assert client.get("/seed", headers=bearer(short)).json() == {"exp": "token expired"}


def test_anonymous_consumer(client: httpx.Client) -> None:
    answer = client.get("/anon", headers={"X-Credential-Identifier": "spoof"})
    assert answer.status_code == 200
    headers = answer.json()["headers"]
    assert headers["x-consumer-username"] == "anon"
    assert headers["x-anonymous-consumer"] == "true"
    assert "x-credential-identifier" not in headers
    bad = client.get("/anon", headers=bearer(token(WRONG_SECRET)))
    assert bad.json()["headers"]["x-consumer-username"] == "anon"
    good = client.get("/anon", headers=bearer(token(HS_SECRET)))
    assert good.json()["headers"]["x-consumer-username"] == "alice"


def test_preflight_skips_auth_when_configured(client: httpx.Client) -> None:
    assert client.options("/preflight").status_code == 200
    refused = client.get("/preflight")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="orders"'
    assert client.options("/plain").status_code == 401  # run_on_preflight defaults to true


# --- behaviour: JWKS --------------------------------------------------------------------------------


def jwks_token(kid: str, **claims: Any) -> str:
    alg = "ES256" if kid == "kid-1" else "RS256"
    claims.setdefault("exp", later())
    return token(JWKS_KEYS[kid], alg, headers={"kid": kid}, iss="https://idp.test/", **claims)


def test_jwks_rotation_and_outage(client: httpx.Client, jwks: JwksServer) -> None:
    first = client.get("/jwks", headers=bearer(jwks_token("kid-1")))
    assert first.status_code == 200, first.text
    assert first.json()["headers"]["x-consumer-username"] == "erin"

    # Rotation: a new kid is fetched on demand (min refresh interval 0 on this route).
    jwks.publish("kid-1", "kid-2")
    rotated = client.get("/jwks", headers=bearer(jwks_token("kid-2")))
    assert rotated.status_code == 200, rotated.text

    # Outage: the cached key set keeps verifying new tokens (not just cached ones).
    jwks.down = True
    try:
        for n in range(3):
            assert client.get("/jwks", headers=bearer(jwks_token("kid-1", n=n))).status_code == 200
            assert client.get("/jwks", headers=bearer(jwks_token("kid-2", n=n))).status_code == 200
        unknown = client.get(
            "/jwks",
            headers=bearer(token(OTHER_RSA_KEY, "RS256", headers={"kid": "kid-9"}, iss="https://idp.test/")),
        )
        assert unknown.status_code == 401
        assert unknown.json()["message"] == "Invalid key/secret"
    finally:
        jwks.down = False


def test_jwks_refuses_hmac_and_unlisted_algorithms(client: httpx.Client) -> None:
    hs = pyjwt.encode({"iss": "https://idp.test/"}, HS_SECRET, headers={"kid": "kid-1"})
    assert client.get("/jwks", headers=bearer(hs)).json()["message"] == "Invalid algorithm"
    # kid-1 is an EC P-256 key: an RS256 token naming it cannot verify with it.
    wrong = token(JWKS_KEYS["kid-2"], "RS256", headers={"kid": "kid-1"}, iss="https://idp.test/", exp=later())
    assert client.get("/jwks", headers=bearer(wrong)).json()["message"] == "Invalid algorithm"


def test_ed25519_jwk_is_understood() -> None:
    from forecourt.plugins.jwt.jwks import parse_jwks

    jwk = json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key()))
    keys = parse_jwks(
        json.dumps({"keys": [{**jwk, "kid": "ed"}, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}).encode()
    )
    assert set(keys.by_kid) == {"ed"}  # the symmetric key is dropped, never trusted
    assert set(keys.by_kid["ed"]) == {"EdDSA"}
