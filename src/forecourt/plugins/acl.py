"""The `acl` plugin: Kong's group allow/deny lists, plus scope checks on JWT claims.

Groups come from the authenticated consumer's `acls`, or from the request's authenticated groups
(set by an auth plugin, e.g. `jwt`'s `authenticated_groups_claim`) when there is no consumer,
when the consumer is the anonymous one, or with `always_use_authenticated_groups`, as in Kong.

Forecourt's addition: `required_scopes` are looked up in the verified JWT claims (`scopes_claim`,
a space-separated string like OAuth's `scope` or a list like `scp` or `roles`); a request
without them gets 403 with `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from forecourt.config.fields import Bool, NonEmptyStr
from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, Response

CONSUMER_GROUPS = b"X-Consumer-Groups"
AUTHENTICATED_GROUPS = b"X-Authenticated-Groups"


def _none_as_empty(value: object) -> object:
    return () if value is None else value


Groups = Annotated[tuple[NonEmptyStr, ...], Field(min_length=1)]


class AclConfig(PluginConfig):
    allow: Groups | None = Field(None, description="Groups allowed in (everyone else is refused).")
    deny: Groups | None = Field(None, description="Groups refused (everyone else is allowed).")
    hide_groups_header: Bool = Field(
        False, description="Do not send X-Consumer-Groups / X-Authenticated-Groups upstream."
    )
    include_consumer_groups: Bool = Field(
        False, description="Kong Enterprise consumer groups: not supported by Forecourt (must be false)."
    )
    always_use_authenticated_groups: Bool = Field(
        False, description="Use the authenticated groups even when a consumer is authenticated."
    )
    # --- Forecourt ---
    scopes_claim: NonEmptyStr = Field(
        "scope", description="Forecourt: JWT claim (dot path) holding the token's scopes or roles."
    )
    required_scopes: Annotated[tuple[NonEmptyStr, ...], BeforeValidator(_none_as_empty)] = Field(
        (), description="Forecourt: scopes the token must carry (see `scopes_match`)."
    )
    scopes_match: Literal["all", "any"] = Field(
        "all", description="Forecourt: whether every required scope, or any one of them, is needed."
    )

    @model_validator(mode="after")
    def _groups_or_scopes(self) -> AclConfig:
        if self.allow is not None and self.deny is not None:
            raise ValueError("only one of these fields can be set: 'allow', 'deny'")
        if self.allow is None and self.deny is None and not self.required_scopes:
            raise ValueError(
                "at least one of these fields must be non-empty: 'allow', 'deny', 'required_scopes'"
            )
        if self.include_consumer_groups:
            raise ValueError("include_consumer_groups: not supported (Forecourt has no consumer groups)")
        return self


class AclPlugin(Plugin[AclConfig]):
    """Allows or refuses the authenticated consumer by its groups and its token's scopes."""

    name = "acl"
    priority = 950
    Config = AclConfig

    def __init__(self, config: AclConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        if scope.consumer is not None:
            raise ValueError("the acl plugin cannot be applied to a consumer")
        self._deny = config.deny is not None
        listed = config.deny if config.deny is not None else config.allow
        self._groups = frozenset(listed) if listed is not None else None
        self._scopes = frozenset(config.required_scopes)
        self._scope_path = tuple(config.scopes_claim.split("."))
        required = " ".join(config.required_scopes).replace('"', "")
        self._insufficient = [
            (b"WWW-Authenticate", b'Bearer error="insufficient_scope", scope="%s"' % required.encode())
        ]
        # consumer id → header value when allowed, or None when refused (consumers are immutable)
        self._by_consumer: dict[str, bytes | None] = {}

    def access(self, ctx: Context) -> Response | None:
        if self._groups is not None:
            refused = self._check_groups(ctx)
            if refused is not None:
                return refused
        elif ctx.consumer is None and ctx.authenticated_groups is None:
            return Response.error(401, "Unauthorized")
        if self._scopes and not self._has_scopes(ctx.jwt_claims):
            return Response.error(403, "insufficient_scope", list(self._insufficient))
        return None

    def _check_groups(self, ctx: Context) -> Response | None:
        consumer = ctx.consumer
        groups: tuple[str, ...] | None = None
        if consumer is None or ctx.credential is None or self.config.always_use_authenticated_groups:
            groups = ctx.authenticated_groups
        if groups is not None:
            if not self._allowed(groups):
                return Response.error(403, "You cannot consume this service")
            self._set_header(ctx, AUTHENTICATED_GROUPS, _header_value(groups))
            return None
        if consumer is None:
            return Response.error(401, "Unauthorized")
        try:
            value = self._by_consumer[consumer.id]
        except KeyError:
            value = _header_value(consumer.groups) if self._allowed(consumer.groups) else None
            self._by_consumer[consumer.id] = value
        if value is None:
            return Response.error(403, "You cannot consume this service")
        self._set_header(ctx, CONSUMER_GROUPS, value)
        return None

    def _allowed(self, groups: tuple[str, ...]) -> bool:
        assert self._groups is not None
        member = not self._groups.isdisjoint(groups)
        return not member if self._deny else member

    def _set_header(self, ctx: Context, name: bytes, value: bytes) -> None:
        if not self.config.hide_groups_header and value:
            ctx.set_header(name, value)

    def _has_scopes(self, claims: dict[str, Any] | None) -> bool:
        value: Any = claims
        for part in self._scope_path:
            if not isinstance(value, dict):
                return False
            value = value.get(part)
        if isinstance(value, str):
            held = frozenset(value.split())
        elif isinstance(value, list):
            held = frozenset(v for v in value if isinstance(v, str))
        else:
            return False
        if self.config.scopes_match == "any":
            return not held.isdisjoint(self._scopes)
        return self._scopes <= held


def _header_value(groups: tuple[str, ...]) -> bytes:
    return ", ".join(groups).encode()
