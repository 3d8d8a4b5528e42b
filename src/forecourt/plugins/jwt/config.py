"""The `jwt` plugin's config: Kong 3.x's fields and defaults, plus Forecourt's (marked below)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict, model_validator

from forecourt.config.fields import Bool, HeaderName, NonEmptyStr, Str
from forecourt.pipeline import PluginConfig


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    """Kong's `set` fields: duplicates collapse, first occurrence wins."""
    return tuple(dict.fromkeys(values))


def _none_as_empty(value: object) -> object:
    return () if value is None else value


StrSet = Annotated[tuple[NonEmptyStr, ...], BeforeValidator(_none_as_empty), AfterValidator(_unique)]
HeaderSet = Annotated[tuple[HeaderName, ...], BeforeValidator(_none_as_empty), AfterValidator(_unique)]
Claim = Literal["exp", "nbf", "iss"]


class JwtConfig(PluginConfig):
    uri_param_names: StrSet = Field(("jwt",), description="Query parameters searched for a token.")
    cookie_names: StrSet = Field((), description="Cookies searched for a token.")
    header_names: HeaderSet = Field(
        ("authorization",), description="Headers searched for `Bearer <token>` (case-insensitive)."
    )
    key_claim_name: NonEmptyStr = Field(
        "iss", description="Claim (or header field) naming the credential `key` that signed the token."
    )
    secret_is_base64: Bool = Field(False, description="HMAC secrets are base64-encoded.")
    claims_to_verify: Annotated[
        tuple[Claim, ...], BeforeValidator(_none_as_empty), AfterValidator(_unique)
    ] = Field(
        (),
        description="Registered claims to check: `exp`, `nbf` (Kong) and `iss` (Forecourt: must equal "
        "the credential key).",
    )
    anonymous: NonEmptyStr | None = Field(
        None, description="Consumer (id or username) to use when authentication fails."
    )
    run_on_preflight: Bool = Field(True, description="Authenticate CORS preflight (OPTIONS) requests too.")
    maximum_expiration: Annotated[float, Strict(), Field(ge=0, le=31536000)] = Field(
        0, description="Refuse tokens whose `exp` is more than this many seconds ahead (0: no limit)."
    )
    realm: Str | None = Field(None, description="`realm` of the `WWW-Authenticate` challenge on 401.")
    # --- Forecourt ---
    leeway: Annotated[int, Strict(), Field(ge=0, le=300)] = Field(
        0, description="Forecourt: clock skew, in seconds, allowed when checking `exp` and `nbf`."
    )
    audiences: StrSet = Field(
        (), description="Forecourt: when set, the token's `aud` must contain one of these, exactly."
    )
    authenticated_groups_claim: NonEmptyStr | None = Field(
        None,
        description="Forecourt: claim (dot path) whose string or list value becomes the request's "
        "authenticated groups (read by `acl`).",
    )
    jwks_refresh_interval: Annotated[float, Strict(), Field(gt=0, le=86400)] = Field(
        300, description="Forecourt: seconds between background refreshes of a JWKS."
    )
    jwks_min_refresh_interval: Annotated[float, Strict(), Field(ge=0, le=3600)] = Field(
        10, description="Forecourt: an unknown `kid` refetches a JWKS at most once per this many seconds."
    )

    @model_validator(mode="after")
    def _maximum_expiration_needs_exp(self) -> JwtConfig:
        if self.maximum_expiration > 0 and "exp" not in self.claims_to_verify:
            raise ValueError('claims_to_verify must contain "exp" when maximum_expiration is set')
        return self
