"""Consumer credentials as written: `keyauth_credentials`, `jwt_secrets` and `acls`.

They nest in a consumer or stand at the top level with a `consumer` reference, as in Kong's
declarative format. Field checks live in the models; the checks that span fields of a JWT secret
(which key an algorithm needs, whether a PEM parses and fits the algorithm, the JWKS rules) are in
`jwt_secret_problems`, so a key that does not parse is a load error at its own line rather than a
401 at run time.

Forecourt's additions to Kong's `jwt_secrets`: `jwks_uri` (keys fetched from a JWKS endpoint
instead of a fixed `rsa_public_key`) and `algorithms` (an allow-list of several algorithms that
share the credential's key, e.g. `[RS256, PS256]`).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from pydantic import AfterValidator, Field, Strict

from forecourt.config.errors import KeyPath
from forecourt.config.fields import NonEmptyStr, Tags, Uuid
from forecourt.config.schema import Entity, Ref

JwtAlgorithm = Literal[
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
]
JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = get_args(JwtAlgorithm)
ASYMMETRIC_ALGORITHMS: tuple[JwtAlgorithm, ...] = tuple(a for a in JWT_ALGORITHMS if not a.startswith("HS"))

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

# The curve each ES algorithm is defined on (RFC 7518 §3.4).
ES_CURVES: dict[str, str] = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'expected an http:// or https:// URL, got "{value}"')
    return value


HttpUrl = Annotated[str, Strict(), AfterValidator(_check_http_url)]
Ttl = Annotated[int, Strict(), Field(ge=0, le=100_000_000)]


# --- key-auth ---------------------------------------------------------------------------------


class KeyAuthCredentialFields(Entity):
    id: Uuid | None = None
    key: NonEmptyStr | None = Field(None, repr=False, description="The API key; generated when unset.")
    tags: Tags = ()
    ttl: Ttl | None = Field(None, description="Seconds after the config is loaded that the key expires.")


class KeyAuthCredentialEntity(KeyAuthCredentialFields):
    """A key-auth credential as written; `consumer` only at the top level."""

    consumer: Ref | None = None


# --- jwt --------------------------------------------------------------------------------------


class JwtSecretFields(Entity):
    id: Uuid | None = None
    key: NonEmptyStr | None = Field(
        None, description="Matched against the token's key claim (`iss` by default); generated when unset."
    )
    secret: NonEmptyStr | None = Field(None, repr=False, description="HMAC secret; generated when unset.")
    rsa_public_key: NonEmptyStr | None = Field(
        None, description="PEM public key for RS*, PS*, ES* and EdDSA (any key type, despite the name)."
    )
    tags: Tags = ()
    jwks_uri: HttpUrl | None = Field(None, description="Forecourt: fetch the verification keys from a JWKS.")
    algorithms: Annotated[tuple[JwtAlgorithm, ...], Field(min_length=1)] | None = Field(
        None, description="Forecourt: the algorithms this credential accepts (default: `algorithm` only)."
    )


class JwtSecretEntity(JwtSecretFields):
    """A JWT secret as written; `algorithm` is None when the file leaves it out."""

    algorithm: JwtAlgorithm | None = None
    consumer: Ref | None = None


# --- acl --------------------------------------------------------------------------------------


class AclFields(Entity):
    id: Uuid | None = None
    group: NonEmptyStr
    tags: Tags = ()


class AclEntity(AclFields):
    """An ACL group membership as written; `consumer` only at the top level."""

    consumer: Ref | None = None


# --- checks across fields -----------------------------------------------------------------------

Problems = list[tuple[KeyPath, str]]


def allowed_algorithms(secret: JwtSecretFields, algorithm: JwtAlgorithm | None) -> tuple[JwtAlgorithm, ...]:
    """The algorithms a credential accepts: `algorithms`, else `algorithm`, else Kong's HS256
    (every asymmetric algorithm for a JWKS credential: each JWK then decides for its own key)."""
    if secret.algorithms is not None:
        return tuple(dict.fromkeys(secret.algorithms))
    if algorithm is not None:
        return (algorithm,)
    return ASYMMETRIC_ALGORITHMS if secret.jwks_uri is not None else ("HS256",)


def load_public_key(pem: str) -> PublicKey:
    """The public key in `pem`: a public key, a certificate, or (as Kong accepts) a private key.

    Raises ValueError with a short reason.
    """
    data = pem.strip().encode()
    loaded: object
    try:
        if b"CERTIFICATE-----" in data:
            loaded = x509.load_pem_x509_certificate(data).public_key()
        elif b"PRIVATE KEY-----" in data:
            loaded = load_pem_private_key(data, password=None).public_key()
        else:
            loaded = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid key: not a PEM public key, certificate or private key") from exc
    if isinstance(
        loaded,
        rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
    ):
        return loaded
    raise ValueError(f"invalid key: unsupported key type {type(loaded).__name__}")


def key_fits(key: PublicKey, algorithm: str) -> str | None:
    """None when `key` can verify `algorithm`, else why not."""
    family = algorithm[:2]
    if family in ("RS", "PS"):
        return None if isinstance(key, rsa.RSAPublicKey) else f"{algorithm} needs an RSA key"
    if family == "ES":
        curve = ES_CURVES[algorithm]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            return f"{algorithm} needs an EC key on curve {curve}"
        return None
    if algorithm == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            return "EdDSA needs an Ed25519 or Ed448 key"
        return None
    return f"{algorithm} does not use a public key"  # pragma: no cover - callers pass asymmetric ones


def jwt_secret_problems(secret: JwtSecretEntity) -> Problems:
    """Kong's entity check (a public key for RS*/ES*, and it must parse) plus Forecourt's rules."""
    problems: Problems = []
    allowed = allowed_algorithms(secret, secret.algorithm)
    if secret.algorithm is not None and secret.algorithms is not None and secret.algorithm not in allowed:
        problems.append((("algorithm",), f'"{secret.algorithm}" is not in "algorithms"'))
    hmac_family = [a for a in allowed if a.startswith("HS")]
    if hmac_family and len(hmac_family) != len(allowed):
        # One credential verifying both an HMAC and a public-key algorithm is the HS/RS confusion
        # hole: a public key is not a secret, so anyone could sign HS256 tokens with it.
        where = "algorithms" if secret.algorithms is not None else "algorithm"
        problems.append(((where,), "cannot mix HMAC (HS*) and public-key algorithms in one credential"))
        return problems
    if secret.jwks_uri is not None:
        if hmac_family:
            where = "algorithms" if secret.algorithms is not None else "algorithm"
            problems.append(((where,), "a jwks_uri credential accepts public-key algorithms only"))
        for name in ("rsa_public_key", "secret"):
            if getattr(secret, name) is not None:
                problems.append(((name,), 'cannot be combined with "jwks_uri"'))
        return problems
    if hmac_family:
        return problems
    if secret.rsa_public_key is None:
        needs = f'required field missing (algorithm "{allowed[0]}" verifies with a public key)'
        problems.append((("rsa_public_key",), needs))
        return problems
    try:
        key = load_public_key(secret.rsa_public_key)
    except ValueError as exc:
        problems.append((("rsa_public_key",), str(exc)))
        return problems
    for algorithm in allowed:
        reason = key_fits(key, algorithm)
        if reason is not None:
            problems.append((("rsa_public_key",), f"does not fit the algorithm: {reason}"))
            break
    return problems
