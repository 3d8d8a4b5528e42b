"""Consumer credentials: `keyauth_credentials`, `jwt_secrets`, `acls` nested and top-level."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from forecourt.config import ConfigError, parse_config
from forecourt.config.credentials import ASYMMETRIC_ALGORITHMS
from forecourt.plan.build import PlanBuilder


def _pem(private: object) -> str:
    public = private.public_key()  # type: ignore[attr-defined]
    text = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return str(text.decode())


RSA_PEM = _pem(rsa.generate_private_key(65537, 2048))
P256_PEM = _pem(ec.generate_private_key(ec.SECP256R1()))
ED_PEM = _pem(ed25519.Ed25519PrivateKey.generate())


def _block(pem: str, indent: int) -> str:
    pad = " " * indent
    return "|\n" + "".join(f"{pad}{line}\n" for line in pem.strip().splitlines())


VALID = f"""\
consumers:
- username: alice
  custom_id: c1
  keyauth_credentials:
  - key: alice-key
    ttl: 60
  jwt_secrets:
  - key: alice-hs
    secret: s
  - key: alice-rs
    algorithms: [RS256, PS256]
    rsa_public_key: {_block(RSA_PEM, 6)}  - key: alice-idp
    jwks_uri: https://idp.example/.well-known/jwks.json
  acls:
  - group: admins
- username: bob
keyauth_credentials:
- consumer: bob
- consumer: {{name: alice}}
  key: alice-second
jwt_secrets:
- consumer: bob
  key: bob-ed
  algorithm: EdDSA
  rsa_public_key: {_block(ED_PEM, 4)}acls:
- consumer: bob
  group: dev
- consumer: alice
  group: dev
