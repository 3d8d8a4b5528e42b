"""Signature verification per JWS algorithm, with keys parsed once.

A `Verifier` is built when the config is loaded (or a JWKS is fetched) for one key and one
algorithm, so the request path only calls `verify`. The algorithm is part of the verifier, never
taken from the token: a token's `alg` only selects among the verifiers its credential allows.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from forecourt.config.credentials import ES_CURVES, PublicKey, key_fits, load_public_key

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_HMAC_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
_ES_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class Verifier(Protocol):
    """Checks one signature for one key and one algorithm."""

    def verify(self, signing_input: bytes, signature: bytes) -> bool: ...


class HmacVerifier:
    __slots__ = ("_digest", "_secret")

    def __init__(self, secret: bytes, algorithm: str) -> None:
        self._secret = secret
        self._digest = _HMAC_DIGESTS[algorithm]

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        expected = hmac.digest(self._secret, signing_input, self._digest)
        return hmac.compare_digest(expected, signature)


class RsaVerifier:
    __slots__ = ("_hash", "_key", "_padding")

    def __init__(self, key: rsa.RSAPublicKey, algorithm: str) -> None:
        self._key = key
        self._hash = _HASHES[algorithm[2:]]()
        if algorithm.startswith("PS"):
            # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
            self._padding: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size
            )
        else:
            self._padding = padding.PKCS1v15()

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, signing_input, self._padding, self._hash)
        except InvalidSignature:
            return False
        return True


class EcVerifier:
    __slots__ = ("_algorithm", "_key", "_size")

    def __init__(self, key: ec.EllipticCurvePublicKey, algorithm: str) -> None:
        self._key = key
        self._size = _ES_SIZES[algorithm]
        self._algorithm = ec.ECDSA(_HASHES[algorithm[2:]]())

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        size = self._size
        if len(signature) != 2 * size:  # JWS signatures are raw r || s, never DER
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        try:
            self._key.verify(encode_dss_signature(r, s), signing_input, self._algorithm)
        except InvalidSignature:
            return False
        return True


class EdVerifier:
    __slots__ = ("_key",)

    def __init__(self, key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) -> None:
        self._key = key

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True


def public_key_verifier(key: PublicKey, algorithm: str) -> Verifier:
    """A verifier of `algorithm` with `key`; ValueError when the key does not fit the algorithm."""
    reason = key_fits(key, algorithm)
    if reason is not None:
        raise ValueError(reason)
    if isinstance(key, rsa.RSAPublicKey):
        return RsaVerifier(key, algorithm)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EcVerifier(key, algorithm)
    return EdVerifier(key)


@lru_cache(maxsize=1024)
def pem_verifiers(pem: str, algorithms: tuple[str, ...]) -> Mapping[str, Verifier]:
    """Verifiers for a credential's PEM key, shared by every plugin instance of a config."""
    key = load_public_key(pem)
    return {algorithm: public_key_verifier(key, algorithm) for algorithm in algorithms}


def hmac_verifiers(secret: bytes, algorithms: tuple[str, ...]) -> dict[str, Verifier]:
    return {algorithm: HmacVerifier(secret, algorithm) for algorithm in algorithms}


def b64url_decode(text: str | bytes) -> bytes:
    """Base64url without padding (JWS, JWK); raises ValueError on anything else."""
    data = text.encode("ascii") if isinstance(text, str) else text
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64url") from exc


def decode_secret_base64(secret: str) -> bytes | None:
    """Kong's `secret_is_base64`: standard or url-safe alphabet, padding optional; None if invalid."""
    data = secret.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- JWK (RFC 7517/7518) ------------------------------------------------------------------------

_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class JwkError(ValueError):
    """A JWK that cannot be used for verification (skipped, never fatal for its set)."""


def _jwk_int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwkError(f'missing "{name}"')
    return int.from_bytes(b64url_decode(value), "big")


def jwk_public_key(jwk: Mapping[str, Any]) -> tuple[PublicKey, tuple[str, ...]]:
    """The public key of a JWK and the algorithms it may verify (its `alg`, else its key type's).

    Symmetric (`oct`) and private keys are refused: a JWKS is public, so an HMAC key from it
    would let anyone sign tokens.
    """
    kty = jwk.get("kty")
    if jwk.get("use", "sig") != "sig":
        raise JwkError("not a signature key")
    if "d" in jwk:
        raise JwkError("private keys are not accepted")
    key: PublicKey
    if kty == "RSA":
        key = rsa.RSAPublicNumbers(_jwk_int(jwk, "e"), _jwk_int(jwk, "n")).public_key()
        algorithms: tuple[str, ...] = _RSA_ALGORITHMS
    elif kty == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        if curve is None:
            raise JwkError(f"unsupported curve {jwk.get('crv')!r}")
        key = ec.EllipticCurvePublicNumbers(_jwk_int(jwk, "x"), _jwk_int(jwk, "y"), curve).public_key()
        algorithms = tuple(a for a, name in ES_CURVES.items() if name == curve.name)
    elif kty == "OKP":
        x = jwk.get("x")
        if not isinstance(x, str):
            raise JwkError('missing "x"')
        raw = b64url_decode(x)
        if jwk.get("crv") == "Ed25519":
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        elif jwk.get("crv") == "Ed448":
            key = ed448.Ed448PublicKey.from_public_bytes(raw)
        else:
            raise JwkError(f"unsupported curve {jwk.get('crv')!r}")
        algorithms = ("EdDSA",)
    else:
        raise JwkError(f"unsupported key type {kty!r}")
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in algorithms:
            raise JwkError(f"alg {alg!r} does not fit key type {kty}")
        algorithms = (alg,)
    return key, algorithms