"""


def test_nested_and_top_level_credentials_attach_to_their_consumer() -> None:
    config = parse_config(VALID, "gw.yaml")
    alice, bob = config.consumers
    assert [c.key for c in alice.keyauth_credentials] == ["alice-key", "alice-second"]
    assert alice.keyauth_credentials[0].ttl == 60
    assert [s.key for s in alice.jwt_secrets] == ["alice-hs", "alice-rs", "alice-idp"]
    hs, rs, idp = alice.jwt_secrets
    assert (hs.algorithm, hs.algorithms, hs.secret) == ("HS256", ("HS256",), "s")
    assert (rs.algorithm, rs.algorithms) == ("HS256", ("RS256", "PS256"))
    assert (idp.algorithm, idp.algorithms) == (None, ASYMMETRIC_ALGORITHMS)
    assert [a.group for a in alice.acls] == ["admins", "dev"]
    assert [a.group for a in bob.acls] == ["dev"]
    assert bob.jwt_secrets[0].algorithms == ("EdDSA",)
    generated = bob.keyauth_credentials[0].key
    assert len(generated) == 32  # Kong generates a key the file leaves out
    assert all(c.consumer == "alice" for c in alice.keyauth_credentials)


def test_credentials_never_appear_in_entity_dumps() -> None:
    alice = parse_config(VALID, "gw.yaml").consumers[0]
    dumped = alice.model_dump(mode="json")
    assert "keyauth_credentials" not in dumped and "jwt_secrets" not in dumped and "acls" not in dumped
    assert "alice-key" not in repr(alice.keyauth_credentials[0])


def test_plan_indexes_credentials_and_groups() -> None:
    builder = PlanBuilder()
    plan = builder.build(parse_config(VALID, "gw.yaml", builder.registry))
    index = plan.consumers
    alice = index.find("alice")
    assert alice is not None and alice.groups == ("admins", "dev")
    assert len(alice.id) == 36
    keyauth = index.credential("key-auth", "alice-key")
    assert keyauth is not None and keyauth.consumer is alice
    assert keyauth.data["expires_at"] is not None
    jwt_secret = index.credential("jwt", "alice-rs")
    assert jwt_secret is not None and jwt_secret.data["algorithms"] == ("RS256", "PS256")
    assert index.credential("jwt", "bob-ed") is not None


def test_an_hmac_secret_is_generated_when_missing() -> None:
    config = parse_config("consumers:\n- username: a\n  jwt_secrets:\n  - key: k\n", "gw.yaml")
    secret = config.consumers[0].jwt_secrets[0].secret
    assert secret is not None and len(secret) == 32


CASES: list[tuple[str, str, list[str]]] = [
    (
        "duplicate keys and groups",
        "consumers:\n- username: a\n  keyauth_credentials: [{key: k}]\n  acls: [{group: g}, {group: g}]\n- username: b\n  keyauth_credentials:\n  - key: k\n",
        [
            'gw.yaml:4: consumers[0].acls[1].group: duplicate acl group "g" for consumer "a" (first at consumers[0].acls[0])',
            "gw.yaml:7: consumers[1].keyauth_credentials[0].key: duplicate key (first at consumers[0].keyauth_credentials[0])",
        ],
    ),
    (
        "duplicate jwt key across consumers",
        "consumers:\n- username: a\n  jwt_secrets: [{key: iss}]\njwt_secrets:\n- consumer: a\n  key: iss\n",
        [
            'gw.yaml:6: jwt_secrets[0].key: duplicate jwt_secret key "iss" (first at consumers[0].jwt_secrets[0])'
        ],
    ),
    (
        "top-level credentials need a consumer that exists",
        "keyauth_credentials:\n- key: k\nacls:\n- consumer: ghost\n  group: g\n",
        [
            "gw.yaml:2: keyauth_credentials[0].consumer: required field missing",
            'gw.yaml:4: acls[0].consumer: no consumer named "ghost"',
        ],
    ),
    (
        "nested credentials must not name a consumer",
        "consumers:\n- username: a\n  acls:\n  - group: g\n    consumer: a\n",
        ["gw.yaml:5: consumers[0].acls[0].consumer: not allowed in an acl nested in a consumer"],
    ),
    (
        "field checks",
        "consumers:\n- username: a\n  keyauth_credentials:\n  - key: ''\n    ttl: -1\n  jwt_secrets:\n  - algorithm: HS257\n  acls:\n  - {}\n",
        [
            "gw.yaml:4: consumers[0].keyauth_credentials[0].key: must not be empty",
            "gw.yaml:5: consumers[0].keyauth_credentials[0].ttl: must be at least 0",
            "gw.yaml:7: consumers[0].jwt_secrets[0].algorithm: expected 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512' or 'EdDSA', got 'HS257'",
            "gw.yaml:9: consumers[0].acls[0].group: required field missing",
        ],
    ),
    (
        "public-key algorithms need a key that parses and fits",
        f"consumers:\n- username: a\n  jwt_secrets:\n  - key: one\n    algorithm: RS256\n  - key: two\n    algorithm: RS256\n    rsa_public_key: not a pem\n  - key: three\n    algorithm: ES384\n    rsa_public_key: {_block(P256_PEM, 6)}",
        [
            'gw.yaml:4: consumers[0].jwt_secrets[0].rsa_public_key: required field missing (algorithm "RS256" verifies with a public key)',
            "gw.yaml:8: consumers[0].jwt_secrets[1].rsa_public_key: invalid key: not a PEM public key, certificate or private key",
            "gw.yaml:11: consumers[0].jwt_secrets[2].rsa_public_key: does not fit the algorithm: ES384 needs an EC key on curve secp384r1",
        ],
    ),
    (
        "no HMAC beside public-key algorithms, and JWKS rules",
        "jwt_secrets:\n- consumer: a\n  algorithms: [HS256, RS256]\n- consumer: a\n  algorithm: HS256\n  jwks_uri: https://idp/jwks\n- consumer: a\n  jwks_uri: file:///etc/jwks\n- consumer: a\n  algorithm: RS256\n  algorithms: [PS256]\n  jwks_uri: http://idp/jwks\nconsumers:\n- username: a\n",
        [
            "gw.yaml:3: jwt_secrets[0].algorithms: cannot mix HMAC (HS*) and public-key algorithms in one credential",
            "gw.yaml:5: jwt_secrets[1].algorithm: a jwks_uri credential accepts public-key algorithms only",
            'gw.yaml:8: jwt_secrets[2].jwks_uri: expected an http:// or https:// URL, got "file:///etc/jwks"',
            'gw.yaml:10: jwt_secrets[3].algorithm: "RS256" is not in "algorithms"',
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_issues(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml")
    assert [str(issue) for issue in caught.value.issues] == expected
